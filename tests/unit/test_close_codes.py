"""Close codes split into "reconnect" and "do not reconnect"."""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from common.errors import AuthError
from common.protocol import TOKEN_EXPIRED_REASON, CloseCode, needs_new_token, should_reconnect
from common.settings import Settings
from common.tokens import decode_token, issue_token
from common.users import Role, User


@pytest.mark.parametrize(
    "code",
    [1001, 1006, 1011, 1012, 1013, CloseCode.SLOW_CONSUMER, CloseCode.RATE_LIMITED],
)
def test_these_codes_mean_reconnect(code: int) -> None:
    assert should_reconnect(code) is True


@pytest.mark.parametrize(
    "code",
    [
        1000,
        1008,
        1009,
        CloseCode.TOKEN_EXPIRED,
        CloseCode.COMMAND_NOT_FOUND,
        CloseCode.CANNOT_RECOVER,
        CloseCode.TOO_MANY_CONNECTIONS,
    ],
)
def test_these_codes_mean_do_not_reconnect(code: int) -> None:
    assert should_reconnect(code) is False


def test_application_codes_follow_the_range_rule() -> None:
    for code in CloseCode:
        if code >= 4000:
            assert should_reconnect(code) is (code < 4400), code


@pytest.mark.parametrize(
    ("code", "reason", "refresh"),
    [
        (CloseCode.TOKEN_EXPIRED, "Token expired", True),
        (CloseCode.POLICY_VIOLATION, "Token expired", True),  # expired just before connecting
        (CloseCode.POLICY_VIOLATION, "Invalid token", False),
        (CloseCode.POLICY_VIOLATION, "Token revoked", False),
        (CloseCode.SESSION_REVOKED, "Session revoked", False),
        (CloseCode.TRY_AGAIN_LATER, "Token expired", False),
    ],
)
def test_only_an_expired_token_is_cured_by_a_refresh(code: int, reason: str, refresh: bool) -> None:
    assert needs_new_token(code, reason) is refresh


def test_the_server_refuses_an_expired_token_with_the_reason_clients_look_for(
    settings: Settings,
) -> None:
    with freeze_time("2020-01-01T00:00:00Z"):
        token, _ = issue_token(settings, _user(), "access")
    with pytest.raises(AuthError) as refused:
        decode_token(settings, token, "access")
    assert refused.value.message == TOKEN_EXPIRED_REASON


def _user() -> User:
    return User(user_id="u1", username="alice", role=Role.ENGINEER, password_hash="x")
