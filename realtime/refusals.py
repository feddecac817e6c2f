"""Why the realtime process refuses a client, once for every transport.

A ``Refusal`` is both the error the service raises and what a transport renders: a
WebSocket closes with ``close_code`` and ``message`` as the reason (or, for a
command subscribed by an action, sends an ``error`` event with ``code``), Server-Sent
Events answer ``status_code`` with the common error body, or end the stream with a
``close`` event. The table of docs/protocol.md is this module.
"""

from __future__ import annotations

import uuid
from typing import Any

from redis.exceptions import RedisError

from common.errors import AppError, AuthError
from common.events import MAX_POSITION
from common.protocol import CloseCode

__all__ = [
    "MAX_POSITION",
    "Refusal",
    "as_refusal",
    "parse_position",
    "valid_command_id",
    "valid_vehicle_id",
]


class Refusal(AppError):
    """A client refused: its close code, HTTP status, error code and reason."""

    def __init__(
        self, close_code: CloseCode, status_code: int, code: str, message: str, **details: Any
    ) -> None:
        super().__init__(message, **details)
        self.close_code = close_code
        self.status_code = status_code
        self.code = code

    def __repr__(self) -> str:
        return (
            f"Refusal({int(self.close_code)}, {self.status_code}, {self.code!r}, {self.message!r})"
        )

    # -- the vocabulary ---------------------------------------------------------------

    @classmethod
    def missing_token(cls) -> Refusal:
        return cls(CloseCode.POLICY_VIOLATION, 401, "unauthorized", "Missing token")

    @classmethod
    def bad_token(cls, message: str) -> Refusal:
        """Invalid, expired or revoked token, or an inactive user."""
        return cls(CloseCode.POLICY_VIOLATION, 401, "unauthorized", message)

    @classmethod
    def invalid_position(cls) -> Refusal:
        return cls(
            CloseCode.POLICY_VIOLATION,
            422,
            "invalid_position",
            f"since must be an integer from 0 to {MAX_POSITION}",
        )

    @classmethod
    def position_ahead(cls, last_seq: int) -> Refusal:
        return cls(
            CloseCode.POLICY_VIOLATION,
            422,
            "position_ahead",
            "since is beyond the command's last event",
            last_seq=last_seq,
        )

    @classmethod
    def command_not_found(cls) -> Refusal:
        return cls(CloseCode.COMMAND_NOT_FOUND, 404, "command_not_found", "Command not found")

    @classmethod
    def vehicle_not_found(cls) -> Refusal:
        return cls(CloseCode.COMMAND_NOT_FOUND, 404, "vehicle_not_found", "Vehicle not found")

    @classmethod
    def too_many_connections(cls) -> Refusal:
        return cls(
            CloseCode.TOO_MANY_CONNECTIONS,
            429,
            "too_many_connections",
            "Too many connections for this user",
        )

    @classmethod
    def too_many_subscriptions(cls, limit: int) -> Refusal:
        """A subscribe action past ``SOVD_WS_MAX_SUBSCRIPTIONS`` (an error event)."""
        return cls(
            CloseCode.POLICY_VIOLATION,
            429,
            "too_many_subscriptions",
            f"At most {limit} subscriptions per connection",
        )

    @classmethod
    def cannot_recover(cls, last_seq: int) -> Refusal:
        return cls(
            CloseCode.CANNOT_RECOVER,
            410,
            "cannot_recover",
            "Cannot recover: fetch state over REST",
            last_seq=last_seq,
        )

    @classmethod
    def unavailable(cls) -> Refusal:
        return cls(CloseCode.TRY_AGAIN_LATER, 503, "unavailable", "Event stream unavailable")

    @classmethod
    def going_away(cls) -> Refusal:
        return cls(CloseCode.GOING_AWAY, 503, "going_away", "Server shutting down: reconnect")

    @classmethod
    def internal(cls) -> Refusal:
        return cls(CloseCode.INTERNAL_ERROR, 500, "internal_error", "Internal error")

    @classmethod
    def session_revoked(cls) -> Refusal:
        """The token was revoked (logout) or the user deactivated, on an open connection."""
        return cls(CloseCode.SESSION_REVOKED, 401, "session_revoked", "Session revoked")

    @classmethod
    def idle(cls) -> Refusal:
        return cls(CloseCode.IDLE, 408, "idle", "No subscription: closed after the idle timeout")


def as_refusal(exc: BaseException) -> Refusal | None:
    """The refusal a failure means for the client (None: a fault the caller must log)."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, AuthError):
        return Refusal.bad_token(exc.message)
    if isinstance(exc, RedisError | OSError | TimeoutError):
        return Refusal.unavailable()
    return None


def parse_position(raw: str | int | None) -> int:
    """A client's ``since`` or ``Last-Event-ID``; raises ``Refusal.invalid_position``."""
    if raw is None or raw == "":
        return 0
    if isinstance(raw, int):
        value = raw
    elif raw.isascii() and raw.isdigit() and len(raw) <= 19:
        value = int(raw)
    else:
        raise Refusal.invalid_position()
    if not 0 <= value <= MAX_POSITION:
        raise Refusal.invalid_position()
    return value


def valid_vehicle_id(value: str | None) -> bool:
    """A vehicle id is a UUID too."""
    return valid_command_id(value)


def valid_command_id(value: str | None) -> bool:
    """A command id is a UUID; anything else cannot name a command."""
    try:
        uuid.UUID(value or "")
    except ValueError:
        return False
    return True
