"""Login, token refresh and rotation, logout, and the current user."""

from __future__ import annotations

import time

import structlog
from fastapi import APIRouter, Request, status
from starlette.concurrency import run_in_threadpool

from api.deps import Auth, CurrentUser, State, client_info
from api.schemas import LoginRequest, LogoutRequest, MePublic, RefreshRequest, TokenPair
from common.audit import AuditAction
from common.auth import revoke_access_token
from common.errors import AuthError
from common.passwords import verify_password
from common.settings import Settings
from common.tokens import decode_token, issue_token
from common.users import User

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
log = structlog.get_logger(__name__)

#: One message for every failed login, so it does not tell which part was wrong.
_BAD_LOGIN = "Invalid username or password"


async def _issue_pair(state: State, user: User) -> TokenPair:
    settings: Settings = state.settings
    access, _ = issue_token(settings, user, "access")
    refresh, refresh_claims = issue_token(settings, user, "refresh")
    await state.redis.set(
        state.keys.refresh_token(refresh_claims.jti), user.user_id, ex=settings.refresh_token_ttl_s
    )
    return TokenPair(
        access_token=access, refresh_token=refresh, expires_in=settings.access_token_ttl_s
    )


@router.post(
    "/login", response_model=TokenPair, responses={429: {"description": "Too many attempts"}}
)
async def login(body: LoginRequest, state: State, request: Request) -> TokenPair:
    """Exchange a username and password for an access and a refresh token."""
    who = client_info(request)
    await state.login_limiter.hit(
        f"{who['ip']}:{body.username}", message="Too many login attempts; try again later"
    )
    user = await state.users.get_by_username(body.username)
    # scrypt takes ~50 ms of CPU: keep it off the event loop.
    valid = await run_in_threadpool(
        verify_password, body.password, user.password_hash if user else None
    )
    if not valid or user is None or not user.active:
        log.info("login_failed")
        await state.audit.record(
            AuditAction.LOGIN_FAILED,
            outcome="failure",
            username=body.username,
            user_id=user.user_id if user else None,
            **who,
        )
        raise AuthError(_BAD_LOGIN)
    log.info("login_succeeded", user_id=user.user_id)
    await state.audit.record(AuditAction.LOGIN, user_id=user.user_id, username=user.username, **who)
    return await _issue_pair(state, user)


@router.post("/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, state: State, request: Request) -> TokenPair:
    """Rotate a refresh token: the old one stops working, a new pair is returned."""
    claims = decode_token(state.settings, body.refresh_token, "refresh")
    owner = await state.redis.getdel(state.keys.refresh_token(claims.jti))
    if owner is None or owner != claims.sub:
        raise AuthError("Refresh token revoked or already used")
    user = await state.users.get_by_id(claims.sub)
    if user is None or not user.active:
        raise AuthError("User inactive or unknown")
    await state.audit.record(
        AuditAction.TOKEN_REFRESHED,
        user_id=user.user_id,
        username=user.username,
        **client_info(request),
    )
    return await _issue_pair(state, user)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    auth: Auth, state: State, request: Request, body: LogoutRequest | None = None
) -> None:
    """Revoke the presented access token and, when given, the refresh token."""
    user, claims = auth
    await revoke_access_token(state.redis, state.keys, claims, now_ts=time.time())
    await state.audit.record(
        AuditAction.LOGOUT, user_id=user.user_id, username=user.username, **client_info(request)
    )
    if body and body.refresh_token:
        try:
            refresh_claims = decode_token(state.settings, body.refresh_token, "refresh")
        except AuthError:
            return
        if refresh_claims.sub == user.user_id:
            await state.redis.delete(state.keys.refresh_token(refresh_claims.jti))


@router.get("/me", response_model=MePublic)
async def read_me(user: CurrentUser) -> MePublic:
    """The authenticated user."""
    return MePublic(user_id=user.user_id, username=user.username, role=user.role, email=user.email)
