"""The pure bookkeeping of the relay's Redis channels: holds, sends and confirmations.

No I/O here; ``realtime.relay`` moves the bytes. The one invariant, checked after
every step by ``tests/unit/test_channels.py``:

    A channel is held by the relay (subscribed in Redis once the commands in flight
    are answered) exactly while at least one live hold needs it, and a pending
    confirmation belongs to the hold that waits for it.

How it holds:

- Every state change is synchronous: ``acquire``, ``release``, ``disconnected``,
  ``reconnected`` and ``answered`` never await, so a task cancelled at any await
  point of its caller cannot leave a half-made change behind. A hold that is
  released (its client left, or its acquire was cancelled) is forgotten in the same
  step, and with it its place among the waiters.
- What Redis should be told is derived, not remembered: ``take_sends`` compares
  each dirty channel's wanted state (it has holds) with the last command sent for
  it, so a hold taken and dropped before the sender ran costs no command at all.
- Redis answers the commands of one connection in order, so each channel keeps the
  commands sent on the current connection and not yet answered (``in_flight``). A
  ``subscribe`` answer that leaves nothing in flight confirms the channel and wakes
  its waiters; anything still in flight decides later. A dropped connection empties
  every ``in_flight``: the next connection subscribes every held channel again.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Answer", "ChannelBook", "Hold", "Sends"]

Op = Literal["subscribe", "unsubscribe"]


@dataclass(frozen=True, slots=True)
class Hold:
    """One subscription's claim on a channel; give it back with ``ChannelBook.release``."""

    channel: str
    hold_id: int


@dataclass(frozen=True, slots=True)
class Sends:
    """Commands to send on the Pub/Sub connection, in this order."""

    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.subscribe or self.unsubscribe)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one answer from Redis changed: the channel is now confirmed (``woken``
    holds may go on) or nothing yet."""

    confirmed: bool = False
    woken: tuple[Hold, ...] = ()


@dataclass(slots=True)
class _Channel:
    holds: set[int] = field(default_factory=set)
    #: Holds taken since the channel was last confirmed on this connection.
    waiting: set[int] = field(default_factory=set)
    #: Commands sent on the current connection and not yet answered, oldest first (a
    #: list: it holds one or two, and a deque costs ~760 bytes per channel).
    in_flight: list[Op] = field(default_factory=list)
    #: Redis answered our last command with ``subscribe`` (on this connection).
    subscribed: bool = False

    def last_sent_subscribe(self) -> bool:
        return self.in_flight[-1] == "subscribe" if self.in_flight else self.subscribed


class ChannelBook:
    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._dirty: set[str] = set()
        self._ids = itertools.count(1)
        self.connected = False

    def __len__(self) -> int:
        """Channels the relay still has business with (held, or an answer outstanding)."""
        return len(self._channels)

    def holds(self, channel: str) -> int:
        state = self._channels.get(channel)
        return len(state.holds) if state else 0

    def known_channels(self) -> set[str]:
        return set(self._channels)

    def held_channels(self) -> list[str]:
        return [name for name, state in self._channels.items() if state.holds]

    # -- holds ------------------------------------------------------------------------

    def acquire(self, channel: str) -> tuple[Hold, bool]:
        """Take a hold; True when it is confirmed already, else wait for an ``answered``
        that wakes it (or release it)."""
        state = self._channels.setdefault(channel, _Channel())
        hold = Hold(channel, next(self._ids))
        state.holds.add(hold.hold_id)
        ready = self.connected and state.subscribed and not state.in_flight
        if not ready:
            state.waiting.add(hold.hold_id)
            self._dirty.add(channel)
        return hold, ready

    def release(self, hold: Hold) -> None:
        """Give a hold back (idempotent); the last one makes the channel unsubscribe."""
        state = self._channels.get(hold.channel)
        if state is None or hold.hold_id not in state.holds:
            return
        state.holds.discard(hold.hold_id)
        state.waiting.discard(hold.hold_id)
        if not state.holds:
            self._dirty.add(hold.channel)
            self._forget_if_idle(hold.channel)

    def is_waiting(self, hold: Hold) -> bool:
        state = self._channels.get(hold.channel)
        return state is not None and hold.hold_id in state.waiting

    # -- the connection ---------------------------------------------------------------

    def take_sends(self) -> Sends:
        """The commands that bring Redis to the wanted state; call on a live connection
        and send them in order (subscribes, then unsubscribes)."""
        sends = Sends()
        if not self.connected:
            return sends
        dirty, self._dirty = self._dirty, set()
        for channel in sorted(dirty):
            state = self._channels.get(channel)
            if state is None:
                continue
            wanted = bool(state.holds)
            if wanted == state.last_sent_subscribe():
                continue
            op: Op = "subscribe" if wanted else "unsubscribe"
            state.in_flight.append(op)
            (sends.subscribe if wanted else sends.unsubscribe).append(channel)
        return sends

    def answered(self, channel: str, op: Op) -> Answer:
        """Redis answered one ``subscribe`` or ``unsubscribe`` command for ``channel``."""
        state = self._channels.get(channel)
        if state is None or not state.in_flight or state.in_flight[0] != op:
            return Answer()  # not ours (a channel the relay never asked for)
        del state.in_flight[0]
        if state.in_flight:
            return Answer()
        state.subscribed = op == "subscribe"
        if not state.subscribed:
            self._forget_if_idle(channel)
            return Answer()
        woken = tuple(Hold(channel, hold_id) for hold_id in sorted(state.waiting))
        state.waiting.clear()
        return Answer(confirmed=True, woken=woken)

    def disconnected(self) -> None:
        """The connection dropped: nothing in flight, nothing subscribed any more."""
        self.connected = False
        for channel in list(self._channels):
            state = self._channels[channel]
            state.in_flight.clear()
            state.subscribed = False
            self._forget_if_idle(channel)

    def reconnected(self) -> list[str]:
        """A new connection is up: every held channel must be subscribed again (returns
        them; their next confirmation is a resync point)."""
        self.connected = True
        held = self.held_channels()
        self._dirty.update(held)
        return held

    def has_sends(self) -> bool:
        return self.connected and bool(self._dirty)

    def _forget_if_idle(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is not None and not state.holds and not state.in_flight:
            if state.subscribed and self.connected:
                return  # still subscribed in Redis: the pending unsubscribe forgets it
            del self._channels[channel]
            self._dirty.discard(channel)
