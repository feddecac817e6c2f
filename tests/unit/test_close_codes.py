"""Close codes split into "reconnect" and "do not reconnect"."""

from __future__ import annotations

import pytest

from common.protocol import CloseCode, should_reconnect


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
