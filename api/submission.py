"""Submitting a command: validate, authorize per type, admit on the vehicle, record, queue."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.schemas import CommandCreate
from api.state import AppState
from common.access import can_view_command
from common.audit import AuditAction
from common.broker import command_message
from common.commands import COMMAND_TYPES, CommandRecord, CommandStatus, CommandType
from common.errors import ConflictError, ForbiddenError, NotFoundError, ServiceUnavailableError
from common.events import ErrorEvent, StatusEvent
from common.policy import CommandPolicy
from common.timeutil import isoformat, utcnow
from common.users import User
from common.vehicles import ConnectionStatus, Vehicle

__all__ = ["Submission", "submit"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Submission:
    command: CommandRecord
    #: True when an ``Idempotency-Key`` matched an earlier request: nothing new was created.
    replayed: bool = False


def _validation_error(loc: tuple[str, ...], msg: str, kind: str, value: Any) -> Exception:
    return RequestValidationError([{"type": kind, "loc": loc, "msg": msg, "input": value}])


def validate(body: CommandCreate) -> tuple[CommandType, dict[str, Any]]:
    """The command type and its validated parameters; 422 naming the field otherwise."""
    command_type = COMMAND_TYPES.get(body.command_name)
    if command_type is None:
        known = ", ".join(sorted(COMMAND_TYPES))
        raise _validation_error(
            ("body", "command_name"),
            f"Unknown command {body.command_name!r}; expected one of: {known}",
            "unknown_command",
            body.command_name,
        )
    try:
        params = command_type.params_model.model_validate(body.command_params)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {**err, "loc": ("body", "command_params", *err["loc"])}
                for err in exc.errors(include_url=False, include_context=False)
            ]
        ) from None
    return command_type, params.model_dump(exclude_none=True)


def _fingerprint(vehicle_id: str, command_name: str, params: dict[str, Any]) -> str:
    canonical = json.dumps([vehicle_id, command_name, params], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _rejection(vehicle: Vehicle, command: CommandRecord) -> ConflictError:
    return ConflictError(
        f"Vehicle {vehicle.vin} is offline; the command was rejected",
        command_id=command.command_id,
        vehicle_id=vehicle.vehicle_id,
        last_seen_at=isoformat(vehicle.last_seen_at) if vehicle.last_seen_at else None,
    )


async def submit(
    state: AppState,
    user: User,
    body: CommandCreate,
    *,
    request_id: str | None,
    idempotency_key: str | None,
    who: dict[str, Any],
) -> Submission:
    """Create and queue the command, or explain precisely why not (raises ``AppError``)."""
    await state.submit_limiter.hit(
        user.user_id, message="Too many commands submitted; try again later"
    )
    command_type, params = validate(body)
    policy = state.policies[command_type.name]
    if user.role not in policy.roles:
        allowed = " or ".join(sorted(r.value for r in policy.roles))
        raise ForbiddenError(f"{command_type.name} requires the role {allowed}")
    vehicle_id = str(body.vehicle_id)
    vehicle = await state.vehicles.get(vehicle_id)
    if vehicle is None:
        raise NotFoundError(f"Vehicle {vehicle_id} not found")

    command_id = str(uuid.uuid4())
    idem_key = None
    if idempotency_key is not None:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        idem_key = state.keys.idempotency(user.user_id, digest)
        fingerprint = _fingerprint(vehicle_id, command_type.name, params)
        claim = json.dumps({"command_id": command_id, "fingerprint": fingerprint})
        claimed = await state.redis.set(
            idem_key, claim, nx=True, ex=state.settings.idempotency_ttl_s
        )
        if not claimed:
            return await _replay(state, idem_key, fingerprint, vehicle)

    now = utcnow()
    command = CommandRecord(
        command_id=command_id,
        user_id=user.user_id,
        vehicle_id=vehicle_id,
        command_name=command_type.name,
        command_params=params,
        status=CommandStatus.PENDING,
        submitted_at=now,
        request_id=request_id,
        deadline_at=now + timedelta(milliseconds=policy.max_age_ms),
    )
    audit = {"user_id": user.user_id, "username": user.username, "command_id": command_id,
             "vehicle_id": vehicle_id, **who}  # fmt: skip
    if vehicle.connection_status != ConnectionStatus.CONNECTED:
        await _record_rejection(state, command, vehicle)
        await state.audit.record(
            AuditAction.COMMAND_REJECTED,
            outcome="failure",
            details={"command_name": command_type.name, "reason": "vehicle_offline"},
            **audit,
        )
        raise _rejection(vehicle, command)
    try:
        await _admit(state, user, command, command_type, policy)
    except ConflictError:
        if idem_key is not None:
            await state.redis.delete(idem_key)  # nothing was created: the key may be reused
        raise
    await _enqueue(state, command, command_type, policy)
    await state.audit.record(
        AuditAction.COMMAND_SUBMITTED,
        details={"command_name": command_type.name, "command_params": params},
        **audit,
    )
    return Submission(command)


async def _replay(state: AppState, idem_key: str, fingerprint: str, vehicle: Vehicle) -> Submission:
    raw = await state.redis.get(idem_key)
    earlier = json.loads(raw) if raw else None
    if earlier is None or earlier["fingerprint"] != fingerprint:
        raise _validation_error(
            ("header", "Idempotency-Key"),
            "Idempotency-Key was already used for a different request",
            "idempotency_key_reused",
            None,
        )
    command = await state.commands.get(earlier["command_id"])
    if command is None:  # claimed a moment ago by a request that is still running
        raise ConflictError("A request with this Idempotency-Key is still being processed")
    if command.status == CommandStatus.REJECTED:
        raise _rejection(vehicle, command)
    return Submission(command, replayed=True)


async def _admit(
    state: AppState,
    user: User,
    command: CommandRecord,
    command_type: CommandType,
    policy: CommandPolicy,
) -> None:
    grace = state.settings.deadline_grace_s
    assert command.deadline_at is not None  # set by submit()
    blocking = await state.commands.admit(
        command,
        destructive=command_type.destructive,
        max_concurrent=policy.max_concurrent_per_vehicle,
        deadline_ts=command.deadline_at.timestamp() + grace,
    )
    if blocking is not None:
        # Name the blocking command only to someone who may read it (off the hot path).
        blocker = await state.commands.get(blocking)
        if blocker is not None and can_view_command(user.role, user.user_id, blocker):
            raise ConflictError(
                f"Vehicle {command.vehicle_id} is busy with command {blocking}; try again "
                "when it has finished",
                blocking_command_id=blocking,
            )
        raise ConflictError(
            f"Vehicle {command.vehicle_id} is busy with another user's command; try again "
            "when it has finished"
        )


async def _record_rejection(state: AppState, command: CommandRecord, vehicle: Vehicle) -> None:
    """Keep the refused command on record (status ``rejected``) for history and audit."""
    await state.commands.create(command)
    seen = isoformat(vehicle.last_seen_at) if vehicle.last_seen_at else "never"
    message = f"Vehicle {vehicle.vin} is offline (last seen {seen})"
    now = utcnow()
    await state.events.append(
        StatusEvent(
            command_id=command.command_id,
            status=CommandStatus.REJECTED,
            completed_at=now,
            error_message=message,
        ),
        fields={"completed_at": isoformat(now), "error_message": message},
        error=ErrorEvent(
            command_id=command.command_id, error_message=message, error_code="vehicle_offline"
        ),
    )
    log.info("command_rejected", reason="vehicle_offline", vehicle_id=vehicle.vehicle_id)


async def _enqueue(
    state: AppState, command: CommandRecord, command_type: CommandType, policy: CommandPolicy
) -> None:
    message = command_message(
        command_type, policy, command.command_id, request_id=command.request_id
    )
    try:
        await state.broker.enqueue_async(message)
    except Exception as exc:
        log.error("command_enqueue_failed", error=str(exc))
        await _mark_enqueue_failed(state, command.command_id)
        raise ServiceUnavailableError(
            "The command could not be queued; it was recorded as failed. Try again later."
        ) from None
    log.info("command_submitted", command_name=command.command_name, vehicle_id=command.vehicle_id)


async def _mark_enqueue_failed(state: AppState, command_id: str) -> None:
    message = "Could not queue the command (message broker unavailable)"
    now = utcnow()
    try:
        await state.events.append(
            StatusEvent(
                command_id=command_id,
                status=CommandStatus.FAILED,
                completed_at=now,
                error_message=message,
            ),
            fields={"completed_at": isoformat(now), "error_message": message},
            error=ErrorEvent(
                command_id=command_id, error_message=message, error_code="enqueue_failed"
            ),
        )
    except Exception as exc:  # Redis itself is down: the deadline sweeper will end it
        log.error("command_mark_failed_failed", error=str(exc))
