"""Executing one command: load it, drive the connector, record and publish every event.

Safe to run twice for the same command (Dramatiq delivers at least once): the event
log refuses responses already recorded and anything after the terminal status. A
transient vehicle error on a retry-safe type raises ``dramatiq.Retry`` (after a
``retrying`` event) while attempts and the command's deadline allow; everything else
ends the command with exactly one terminal status.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import cast

import dramatiq
import structlog
from dramatiq.common import compute_backoff
from dramatiq.middleware.time_limit import TimeLimitExceeded

from common.audit import AuditAction
from common.commands import RETRYING, TERMINAL_STATUSES, CommandRecord, CommandStatus
from common.events import ErrorEvent, Response, ResponseEvent, StatusEvent
from common.policy import CommandPolicy
from common.timeutil import isoformat, utcnow
from common.vehicles import Vehicle
from workers.connector import (
    ConnectorError,
    DiagnosticRequest,
    ExchangeCancelled,
    ExchangeTimeout,
    NegativeResponse,
)
from workers.runtime import Runtime

__all__ = ["execute_command", "finish"]

log = structlog.get_logger(__name__)

_AUDITED = {
    CommandStatus.COMPLETED: AuditAction.COMMAND_COMPLETED,
    CommandStatus.FAILED: AuditAction.COMMAND_FAILED,
    CommandStatus.TIMEOUT: AuditAction.COMMAND_TIMEOUT,
    CommandStatus.CANCELLED: AuditAction.COMMAND_CANCELLED,
}


def execute_command(
    runtime: Runtime, command_id: str, *, command_name: str, retries: int = 0
) -> CommandStatus | None:
    """Run one attempt of ``command_id``; return its terminal status (``None``: no command).

    ``retries`` is how many attempts already failed (Dramatiq's retry count). Raises
    ``dramatiq.Retry`` when the attempt should be retried.
    """
    key = runtime.keys.command(command_id)
    fields = cast(dict[str, str], runtime.client.hgetall(key))
    if not fields:
        log.warning("command_not_found", command_id=command_id)
        return None
    command = CommandRecord.from_redis(fields)
    if command.status in TERMINAL_STATUSES:
        log.info("command_already_terminal", status=command.status.value)
        return command.status
    if command.command_name != command_name:
        message = f"Command type {command.command_name} sent to the {command_name} actor"
        return finish(runtime, command_id, CommandStatus.FAILED, message, "internal_error")
    if command.cancel_requested:
        return finish(runtime, command_id, CommandStatus.CANCELLED)
    now = utcnow()
    if command.deadline_at is not None and now >= command.deadline_at:
        message = "The command was not executed before its deadline"
        return finish(runtime, command_id, CommandStatus.TIMEOUT, message, "deadline_exceeded")
    raw_vehicle = runtime.client.get(runtime.keys.vehicle(command.vehicle_id))
    if raw_vehicle is None:
        message = f"Vehicle {command.vehicle_id} no longer exists"
        return finish(runtime, command_id, CommandStatus.FAILED, message, "vehicle_not_found")

    policy = runtime.policies[command_name]
    attempt = retries + 1
    runtime.client.hset(key, "attempts", str(attempt))
    runtime.events.append(
        StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS, started_at=now),
        fields={"started_at": isoformat(now)},
    )
    log.info("command_started", vehicle_id=command.vehicle_id, attempt=attempt)
    runtime.audit.record(
        AuditAction.COMMAND_STARTED,
        user_id=command.user_id,
        command_id=command_id,
        vehicle_id=command.vehicle_id,
        request_id=command.request_id,
        details={"command_name": command_name, "attempt": attempt},
    )
    limit_s = policy.time_limit_ms / 1000
    if command.deadline_at is not None:
        limit_s = min(limit_s, (command.deadline_at - now).total_seconds())
    request = DiagnosticRequest(
        command_id=command_id,
        command_name=command_name,
        params=command.command_params,
        vehicle=Vehicle.model_validate_json(raw_vehicle),
        deadline=time.monotonic() + limit_s,
        cancelled=lambda: runtime.client.hget(key, "cancel_requested") == "True",
    )
    number = 0
    try:
        for part in runtime.connector.execute(request):
            number += 1
            _record_response(runtime, command_id, number, part.payload, is_final=part.is_final)
            if request.cancelled():
                raise ExchangeCancelled("Cancelled during the exchange")
    except ExchangeCancelled:
        return finish(runtime, command_id, CommandStatus.CANCELLED)
    except ExchangeTimeout as exc:
        return finish(runtime, command_id, CommandStatus.TIMEOUT, exc.message, exc.code)
    except NegativeResponse as exc:
        _record_response(runtime, command_id, number + 1, exc.payload, is_final=True)
        return finish(runtime, command_id, CommandStatus.FAILED, exc.message, exc.code)
    except ConnectorError as exc:
        _maybe_retry(runtime, command, policy, attempt, exc)
        return finish(runtime, command_id, CommandStatus.FAILED, exc.message, exc.code)
    except TimeLimitExceeded:
        message = "The worker's time limit cut the exchange"
        return finish(runtime, command_id, CommandStatus.TIMEOUT, message, "time_limit")
    except Exception:
        log.exception("command_crashed")
        message = "Internal error while executing the command"
        return finish(runtime, command_id, CommandStatus.FAILED, message, "internal_error")
    log.info("command_completed", responses=number)
    return finish(runtime, command_id, CommandStatus.COMPLETED)


def _maybe_retry(
    runtime: Runtime,
    command: CommandRecord,
    policy: CommandPolicy,
    attempt: int,
    exc: ConnectorError,
) -> None:
    """Raise ``dramatiq.Retry`` if the policy allows another attempt in time."""
    if not (exc.transient and policy.retry_safe and attempt <= policy.max_retries):
        return
    _, delay_ms = compute_backoff(
        attempt - 1, factor=max(policy.min_backoff_ms, 1), max_backoff=policy.max_backoff_ms
    )
    delay_ms = max(delay_ms, policy.min_backoff_ms)
    retry_at = utcnow() + timedelta(milliseconds=delay_ms)
    if command.deadline_at is not None and retry_at >= command.deadline_at:
        return
    seq = runtime.events.append(
        StatusEvent(
            command_id=command.command_id,
            status=RETRYING,
            attempt=attempt,
            reason=exc.message,
            retry_at=retry_at,
        )
    )
    if seq <= 0:  # the command ended meanwhile (cancelled, swept): nothing to retry
        return
    log.warning("command_retrying", attempt=attempt, reason=exc.message, delay_ms=delay_ms)
    raise dramatiq.Retry(exc.message, delay=delay_ms)


def _record_response(
    runtime: Runtime, command_id: str, number: int, payload: dict[str, object], *, is_final: bool
) -> None:
    response = Response(
        # Derived from the command and position, so a redelivered run produces the same id.
        response_id=str(uuid.uuid5(uuid.UUID(command_id), str(number))),
        response_payload=payload,
        sequence_number=number,
        is_final=is_final,
        received_at=utcnow(),
    )
    runtime.events.append(
        ResponseEvent(command_id=command_id, response=response, sequence_number=number)
    )


def finish(
    runtime: Runtime,
    command_id: str,
    status: CommandStatus,
    error_message: str | None = None,
    error_code: str | None = None,
) -> CommandStatus:
    """Record the terminal ``status`` (after its error event, atomically, if any)."""
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
    recorded = runtime.events.append(
        StatusEvent(
            command_id=command_id,
            status=status,
            completed_at=completed,
            error_message=error_message,
        ),
        fields=fields,
        error=error,
    )
    if recorded > 0 and status in _AUDITED:
        command = runtime.client.hmget(
            runtime.keys.command(command_id), ["user_id", "vehicle_id", "request_id"]
        )
        runtime.audit.record(
            _AUDITED[status],
            outcome="success" if status == CommandStatus.COMPLETED else "failure",
            user_id=command[0],
            command_id=command_id,
            vehicle_id=command[1],
            request_id=command[2],
            details={"error_code": error_code} if error_code else {},
        )
    if status != CommandStatus.COMPLETED:
        log.warning("command_ended", status=status.value, error_code=error_code)
    return status
