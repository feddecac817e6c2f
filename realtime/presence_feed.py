"""The pure core of presence streams: who follows which vehicles, and what each gets.

No I/O here. A ``Follower`` is one connection following every vehicle or one. It
starts *buffering*: live presence events that arrive while its snapshot is read are
kept, then handed back by ``go_live`` to be sent after the snapshot, in order. Every
event carries a vehicle's whole state, so the last one applied wins and nothing is
lost between the snapshot and the live events. The buffer is bounded: past
``max_buffer`` it is dropped and the follower marked ``stale``, and the caller reads
a new snapshot instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["Follower", "PresenceFeed"]

#: Sends one event's JSON text to the client; False when it cannot keep up.
Sink = Callable[[str], bool]


class _Envelope(BaseModel):
    """The one field routing needs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    vehicle_id: str


@dataclass(eq=False)
class Follower:
    connection_id: str
    sink: Sink
    #: ``None``: every vehicle.
    vehicle_id: str | None
    #: Live events held while a snapshot is read; ``None`` once live.
    buffer: list[str] | None = field(default_factory=list)
    #: The buffer overflowed: read the snapshot again.
    stale: bool = False
    #: Counts the snapshots begun: only the newest may send or go live.
    generation: int = 0


class PresenceFeed:
    """Followers by connection, and the routing of each presence event."""

    def __init__(self, *, max_buffer: int) -> None:
        self._max_buffer = max_buffer
        self._followers: dict[str, Follower] = {}
        self._everything: set[str] = set()
        self._by_vehicle: dict[str, set[str]] = {}
        self.delivered = 0

    def __len__(self) -> int:
        return len(self._followers)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._followers

    def followers(self) -> list[Follower]:
        return list(self._followers.values())

    def add(self, connection_id: str, sink: Sink, vehicle_id: str | None) -> Follower:
        """Follow (buffering until ``go_live``); a connection follows one scope."""
        self.remove(connection_id)
        follower = Follower(connection_id, sink, vehicle_id)
        self._followers[connection_id] = follower
        if vehicle_id is None:
            self._everything.add(connection_id)
        else:
            self._by_vehicle.setdefault(vehicle_id, set()).add(connection_id)
        return follower

    def remove(self, connection_id: str) -> None:
        follower = self._followers.pop(connection_id, None)
        if follower is None:
            return
        if follower.vehicle_id is None:
            self._everything.discard(connection_id)
            return
        ids = self._by_vehicle.get(follower.vehicle_id)
        if ids is not None:
            ids.discard(connection_id)
            if not ids:
                del self._by_vehicle[follower.vehicle_id]

    def begin_snapshot(self, follower: Follower) -> int:
        """Hold live events again (a new snapshot is about to be read); returns its
        generation: a snapshot begun earlier must send nothing more."""
        follower.buffer = []
        follower.stale = False
        follower.generation += 1
        return follower.generation

    def go_live(self, follower: Follower) -> list[str]:
        """End buffering; return the events held, to send after the snapshot."""
        held, follower.buffer = follower.buffer or [], None
        return held

    def publish(self, data: str) -> int:
        """Route one presence event (JSON); return how many followers it reached."""
        try:
            vehicle_id = _Envelope.model_validate_json(data).vehicle_id
        except ValidationError:
            return 0
        reached = 0
        for connection_id in (*self._everything, *self._by_vehicle.get(vehicle_id, ())):
            follower = self._followers[connection_id]
            reached += 1
            if follower.buffer is None:
                follower.sink(data)
                self.delivered += 1
            elif not follower.stale:
                follower.buffer.append(data)
                if len(follower.buffer) > self._max_buffer:
                    follower.buffer, follower.stale = [], True
        return reached
