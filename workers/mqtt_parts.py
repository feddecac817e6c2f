"""Answer parts in order, each once: what QoS 1 (at least once) delivery needs."""

from __future__ import annotations

from common.mqtt import AnswerMessage

__all__ = ["MAX_BUFFERED_PARTS", "PartSequencer"]

#: Parts ahead of a gap held back at most; later ones are dropped (the resume asks again).
MAX_BUFFERED_PARTS = 1_000


class PartSequencer:
    """Takes parts as the broker delivers them (duplicated, after a reconnect possibly
    out of order) and hands them on in sequence order, each sequence number once.
    ``next_sequence`` is where a resumed exchange asks the vehicle to start again."""

    def __init__(self) -> None:
        self.next_sequence = 0
        self.finished = False
        self.duplicates = 0
        self._ahead: dict[int, AnswerMessage] = {}

    def accept(self, part: AnswerMessage) -> list[AnswerMessage]:
        """The parts now ready, in order (empty for a duplicate or a part past a gap)."""
        if self.finished or part.sequence < self.next_sequence or part.sequence in self._ahead:
            self.duplicates += 1
            return []
        if part.sequence > self.next_sequence:
            if len(self._ahead) < MAX_BUFFERED_PARTS:
                self._ahead[part.sequence] = part
            return []
        ready = [part]
        self.next_sequence += 1
        while self.next_sequence in self._ahead:
            ready.append(self._ahead.pop(self.next_sequence))
            self.next_sequence += 1
        for index, item in enumerate(ready):
            if item.is_final or item.error is not None:
                self.finished = True
                self._ahead.clear()
                return ready[: index + 1]
        return ready
