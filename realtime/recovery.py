"""Can a client that saw everything up to ``since`` be brought up to date? Pure.

The log is a Stream trimmed from the front (``MAXLEN ~``) and expiring after the
command's last event; the command's hash keeps ``event_seq``, the latest position,
for good. The caller reads ``event_seq`` *first* and the log after ``since``
second, so the log it reads holds at least every event up to that ``event_seq``.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Recovery", "decide_recovery"]


class Recovery(Enum):
    #: The log holds every event after ``since``: replay it.
    OK = "ok"
    #: Events after ``since`` are gone from the log (trimmed or expired): the client must
    #: fetch the command over REST and follow it again from ``last_seq``.
    LOST = "lost"
    #: ``since`` is past the command's last event: a client error.
    AHEAD = "ahead"


def decide_recovery(*, since: int, last_seq: int, first_available: int | None) -> Recovery:
    """Decide from ``since``, the command's ``event_seq`` (read first) and the first
    ``seq`` the log returned after ``since`` (``None`` when it returned nothing)."""
    if first_available is not None:
        return Recovery.OK if first_available == since + 1 else Recovery.LOST
    if since > last_seq:
        return Recovery.AHEAD
    return Recovery.OK if since == last_seq else Recovery.LOST
