"""Whether a client resuming after ``since`` can be brought up to date from the log."""

from __future__ import annotations

import pytest

from realtime.recovery import Recovery, decide_recovery


@pytest.mark.parametrize(
    ("since", "last_seq", "first_available", "expected"),
    [
        (0, 0, None, Recovery.OK),  # nothing happened yet
        (0, 5, 1, Recovery.OK),  # full replay
        (3, 5, 4, Recovery.OK),  # resume in the middle
        (5, 5, None, Recovery.OK),  # up to date
        (5, 4, 6, Recovery.OK),  # an event newer than event_seq read first
        (0, 5, 3, Recovery.LOST),  # the log was trimmed past the client
        (3, 9, 7, Recovery.LOST),
        (2, 5, None, Recovery.LOST),  # the log expired
        (0, 1, None, Recovery.LOST),
        (6, 5, None, Recovery.AHEAD),  # a position the command never reached
    ],
)
def test_recovery_decisions(
    since: int, last_seq: int, first_available: int | None, expected: Recovery
) -> None:
    assert decide_recovery(since=since, last_seq=last_seq, first_available=first_available) is (
        expected
    )
