"""The per-command event log, against a real Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import redis

from common.commands import CommandRecord, CommandStatus
from common.eventlog import REFUSED, UNKNOWN_COMMAND, EventLog
from common.events import ErrorEvent, Response, ResponseEvent, StatusEvent
from common.keys import Keys, response_channel
from common.settings import Settings

COMMAND_ID = "cmd-7f3a"
NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
def log(sync_redis: redis.Redis, keys: Keys, settings: Settings) -> EventLog:
    record = CommandRecord(
        command_id=COMMAND_ID,
        user_id="user-1",
        vehicle_id="vehicle-1",
        command_name="ReadDTC",
        command_params={"ecuAddress": "0x10"},
        status=CommandStatus.PENDING,
        submitted_at=NOW,
    )
    sync_redis.hset(keys.command(COMMAND_ID), mapping=record.to_redis())
    return EventLog(
        sync_redis, keys, maxlen=settings.event_log_maxlen, ttl_s=settings.event_log_ttl_s
    )


def _response(number: int, *, is_final: bool = False) -> ResponseEvent:
    return ResponseEvent(
        command_id=COMMAND_ID,
        sequence_number=number,
        response=Response(
            response_id=f"resp-{number}",
            response_payload={"type": "dtc", "code": f"P04{number:02d}"},
            sequence_number=number,
            is_final=is_final,
            received_at=NOW,
        ),
    )


def _status(status: CommandStatus) -> StatusEvent:
    return StatusEvent(command_id=COMMAND_ID, status=status)


def _stream(client: redis.Redis, keys: Keys) -> list[tuple[str, dict[str, object]]]:
    raw = client.xrange(keys.command_events(COMMAND_ID))
    return [(entry_id, json.loads(fields["event"])) for entry_id, fields in raw]


def test_each_accepted_event_gets_the_next_seq(log: EventLog) -> None:
    seqs = [
        log.append(_status(CommandStatus.IN_PROGRESS)),
        log.append(_response(1)),
        log.append(_response(2, is_final=True)),
    ]

    assert seqs == [1, 2, 3]


def test_the_stream_holds_each_event_under_its_seq_in_order(
    log: EventLog, sync_redis: redis.Redis, keys: Keys
) -> None:
    log.append(_status(CommandStatus.IN_PROGRESS))
    log.append(_response(1))
    log.append(_response(2, is_final=True))

    entries = _stream(sync_redis, keys)

    assert [entry_id for entry_id, _ in entries] == ["1-0", "2-0", "3-0"]
    assert [(e["seq"], e["event"], e["command_id"]) for _, e in entries] == [
        (1, "status", COMMAND_ID),
        (2, "response", COMMAND_ID),
        (3, "response", COMMAND_ID),
    ]
    assert entries[0][1]["status"] == "in_progress"
    assert [e.get("sequence_number") for _, e in entries] == [None, 1, 2]


def test_the_stream_expires_after_the_configured_ttl(
    log: EventLog, sync_redis: redis.Redis, keys: Keys, settings: Settings
) -> None:
    log.append(_response(1))

    ttl = sync_redis.ttl(keys.command_events(COMMAND_ID))

    assert 0 < ttl <= settings.event_log_ttl_s


def test_a_response_with_a_repeated_sequence_number_is_refused_and_logged_once(
    log: EventLog, sync_redis: redis.Redis, keys: Keys
) -> None:
    assert log.append(_response(1)) == 1

    assert log.append(_response(1)) == REFUSED

    assert [entry_id for entry_id, _ in _stream(sync_redis, keys)] == ["1-0"]
    assert sync_redis.hgetall(keys.command_responses(COMMAND_ID)).keys() == {"1"}
    assert log.append(_response(2)) == 2


def test_a_repeated_status_is_refused(log: EventLog) -> None:
    assert log.append(_status(CommandStatus.PENDING)) == REFUSED
    assert log.append(_status(CommandStatus.IN_PROGRESS)) == 1
    assert log.append(_status(CommandStatus.IN_PROGRESS)) == REFUSED


def test_a_status_event_updates_the_command_and_its_fields(
    log: EventLog, sync_redis: redis.Redis, keys: Keys
) -> None:
    log.append(
        _status(CommandStatus.IN_PROGRESS), fields={"started_at": "2026-11-26T10:00:01.000000Z"}
    )

    stored = CommandRecord.from_redis(sync_redis.hgetall(keys.command(COMMAND_ID)))

    assert stored.status == CommandStatus.IN_PROGRESS
    assert stored.started_at == datetime(2026, 11, 26, 10, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize("terminal", [CommandStatus.COMPLETED, CommandStatus.FAILED])
def test_every_event_after_the_terminal_status_is_refused(
    log: EventLog, sync_redis: redis.Redis, keys: Keys, terminal: CommandStatus
) -> None:
    log.append(_status(CommandStatus.IN_PROGRESS))
    log.append(_response(1, is_final=True))
    assert log.append(_status(terminal)) == 3

    late = [
        log.append(_response(2)),
        log.append(_response(1)),
        log.append(_status(CommandStatus.COMPLETED)),
        log.append(_status(CommandStatus.FAILED)),
        log.append(_status(CommandStatus.IN_PROGRESS)),
        log.append(ErrorEvent(command_id=COMMAND_ID, error_message="late")),
    ]

    assert late == [REFUSED] * 6
    assert [entry_id for entry_id, _ in _stream(sync_redis, keys)] == ["1-0", "2-0", "3-0"]
    assert sync_redis.hget(keys.command(COMMAND_ID), "status") == terminal.value
    assert sync_redis.hget(keys.command(COMMAND_ID), "event_seq") == "3"


def test_an_error_event_is_logged_without_changing_the_status(
    log: EventLog, sync_redis: redis.Redis, keys: Keys
) -> None:
    seq = log.append(ErrorEvent(command_id=COMMAND_ID, error_message="ECU busy", error_code="x"))

    assert seq == 1
    assert sync_redis.hget(keys.command(COMMAND_ID), "status") == "pending"
    assert _stream(sync_redis, keys)[0][1]["error_message"] == "ECU busy"


def test_an_event_for_an_unknown_command_is_refused_as_unknown(
    log: EventLog, sync_redis: redis.Redis, keys: Keys
) -> None:
    event = StatusEvent(command_id="no-such-command", status=CommandStatus.IN_PROGRESS)

    assert log.append(event) == UNKNOWN_COMMAND
    assert sync_redis.exists(keys.command_events("no-such-command")) == 0
    assert sync_redis.exists(keys.command("no-such-command")) == 0


def test_accepted_events_are_published_and_refused_ones_are_not(
    log: EventLog, sync_redis: redis.Redis
) -> None:
    pubsub = sync_redis.pubsub()
    pubsub.subscribe(response_channel(COMMAND_ID))
    try:
        confirmation = pubsub.get_message(timeout=5.0)
        assert confirmation is not None
        assert confirmation["type"] == "subscribe"

        log.append(_response(1))
        log.append(_response(1))  # refused: must not be published
        log.append(_status(CommandStatus.COMPLETED))

        published = []
        for _ in range(2):
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            assert message is not None
            published.append(json.loads(message["data"]))
    finally:
        pubsub.close()

    assert [(e["seq"], e["event"]) for e in published] == [(1, "response"), (2, "status")]
