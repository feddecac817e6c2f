"""The audit trail: an append-only Redis Stream of who did what to which vehicle.

Entries are never changed. Each write trims entries past ``SOVD_AUDIT_MAX_ENTRIES`` or
older than ``SOVD_AUDIT_RETENTION_DAYS`` (a bounded number per write; queries never show
an expired one), with their index entries: every filterable field (user, vehicle,
command, action) has a sorted-set index, so queries read indexes, never the stream.
Entry ids carry the writer's clock, so an entry's time and the retention agree.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

import redis
import redis.asyncio
from pydantic import BaseModel, Field

from common.keys import Keys
from common.lua import lua_script
from common.settings import Settings
from common.timeutil import epoch_ms

__all__ = [
    "AsyncAuditLog", "AuditAction", "AuditEntry", "AuditLog", "AuditQuery", "backfill_indexes",
]  # fmt: skip


class AuditAction(StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    TOKEN_REFRESHED = "token_refreshed"  # noqa: S105 - an action name, not a secret
    #: A rotated refresh token was presented again: its whole chain was revoked.
    TOKEN_REUSED = "refresh_token_reused"  # noqa: S105 - an action name, not a secret
    ACCESS_DENIED = "access_denied"
    SUBSCRIPTION_REFUSED = "subscription_refused"
    COMMAND_SUBMITTED = "command_submitted"
    COMMAND_REJECTED = "command_rejected"
    COMMAND_CANCEL_REQUESTED = "command_cancel_requested"
    COMMAND_STARTED = "command_started"
    COMMAND_COMPLETED = "command_completed"
    COMMAND_FAILED = "command_failed"
    COMMAND_TIMEOUT = "command_timeout"
    COMMAND_CANCELLED = "command_cancelled"
    VEHICLE_REGISTERED = "vehicle_registered"
    VEHICLE_UPDATED = "vehicle_updated"
    VEHICLE_REMOVED = "vehicle_removed"
    VEHICLE_CONNECTED = "vehicle_connected"
    VEHICLE_DISCONNECTED = "vehicle_disconnected"


class AuditEntry(BaseModel):
    id: str = Field(description="Stream entry id; entries sort by it.")
    at: datetime
    action: AuditAction
    outcome: str = Field(description="`success`, `failure` or `denied`.")
    user_id: str | None = None
    username: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    command_id: str | None = None
    vehicle_id: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class AuditQuery(BaseModel):
    user_id: str | None = None
    vehicle_id: str | None = None
    command_id: str | None = None
    action: AuditAction | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0


def _fields(action: AuditAction, outcome: str, values: dict[str, Any]) -> dict[str, str]:
    entry = {"action": action.value, "outcome": outcome}
    for name, value in values.items():
        if value is None:
            continue
        entry[name] = json.dumps(value) if name == "details" else str(value)[:512]
    return entry


def _trim_minid(retention_days: int) -> str:
    return str(int((time.time() - retention_days * 86400) * 1000))


def _entry(entry_id: str, fields: dict[str, str]) -> AuditEntry:
    data: dict[str, Any] = dict(fields)
    data["details"] = json.loads(fields.get("details", "{}"))
    data["at"] = datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, tz=UTC)
    return AuditEntry(id=entry_id, **data)


#: common/lua/audit_record.lua
_RECORD_SCRIPT = lua_script("audit_record")


#: The fields an audit query filters on, each with an index (``Keys.audit_index``).
INDEXED_FIELDS = ("user_id", "vehicle_id", "command_id", "action")


def _record_args(
    keys: Keys, settings: Settings, action: AuditAction, outcome: str, values: dict[str, Any]
) -> list[str]:
    now_ms = int(time.time() * 1000)
    args = [
        str(now_ms),
        str(settings.audit_max_entries),
        _trim_minid(settings.audit_retention_days),
        keys.audit_index_prefix,
        str(settings.audit_retention_days * 86400),
        " ".join(INDEXED_FIELDS),
    ]
    for name, value in _fields(action, outcome, values).items():
        args += [name, value]
    return args


class AuditLog:
    """Writer for worker threads."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self._keys = keys
        self._key = keys.audit
        self._settings = settings
        self._record = _RECORD_SCRIPT.register(client)

    def record(self, action: AuditAction, *, outcome: str = "success", **values: Any) -> None:
        args = _record_args(self._keys, self._settings, action, outcome, values)
        self._record(keys=[self._key], args=args)

    def args(self, action: AuditAction, *, outcome: str = "success", **values: Any) -> list[str]:
        """One entry's script arguments, for a script that writes it with its own change
        (``common/lua/lib/audit_append.lua``); the entry's time is taken now."""
        return _record_args(self._keys, self._settings, action, outcome, values)


