"""WebSocket close codes: which mean "reconnect" and which mean "stop" (see docs/protocol.md).

Application codes follow one rule a client can apply without a table: 4000-4399 mean
reconnect (with back-off and ``since``), 4400-4499 mean do not reconnect until the
cause is fixed (new token, other command, REST fetch, fewer connections).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["RECONNECT_CODES", "CloseCode", "should_reconnect"]


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down, after a short drain: reconnect
    POLICY_VIOLATION = 1008  # missing, invalid or expired token, inactive user, bad since
    MESSAGE_TOO_BIG = 1009  # sent by the WebSocket stack for a client message over the limit
    INTERNAL_ERROR = 1011  # an unexpected server failure: reconnect with back-off
    SERVICE_RESTART = 1012  # uvicorn's own shutdown code, when the drain did not close first
    TRY_AGAIN_LATER = 1013  # Redis unavailable: reconnect with back-off
    SLOW_CONSUMER = 4008  # the client fell behind: reconnect with since=<last seq>
    RATE_LIMITED = 4029  # too many client messages: reconnect after a back-off, send fewer
    TOKEN_EXPIRED = 4401  # the token expired on an open connection: get a new one first
    SESSION_REVOKED = 4403  # logout, token revoked or user deactivated: log in again
    COMMAND_NOT_FOUND = 4404  # unknown command, or not visible to this user
    IDLE = 4408  # no subscription left for the idle timeout: open a new stream when needed
    CANNOT_RECOVER = 4410  # events after since are gone from the log: fetch over REST
    TOO_MANY_CONNECTIONS = 4429  # the user's open connections are at the limit


RECONNECT_CODES = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.TRY_AGAIN_LATER,
        CloseCode.SLOW_CONSUMER,
        CloseCode.RATE_LIMITED,
    }
)


def should_reconnect(code: int) -> bool:
    """Whether a client should reconnect on its own after ``code`` (1006 included)."""
    if 4000 <= code <= 4999:
        return code < 4400
    return code in RECONNECT_CODES or code == 1006
