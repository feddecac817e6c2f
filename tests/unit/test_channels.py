"""The relay's channel bookkeeping under any interleaving of holds, answers and outages.

A stateful property test drives ``ChannelBook`` against a model of one Redis Pub/Sub
connection (commands answered in order, forgotten when the connection drops) and
checks the invariant after every step: a channel is held exactly while a live hold
needs it, and a pending confirmation belongs to the hold that waits for it.
"""

from __future__ import annotations

import copy
from collections import deque

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from realtime.channels import ChannelBook, Hold

CHANNELS = ["response:a", "response:b", "response:c"]


class RedisConnectionModel:
    """What the Redis server knows of one Pub/Sub connection."""

    def __init__(self) -> None:
        self.subscribed: set[str] = set()
        #: Answers not yet read by the client, in order.
        self.answers: deque[tuple[str, str]] = deque()

    def receive(self, op: str, channel: str) -> None:
        if op == "subscribe":
            self.subscribed.add(channel)
        else:
            self.subscribed.discard(channel)
        self.answers.append((channel, op))


class ChannelBookMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = ChannelBook()
        self.redis: RedisConnectionModel | None = None
        #: Holds whose acquire is still waiting (may be cancelled), and confirmed ones.
        self.waiting: list[Hold] = []
        self.live: list[Hold] = []
        self.woken: set[Hold] = set()
        self.released: set[Hold] = set()
        self.reconnect()

    # -- what clients do --------------------------------------------------------------

    @rule(channel=st.sampled_from(CHANNELS))
    def acquire(self, channel: str) -> None:
        hold, ready = self.book.acquire(channel)
        (self.live if ready else self.waiting).append(hold)

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def cancel_a_waiting_acquire(self, data: st.DataObject) -> None:
        hold = data.draw(st.sampled_from(self.waiting))
        self.waiting.remove(hold)
        self.book.release(hold)
        self.released.add(hold)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        hold = data.draw(st.sampled_from(self.live))
        self.live.remove(hold)
        self.book.release(hold)
        self.released.add(hold)

    @precondition(lambda self: self.released)
    @rule(data=st.data())
    def release_twice(self, data: st.DataObject) -> None:
        """A second release of the same hold changes nothing."""
        hold = data.draw(st.sampled_from(sorted(self.released, key=lambda h: h.hold_id)))
        before = self.book.holds(hold.channel)
        self.book.release(hold)
        assert self.book.holds(hold.channel) == before

    # -- what the sender and Redis do -------------------------------------------------

    @precondition(lambda self: self.redis is not None)
    @rule()
    def send(self) -> None:
        assert self.redis is not None
        sends = self.book.take_sends()
        for channel in sends.subscribe:
            self.redis.receive("subscribe", channel)
        for channel in sends.unsubscribe:
            self.redis.receive("unsubscribe", channel)

    @precondition(lambda self: self.redis is not None and self.redis.answers)
    @rule()
    def confirm(self) -> None:
        assert self.redis is not None
        channel, op = self.redis.answers.popleft()
        answer = self.book.answered(channel, op)  # type: ignore[arg-type] # op is one of the two
        for hold in answer.woken:
            assert hold in self.waiting, "only a waiting hold is woken"
            assert hold.channel == channel
            self.waiting.remove(hold)
            self.live.append(hold)
            self.woken.add(hold)
        if answer.confirmed:
            assert channel in self.redis.subscribed

    @rule()
    def stray_answer(self) -> None:
        """An answer for a channel the relay never asked for changes nothing."""
        assert not self.book.answered("response:unknown", "subscribe").confirmed

    @precondition(lambda self: self.redis is not None)
    @rule()
    def disconnect(self) -> None:
        self.redis = None
        self.book.disconnected()

    @precondition(lambda self: self.redis is None)
    @rule()
    def reconnect(self) -> None:
        self.redis = RedisConnectionModel()
        self.book.reconnected()

    # -- the invariant ----------------------------------------------------------------

    @invariant()
    def holds_match_the_live_clients(self) -> None:
        for channel in CHANNELS:
            expected = sum(1 for h in self.waiting + self.live if h.channel == channel)
            assert self.book.holds(channel) == expected

    @invariant()
    def a_pending_confirmation_belongs_to_a_waiting_hold(self) -> None:
        for hold in self.waiting:
            assert self.book.is_waiting(hold)
        for hold in self.live + sorted(self.released, key=lambda h: h.hold_id):
            assert not self.book.is_waiting(hold)

    @invariant()
    def a_channel_is_known_exactly_while_it_has_business(self) -> None:
        """Held by a client, or subscribed in Redis, or a command for it unanswered."""
        expected = {h.channel for h in self.waiting + self.live}
        if self.redis is not None:
            expected |= self.redis.subscribed | {c for c, _ in self.redis.answers}
        assert self.book.known_channels() == expected

    @invariant()
    def once_settled_redis_holds_exactly_the_needed_channels(self) -> None:
        """From any state, sending and answering everything leaves Redis subscribed to
        exactly the channels live holds need, and wakes every waiting hold."""
        if self.redis is None:
            return
        book, redis_ = copy.deepcopy((self.book, self.redis))
        woken: set[Hold] = set()
        for _ in range(3):
            sends = book.take_sends()
            for channel in sends.subscribe:
                redis_.receive("subscribe", channel)
            for channel in sends.unsubscribe:
                redis_.receive("unsubscribe", channel)
            while redis_.answers:
                channel, op = redis_.answers.popleft()
                woken.update(book.answered(channel, op).woken)  # type: ignore[arg-type]
        assert redis_.subscribed == {h.channel for h in self.waiting + self.live}
        assert woken == set(self.waiting)

    def teardown(self) -> None:
        """Drain: send and answer everything; Redis then holds exactly the held channels,
        every waiting hold is confirmed, and with no client left nothing remains."""
        if self.redis is None:
            self.reconnect()
        assert self.redis is not None
        for _ in range(10):
            self.send()
            while self.redis.answers:
                self.confirm()
        wanted = {h.channel for h in self.live + self.waiting}
        assert self.redis.subscribed == wanted
        assert not self.waiting
        for hold in list(self.live):
            self.book.release(hold)
        self.live.clear()
        self.send()
        while self.redis.answers:
            self.confirm()
        assert self.redis.subscribed == set()
        assert len(self.book) == 0


TestChannelBook = ChannelBookMachine.TestCase
TestChannelBook.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_a_hold_taken_and_dropped_before_the_sender_runs_sends_nothing() -> None:
    book = ChannelBook()
    book.reconnected()
    hold, ready = book.acquire("response:a")
    assert ready is False
    book.release(hold)
    assert not book.take_sends()
    assert len(book) == 0


def test_a_cancelled_first_acquire_does_not_block_the_next_one() -> None:
    """The defect this module exists for: a client that leaves before the confirmation
    must not leave a stale pending confirmation for the next client."""
    book = ChannelBook()
    book.reconnected()
    first, _ = book.acquire("response:a")
    assert book.take_sends().subscribe == ["response:a"]
    book.release(first)  # the viewer closed at once
    assert book.take_sends().unsubscribe == ["response:a"]
    second, ready = book.acquire("response:a")  # the owner follows
    assert ready is False
    assert book.take_sends().subscribe == ["response:a"]
    assert book.answered("response:a", "subscribe").woken == ()
    assert book.answered("response:a", "unsubscribe").woken == ()
    answer = book.answered("response:a", "subscribe")
    assert answer.confirmed
    assert answer.woken == (second,)
