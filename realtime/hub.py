"""The pure core of the relay: who is subscribed to what, and which event goes where.

No I/O here. A ``Subscription`` binds one client to one command. It starts in
*replaying* mode: live events that arrive while the client's backlog is read from
the log are buffered, then ``finish_replay`` delivers the backlog and the buffer in
``seq`` order, dropping anything at or below the last position delivered. Events
therefore reach each client exactly once and in order, however live and replayed
events interleave.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["Hub", "HubStats", "Subscription"]

#: Sends one event's JSON text to the client; returns False when the client cannot keep up.
Sink = Callable[[str], bool]


@dataclass(eq=False)
class Subscription:
    """One client following one command."""

    command_id: str
    sink: Sink
    last_seq: int = 0
    replaying: bool = True
    pending: list[tuple[int, str]] = field(default_factory=list)
    overflowed: bool = False

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

    def __init__(self) -> None:
        self._by_command: dict[str, set[Subscription]] = {}
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
                sub.pending.append((seq, data))
            elif seq > sub.last_seq + 1:
                sub.replaying = True
                sub.pending.append((seq, data))
                gaps.append(sub)
            elif sub._offer(seq, data):
                self.stats.delivered += 1
            else:
                self.stats.duplicates += 1
        return gaps

    def begin_replay(self, subscription: Subscription) -> None:
        """Buffer live events again, e.g. while re-reading the log after a Redis outage."""
        subscription.replaying = True

    def finish_replay(self, subscription: Subscription, backlog: Iterable[tuple[int, str]]) -> None:
        """Deliver the backlog read from the log, then the live events buffered meanwhile."""
        for seq, data in backlog:
            if subscription._offer(seq, data):
                self.stats.replayed += 1
            else:
                self.stats.duplicates += 1
        for seq, data in sorted(subscription.pending, key=lambda item: item[0]):
            if subscription._offer(seq, data):
                self.stats.delivered += 1
            else:
                self.stats.duplicates += 1
        subscription.pending.clear()
        subscription.replaying = False
