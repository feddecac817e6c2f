"""The root exception of the service and its leaves, each carrying what a handler needs."""

from __future__ import annotations

__all__ = [
    "AppError",
    "AuthError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "RateLimitedError",
    "ServiceUnavailableError",
]


class AppError(Exception):
    """Base of every error the service raises on purpose. ``status_code`` maps it to HTTP."""

    status_code = 500
    #: Stable machine-readable name, the ``error.code`` of the HTTP error body.
    code = "internal_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        #: Extra fields for the client (e.g. the command that blocks this one).
        self.details = details


class AuthError(AppError):
    """Missing, invalid, expired or revoked credentials."""

    status_code = 401
    code = "unauthorized"


class ForbiddenError(AppError):
    """Authenticated, but the role does not allow it."""

    status_code = 403
    code = "forbidden"


class NotFoundError(AppError):
    """The resource does not exist, or the caller may not know that it does."""

    status_code = 404
    code = "not_found"


class ConflictError(AppError):
    """The request conflicts with the resource's current state."""

    status_code = 409
    code = "conflict"


class ServiceUnavailableError(AppError):
    """A dependency (Redis, the broker) is unreachable; the client may retry."""

    status_code = 503
    code = "unavailable"


class RateLimitedError(AppError):
    """Too many requests; ``retry_after_s`` tells when to try again."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
