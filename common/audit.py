"""The audit trail: an append-only Redis Stream of who did what to which vehicle.

Entries are never changed; the stream is trimmed to about ``SOVD_AUDIT_MAX_ENTRIES``
(approximate: Redis trims whole nodes) and to exactly ``SOVD_AUDIT_RETENTION_DAYS``.
Entry ids carry the writer's clock, so an entry's time and the retention agree.
"""

from __future__ import annotations

import json
import time
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

__all__ = ["AsyncAuditLog", "AuditAction", "AuditEntry", "AuditLog", "AuditQuery"]


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


def _record_args(
    settings: Settings, action: AuditAction, outcome: str, values: dict[str, Any]
) -> list[str]:
    now_ms = int(time.time() * 1000)
    args = [
        str(now_ms),
        str(settings.audit_max_entries),
        _trim_minid(settings.audit_retention_days),
    ]
    for name, value in _fields(action, outcome, values).items():
        args += [name, value]
    return args


class AuditLog:
    """Writer for worker threads."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self._key = keys.audit
        self._settings = settings
        self._record = _RECORD_SCRIPT.register(client)

    def record(self, action: AuditAction, *, outcome: str = "success", **values: Any) -> None:
        self._record(keys=[self._key], args=_record_args(self._settings, action, outcome, values))

    def args(self, action: AuditAction, *, outcome: str = "success", **values: Any) -> list[str]:
        """One entry's script arguments, for a script that writes it with its own change
        (``common/lua/lib/audit_append.lua``); the entry's time is taken now."""
        return _record_args(self._settings, action, outcome, values)


class AsyncAuditLog:
    """Writer and reader for the api (and realtime)."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, settings: Settings) -> None:
        self._client = client
        self._key = keys.audit
        self._settings = settings
        self._record = _RECORD_SCRIPT.register_async(client)

    async def record(self, action: AuditAction, *, outcome: str = "success", **values: Any) -> None:
        args = _record_args(self._settings, action, outcome, values)
        await self._record(keys=[self._key], args=args)

    def args(
        self, action: AuditAction, *, outcome: str = "success", **values: Any
    ) -> tuple[list[str], list[str]]:
        """The script's keys and arguments for one entry, to ``queue`` on a pipeline later
        (the entry's time is taken now)."""
        return [self._key], _record_args(self._settings, action, outcome, values)

    async def query(self, query: AuditQuery) -> tuple[list[AuditEntry], int]:
        """Newest first, filtered; returns ``(page, total matching)``."""
        # Clamped to the range of a stream id: a year-1 or year-9999 bound is no Redis error.
        newest = f"{epoch_ms(query.until)}-18446744073709551615" if query.until else "+"
        oldest = f"{epoch_ms(query.since)}-0" if query.since else "-"
        raw = cast(
            list[tuple[str, dict[str, str]]],
            await self._client.xrevrange(self._key, max=newest, min=oldest),
        )
        matching = []
        for entry_id, fields in raw:
            entry = _entry(entry_id, fields)
            if (
                (query.user_id is None or entry.user_id == query.user_id)
                and (query.vehicle_id is None or entry.vehicle_id == query.vehicle_id)
                and (query.command_id is None or entry.command_id == query.command_id)
                and (query.action is None or entry.action == query.action)
            ):
                matching.append(entry)
        return matching[query.offset : query.offset + query.limit], len(matching)
