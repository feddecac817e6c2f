"""Submitting a command: validate, authorize per type, admit on the vehicle, record, queue."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
import structlog
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.schemas import CommandCreate
from api.state import AppState
from common.access import can_view_command
from common.audit import AuditAction
from common.broker import WAKE_LIST_MAX, command_message
from common.commands import COMMAND_TYPES, CommandRecord, CommandStatus, CommandType
from common.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
)
from common.events import ErrorEvent, StatusEvent
from common.policy import CommandPolicy
from common.timeutil import isoformat, utcnow
from common.users import User
from common.vehicles import Vehicle

__all__ = ["Submission", "admission_outcome", "check", "submit"]

_RATE_LIMITED = "Too many commands submitted; try again later"

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


def check(
    user: User, body: CommandCreate, policies: dict[str, CommandPolicy]
) -> tuple[CommandType, dict[str, Any], CommandPolicy]:
    """The submission's checks that need no I/O: a known type, valid parameters, a role
    the type's policy allows. Raises ``RequestValidationError`` (422) or ``ForbiddenError``."""
    command_type, params = validate(body)
    policy = policies[command_type.name]
    if user.role not in policy.roles:
        allowed = " or ".join(sorted(r.value for r in policy.roles))
        raise ForbiddenError(f"{command_type.name} requires the role {allowed}")
    return command_type, params, policy


async def submit(
    state: AppState,
    user: User,
    body: CommandCreate,
    *,
    request_id: str | None,
    idempotency_key: str | None,
    who: dict[str, Any],
) -> Submission:
    """Create and queue the command, or explain precisely why not (raises ``AppError``).

    One round trip on the common path: one script counts the rate limit, reads the
    vehicle, admits the command on it, stores it, queues its message and writes its
    audit entry (``common/lua/submit.lua``).
    """
    try:
        command_type, params, policy = check(user, body, state.policies)
    except (RequestValidationError, ForbiddenError):
        # Refused requests count against the limit too (and 429 wins, as for any request).
        await state.submit_limiter.hit(user.user_id, message=_RATE_LIMITED)
        raise
    vehicle_id = str(body.vehicle_id)
    command_id = str(uuid.uuid4())
    structlog.contextvars.bind_contextvars(command_id=command_id)  # every line from here on
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
            return await _replay(state, idem_key, fingerprint, vehicle_id)

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
    audit_args = state.audit.args(
        AuditAction.COMMAND_SUBMITTED,
        details={"command_name": command_type.name, "command_params": params},
        **audit,
    )
    try:
        outcome = await _admit(state, command, command_type, policy, audit_args=audit_args[1])
    except Exception as exc:
        if idem_key is not None:
            await state.redis.delete(idem_key)  # nothing was created: the key may be reused
        if isinstance(exc, ConflictError) and "blocking_command_id" in exc.details:
            raise await _busy_for(state, user, command, exc) from None
        raise
    if isinstance(outcome, Vehicle):  # offline: the refusal is kept on record
        await _record_rejection(state, command, outcome)
        await state.audit.record(
            AuditAction.COMMAND_REJECTED,
            outcome="failure",
            details={"command_name": command_type.name, "reason": "vehicle_offline"},
            **audit,
        )
        raise _rejection(outcome, command)
    log.info("command_submitted", command_name=command.command_name, vehicle_id=vehicle_id)
    return Submission(command)


async def _busy_for(
    state: AppState, user: User, command: CommandRecord, busy: ConflictError
) -> ConflictError:
    """The busy refusal as ``user`` may see it: the blocking command is named only to who
    may read it (one more read, on the refusal path only)."""
    blocker = await state.commands.get(str(busy.details["blocking_command_id"]))
    if blocker is not None and can_view_command(user.role, user.user_id, blocker):
        return busy
    return ConflictError(
        f"Vehicle {command.vehicle_id} is busy with another user's command; try again "
        "when it has finished"
    )


async def _replay(state: AppState, idem_key: str, fingerprint: str, vehicle_id: str) -> Submission:
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
        vehicle = await state.vehicles.get(vehicle_id)
        if vehicle is None:
            raise NotFoundError(f"Vehicle {vehicle_id} not found")
        raise _rejection(vehicle, command)
    return Submission(command, replayed=True)


async def _admit(
    state: AppState,
    command: CommandRecord,
    command_type: CommandType,
    policy: CommandPolicy,
    *,
    audit_args: list[str],
) -> Vehicle | None:
    """Run the submit script: ``None`` when admitted, stored, queued and audited, the
    vehicle when it is offline (nothing stored); raise the refusal otherwise (503 when
    Redis cannot be reached: then nothing was stored)."""
    assert command.deadline_at is not None  # set by submit()
    key, window_s, limit = state.submit_limiter.window(command.user_id)
    keys = state.keys
    message, data = state.broker.prepare_enqueue(
        command_message(
            command_type,
            policy,
            command.command_id,
            request_id=command.request_id,
            vehicle_id=command.vehicle_id,
        )
    )
    fields: list[str | float | bytes] = []
    for name, value in command.to_redis().items():
        fields += [name, value]
    argv: list[str | float | bytes] = [
        window_s,
        limit,
        command.command_id,
        "d" if command_type.destructive else "n",
        policy.max_concurrent_per_vehicle,
        command.submitted_at.timestamp(),
        command.deadline_at.timestamp() + state.settings.deadline_grace_s,
        message.options["redis_message_id"],
        data,
        WAKE_LIST_MAX,
        len(fields),
        *fields,
        *audit_args,
    ]
    queue = policy.queue_name
    try:
        result = await state.submit_script(
            keys=[
                key,
                keys.vehicle(command.vehicle_id),
                keys.vehicle_active(command.vehicle_id),
                keys.command(command.command_id),
                keys.commands,
                keys.commands_by_user(command.user_id),
                keys.commands_by_vehicle(command.vehicle_id),
                keys.deadlines,
                keys.broker_queue(queue),
                keys.broker_queue_messages(queue),
                keys.broker_wake(queue),
                keys.audit,
                keys.commands_by_status(CommandStatus.PENDING),
                keys.commands_by_type(command.command_name),
            ],
            args=argv,
        )
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.error("command_submit_failed", error=str(exc))
        raise ServiceUnavailableError(
            "The command could not be stored or queued (Redis unavailable); nothing was "
            "kept. Try again later."
        ) from None
    outcome = admission_outcome(list(result), command)
    if outcome is None:
        state.broker.enqueued(message)
    return outcome


def admission_outcome(result: list[Any], command: CommandRecord) -> Vehicle | None:
    """What the submit script's answer means: raise its refusal, return the offline
    vehicle, or ``None`` when the command was admitted."""
    match result:
        case ["admitted", _]:
            return None
        case ["offline", raw]:
            return Vehicle.model_validate_json(raw)
        case ["rate_limited", ttl]:
            raise RateLimitedError(_RATE_LIMITED, retry_after_s=max(int(ttl), 1))
        case ["vehicle_not_found"]:
            raise NotFoundError(f"Vehicle {command.vehicle_id} not found")
        case ["busy", blocking, _]:
            raise ConflictError(
                f"Vehicle {command.vehicle_id} is busy with command {blocking}; try again when "
                "it has finished",
                blocking_command_id=str(blocking),
            )
    raise RuntimeError(f"unexpected submit script answer {result!r}")


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
