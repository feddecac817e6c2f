"""Submitting diagnostic commands and reading them back."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, State, Submitter
from api.schemas import CommandCreate, CommandPublic, CommandsPublic, CommandSubmitted
from api.state import AppState
from common.access import can_view_command, sees_all_commands
from common.broker import command_message
from common.commands import COMMAND_TYPES, CommandRecord, CommandStatus
from common.errors import NotFoundError, ServiceUnavailableError
from common.events import ErrorEvent, StatusEvent
from common.events import Response as ResponseModel
from common.timeutil import isoformat, utcnow
from common.users import User

router = APIRouter(prefix="/api/v1/commands", tags=["commands"])
log = structlog.get_logger(__name__)


def _validation_error(
    loc: tuple[str | int, ...], msg: str, kind: str, value: Any
) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": loc, "msg": msg, "input": value}])


def _validate_params(body: CommandCreate) -> dict[str, Any]:
    """The command type's parameters, validated; 422 naming the field otherwise."""
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
    return params.model_dump(exclude_none=True)


async def _visible_command(state: AppState, user: User, command_id: uuid.UUID) -> CommandRecord:
    command = await state.commands.get(str(command_id))
    if command is None or not can_view_command(user.role, user.user_id, command):
        raise NotFoundError(f"Command {command_id} not found")
    return command


def websocket_url(state: AppState, command_id: str) -> str:
    return f"{state.settings.effective_realtime_url}/ws/responses/{command_id}"


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CommandSubmitted,
    responses={
        403: {"description": "The role may not submit commands"},
        404: {"description": "Unknown vehicle"},
        503: {"description": "The command could not be queued; it is recorded as failed"},
    },
)
async def submit_command(
    body: CommandCreate, state: State, user: Submitter, response: Response
) -> CommandSubmitted:
    """Validate, record and queue a diagnostic command; its events stream at `websocket_url`."""
    params = _validate_params(body)
    vehicle_id = str(body.vehicle_id)
    if await state.vehicles.get(vehicle_id) is None:
        raise NotFoundError(f"Vehicle {vehicle_id} not found")
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    command = CommandRecord(
        command_id=str(uuid.uuid4()),
        user_id=user.user_id,
        vehicle_id=vehicle_id,
        command_name=body.command_name,
        command_params=params,
        status=CommandStatus.PENDING,
        submitted_at=utcnow(),
        request_id=request_id,
    )
    structlog.contextvars.bind_contextvars(command_id=command.command_id)
    await state.commands.create(command)  # stored before it is queued
    message = command_message(
        COMMAND_TYPES[command.command_name], command.command_id, request_id=request_id
    )
    try:
        await run_in_threadpool(state.broker.enqueue, message)
    except Exception as exc:
        log.error("command_enqueue_failed", error=str(exc))
        await _mark_enqueue_failed(state, command.command_id)
        raise ServiceUnavailableError(
            "The command could not be queued; it was recorded as failed. Try again later."
        ) from None
    log.info("command_submitted", command_name=command.command_name, vehicle_id=vehicle_id)
    response.headers["Location"] = f"/api/v1/commands/{command.command_id}"
    return CommandSubmitted(
        **command.model_dump(), websocket_url=websocket_url(state, command.command_id)
    )


async def _mark_enqueue_failed(state: AppState, command_id: str) -> None:
    message = "Could not queue the command (message broker unavailable)"
    try:
        await state.events.append(
            ErrorEvent(command_id=command_id, error_message=message, error_code="enqueue_failed")
        )
        now = utcnow()
        await state.events.append(
            StatusEvent(
                command_id=command_id,
                status=CommandStatus.FAILED,
                completed_at=now,
                error_message=message,
            ),
            fields={"completed_at": isoformat(now), "error_message": message},
        )
    except Exception as exc:  # Redis itself is down: the record stays pending
        log.error("command_mark_failed_failed", error=str(exc))


@router.get("", response_model=CommandsPublic)
async def list_commands(
    state: State,
    user: CurrentUser,
    vehicle_id: uuid.UUID | None = None,
    status: CommandStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CommandsPublic:
    """Commands newest first: engineers see their own, admins and viewers all."""
    commands, total = await state.commands.list_commands(
        user_id=None if sees_all_commands(user.role) else user.user_id,
        vehicle_id=str(vehicle_id) if vehicle_id else None,
        status=status,
        limit=limit,
        offset=offset,
    )
    return CommandsPublic(
        commands=[CommandPublic.model_validate(c.model_dump()) for c in commands],
        limit=limit,
        offset=offset,
        total=total,
    )


@router.get("/{command_id}", response_model=CommandPublic)
async def read_command(command_id: uuid.UUID, state: State, user: CurrentUser) -> CommandPublic:
    """One command."""
    command = await _visible_command(state, user, command_id)
    return CommandPublic.model_validate(command.model_dump())


@router.get("/{command_id}/responses", response_model=list[ResponseModel])
async def list_command_responses(
    command_id: uuid.UUID, state: State, user: CurrentUser
) -> list[ResponseModel]:
    """The command's responses, ordered by `sequence_number`."""
    await _visible_command(state, user, command_id)
    return await state.commands.responses(str(command_id))
