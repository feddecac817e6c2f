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
from common.auth_events import AuthEvent
from common.errors import AuthError
from common.passwords import verify_password
from common.refresh_chain import IssuedPair, Rotation
from common.tokens import decode_token

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
log = structlog.get_logger(__name__)

#: One message for every failed login, so it does not tell which part was wrong.
_BAD_LOGIN = "Invalid username or password"


def _pair(state: State, issued: IssuedPair) -> TokenPair:
    return TokenPair(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=state.settings.access_token_ttl_s,
    )


@router.post(
    "/login",
    response_model=TokenPair,
    responses={
        401: {"description": "Wrong username or password, or the user is inactive"},
        429: {"description": "Too many attempts from this address or for this username"},
    },
)
async def login(body: LoginRequest, state: State, request: Request) -> TokenPair:
    """Exchange a username and password for an access and a refresh token."""
    who = client_info(request)
    too_many = "Too many login attempts; try again later"
    await state.login_limiter.hit(f"{who['ip']}:{body.username}", message=too_many)
    await state.login_user_limiter.hit(body.username, message=too_many)
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
    issued = await state.refresh_chains.issue(user)
    assert issued is not None  # a new chain cannot have ended
    return _pair(state, issued)


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses={
        401: {
            "description": "Invalid, expired, revoked or already used refresh token (a reuse "
            "ends the whole chain), or the user is inactive"
        }
    },
)
async def refresh(body: RefreshRequest, state: State, request: Request) -> TokenPair:
    """Rotate a refresh token: it stops working, a new pair is returned.

    Presenting a refresh token a second time revokes every token of its chain.
    """
    claims = decode_token(state.settings, body.refresh_token, "refresh")
    outcome, family = await state.refresh_chains.rotate(claims)
    if outcome == Rotation.REUSED:
        revoked = await state.refresh_chains.end(family, claims.sub)
        log.warning("refresh_token_reused", user_id=claims.sub, revoked=revoked)
        await state.audit.record(
            AuditAction.TOKEN_REUSED,
            outcome="denied",
            user_id=claims.sub,
            details={"family": family, "revoked_tokens": revoked},
            **client_info(request),
        )
    if outcome != Rotation.OK:
        raise AuthError("Refresh token revoked or already used")
    user = await state.users.get_by_id(claims.sub)
    if user is None or not user.active:
        raise AuthError("User inactive or unknown")
    issued = await state.refresh_chains.issue(user, family or None)
    if issued is None:  # the chain was ended by a reuse a moment ago
        raise AuthError("Refresh token revoked or already used")
    await state.audit.record(
        AuditAction.TOKEN_REFRESHED,
        user_id=user.user_id,
        username=user.username,
        **client_info(request),
    )
    return _pair(state, issued)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    auth: Auth, state: State, request: Request, body: LogoutRequest | None = None
) -> None:
    """Revoke the presented access token and, when given, the refresh token."""
    user, claims = auth
    await revoke_access_token(state.redis, state.keys, claims, now_ts=time.time())
    state.auth.apply(AuthEvent(kind="token_revoked", user_id=user.user_id, jti=claims.jti))
    await state.audit.record(
        AuditAction.LOGOUT, user_id=user.user_id, username=user.username, **client_info(request)
    )
    if body and body.refresh_token:
        try:
            refresh_claims = decode_token(state.settings, body.refresh_token, "refresh")
        except AuthError:
            return
        if refresh_claims.sub == user.user_id:
            # The session ends: the whole chain, not only the token presented.
            family = await state.redis.hget(state.keys.refresh_token(refresh_claims.jti), "family")
            await state.redis.delete(state.keys.refresh_token(refresh_claims.jti))
            if family:
                await state.refresh_chains.end(str(family), user.user_id)


@router.get("/me", response_model=MePublic)
async def read_me(user: CurrentUser) -> MePublic:
    """The authenticated user."""
    return MePublic(user_id=user.user_id, username=user.username, role=user.role, email=user.email)
