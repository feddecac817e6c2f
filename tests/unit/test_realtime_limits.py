"""Client limits as plain decisions: the message token bucket and connections per user."""

from __future__ import annotations

import pytest

from realtime.limits import ConnectionCounter, TokenBucket


def test_a_bucket_allows_a_full_burst_at_once_then_refuses() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=3, now=0.0)

    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]


def test_a_bucket_refills_at_its_rate_up_to_the_burst() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=2, now=0.0)
    assert [bucket.allow(0.0) for _ in range(3)] == [True, True, False]

    assert bucket.allow(0.5) is True  # one token back after half a second at 2/s
    assert bucket.allow(0.5) is False
    assert [bucket.allow(100.0) for _ in range(3)] == [True, True, False]  # capped at burst


def test_a_client_at_its_sustained_rate_is_never_refused() -> None:
    bucket = TokenBucket(rate_per_s=8.0, burst=1, now=0.0)

    assert all(bucket.allow(n / 8) for n in range(1, 200))


def test_a_clock_going_backwards_adds_no_tokens() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=1, now=10.0)
    assert bucket.allow(10.0) is True

    assert bucket.allow(5.0) is False


def test_a_bucket_needs_a_positive_rate_and_burst() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBucket(rate_per_s=0, burst=1, now=0.0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate_per_s=1, burst=0, now=0.0)


def test_connections_are_counted_per_user_up_to_the_limit() -> None:
    counter = ConnectionCounter(limit=2)

    assert [counter.acquire("alice") for _ in range(3)] == [True, True, False]
    assert counter.acquire("bob") is True
    assert (counter.count("alice"), counter.count("bob")) == (2, 1)


def test_a_released_connection_frees_a_place() -> None:
    counter = ConnectionCounter(limit=1)
    assert counter.acquire("alice") is True

    counter.release("alice")

    assert counter.count("alice") == 0
    assert counter.acquire("alice") is True


def test_releasing_more_than_acquired_never_goes_negative() -> None:
    counter = ConnectionCounter(limit=1)

    counter.release("alice")

    assert counter.count("alice") == 0
    assert counter.acquire("alice") is True
