"""Revocations and deactivations, pushed to every process that holds a session open.

Whoever revokes an access token or deactivates a user publishes an ``AuthEvent`` on
``Keys.auth_events`` in the same pipeline as the write that makes it true, so a
process that caches users or revocations (api) and a process that holds open
streams (realtime) can act on it at once instead of at the token's expiry. The
write is the truth and the event only a hint: a process that missed it (a dropped
Pub/Sub connection) must fall back to reading the write.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["AuthEvent", "AuthEventKind"]

AuthEventKind = Literal["token_revoked", "user_deactivated"]


class AuthEvent(BaseModel):
    """One change that ends sessions: a revoked token (``jti``) or a deactivated user."""

    model_config = ConfigDict(extra="ignore")

    kind: AuthEventKind
    user_id: str
    #: The revoked access token's id (``token_revoked`` only).
    jti: str | None = None
