"""JWT access and refresh tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from freezegun import freeze_time

from common.errors import AuthError
from common.settings import Settings
from common.tokens import ALGORITHM, decode_token, issue_token
from common.users import Role, User

SECRET = "x" * 40
#: HS512 wants a key of at least 64 bytes (PyJWT warns otherwise, and warnings are errors).
LONG_SECRET = "y" * 64
NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


def _settings(**overrides: Any) -> Settings:
    fields: dict[str, Any] = {"jwt_secret": SECRET}
    fields.update(overrides)
    return Settings(_env_file=None, **fields)


USER = User(
    user_id="4d1c7a0e-user",
    username="engineer",
    role=Role.ENGINEER,
    password_hash="scrypt$unused",
)


def _payload(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Claims of a valid access token issued at ``NOW``."""
    payload: dict[str, Any] = {
        "sub": USER.user_id,
        "role": "engineer",
        "jti": "0123456789abcdef",
        "typ": "access",
        "iat": NOW,
        "exp": NOW + timedelta(seconds=settings.access_token_ttl_s),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    payload.update(overrides)
    return payload


@freeze_time(NOW)
def test_an_access_token_decodes_to_the_claims_it_was_issued_with() -> None:
    settings = _settings()

    token, claims = issue_token(settings, USER, "access")
    decoded = decode_token(settings, token, "access")

    assert decoded == claims
    assert (decoded.sub, decoded.role, decoded.typ) == (USER.user_id, Role.ENGINEER, "access")
    assert decoded.issued_at == NOW
    assert decoded.expires_at == NOW + timedelta(seconds=900)


@freeze_time(NOW)
def test_a_refresh_token_lives_for_the_refresh_ttl() -> None:
    settings = _settings(refresh_token_ttl_s=3600)

    token, _ = issue_token(settings, USER, "refresh")
    decoded = decode_token(settings, token, "refresh")

    assert decoded.typ == "refresh"
    assert decoded.expires_at == NOW + timedelta(seconds=3600)


def test_each_token_has_its_own_id() -> None:
    settings = _settings()

    _, first = issue_token(settings, USER, "access")
    _, second = issue_token(settings, USER, "access")

    assert first.jti != second.jti


def test_the_token_header_names_hs256() -> None:
    token, _ = issue_token(_settings(), USER, "access")

    assert jwt.get_unverified_header(token)["alg"] == ALGORITHM == "HS256"


def test_an_access_token_is_accepted_until_its_last_second() -> None:
    settings = _settings(access_token_ttl_s=60)
    with freeze_time(NOW) as frozen:
        token, _ = issue_token(settings, USER, "access")
        frozen.tick(timedelta(seconds=59))

        assert decode_token(settings, token, "access").sub == USER.user_id


def test_an_expired_access_token_is_refused() -> None:
    settings = _settings(access_token_ttl_s=60)
    with freeze_time(NOW) as frozen:
        token, _ = issue_token(settings, USER, "access")
        frozen.tick(timedelta(seconds=settings.access_token_ttl_s + 1))

        with pytest.raises(AuthError, match="Token expired"):
            decode_token(settings, token, "access")


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token, _ = issue_token(_settings(jwt_secret="z" * 40), USER, "access")

    with pytest.raises(AuthError, match="Invalid token"):
        decode_token(_settings(), token, "access")


def test_a_token_for_another_audience_is_refused() -> None:
    token, _ = issue_token(_settings(jwt_audience="other-clients"), USER, "access")

    with pytest.raises(AuthError, match="Invalid token"):
        decode_token(_settings(), token, "access")


def test_a_token_from_another_issuer_is_refused() -> None:
    token, _ = issue_token(_settings(jwt_issuer="someone-else"), USER, "access")

    with pytest.raises(AuthError, match="Invalid token"):
        decode_token(_settings(), token, "access")


def test_a_refresh_token_is_refused_as_an_access_token() -> None:
    settings = _settings()
    token, _ = issue_token(settings, USER, "refresh")

    with pytest.raises(AuthError, match="Invalid token"):
        decode_token(settings, token, "access")


def test_an_access_token_is_refused_as_a_refresh_token() -> None:
    settings = _settings()
    token, _ = issue_token(settings, USER, "access")

    with pytest.raises(AuthError, match="Invalid token"):
        decode_token(settings, token, "refresh")


@freeze_time(NOW)
def test_an_unsigned_alg_none_token_is_refused() -> None:
    settings = _settings()
    token = jwt.encode(_payload(settings), None, algorithm="none")

    with pytest.raises(AuthError, match="Invalid token"):
        decode_token(settings, token, "access")


@freeze_time(NOW)
def test_an_hs512_token_signed_with_the_right_secret_is_refused() -> None:
    settings = _settings(jwt_secret=LONG_SECRET)
    token = jwt.encode(_payload(settings), LONG_SECRET, algorithm="HS512")

    with pytest.raises(AuthError, match="Invalid token"):
        decode_token(settings, token, "access")


@freeze_time(NOW)
def test_a_hand_made_hs256_token_with_every_claim_is_accepted() -> None:
    """The control for the tests that change one claim or the algorithm."""
    settings = _settings()
    token = jwt.encode(_payload(settings), SECRET, algorithm="HS256")

    assert decode_token(settings, token, "access").jti == "0123456789abcdef"


@freeze_time(NOW)
def test_a_token_with_an_unknown_role_is_refused() -> None:
    settings = _settings()
    token = jwt.encode(_payload(settings, role="superuser"), SECRET, algorithm="HS256")

    with pytest.raises(AuthError, match="Invalid token"):
        decode_token(settings, token, "access")


@freeze_time(NOW)
@pytest.mark.parametrize("claim", ["sub", "role", "jti", "typ", "iat", "exp", "iss", "aud"])
def test_a_token_missing_a_required_claim_is_refused(claim: str) -> None:
    settings = _settings()
    payload = _payload(settings)
    del payload[claim]
    token = jwt.encode(payload, SECRET, algorithm="HS256")

    with pytest.raises(AuthError):
        decode_token(settings, token, "access")


def test_garbage_is_refused() -> None:
    with pytest.raises(AuthError, match="Invalid token"):
        decode_token(_settings(), "not.a.jwt", "access")
