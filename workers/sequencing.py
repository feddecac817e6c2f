"""Answer parts back in order by their sequence number: duplicates dropped, gaps held.

A transport that numbers the parts of an answer (gRPC's ``sequence_number``, counted
from 0) may deliver one twice (a gateway relaying an at-least-once link) or out of
order. ``PartSequencer`` releases parts strictly in order, each once; a part that
arrives early waits until the gap before it closes. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["DEFAULT_MAX_HELD_PARTS", "PartSequencer", "SequenceError"]

T = TypeVar("T")

#: Parts held while waiting for an earlier one; more means the gap will not close.
DEFAULT_MAX_HELD_PARTS = 256


class SequenceError(Exception):
    """The numbering cannot be a valid answer (negative, past the final part, too many
    parts waiting for a gap)."""


class PartSequencer(Generic[T]):
    """Feed parts with ``accept``; it returns those now ready, in order.

    ``done`` is true once the final part was released; ``missing`` names the numbers
    still awaited while parts after them are held.
    """

    def __init__(self, *, max_held: int = DEFAULT_MAX_HELD_PARTS) -> None:
        self._max_held = max_held
        self._held: dict[int, tuple[T, bool]] = {}
        self._final_at: int | None = None
        self.next_number = 0
        self.duplicates = 0
        self.done = False

    def accept(self, number: int, part: T, *, is_final: bool) -> list[T]:
        """Take part ``number``; return the parts released by it (possibly none)."""
        if number < 0:
            raise SequenceError(f"sequence number {number} is negative")
        if self.done or number < self.next_number or number in self._held:
            self.duplicates += 1
            return []
        if self._final_at is not None and number > self._final_at:
            raise SequenceError(f"part {number} comes after the final part {self._final_at}")
        if is_final:
            if self._held and max(self._held) > number:
                raise SequenceError(f"final part {number} comes before part {max(self._held)}")
            self._final_at = number
        if number != self.next_number and len(self._held) >= self._max_held:
            raise SequenceError(
                f"more than {self._max_held} parts wait for part {self.next_number}"
            )
        self._held[number] = (part, is_final)
        ready: list[T] = []
        while self.next_number in self._held:
            released, final = self._held.pop(self.next_number)
            ready.append(released)
            self.next_number += 1
            if final:
                self.done = True
                self._held.clear()
                break
        return ready

    @property
    def missing(self) -> list[int]:
        """Numbers not yet received that held parts come after (empty: no gap)."""
        if not self._held:
            return []
        return [n for n in range(self.next_number, max(self._held)) if n not in self._held]
