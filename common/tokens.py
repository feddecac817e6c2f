"""JWT access and refresh tokens (PyJWT, HS256 pinned, issuer and audience checked)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import jwt

from common.errors import AuthError
from common.protocol import TOKEN_EXPIRED_REASON
from common.settings import Settings
from common.timeutil import utcnow
from common.users import Role, User

__all__ = ["ALGORITHM", "TokenClaims", "decode_token", "issue_token"]

ALGORITHM = "HS256"

TokenType = Literal["access", "refresh"]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The claims of a verified token."""

    sub: str
    role: Role
    jti: str
    typ: TokenType
    issued_at: datetime
    expires_at: datetime


def issue_token(settings: Settings, user: User, typ: TokenType) -> tuple[str, TokenClaims]:
    """A signed token of type ``typ`` for ``user``, and its claims."""
    now = utcnow().replace(microsecond=0)
    ttl = settings.access_token_ttl_s if typ == "access" else settings.refresh_token_ttl_s
    claims = TokenClaims(
        sub=user.user_id,
        role=user.role,
        jti=uuid.uuid4().hex,
        typ=typ,
        issued_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    payload = {
        "sub": claims.sub,
        "role": claims.role.value,
        "jti": claims.jti,
        "typ": claims.typ,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    return jwt.encode(payload, settings.jwt_secret, algorithm=ALGORITHM), claims


def decode_token(settings: Settings, token: str, typ: TokenType) -> TokenClaims:
    """Verify signature, algorithm, expiry, issuer, audience and type; raise ``AuthError``."""
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            options={"require": ["sub", "role", "jti", "typ", "iat", "exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError(TOKEN_EXPIRED_REASON) from None
    except jwt.InvalidTokenError:
        raise AuthError("Invalid token") from None
    if payload.get("typ") != typ:
        raise AuthError("Invalid token")
    try:
        role = Role(payload["role"])
    except ValueError:
        raise AuthError("Invalid token") from None
    return TokenClaims(
        sub=str(payload["sub"]),
        role=role,
        jti=str(payload["jti"]),
        typ=typ,
        issued_at=datetime.fromtimestamp(int(payload["iat"]), tz=utcnow().tzinfo),
        expires_at=datetime.fromtimestamp(int(payload["exp"]), tz=utcnow().tzinfo),
    )
