"""When an open connection's credentials run out, and whether a refresh is accepted. Pure.

A connection lives on its access token: it is closed (4401) ``grace_s`` after the
token's expiry unless the client sends a new token of the same user first.
Times are epoch seconds (the token's ``exp`` is wall-clock time).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Refresh", "TokenLifetime"]


class Refresh(Enum):
    ACCEPTED = "accepted"
    OTHER_USER = "other_user"


class TokenLifetime:
    __slots__ = ("expires_at", "grace_s", "token_id", "user_id")

    def __init__(
        self, user_id: str, expires_at: float, *, grace_s: float, token_id: str = ""
    ) -> None:
        self.user_id = user_id
        self.expires_at = expires_at
        self.grace_s = grace_s
        #: The id (``jti``) of the token the connection lives on now: its revocation ends it.
        self.token_id = token_id

    @property
    def close_at(self) -> float:
        """The moment the connection must be closed if no refresh arrives."""
        return self.expires_at + self.grace_s

    def seconds_left(self, now: float) -> float:
        """Time until ``close_at``; zero or less means close now."""
        return self.close_at - now

    def refresh(self, user_id: str, expires_at: float, token_id: str = "") -> Refresh:
        """Adopt a new token (its expiry and id); a token of another user changes nothing."""
        if user_id != self.user_id:
            return Refresh.OTHER_USER
        self.expires_at = expires_at
        self.token_id = token_id
        return Refresh.ACCEPTED
