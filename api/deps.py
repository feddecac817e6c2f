"""Dependencies as ``Annotated`` aliases, declared once; routes ask only for what they need."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.state import AppState
from common.access import can_manage_fleet, can_submit
from common.errors import AuthError, ForbiddenError
from common.tokens import TokenClaims
from common.users import User

__all__ = ["Auth", "CurrentUser", "FleetAdmin", "State", "Submitter", "client_info"]


def client_info(request: Request) -> dict[str, Any]:
    """Who is asking, for the audit trail: address, user agent, request id."""
    return {
        "ip": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent"),
        "request_id": request.scope.get("state", {}).get("request_id"),
    }


_bearer = HTTPBearer(auto_error=False, description="Access token from /api/v1/auth/login")


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.sovd
    return state


State = Annotated[AppState, Depends(get_state)]

# Each alias below is one dependency on the bearer scheme alone (no chain of
# dependencies): FastAPI solves, and builds a cache key for, every node of the tree on
# every request, which made a measurable share of an authenticated read.
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> tuple[User, TokenClaims]:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("Not authenticated")
    state: AppState = request.app.state.sovd
    user, claims = await state.auth.authenticate(credentials.credentials)
    request.state.user = user  # for the audit of denied requests
    return user, claims


async def get_auth(request: Request, credentials: Credentials) -> tuple[User, TokenClaims]:
    return await _authenticate(request, credentials)


Auth = Annotated[tuple[User, TokenClaims], Depends(get_auth)]


async def get_current_user(request: Request, credentials: Credentials) -> User:
    return (await _authenticate(request, credentials))[0]


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_submitter(request: Request, credentials: Credentials) -> User:
    user = (await _authenticate(request, credentials))[0]
    if not can_submit(user.role):
        raise ForbiddenError(f"Role {user.role.value!r} may not submit commands")
    return user


Submitter = Annotated[User, Depends(get_submitter)]


async def get_fleet_admin(request: Request, credentials: Credentials) -> User:
    user = (await _authenticate(request, credentials))[0]
    if not can_manage_fleet(user.role):
        raise ForbiddenError(f"Role {user.role.value!r} may not change the fleet")
    return user


FleetAdmin = Annotated[User, Depends(get_fleet_admin)]
