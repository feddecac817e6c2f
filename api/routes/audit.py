"""The audit trail, for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import CurrentUser, State
from api.schemas import HistoryBound, day_end, day_start
from common.audit import AuditAction, AuditEntry, AuditQuery
from common.errors import ForbiddenError
from common.users import Role, User

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    limit: int
    offset: int
    total: int
    usernames: dict[str, str] = Field(
        default_factory=dict, description="Username of every user id on this page that has one."
    )
    vins: dict[str, str] = Field(
        default_factory=dict, description="VIN of every vehicle id on this page that is known."
    )


async def _names(state: State, entries: list[AuditEntry]) -> tuple[dict[str, str], dict[str, str]]:
    """Usernames and VINs for the ids on one page (an entry may carry only the ids)."""
    usernames = {e.user_id: e.username for e in entries if e.user_id and e.username}
    for user_id in {e.user_id for e in entries if e.user_id} - usernames.keys():
        user = await state.users.get_by_id(user_id)
        if user is not None:
            usernames[user_id] = user.username
    vins = {}
    for vehicle_id in {e.vehicle_id for e in entries if e.vehicle_id}:
        vehicle = await state.vehicles.get(vehicle_id)
        if vehicle is not None:
            vins[vehicle_id] = vehicle.vin
    return usernames, vins


async def get_admin(user: CurrentUser) -> User:
    if user.role != Role.ADMIN:
        raise ForbiddenError("The audit trail is for admins")
    return user


@router.get("", response_model=AuditPage, responses={403: {"description": "Not an admin"}})
async def list_audit_entries(
    state: State,
    _admin: Annotated[User, Depends(get_admin)],
    user_id: str | None = Query(default=None, max_length=64),
    vehicle_id: str | None = Query(default=None, max_length=64),
    command_id: str | None = Query(default=None, max_length=64),
    action: AuditAction | None = None,
    since: Annotated[HistoryBound | None, Query(description="At or after (ISO 8601).")] = None,
    until: Annotated[HistoryBound | None, Query(description="At or before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> AuditPage:
    """Audit entries newest first, filtered by user, vehicle, command, action and time."""
    entries, total = await state.audit.query(
        AuditQuery(
            user_id=user_id,
            vehicle_id=vehicle_id,
            command_id=command_id,
            action=action,
            since=day_start(since) if since is not None else None,
            until=day_end(until) if until is not None else None,
            limit=limit,
            offset=offset,
        )
    )
    usernames, vins = await _names(state, entries)
    return AuditPage(
        entries=entries, limit=limit, offset=offset, total=total, usernames=usernames, vins=vins
    )
