"""The pure core of the relay: who is subscribed to what, and which event goes where.

No I/O here. A ``Subscription`` binds one client to one command. It starts in
*replaying* mode: live events that arrive while the client's backlog is read from
the log are buffered, then the backlog and the buffer are delivered in ``seq``
order, dropping anything at or below the last position delivered. Events
therefore reach each client exactly once and in order, however live and replayed
events interleave.

A long replay is delivered step by step (``replay``, ``take_pending``, ``go_live``)
so the caller can wait for the client between steps. The live buffer is bounded:
past ``max_pending`` it is emptied and the subscription marked ``truncated``; every
live event is also in the log, so the caller reads the log again instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from realtime.channels import Hold

__all__ = ["Hub", "HubStats", "Subscription"]

#: Sends one event's JSON text to the client; returns False when the client cannot keep up.
Sink = Callable[[str], bool]


@dataclass(eq=False, slots=True)
class Subscription:
    """One client following one command."""

    command_id: str
    sink: Sink
    last_seq: int = 0
    #: The connection it belongs to (lets a failed resync find whom to tell).
    connection_id: str = ""
    replaying: bool = True
    pending: list[tuple[int, str]] = field(default_factory=list)
    #: The live buffer overflowed since the caller last cleared this: re-read the log.
    truncated: bool = False
    overflowed: bool = False
    #: Its claim on the command's Redis channel, once the relay confirmed it.
    hold: Hold | None = None
    #: Its subscribe finished and it was kept (not refused while being set up).
    followed: bool = False

    def _offer(self, seq: int, data: str) -> int:
        """Deliver if new; return 1 when delivered, 0 when it was a duplicate."""
        if seq <= self.last_seq:
            return 0
        self.last_seq = seq
        if not self.overflowed and not self.sink(data):
            self.overflowed = True
        return 1


@dataclass
class HubStats:
    delivered: int = 0
    replayed: int = 0
    duplicates: int = 0


class Hub:
    """The registry of subscriptions by command, and the routing of events to them."""

    def __init__(self, *, max_pending: int = 1000) -> None:
        self._by_command: dict[str, set[Subscription]] = {}
        self._max_pending = max_pending
        self.stats = HubStats()

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_command.values())

    def commands(self) -> list[str]:
        """Commands with at least one subscription (their channels must be subscribed)."""
        return list(self._by_command)

    def subscriptions(self, command_id: str) -> frozenset[Subscription]:
        return frozenset(self._by_command.get(command_id, ()))

    def add(self, subscription: Subscription) -> bool:
        """Register; return True when it is the command's first (subscribe its channel)."""
        subs = self._by_command.setdefault(subscription.command_id, set())
        subs.add(subscription)
        return len(subs) == 1

    def remove(self, subscription: Subscription) -> bool:
        """Unregister; return True when it was the command's last (unsubscribe its channel)."""
        subs = self._by_command.get(subscription.command_id)
        if subs is None or subscription not in subs:
            return False
        subs.discard(subscription)
        if subs:
            return False
        del self._by_command[subscription.command_id]
        return True

    def publish(self, command_id: str, seq: int, data: str) -> list[Subscription]:
        """Route one live event to every subscription of its command.

        Returns the subscriptions that found a gap (an event before this one never
        arrived): they are back in replaying mode, and the caller must read the log
        after their ``last_seq`` and call ``finish_replay``.
        """
        gaps = []
        for sub in self._by_command.get(command_id, ()):
            if sub.replaying:
                self._buffer(sub, seq, data)
            elif seq > sub.last_seq + 1:
                sub.replaying = True
                self._buffer(sub, seq, data)
                gaps.append(sub)
            elif sub._offer(seq, data):
                self.stats.delivered += 1
            else:
                self.stats.duplicates += 1
        return gaps

    def _buffer(self, sub: Subscription, seq: int, data: str) -> None:
        if len(sub.pending) >= self._max_pending:
            sub.pending.clear()
            sub.truncated = True
        sub.pending.append((seq, data))

    def begin_replay(self, subscription: Subscription) -> None:
        """Buffer live events again, e.g. while re-reading the log after a Redis outage."""
        subscription.replaying = True

    def mark_stale(self, subscription: Subscription) -> bool:
        """Live events may have been missed (the Pub/Sub connection was lost). A replay
        in progress reads the log once more before it goes live (False: the caller does
        nothing); a live subscription buffers again and the caller must read the log after
        its position (True). So one subscription never runs two replays at once."""
        if subscription.replaying:
            subscription.truncated = True
            return False
        subscription.replaying = True
        return True

    def replay(
        self, subscription: Subscription, entries: Iterable[tuple[int, str]], *, live: bool = False
    ) -> None:
        """Deliver events read from the log (or taken from the live buffer, ``live``)."""
        for seq, data in entries:
            if not subscription._offer(seq, data):
                self.stats.duplicates += 1
            elif live:
                self.stats.delivered += 1
            else:
                self.stats.replayed += 1

    def take_pending(self, subscription: Subscription) -> list[tuple[int, str]]:
        """The live events buffered so far, in ``seq`` order; the buffer starts again empty."""
        pending = sorted(subscription.pending, key=lambda item: item[0])
        subscription.pending.clear()
        return pending

    def go_live(self, subscription: Subscription) -> bool:
        """Switch to live delivery if nothing is buffered; False means take_pending again."""
        if subscription.pending:
            return False
        subscription.replaying = False
        return True

    def finish_replay(self, subscription: Subscription, backlog: Iterable[tuple[int, str]]) -> None:
        """Deliver the backlog read from the log, then the live events buffered meanwhile."""
        self.replay(subscription, backlog)
        self.replay(subscription, self.take_pending(subscription), live=True)
        self.go_live(subscription)
