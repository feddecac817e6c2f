"""Following vehicles' presence: snapshot first, then live changes (I/O around the feed).

A presence stream (``/ws/vehicles``, ``/sse/vehicles``, optionally for one vehicle)
is registered in ``realtime.presence_feed`` *before* its snapshot is read, so a change
published meanwhile is held and sent after the snapshot. Live changes come from the
relay's subscription to ``Keys.presence_events`` (one per process, like the auth
events). After the relay reconnects, changes may have been missed: every follower
gets a fresh snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio
import structlog

from common.events import PresenceSnapshotEvent, VehiclePresence
from common.keys import Keys
from common.protocol import CloseCode
from common.vehicles import Vehicle, VehicleStore
from realtime.connection import Connection
from realtime.presence_feed import Follower, PresenceFeed
from realtime.refusals import Refusal, as_refusal

__all__ = ["PRESENCE_SNAPSHOT_PAGE", "PresenceStreams"]

log = structlog.get_logger(__name__)

#: Vehicles per snapshot event.
PRESENCE_SNAPSHOT_PAGE = 500
#: Snapshots read again in a row for one follower before it is closed as too slow.
MAX_SNAPSHOT_ROUNDS = 5


def _presence(vehicle: Vehicle) -> VehiclePresence:
    return VehiclePresence(
        vehicle_id=vehicle.vehicle_id,
        vin=vehicle.vin,
        connection_status=vehicle.connection_status.value,
        last_seen_at=vehicle.last_seen_at,
    )


class PresenceStreams:
    def __init__(self, client: redis.asyncio.Redis, keys: Keys, feed: PresenceFeed) -> None:
        self._vehicles = VehicleStore(client, keys)
        self.feed = feed
        self._connections: dict[str, Connection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def vehicle_exists(self, vehicle_id: str) -> bool:
        return await self._vehicles.get(vehicle_id) is not None

    async def follow(self, connection: Connection, vehicle_id: str | None) -> None:
        """Register, send the snapshot, then the changes held meanwhile; live after."""
        follower = self.feed.add(connection.connection_id, connection.push, vehicle_id)
        self._connections[connection.connection_id] = connection
        await self._snapshot(connection, follower, follower.generation)

    def unfollow(self, connection: Connection) -> None:
        self.feed.remove(connection.connection_id)
        self._connections.pop(connection.connection_id, None)

    def on_event(self, data: str) -> None:
        """A message of the presence channel (from the relay)."""
        self.feed.publish(data)

    def resnapshot_all(self) -> None:
        """After a relay reconnect: every follower reads its snapshot again."""
        for follower in self.feed.followers():
            connection = self._connections.get(follower.connection_id)
            if connection is None:
                continue
            # One snapshot at a time per follower: the one begun here supersedes any
            # still being read (it would send an older state after the live changes).
            generation = self.feed.begin_snapshot(follower)
            task = asyncio.ensure_future(self._snapshot(connection, follower, generation))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _snapshot(self, connection: Connection, follower: Follower, generation: int) -> None:
        """Send a snapshot, then the changes held meanwhile, and go live; stop as soon as
        a newer snapshot of this follower has begun. A snapshot that cannot be read
        closes the stream (1013: reconnect), as a command stream's replay does."""
        for _ in range(MAX_SNAPSHOT_ROUNDS):
            try:
                async for event in self._snapshot_events(connection, follower.vehicle_id):
                    if follower.generation != generation:
                        return
                    connection.push(event)
            except Exception as exc:
                if follower.generation != generation:
                    return
                refusal = as_refusal(exc)
                if refusal is None:
                    log.exception("presence_snapshot_failed")
                    refusal = Refusal.internal()
                else:
                    log.warning("presence_snapshot_failed", error=repr(exc))
                connection.request_close(refusal.close_code, refusal.message)
                return
            if follower.generation != generation:
                return
            if follower.stale:
                generation = self.feed.begin_snapshot(follower)
                continue
            for data in self.feed.go_live(follower):
                connection.push(data)
            return
        connection.request_close(CloseCode.SLOW_CONSUMER, "Slow consumer: reconnect")

    async def _snapshot_events(
        self, connection: Connection, vehicle_id: str | None
    ) -> AsyncIterator[str]:
        """The snapshot's events, each once there is room for it in the queue."""
        if vehicle_id is not None:
            vehicle = await self._vehicles.get(vehicle_id)
            one = [_presence(vehicle)] if vehicle is not None else []
            yield PresenceSnapshotEvent(vehicles=one).model_dump_json()
            return
        pages = self._vehicles.pages(PRESENCE_SNAPSHOT_PAGE)
        page: list[VehiclePresence] | None = None
        async for batch in pages:
            if page is not None:
                await connection.wait_for_room()
                yield PresenceSnapshotEvent(vehicles=page, last=False).model_dump_json()
            page = [_presence(v) for v in batch]
        await connection.wait_for_room()
        yield PresenceSnapshotEvent(vehicles=page or []).model_dump_json()
