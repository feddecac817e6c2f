"""Submitting, cancelling and reading diagnostic commands."""

from __future__ import annotations

import uuid
from typing import Annotated, cast

import structlog
from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import JsonValue

from api.deps import CurrentUser, State, Submitter, client_info
from api.schemas import (
    MAX_OFFSET,
    CommandCreate,
    CommandPublic,
    CommandsPublic,
    CommandSubmitted,
    HistoryBound,
    day_end,
    day_start,
)
from api.state import AppState
from api.submission import submit
from common.access import can_cancel_command, can_view_command, sees_all_commands
from common.audit import AuditAction
from common.commands import COMMAND_TYPES, CommandRecord, CommandStatus
from common.errors import ConflictError, ForbiddenError, NotFoundError
from common.events import Response as ResponseModel
from common.events import StatusEvent
from common.history import Cursor
from common.timeutil import isoformat, utcnow
from common.users import User

router = APIRouter(prefix="/api/v1/commands", tags=["commands"])
log = structlog.get_logger(__name__)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a request with the same key to get the same command back.",
    ),
]


async def _visible_command(state: AppState, user: User, command_id: uuid.UUID) -> CommandRecord:
    command = await state.commands.get(str(command_id))
    if command is None or not can_view_command(user.role, user.user_id, command):
        raise NotFoundError(f"Command {command_id} not found")
    return command


def _submitted(state: AppState, command: CommandRecord) -> CommandSubmitted:
    url = f"{state.settings.effective_realtime_url}/ws/responses/{command.command_id}"
    return CommandSubmitted(**command.model_dump(), websocket_url=url)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CommandSubmitted,
    responses={
        403: {"description": "The role may not submit this command type"},
        404: {"description": "Unknown vehicle"},
        409: {"description": "Vehicle offline (command rejected) or busy (blocking command)"},
        429: {"description": "Too many submissions by this user"},
        503: {"description": "The command could not be queued; it is recorded as failed"},
    },
)
async def submit_command(
    body: CommandCreate,
    state: State,
    user: Submitter,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CommandSubmitted:
    """Validate, record and queue a diagnostic command; its events stream at `websocket_url`."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    submission = await submit(
        state,
        user,
        body,
        request_id=request_id,
        idempotency_key=idempotency_key,
        who=client_info(request),
    )
    command = submission.command
    structlog.contextvars.bind_contextvars(command_id=command.command_id)
    response.headers["Location"] = f"/api/v1/commands/{command.command_id}"
    if submission.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _submitted(state, command)


@router.post(
    "/{command_id}/cancel",
    response_model=CommandPublic,
    responses={
        202: {"description": "Running: the worker stops at its next step", "model": CommandPublic},
        403: {"description": "Only the owner or an admin may cancel"},
        409: {"description": "The command already ended"},
    },
)
async def cancel_command(
    command_id: uuid.UUID, state: State, user: CurrentUser, request: Request
) -> JSONResponse:
    """Cancel a command: pending ends now (200); running stops at its next step (202)."""
    command = await _visible_command(state, user, command_id)
    if not can_cancel_command(user.role, user.user_id, command):
        raise ForbiddenError("Only the command's owner or an admin may cancel it")
    now = utcnow()
    cancelled = await state.events.append(
        StatusEvent(
            command_id=command.command_id, status=CommandStatus.CANCELLED, completed_at=now
        ),
        fields={"completed_at": isoformat(now)},
        expect=[CommandStatus.PENDING],
    )
    code = status.HTTP_200_OK
    if cancelled <= 0:
        if not await state.commands.request_cancel(command.command_id):
            current = await state.commands.get(command.command_id)
            ended = current.status.value if current else "unknown"
            raise ConflictError(f"Command already ended ({ended})", status=ended)
        code = status.HTTP_202_ACCEPTED
    log.info("command_cancel", command_id=command.command_id, immediate=code == 200)
    await state.audit.record(
        AuditAction.COMMAND_CANCELLED if code == 200 else AuditAction.COMMAND_CANCEL_REQUESTED,
        user_id=user.user_id,
        username=user.username,
        command_id=command.command_id,
        vehicle_id=command.vehicle_id,
        **client_info(request),
    )
    current = await state.commands.get(command.command_id)
    assert current is not None  # commands are never deleted
    body = CommandPublic.model_validate(current.model_dump())
    return JSONResponse(body.model_dump(mode="json"), status_code=code)


@router.get("", response_model=CommandsPublic)
async def list_commands(
    state: State,
    user: CurrentUser,
    vehicle_id: uuid.UUID | None = None,
    status: CommandStatus | None = None,
    command_name: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Commands of this type.",
            json_schema_extra={"enum": cast(list[JsonValue], sorted(COMMAND_TYPES))},
        ),
    ] = None,
    start_date: Annotated[
        HistoryBound | None,
        Query(description="Submitted at or after (ISO 8601; a date means its midnight, UTC)."),
    ] = None,
    end_date: Annotated[
        HistoryBound | None,
        Query(description="Submitted at or before (ISO 8601; a date covers its whole day)."),
    ] = None,
    user_id: Annotated[
        uuid.UUID | None,
        Query(description="Submitted by this user; for roles that see every command."),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="`next_cursor` of the previous page: the page after it, stable "
            "while new commands arrive (`offset` then counts from it).",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> CommandsPublic:
    """Commands newest first: engineers see their own, admins and viewers all."""
    after = None
    if cursor is not None:
        try:
            after = Cursor.decode(cursor)
        except ValueError as exc:
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("query", "cursor"), "msg": str(exc),
                  "input": cursor}]
            ) from None  # fmt: skip
    if command_name is not None and command_name not in COMMAND_TYPES:
        raise RequestValidationError(
            [{"type": "enum", "loc": ("query", "command_name"),
              "msg": f"not a command type: one of {', '.join(sorted(COMMAND_TYPES))}",
              "input": command_name}]
        )  # fmt: skip
    since = day_start(start_date) if start_date is not None else None
    until = day_end(end_date) if end_date is not None else None
    if since is not None and until is not None and since > until:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "end_date"),
              "msg": "end_date is before start_date", "input": str(end_date)}]
        )  # fmt: skip
    if sees_all_commands(user.role):
        owner = str(user_id) if user_id is not None else None
    else:
        owner = user.user_id  # engineers stay limited to their own, whatever they ask
    page = await state.history.page(
        user_id=owner,
        vehicle_id=str(vehicle_id) if vehicle_id else None,
        status=status,
        command_name=command_name,
        since=since.timestamp() if since is not None else None,
        until=until.timestamp() if until is not None else None,
        after=after,
        limit=limit,
        offset=offset,
    )
    return CommandsPublic(
        commands=[CommandPublic.model_validate(c.model_dump()) for c in page.commands],
        limit=limit,
        offset=offset,
        total=page.total,
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )


@router.get("/{command_id}", response_model=CommandSubmitted)
async def read_command(command_id: uuid.UUID, state: State, user: CurrentUser) -> CommandSubmitted:
    """One command, with the `websocket_url` of its event stream."""
    command = await _visible_command(state, user, command_id)
    return _submitted(state, command)


@router.get("/{command_id}/responses", response_model=list[ResponseModel])
async def list_command_responses(
    command_id: uuid.UUID, state: State, user: CurrentUser
) -> list[ResponseModel]:
    """The command's responses, ordered by `sequence_number`."""
    await _visible_command(state, user, command_id)
    return await state.commands.responses(str(command_id))
