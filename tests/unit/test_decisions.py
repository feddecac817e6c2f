"""The worker's decisions, as plain functions of what it read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dramatiq
import pytest
import redis

from common.broker import command_message
from common.commands import COMMAND_TYPES, CommandRecord, CommandStatus
from common.policy import CommandPolicy, load_policies
from common.settings import Settings
from common.users import Role
from workers.actors import (
    REDIS_OUTAGE_RETRIES,
    TIME_LIMIT_MARGIN_MS,
    dramatiq_time_limit_ms,
    retry_when,
)
from workers.connector import (
    ConnectionLost,
    ConnectorError,
    EcuNotResponding,
    ExchangeCancelled,
    ExchangeTimeout,
    NegativeResponse,
    VehicleUnavailable,
)
from workers.decisions import Finish, Retry, Run, Skip, outcome_of, preflight, retry_plan

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def command(**changes: object) -> CommandRecord:
    base = CommandRecord(
        command_id="00000000-0000-4000-8000-000000000001",
        user_id="u",
        vehicle_id="v",
        command_name="ReadDTC",
        command_params={"ecuAddress": "0x10"},
        status=CommandStatus.PENDING,
        submitted_at=NOW,
        deadline_at=NOW + timedelta(seconds=60),
    )
    return base.model_copy(update=changes)


def policy(**changes: object) -> CommandPolicy:
    values: dict[str, object] = {
        "queue_name": "q", "max_retries": 3, "min_backoff_ms": 100, "max_backoff_ms": 1000,
        "time_limit_ms": 10_000, "max_age_ms": 60_000, "retry_safe": True,
        "roles": [Role.ENGINEER], "max_concurrent_per_vehicle": 2,
    }  # fmt: skip
    values.update(changes)
    return CommandPolicy.model_validate(values)


def test_a_pending_command_on_an_existing_vehicle_runs() -> None:
    assert preflight(command(), actor_command="ReadDTC", vehicle_exists=True, now=NOW) == Run()


def test_a_redelivered_in_progress_command_runs_again() -> None:
    running = command(status=CommandStatus.IN_PROGRESS)
    assert preflight(running, actor_command="ReadDTC", vehicle_exists=True, now=NOW) == Run()


@pytest.mark.parametrize(
    ("record", "actor", "vehicle", "now", "expected"),
    [
        (None, "ReadDTC", True, NOW, Skip(None)),
        (command(status=CommandStatus.COMPLETED), "ReadDTC", True, NOW,
         Skip(CommandStatus.COMPLETED)),
        (command(), "ClearDTC", True, NOW, Finish(CommandStatus.FAILED,
         "Command type ReadDTC sent to the ClearDTC actor", "internal_error")),
        (command(cancel_requested=True), "ReadDTC", True, NOW, Finish(CommandStatus.CANCELLED)),
        (command(), "ReadDTC", True, NOW + timedelta(seconds=60), Finish(CommandStatus.TIMEOUT,
         "The command was not executed before its deadline", "deadline_exceeded")),
        (command(), "ReadDTC", False, NOW, Finish(CommandStatus.FAILED,
         "Vehicle v no longer exists", "vehicle_not_found")),
    ],
    ids=["missing", "terminal", "wrong actor", "cancelled", "past deadline", "vehicle gone"],
)  # fmt: skip
def test_preflight_ends_or_skips_a_command_that_must_not_run(
    record: CommandRecord | None, actor: str, vehicle: bool, now: datetime, expected: object
) -> None:
    assert preflight(record, actor_command=actor, vehicle_exists=vehicle, now=now) == expected


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ExchangeCancelled("stop"), CommandStatus.CANCELLED, None),
        (ExchangeTimeout("late"), CommandStatus.TIMEOUT, "timeout"),
        (NegativeResponse("nrc", {}), CommandStatus.FAILED, "negative_response"),
        (VehicleUnavailable("off"), CommandStatus.FAILED, "vehicle_unavailable"),
        (ConnectionLost("drop"), CommandStatus.FAILED, "connection_lost"),
        (ConnectorError("other"), CommandStatus.FAILED, "connector_error"),
    ],
)
def test_each_connector_error_ends_with_one_status_and_code(
    error: ConnectorError, status: CommandStatus, code: str | None
) -> None:
    end = outcome_of(error)
    assert (end.status, end.code) == (status, code)


def test_a_transient_error_is_retried_with_dramatiqs_backoff_from_the_policy() -> None:
    plan = retry_plan(ConnectionLost("drop"), policy(), retries=0, deadline_at=None, now=NOW)
    assert isinstance(plan, Retry)
    assert 100 <= plan.delay_ms <= 1000
    assert plan.retry_at == NOW + timedelta(milliseconds=plan.delay_ms)


@pytest.mark.parametrize(
    ("error", "rules", "retries", "deadline"),
    [
        (NegativeResponse("nrc", {}), {}, 0, None),
        (EcuNotResponding("silent"), {"retry_safe": False, "max_retries": 0}, 0, None),
        (ConnectionLost("drop"), {}, 3, None),
        (ConnectionLost("drop"), {}, 0, NOW + timedelta(milliseconds=50)),
    ],
    ids=["permanent error", "not retry-safe", "retries spent", "deadline too close"],
)
def test_no_retry_when_the_error_the_policy_or_the_deadline_forbids_it(
    error: ConnectorError, rules: dict[str, object], retries: int, deadline: datetime | None
) -> None:
    assert (
        retry_plan(error, policy(**rules), retries=retries, deadline_at=deadline, now=NOW) is None
    )


def test_preflight_ends_a_command_whose_vehicle_is_offline() -> None:
    decision = preflight(
        command(), actor_command="ReadDTC", vehicle_exists=True, now=NOW, vehicle_connected=False
    )
    assert decision == Finish(
        CommandStatus.FAILED, "Vehicle v is offline; the command was ended", "vehicle_offline"
    )


def test_dramatiq_retries_only_what_the_executor_planned_and_redis_outages() -> None:
    """One source for retries: ``retry_plan`` (raised as ``dramatiq.Retry``); Dramatiq
    itself retries nothing else but a Redis outage, a bounded number of times."""
    assert retry_when(0, dramatiq.Retry("planned", delay=10)) is True
    assert retry_when(50, dramatiq.Retry("planned", delay=10)) is True
    assert retry_when(0, RuntimeError("a bug")) is False
    assert retry_when(0, redis.ConnectionError("down")) is True
    assert retry_when(REDIS_OUTAGE_RETRIES, redis.ConnectionError("down")) is False


def test_messages_carry_no_retry_age_or_time_limit_options() -> None:
    policy = load_policies(Settings(_env_file=None))["ReadDTC"]
    message = command_message(COMMAND_TYPES["ReadDTC"], policy, "c", request_id=None)
    assert message.options == {}
    assert dramatiq_time_limit_ms(policy) == policy.time_limit_ms + TIME_LIMIT_MARGIN_MS
