"""What the event script does besides the event: count, audit, read back (one call)."""

from __future__ import annotations

import uuid

import redis

from common.audit import AuditAction, AuditLog
from common.commands import CommandRecord, CommandStatus
from common.eventlog import REFUSED, EventLog, Extras
from common.events import Response, ResponseEvent, StatusEvent
from common.keys import Fields, Keys
from common.settings import Settings
from common.timeutil import utcnow


def _pending(sync_redis: redis.Redis, keys: Keys) -> str:
    record = CommandRecord(
        command_id=str(uuid.uuid4()),
        user_id=str(uuid.uuid4()),
        vehicle_id=str(uuid.uuid4()),
        command_name="ReadDTC",
        command_params={"ecuAddress": "0x10"},
        status=CommandStatus.PENDING,
        submitted_at=utcnow(),
    )
    sync_redis.hset(keys.command(record.command_id), mapping=record.to_redis())
    return record.command_id


def _started(events: EventLog, audit: AuditLog, command_id: str) -> tuple[int, str | None]:
    return events.append_and_read(
        StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS),
        extras=Extras(
            audit=audit.args(AuditAction.COMMAND_STARTED, command_id=command_id),
            audit_always=True,
            count=Fields.ATTEMPTS,
            read=Fields.ATTEMPTS,
        ),
    )


def _audited(sync_redis: redis.Redis, keys: Keys, action: AuditAction) -> list[str]:
    return [f["command_id"] for _, f in sync_redis.xrange(keys.audit) if f["action"] == action]


def test_a_redelivered_start_is_counted_and_audited_though_the_status_is_refused(
    settings: Settings, sync_redis: redis.Redis, keys: Keys
) -> None:
    events = EventLog(sync_redis, keys, maxlen=100, ttl_s=60)
    audit = AuditLog(sync_redis, keys, settings)
    command_id = _pending(sync_redis, keys)
    first, attempts = _started(events, audit, command_id)
    assert (first > 0, attempts) == (True, "1")
    again, attempts = _started(events, audit, command_id)
    assert (again, attempts) == (REFUSED, "2")
    assert _audited(sync_redis, keys, AuditAction.COMMAND_STARTED) == [command_id, command_id]
    assert sync_redis.xlen(keys.command_events(command_id)) == 1


def test_a_terminal_audit_entry_is_written_only_with_the_status_it_records(
    settings: Settings, sync_redis: redis.Redis, keys: Keys
) -> None:
    events = EventLog(sync_redis, keys, maxlen=100, ttl_s=60)
    audit = AuditLog(sync_redis, keys, settings)
    command_id = _pending(sync_redis, keys)

    def complete() -> int:
        return events.append(
            StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED),
            extras=Extras(audit=audit.args(AuditAction.COMMAND_COMPLETED, command_id=command_id)),
        )

    assert complete() > 0
    assert complete() == REFUSED
    assert _audited(sync_redis, keys, AuditAction.COMMAND_COMPLETED) == [command_id]


def test_the_cancel_flag_comes_back_with_a_response(sync_redis: redis.Redis, keys: Keys) -> None:
    events = EventLog(sync_redis, keys, maxlen=100, ttl_s=60)
    command_id = _pending(sync_redis, keys)
    events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))

    def respond(number: int) -> tuple[int, str | None]:
        response = Response(
            response_id=str(uuid.uuid4()),
            response_payload={"n": number},
            sequence_number=number,
            is_final=False,
            received_at=utcnow(),
        )
        event = ResponseEvent(command_id=command_id, response=response, sequence_number=number)
        return events.append_and_read(event, extras=Extras(read=Fields.CANCEL_REQUESTED))

    assert respond(1) == (2, "False")
    sync_redis.hset(keys.command(command_id), Fields.CANCEL_REQUESTED, "True")
    assert respond(2) == (3, "True")