class AsyncAuditLog:
    """Writer and reader for the api (and realtime)."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, settings: Settings) -> None:
        self._client = client
        self._keys = keys
        self._key = keys.audit
        self._settings = settings
        self._record = _RECORD_SCRIPT.register_async(client)
        self._intersect = lua_script("history_intersect").register_async(client)

    async def record(self, action: AuditAction, *, outcome: str = "success", **values: Any) -> None:
        args = _record_args(self._keys, self._settings, action, outcome, values)
        await self._record(keys=[self._key], args=args)

    def args(
        self, action: AuditAction, *, outcome: str = "success", **values: Any
    ) -> tuple[list[str], list[str]]:
        """The script's keys and arguments for one entry, to ``queue`` on a pipeline later
        (the entry's time is taken now)."""
        return [self._key], _record_args(self._keys, self._settings, action, outcome, values)

    def queue(self, pipe: Any, keys: list[str], args: list[str]) -> None:
        """Queue an entry built by ``args`` on ``pipe`` (a ``MULTI`` transaction that
        writes it with its own change). By ``EVAL`` with the source: a ``NOSCRIPT``
        inside a transaction would leave the rest applied without the entry."""
        pipe.eval(_RECORD_SCRIPT.source, len(keys), *keys, *args)

    async def query(self, query: AuditQuery) -> tuple[list[AuditEntry], int]:
        """Newest first, filtered; returns ``(page, total matching)``.

        Served from the indexes (one per filtered field, one of every entry; scored by
        entry time, trimmed with the stream): one index is read directly, several are
        intersected in Redis by walking the smallest."""
        wanted = {
            "user_id": query.user_id,
            "vehicle_id": query.vehicle_id,
            "command_id": query.command_id,
            "action": query.action.value if query.action is not None else None,
        }
        indexes = [self._keys.audit_index(f, v) for f, v in wanted.items() if v is not None]
        # Entries past the retention may wait for the next write's trim: never shown.
        floor_ms = int(_trim_minid(self._settings.audit_retention_days))
        low = str(max(floor_ms, epoch_ms(query.since) if query.since else 0))
        high = str(epoch_ms(query.until)) if query.until else "+inf"
        if len(indexes) <= 1:
            index = indexes[0] if indexes else self._keys.audit_index("all", "")
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zcount(index, low, high)
                pipe.zrevrangebyscore(index, high, low, start=query.offset, num=query.limit)
                total, ids = await pipe.execute()
        else:
            args = [high, low, "", "", query.offset, query.limit, 500]
            total, *flat = cast(
                list[Any],
                await self._intersect(
                    keys=[*indexes, self._keys.scratch(uuid.uuid4().hex)], args=args
                ),
            )
            ids = flat[0::2]
        if not ids:
            return [], int(total)
        async with self._client.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xrange(self._key, min=entry_id, max=entry_id)
            found = cast(list[list[tuple[str, dict[str, str]]]], await pipe.execute())
        return [_entry(*rows[0]) for rows in found if rows], int(total)


#: The audit indexes' layout: 1 is the first with indexes.
INDEX_VERSION = 1


async def backfill_indexes(
    client: redis.asyncio.Redis, keys: Keys, settings: Settings, *, batch: int = 1000
) -> int | None:
    """Index the entries written before the audit indexes existed, once per store (the
    first process to take the marker does it). Returns how many entries were walked,
    ``None`` when the store is already at this version."""
    marker = keys.audit_index_version
    current = await client.get(marker)
    if current is not None and int(current) >= INDEX_VERSION:
        return None
    if not await client.set(f"{marker}:lock", "1", nx=True, ex=600):
        return None
    ttl_s = settings.audit_retention_days * 86400
    walked, start = 0, "-"
    while True:
        rows = cast(
            list[tuple[str, dict[str, str]]],
            await client.xrange(keys.audit, min=start, count=batch),
        )
        if not rows:
            break
        async with client.pipeline(transaction=False) as pipe:
            for entry_id, fields in rows:
                score = int(entry_id.split("-")[0])
                targets = [keys.audit_index("all", "")] + [
                    keys.audit_index(f, fields[f]) for f in INDEXED_FIELDS if f in fields
                ]
                for target in targets:
                    pipe.zadd(target, {entry_id: score})
                    pipe.expire(target, ttl_s)
            await pipe.execute()
        walked += len(rows)
        start = f"({rows[-1][0]}"
    await client.set(marker, INDEX_VERSION)
    await client.delete(f"{marker}:lock")
    return walked
