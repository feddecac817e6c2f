"""Executing one command: load it, drive the connector, record and publish every event.

Safe to run twice for the same command (Dramatiq delivers at least once): the event
log refuses responses already recorded and anything after the terminal status. A
transient vehicle error on a retry-safe type raises ``dramatiq.Retry`` (after a
``retrying`` event) while attempts and the command's deadline allow; everything else
ends the command with exactly one terminal status. The decisions are in
``workers.decisions``; this module only reads, writes and drives the exchange.

Round trips per command: one to load the command (its cancel flag included) and its
vehicle, one script call to count the attempt and record ``in_progress`` with its audit
entry, one per response part (the cancel flag read back with it), and one to record
the terminal status with its audit entry (the connector's own exchange aside).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import dramatiq
import structlog
from dramatiq.middleware.time_limit import TimeLimitExceeded

from common.audit import AuditAction
from common.commands import RETRYING, TERMINAL_STATUSES, CommandRecord, CommandStatus
from common.eventlog import Extras
from common.events import ErrorEvent, Response, ResponseEvent, StatusEvent
from common.keys import Fields
from common.timeutil import isoformat, utcnow
from common.vehicles import ConnectionStatus, Vehicle
from workers.connector import (
    ConnectorError,
    DiagnosticRequest,
    ExchangeCancelled,
    NegativeResponse,
)
from workers.decisions import Finish, Skip, outcome_of, preflight, retry_plan
from workers.runtime import Runtime

__all__ = ["CancelFlag", "execute_command", "finish"]

log = structlog.get_logger(__name__)

_AUDITED = {
    CommandStatus.COMPLETED: AuditAction.COMMAND_COMPLETED,
    CommandStatus.FAILED: AuditAction.COMMAND_FAILED,
    CommandStatus.TIMEOUT: AuditAction.COMMAND_TIMEOUT,
    CommandStatus.CANCELLED: AuditAction.COMMAND_CANCELLED,
}

#: The cancel flag read back with a response is trusted this long by the connector's
#: own checks (it polls between waits), so a quick exchange does not read it again.
CANCEL_FLAG_MAX_AGE_S = 0.05


class CancelFlag:
    """The command's ``cancel_requested`` flag (and whether it ended), read at most every
    ``max_age_s``."""

    def __init__(self, runtime: Runtime, command_id: str, *, max_age_s: float) -> None:
        self._runtime = runtime
        self._key = runtime.keys.command(command_id)
        self._max_age_s = max_age_s
        self._value = False
        self._read_at = float("-inf")

    def update(self, raw: str | bool | None) -> None:
        self._value = raw is True or raw == "True"
        self._read_at = time.monotonic()

    def __call__(self) -> bool:
        """True once a cancel was asked, or the command ended elsewhere (its vehicle went
        offline, the deadline sweep): the exchange then stops."""
        if not self._value and time.monotonic() - self._read_at > self._max_age_s:
            flag, status = cast(
                list[str | None],
                self._runtime.client.hmget(self._key, [Fields.CANCEL_REQUESTED, Fields.STATUS]),
            )
            self.update(flag)
            if status in TERMINAL_STATUSES:
                self._value = True
        return self._value


def _load(
    runtime: Runtime, command_id: str, vehicle_id: str | None
) -> tuple[CommandRecord | None, str | None]:
    """The command and its vehicle's JSON, in one round trip when the message named the
    vehicle (two otherwise)."""
    keys = runtime.keys
    with runtime.client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.command(command_id))
        if vehicle_id is not None:
            pipe.get(keys.vehicle(vehicle_id))
        rows = pipe.execute()
    fields = cast(dict[str, str], rows[0])
    if not fields:
        return None, None
    command = CommandRecord.from_redis(fields)
    if vehicle_id == command.vehicle_id:
        return command, rows[1]
    return command, cast(str | None, runtime.client.get(keys.vehicle(command.vehicle_id)))


def execute_command(
    runtime: Runtime,
    command_id: str,
    *,
    command_name: str,
    retries: int = 0,
    vehicle_id: str | None = None,
) -> CommandStatus | None:
    """Run one delivery of ``command_id``; return its terminal status (``None``: no command).

    ``retries`` is how many attempts already failed (Dramatiq's retry count); every
    delivery that starts the command counts one more ``attempts``. ``vehicle_id`` (from
    the message) saves a round trip. Raises ``dramatiq.Retry`` when the attempt should
    be retried.
    """
    command, raw_vehicle = _load(runtime, command_id, vehicle_id)
    now = utcnow()
    vehicle = Vehicle.model_validate_json(raw_vehicle) if raw_vehicle is not None else None
    decision = preflight(
        command,
        actor_command=command_name,
        vehicle_exists=vehicle is not None,
        now=now,
        vehicle_connected=vehicle is not None
        and vehicle.connection_status == ConnectionStatus.CONNECTED,
    )
    if isinstance(decision, Skip):
        if command is None:
            log.warning("command_not_found", command_id=command_id)
        else:
            log.info("command_already_terminal", status=command.status.value)
        return decision.status
    assert command is not None  # preflight skips a missing command
    if isinstance(decision, Finish):
        return finish(runtime, command_id, decision.status, decision.message, decision.code,
                      command=command)  # fmt: skip
    assert vehicle is not None  # preflight ends a command whose vehicle is gone
    policy = runtime.policies[command_name]
    cancelled = CancelFlag(runtime, command_id, max_age_s=CANCEL_FLAG_MAX_AGE_S)
    cancelled.update(command.cancel_requested)  # read with the command just now
    attempt = _start(runtime, command, now, retries)
    limit_s = policy.time_limit_ms / 1000
    if command.deadline_at is not None:
        limit_s = min(limit_s, (command.deadline_at - now).total_seconds())
    request = DiagnosticRequest(
        command_id=command_id,
        command_name=command_name,
        params=command.command_params,
        vehicle=vehicle,
        deadline=time.monotonic() + limit_s,
        cancelled=cancelled,
    )
    number = 0
    try:
        for part in runtime.connector.execute(request):
            number += 1
            flag = _record_response(runtime, command_id, number, part.payload,
                                    is_final=part.is_final)  # fmt: skip
            cancelled.update(flag)
            if cancelled():
                raise ExchangeCancelled("Cancelled during the exchange")
    except ConnectorError as exc:
        if isinstance(exc, NegativeResponse):  # the vehicle's answer is its last response
            _record_response(runtime, command_id, number + 1, exc.payload, is_final=True)
        plan = retry_plan(
            exc, policy, retries=retries, deadline_at=command.deadline_at, now=utcnow()
        )
        if plan is not None and _announce_retry(runtime, command_id, attempt, exc, plan.retry_at):
            log.warning("command_retrying", attempt=attempt, reason=exc.message,
                        delay_ms=plan.delay_ms)  # fmt: skip
            raise dramatiq.Retry(exc.message, delay=plan.delay_ms) from None
        end = outcome_of(exc)
        return finish(runtime, command_id, end.status, end.message, end.code, command=command)
    except TimeLimitExceeded:
        message = "The worker's time limit cut the exchange"
        return finish(runtime, command_id, CommandStatus.TIMEOUT, message, "time_limit",
                      command=command)  # fmt: skip
    except Exception:
        log.exception("command_crashed")
        message = "Internal error while executing the command"
        return finish(runtime, command_id, CommandStatus.FAILED, message, "internal_error",
                      command=command)  # fmt: skip
    log.info("command_completed", responses=number, attempt=attempt)
    return finish(runtime, command_id, CommandStatus.COMPLETED, command=command)


def _start(runtime: Runtime, command: CommandRecord, now: Any, retries: int) -> int:
    """Count the delivery, record ``in_progress`` and audit the start, in one script call;
    return the attempt number (deliveries so far, redeliveries included)."""
    command_id = command.command_id
    audit = runtime.audit.args(
        AuditAction.COMMAND_STARTED,
        user_id=command.user_id,
        command_id=command_id,
        vehicle_id=command.vehicle_id,
        request_id=command.request_id,
        details={"command_name": command.command_name, "attempt": retries + 1},
    )
    _, attempts = runtime.events.append_and_read(
        StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS, started_at=now),
        fields={"started_at": isoformat(now)},
        extras=Extras(audit=audit, audit_always=True, count=Fields.ATTEMPTS, read=Fields.ATTEMPTS),
    )
    attempt = int(attempts or 0)
    log.info("command_started", vehicle_id=command.vehicle_id, attempt=attempt)
    return attempt


def _announce_retry(
    runtime: Runtime, command_id: str, attempt: int, exc: ConnectorError, retry_at: Any
) -> bool:
    """Publish ``retrying``; False when the command ended meanwhile (nothing to retry)."""
    seq = runtime.events.append(
        StatusEvent(
            command_id=command_id,
            status=RETRYING,
            attempt=attempt,
            reason=exc.message,
            retry_at=retry_at,
        )
    )
    return seq > 0


def _record_response(
    runtime: Runtime, command_id: str, number: int, payload: dict[str, object], *, is_final: bool
) -> str | None:
    """Record and publish one response; return the command's cancel flag, read with it."""
    response = Response(
        # Derived from the command and position, so a redelivered run produces the same id.
        response_id=str(uuid.uuid5(uuid.UUID(command_id), str(number))),
        response_payload=payload,
        sequence_number=number,
        is_final=is_final,
        received_at=utcnow(),
    )
    return runtime.events.append_and_read(
        ResponseEvent(command_id=command_id, response=response, sequence_number=number),
        extras=Extras(read=Fields.CANCEL_REQUESTED),
    )[1]


def finish(
    runtime: Runtime,
    command_id: str,
    status: CommandStatus,
    error_message: str | None = None,
    error_code: str | None = None,
    *,
    command: CommandRecord | None = None,
) -> CommandStatus:
    """Record the terminal ``status`` (after its error event, atomically, if any) and its
    audit entry when it was recorded (not when the command had already ended), in one
    script call when ``command`` is given."""
    completed = utcnow()
    fields = {"completed_at": isoformat(completed)}
    error = None
    if error_message is not None:
        fields["error_message"] = error_message
        if error_code is not None:
            fields["error_code"] = error_code
        error = ErrorEvent(
            command_id=command_id, error_message=error_message, error_code=error_code
        )
    event = StatusEvent(
        command_id=command_id, status=status, completed_at=completed, error_message=error_message
    )
    audited = status in _AUDITED
    outcome = "success" if status == CommandStatus.COMPLETED else "failure"
    details = {"error_code": error_code} if error_code else {}
    if command is not None:  # the audit entry goes with the status, when it is recorded
        audit = runtime.audit.args(
            _AUDITED[status], outcome=outcome, user_id=command.user_id, command_id=command_id,
            vehicle_id=command.vehicle_id, request_id=command.request_id, details=details,
        ) if audited else []  # fmt: skip
        runtime.events.append(event, fields=fields, error=error, extras=Extras(audit=audit))
    elif runtime.events.append(event, fields=fields, error=error) > 0 and audited:
        owner = cast(
            list[str | None],
            runtime.client.hmget(
                runtime.keys.command(command_id), ["user_id", "vehicle_id", "request_id"]
            ),
        )
        runtime.audit.record(
            _AUDITED[status], outcome=outcome, user_id=owner[0], command_id=command_id,
            vehicle_id=owner[1], request_id=owner[2], details=details,
        )  # fmt: skip
    if status != CommandStatus.COMPLETED:
        log.warning("command_ended", status=status.value, error_code=error_code)
    return status
