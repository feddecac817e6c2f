"""WebSocket close codes: which mean "reconnect" and which mean "stop" (see docs/protocol.md)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["RECONNECT_CODES", "CloseCode"]


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down: reconnect
    POLICY_VIOLATION = 1008  # missing, invalid or expired token, inactive user: do not reconnect
    INTERNAL_ERROR = 1011  # reconnect with back-off
    TRY_AGAIN_LATER = 1013  # Redis unavailable: reconnect with back-off
    SLOW_CONSUMER = 4008  # the client fell behind: reconnect with ?since=<last seq>
    COMMAND_NOT_FOUND = 4404  # unknown command, or not visible to this user: do not reconnect


RECONNECT_CODES = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.INTERNAL_ERROR,
        CloseCode.TRY_AGAIN_LATER,
        CloseCode.SLOW_CONSUMER,
    }
)
