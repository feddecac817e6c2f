"""UTC timestamps: one clock, one format (ISO 8601 with a ``Z``)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["isoformat", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (frozen by freezegun in tests)."""
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """``2026-11-26T10:00:00.123456Z``: ISO 8601, UTC, microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
