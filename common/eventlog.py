"""The durable per-command event log and its publication, done atomically in Redis.

One Lua script records events: it checks the command's state, stores the response
(once per ``sequence_number``) or the new status, assigns the next ``seq``, appends
each event to the command's Stream (entry id ``<seq>-0``) and publishes it on
``response:{command_id}``. Because the log is written before the publish in the same
atomic step, a subscriber that subscribes first and then reads the log misses
nothing. Replays of the same response (a redelivered message) and any event after
the terminal status are refused, so a client sees each response once and exactly
one terminal status. An error and the terminal status that follows it are recorded
in one call, so a crash cannot leave one without the other. A terminal status also
releases the command's place on its vehicle and its deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from common.commands import TERMINAL_STATUSES, CommandStatus
from common.events import ErrorEvent, ResponseEvent, StatusEvent
from common.keys import Fields, Keys, response_channel
from common.lua import lua_script

__all__ = [
    "APPEND_SCRIPT",
    "DURATION_BUCKETS_S",
    "REFUSED",
    "UNKNOWN_COMMAND",
    "AsyncEventLog",
    "EventLog",
    "Extras",
    "LogEntry",
]

#: Script result when the event was refused (duplicate response, repeated or late status).
REFUSED = 0
#: Script result when the command does not exist.
UNKNOWN_COMMAND = -1

_TERMINAL = " ".join(sorted(TERMINAL_STATUSES))

#: Upper bounds (seconds) of the submit-to-terminal duration histogram kept in Redis.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

#: The script (common/lua/event_append.lua).
APPEND_SCRIPT = lua_script("event_append")

AnyEvent = ResponseEvent | StatusEvent | ErrorEvent


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event read back from the log: its position and its JSON text."""

    seq: int
    data: str


def _body(event: AnyEvent) -> str:
    return event.model_dump_json(exclude={"seq"}, exclude_none=True)


@dataclass(frozen=True, slots=True)
class Extras:
    """What one script call does besides the event: an audit entry (the script
    arguments ``AuditLog.args`` built), a delivery counted, a field read back."""

    #: The audit entry's arguments (clock, max entries, MINID, field/value pairs).
    audit: Sequence[str] = ()
    #: Write the audit entry even when the change is refused (a redelivered start).
    audit_always: bool = False
    #: Command field incremented by one before the change.
    count: str = ""
    #: Command field whose value comes back with the result.
    read: str = Fields.STATUS


NO_EXTRAS = Extras()


def _script_call(
    keys: Keys,
    event: AnyEvent,
    *,
    maxlen: int,
    ttl_s: int,
    fields: dict[str, str] | None,
    error: ErrorEvent | None,
    expect: Sequence[CommandStatus],
    extras: Extras = NO_EXTRAS,
) -> tuple[list[str], list[str]]:
    command_id = event.command_id
    if isinstance(event, ResponseEvent):
        kind, arg, payload = (
            "response",
            str(event.sequence_number),
            event.response.model_dump_json(),
        )
    elif isinstance(event, StatusEvent) and isinstance(event.status, CommandStatus):
        kind, arg, payload = "status", event.status.value, ""
    else:  # errors and notices (e.g. "retrying") change no state
        kind, arg, payload = "notice", "", ""
    bodies = [_body(error), _body(event)] if error is not None else [_body(event)]
    argv = [
        response_channel(command_id),
        str(maxlen),
        str(ttl_s),
        kind,
        arg,
        payload,
        _TERMINAL,
        " ".join(expect),
        keys.vehicle_active(""),
        keys.stats("commands"),
        keys.stats("duration:"),
        " ".join(str(bound) for bound in DURATION_BUCKETS_S),
        keys.commands_by_status_prefix,
        str(len(bodies)),
        ("always" if extras.audit_always else "recorded") if extras.audit else "",
        str(len(extras.audit)),
        extras.count,
        extras.read,
        *bodies,
        *extras.audit,
    ]
    for name, value in (fields or {}).items():
        argv += [name, value]
    return [
        keys.command(command_id),
        keys.command_responses(command_id),
        keys.command_events(command_id),
        keys.deadlines,
        keys.audit,
    ], argv


def _entries(raw: Any) -> list[LogEntry]:
    out = []
    for entry_id, fields in raw:
        entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        data = fields.get(b"event", fields.get("event"))
        text = data.decode() if isinstance(data, bytes) else str(data)
        out.append(LogEntry(seq=int(entry.split("-", 1)[0]), data=text))
    return out


class EventLog:
    """Writer for worker threads (synchronous Redis client)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, maxlen: int, ttl_s: int) -> None:
        self._keys = keys
        self._maxlen = maxlen
        self._ttl_s = ttl_s
        self._script = APPEND_SCRIPT.register(client)

    def append(
        self,
        event: AnyEvent,
        *,
        fields: dict[str, str] | None = None,
        error: ErrorEvent | None = None,
        expect: Sequence[CommandStatus] = (),
        extras: Extras = NO_EXTRAS,
    ) -> int:
        """Record and publish ``event`` (after ``error``, atomically, when given).

        ``expect`` limits the command's current status for the change to apply.
        Returns the last ``seq`` written, ``REFUSED`` or ``UNKNOWN_COMMAND``.
        """
        return self.append_and_read(
            event, fields=fields, error=error, expect=expect, extras=extras
        )[0]

    def append_and_read(
        self,
        event: AnyEvent,
        *,
        fields: dict[str, str] | None = None,
        error: ErrorEvent | None = None,
        expect: Sequence[CommandStatus] = (),
        extras: Extras = NO_EXTRAS,
    ) -> tuple[int, str | None]:
        """``append``, and the command's ``extras.read`` field after it (``None``: unset)."""
        keys, argv = _script_call(
            self._keys, event, maxlen=self._maxlen, ttl_s=self._ttl_s, fields=fields,
            error=error, expect=expect, extras=extras,
        )  # fmt: skip
        result, value = self._script(keys=keys, args=argv)
        return int(result), (str(value) if value != "" else None)


class AsyncEventLog:
    """Writer and reader for asyncio processes."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, *, maxlen: int, ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self._maxlen = maxlen
        self._ttl_s = ttl_s
        self._script = APPEND_SCRIPT.register_async(client)

    async def append(
        self,
        event: AnyEvent,
        *,
        fields: dict[str, str] | None = None,
        error: ErrorEvent | None = None,
        expect: Sequence[CommandStatus] = (),
    ) -> int:
        """Record and publish ``event``; see ``EventLog.append``."""
        keys, argv = _script_call(
            self._keys, event, maxlen=self._maxlen, ttl_s=self._ttl_s, fields=fields,
            error=error, expect=expect,
        )  # fmt: skip
        return int((await self._script(keys=keys, args=argv))[0])

    async def read_since(self, command_id: str, since: int = 0) -> list[LogEntry]:
        """Every logged event of the command with ``seq > since``, in order."""
        raw = await self._client.xrange(self._keys.command_events(command_id), min=f"{since + 1}-0")
        return _entries(raw)

    async def first_seq(self, command_id: str) -> int | None:
        """The oldest ``seq`` the log still holds, or ``None`` when it holds nothing."""
        raw = await self._client.xrange(self._keys.command_events(command_id), count=1)
        entries = _entries(raw)
        return entries[0].seq if entries else None
