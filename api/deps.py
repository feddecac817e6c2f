"""Dependencies as ``Annotated`` aliases, declared once; routes ask only for what they need."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.state import AppState
from common.access import can_submit
from common.auth import authenticate_access_token
from common.errors import AuthError, ForbiddenError
from common.tokens import TokenClaims
from common.users import User

__all__ = ["Auth", "CurrentUser", "State", "Submitter", "client_info"]


def client_info(request: Request) -> dict[str, Any]:
    """Who is asking, for the audit trail: address, user agent, request id."""
    return {
        "ip": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent"),
        "request_id": request.scope.get("state", {}).get("request_id"),
    }


_bearer = HTTPBearer(auto_error=False, description="Access token from /api/v1/auth/login")


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.sovd
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_auth(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> tuple[User, TokenClaims]:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("Not authenticated")
    return await authenticate_access_token(
        state.settings, state.redis, state.keys, credentials.credentials
    )


Auth = Annotated[tuple[User, TokenClaims], Depends(get_auth)]


async def get_current_user(auth: Auth, request: Request) -> User:
    request.state.user = auth[0]  # for the audit of denied requests
    return auth[0]


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_submitter(user: CurrentUser) -> User:
    if not can_submit(user.role):
        raise ForbiddenError(f"Role {user.role.value!r} may not submit commands")
    return user


Submitter = Annotated[User, Depends(get_submitter)]
