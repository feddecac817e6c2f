"""Reading command history: filtered, newest first, paged by offset or by a cursor.

Read side only: it reads the indexes the command store and the scripts write (sorted
sets of command ids scored by submission time: all, per user, per vehicle, per status,
per type) and the command hashes. No filter is answered by reading commands.

A cursor names the last command of a page by its position, ``(submitted score,
command id)``, so the next page starts right after it however many commands arrived
since: paging by cursor neither repeats nor skips an item, where paging by ``offset``
shifts by one for each new command. Redis orders equal scores by member, and
``ZREVRANGEBYSCORE`` returns them in reverse member order; the cursor follows that
same order, so ties are stable too.
"""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio

from common.commands import CommandRecord, CommandStatus
from common.keys import Keys
from common.lua import lua_script

__all__ = ["INDEX_VERSION", "CommandHistory", "Cursor", "HistoryPage", "backfill_indexes"]


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in an index: after this ``(score, command_id)``, going back in time."""

    score: float
    command_id: str

    def encode(self) -> str:
        raw = f"{self.score!r}|{self.command_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor ``encode`` made; ``ValueError`` for anything else."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            score_text, command_id = raw.split("|")
            score = float(score_text)
            uuid.UUID(command_id)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError("not a cursor this api returned") from None
        if not math.isfinite(score):
            raise ValueError("not a cursor this api returned")
        return cls(score, command_id)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    commands: list[CommandRecord]
    #: Every command matching the filters (whatever the cursor or offset).
    total: int
    #: Where the next page starts; None when this page is the last.
    next_cursor: Cursor | None


#: common/lua/history_intersect.lua
_INTERSECT_SCRIPT = lua_script("history_intersect")
#: Index ranks the intersect script reads per step.
_INTERSECT_STEP = 500


class CommandHistory:
    def __init__(self, client: redis.asyncio.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        self._intersect = _INTERSECT_SCRIPT.register_async(client)

    def indexes(
        self,
        *,
        user_id: str | None = None,
        vehicle_id: str | None = None,
        status: CommandStatus | None = None,
        command_name: str | None = None,
    ) -> list[str]:
        """The indexes whose intersection holds exactly the commands these filters match."""
        chosen = [
            *([self._keys.commands_by_user(user_id)] if user_id is not None else []),
            *([self._keys.commands_by_vehicle(vehicle_id)] if vehicle_id is not None else []),
            *([self._keys.commands_by_status(status)] if status is not None else []),
            *([self._keys.commands_by_type(command_name)] if command_name is not None else []),
        ]
        return chosen or [self._keys.commands]

    async def page(
        self,
        *,
        user_id: str | None = None,
        vehicle_id: str | None = None,
        status: CommandStatus | None = None,
        command_name: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: Cursor | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> HistoryPage:
        """Newest first. ``since``/``until`` bound the submission time (epoch s, inclusive).

        Every filter is an index (by user, vehicle, status, type; the time range is the
        score): one filter reads its index directly, several walk the smallest of theirs
        in Redis and keep what the others hold."""
        indexes = self.indexes(
            user_id=user_id, vehicle_id=vehicle_id, status=status, command_name=command_name
        )
        low = "-inf" if since is None else repr(since)
        high = "+inf" if until is None else repr(until)
        if len(indexes) == 1:
            return await self._indexed(indexes[0], low, high, after, limit, offset)
        return await self._intersected(indexes, low, high, after, limit, offset)

    async def _indexed(
        self, index: str, low: str, high: str, after: Cursor | None, limit: int, offset: int
    ) -> HistoryPage:
        """Every index entry matches: the page is read straight from the index."""
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.zcount(index, low, high)
            if after is None:
                pipe.zrevrangebyscore(
                    index, high, low, start=offset, num=limit + 1, withscores=True
                )
            else:
                # Ties with the cursor's score first (those after it), then older ones.
                top = min(after.score, math.inf if high == "+inf" else float(high))
                pipe.zrevrangebyscore(index, repr(top), repr(top), withscores=True)
                pipe.zrevrangebyscore(
                    index, f"({top!r}", low, start=0, num=offset + limit + 1, withscores=True
                )
            total, *ranges = await pipe.execute()
        entries = [Cursor(float(s), str(m)) for found in ranges for m, s in found]
        if after is not None:  # offset counts from the cursor
            entries = [e for e in entries if e < after][offset : offset + limit + 1]
        return await self._finish(entries, limit, int(total))

    async def _intersected(
        self,
        indexes: list[str],
        low: str,
        high: str,
        after: Cursor | None,
        limit: int,
        offset: int,
    ) -> HistoryPage:
        args = [
            high, low,
            "" if after is None else repr(after.score), "" if after is None else after.command_id,
            offset, limit + 1, _INTERSECT_STEP,
        ]  # fmt: skip
        total, *flat = cast(
            list[Any],
            await self._intersect(keys=[*indexes, self._keys.scratch(uuid.uuid4().hex)], args=args),
        )
        entries = [Cursor(float(flat[i + 1]), str(flat[i])) for i in range(0, len(flat), 2)]
        return await self._finish(entries, limit, int(total))

    async def _finish(self, entries: list[Cursor], limit: int, total: int) -> HistoryPage:
        more = len(entries) > limit
        entries = entries[:limit]
        records = await self._load([e.command_id for e in entries])
        next_cursor = entries[-1] if more and entries else None
        return HistoryPage([r for r in records if r is not None], total, next_cursor)

    async def _load(self, ids: list[str]) -> list[CommandRecord | None]:
        if not ids:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for command_id in ids:
                pipe.hgetall(self._keys.command(command_id))
            rows = cast(list[dict[str, str]], await pipe.execute())
        return [CommandRecord.from_redis(r) if r else None for r in rows]


#: The history indexes' layout: 2 added the by-status and by-type indexes.
INDEX_VERSION = 2


async def backfill_indexes(
    client: redis.asyncio.Redis, keys: Keys, *, batch: int = 500
) -> int | None:
    """Add the commands stored before the by-status and by-type indexes existed to them,
    once per store (the first process to take the marker does it; ``ZADD`` of an entry
    already there changes nothing, so a command indexed meanwhile stays right). Returns
    how many commands were walked, ``None`` when the store is already at this version."""
    marker = keys.history_index_version
    current = await client.get(marker)
    if current is not None and int(current) >= INDEX_VERSION:
        return None
    if not await client.set(f"{marker}:lock", "1", nx=True, ex=600):
        return None
    walked, start = 0, 0
    while True:
        ids = cast(list[str], await client.zrange(keys.commands, start, start + batch - 1))
        if not ids:
            break
        async with client.pipeline(transaction=False) as pipe:
            for command_id in ids:
                pipe.hmget(keys.command(command_id), ["status", "command_name", "submitted_ts"])
            rows = cast(list[list[str | None]], await pipe.execute())
        async with client.pipeline(transaction=False) as pipe:
            for command_id, (status, name, score) in zip(ids, rows, strict=True):
                if status is None or name is None or score is None:
                    continue
                pipe.zadd(keys.commands_by_status(status), {command_id: float(score)})
                pipe.zadd(keys.commands_by_type(name), {command_id: float(score)})
            await pipe.execute()
        walked += len(ids)
        start += batch
    await client.set(marker, INDEX_VERSION)
    await client.delete(f"{marker}:lock")
    return walked
