"""UTC timestamps: one clock, one format (ISO 8601 with a ``Z``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["as_utc", "epoch_ms", "isoformat", "utcnow"]

#: Largest epoch milliseconds a Redis stream id or score takes from us (year ~2262).
MAX_EPOCH_MS = 2**63 // 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (frozen by freezegun in tests)."""
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """``2026-11-26T10:00:00.123456Z``: ISO 8601, UTC, microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive value is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, clamped to ``[0, MAX_EPOCH_MS]`` (Redis id range)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH  # no conversion: year 9999 at -05:00 does not overflow
    millis = delta // timedelta(milliseconds=1)
    return min(max(millis, 0), MAX_EPOCH_MS)
