"""Reading command history: filtered, newest first, paged by offset or by a cursor.

Read side only: it reads the indexes the command store writes (the sorted sets of
command ids by submission time: all, per user, per vehicle) and the command hashes.

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
from typing import cast

import redis.asyncio

from common.commands import CommandRecord, CommandStatus
from common.keys import Keys

__all__ = ["CommandHistory", "Cursor", "HistoryPage"]


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


class CommandHistory:
    def __init__(self, client: redis.asyncio.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    async def page(
        self,
        *,
        user_id: str | None = None,
        vehicle_id: str | None = None,
        status: CommandStatus | None = None,
        since: float | None = None,
        until: float | None = None,
        after: Cursor | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> HistoryPage:
        """Newest first. ``since``/``until`` bound the submission time (epoch s, inclusive)."""
        if user_id is not None:
            index = self._keys.commands_by_user(user_id)
        elif vehicle_id is not None:
            index = self._keys.commands_by_vehicle(vehicle_id)
        else:
            index = self._keys.commands
        low = "-inf" if since is None else repr(since)
        high = "+inf" if until is None else repr(until)
        if status is None and (user_id is None or vehicle_id is None):
            return await self._indexed(index, low, high, after, limit, offset)
        return await self._filtered(index, low, high, after, limit, offset, status, vehicle_id)

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

    async def _filtered(
        self,
        index: str,
        low: str,
        high: str,
        after: Cursor | None,
        limit: int,
        offset: int,
        status: CommandStatus | None,
        vehicle_id: str | None,
    ) -> HistoryPage:
        """Filters the index cannot answer: walk the time range and test each command."""
        found = cast(
            list[tuple[str, float]],
            await self._client.zrevrangebyscore(index, high, low, withscores=True),
        )
        entries = [Cursor(float(s), str(m)) for m, s in found]
        records = await self._load([e.command_id for e in entries])
        matching = [
            (entry, record)
            for entry, record in zip(entries, records, strict=True)
            if record is not None
            and (status is None or record.status == status)
            and (vehicle_id is None or record.vehicle_id == vehicle_id)
        ]
        total = len(matching)
        if after is not None:
            matching = [(e, r) for e, r in matching if e < after]
        window = matching[offset : offset + limit + 1]
        more = len(window) > limit
        window = window[:limit]
        next_cursor = window[-1][0] if more and window else None
        return HistoryPage([r for _, r in window], total, next_cursor)

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
