"""A client's outgoing queue: bounded by count and bytes, never refusing an empty queue."""

from __future__ import annotations

import pytest

from realtime.outbox import Outbox, encoded_size


def test_events_come_out_in_order_with_their_stamps() -> None:
    box = Outbox(max_events=10, max_bytes=1000)
    box.offer("a", 1.0)
    box.offer("b", 2.0)

    assert [box.take(), box.take(), box.take()] == [("a", 1.0), ("b", 2.0), None]
    assert (len(box), box.bytes) == (0, 0)


def test_the_count_limit_refuses_the_event_past_it() -> None:
    box = Outbox(max_events=2, max_bytes=1000)

    assert [box.offer("x", 0.0) for _ in range(3)] == [True, True, False]
    assert len(box) == 2


def test_the_byte_limit_refuses_an_event_that_would_pass_it() -> None:
    box = Outbox(max_events=100, max_bytes=10)

    assert box.offer("12345", 0.0) is True
    assert box.offer("123456", 0.0) is False
    assert box.offer("12345", 0.0) is True
    assert (len(box), box.bytes) == (2, 10)


def test_an_empty_queue_accepts_one_event_larger_than_the_byte_limit() -> None:
    box = Outbox(max_events=5, max_bytes=4)

    assert box.offer("too large", 0.0) is True
    assert box.offer("x", 0.0) is False


def test_peaks_record_the_most_ever_held() -> None:
    box = Outbox(max_events=3, max_bytes=100)
    for item in ("aa", "bb", "cc", "dd"):
        box.offer(item, 0.0)
    box.take()
    box.take()

    assert (box.peak_events, box.peak_bytes) == (3, 6)
    assert (len(box), box.bytes) == (1, 2)


def test_bytes_are_counted_as_utf8() -> None:
    assert encoded_size('{"a":1}') == 7
    assert encoded_size('{"name":"Kühler"}') == 18


def test_clear_empties_the_queue() -> None:
    box = Outbox(max_events=3, max_bytes=100)
    box.offer("abc", 0.0)

    box.clear()

    assert (len(box), box.bytes, box.take()) == (0, 0, None)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Outbox(max_events=0, max_bytes=1)


def test_fits_tells_whether_an_offer_would_be_accepted() -> None:
    box = Outbox(max_events=2, max_bytes=10)
    assert box.fits("x" * 50) is True  # empty: anything fits
    box.offer("12345", 0.0)

    assert box.fits("123456") is False
    assert box.fits("12345") is True
    box.offer("12345", 0.0)
    assert box.fits("") is False


def test_half_empty_is_judged_by_both_bounds() -> None:
    box = Outbox(max_events=4, max_bytes=100)
    box.offer("a", 0.0)
    box.offer("b", 0.0)
    assert box.half_empty() is True
    box.offer("c", 0.0)
    assert box.half_empty() is False

    big = Outbox(max_events=100, max_bytes=10)
    big.offer("123456", 0.0)
    assert big.half_empty() is False


def test_an_empty_queue_holds_no_deque() -> None:
    """An idle client's queue costs no deque: it exists only while something waits."""
    box = Outbox(max_events=10, max_bytes=1000)
    assert box._items is None
    assert box.offer("a", 1.0) is True
    assert box.take() == ("a", 1.0)
    assert box._items is None
    assert box.offer("b", 2.0) is True
    box.clear()
    assert box._items is None
    assert len(box) == 0


def test_a_paced_producer_fills_three_quarters_of_either_bound() -> None:
    """What a replay leaves free is room for live events and the client's answers."""
    box = Outbox(max_events=8, max_bytes=1000)
    assert box.paced_fits("x" * 5000) is True  # empty: anything fits
    for _ in range(6):
        assert box.paced_fits("abc") is True
        box.offer("abc", 0.0)
    assert box.paced_fits("abc") is False
    assert box.fits("abc") is True  # an answer still fits

    by_bytes = Outbox(max_events=100, max_bytes=100)
    by_bytes.offer("x" * 70, 0.0)
    assert by_bytes.paced_fits("x" * 6) is False
    assert by_bytes.paced_fits("x" * 5) is True
    assert by_bytes.fits("x" * 30) is True

    one = Outbox(max_events=1, max_bytes=1)
    assert one.paced_fits("abc") is True  # a bound of one still lets a replay through
