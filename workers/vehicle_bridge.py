"""``python -m workers.vehicle_bridge``: vehicles' MQTT presence into ``Presence``.

Subscribes to every vehicle's retained status and heartbeats (``common.mqtt``) and
reports them: ``online`` -> ``connected``, a heartbeat -> ``heartbeat``, ``offline`` ->
``disconnected`` with the reason the vehicle or the broker gave (``clean_disconnect``,
``last_will``). The retained statuses delivered at subscription bring the registry up to
date when the bridge starts. Times are the bridge's clock, never the vehicle's (a car's
clock may be wrong, or lie to make later reports look stale). A VIN that is not
registered is ignored.

Stays idle unless ``SOVD_CONNECTOR=mqtt``. One bridge per deployment is enough; a second
one is harmless (``Presence`` records each change once) but doubles heartbeat writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import redis.asyncio
import structlog
from pydantic import ValidationError

from common.keys import Keys
from common.logging import configure_logging
from common.mqtt import StatusMessage, Topics
from common.mqtt_auth import service_password
from common.mqtt_client import connect_async, new_client
from common.presence import Presence, PresenceChange
from common.redis_client import async_client, wait_for_redis
from common.settings import Settings, get_settings
from common.vehicles import VehicleStore

__all__ = ["PresenceBridge", "main"]

log = structlog.get_logger(__name__)

#: Reasons a vehicle may give for going offline; anything else is recorded as "offline".
OFFLINE_REASONS = frozenset({"clean_disconnect", "last_will"})
#: VIN -> vehicle id lookups are trusted this long (a re-registered VIN gets a new id).
VIN_CACHE_S = 30.0
#: Messages waiting for Redis at most; heartbeats beyond it are dropped (the next comes).
MAX_BACKLOG = 10_000


class PresenceBridge:
    """Turns one vehicle message into a presence report (``handle``), and runs the MQTT
    subscription feeding it (``run``)."""

    def __init__(self, settings: Settings, client: redis.asyncio.Redis) -> None:
        keys = Keys(settings.key_prefix)
        self._settings = settings
        self._topics = Topics(settings.mqtt_topic_prefix)
        self._presence = Presence(client, keys, settings)
        self._vehicles = VehicleStore(client, keys)
        self._ids: dict[str, tuple[str | None, float]] = {}
        self.connected = asyncio.Event()

    async def handle(self, topic: str, payload: bytes) -> PresenceChange | None:
        where = self._topics.split(topic)
        if where is None or where[1] not in ("status", "heartbeat"):
            return None
        vin, kind = where
        vehicle_id = await self._vehicle_id(vin)
        if vehicle_id is None:
            return None
        if kind == "heartbeat":
            return await self._presence.heartbeat(vehicle_id)
        try:
            status = StatusMessage.model_validate_json(payload)
        except ValidationError:
            log.warning("bridge_status_refused", vin=vin)
            return None
        if status.status == "online":
            return await self._presence.connected(vehicle_id)
        reason = status.reason if status.reason in OFFLINE_REASONS else "offline"
        return await self._presence.disconnected(vehicle_id, reason=reason)

    async def _vehicle_id(self, vin: str) -> str | None:
        cached = self._ids.get(vin)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        vehicle = await self._vehicles.by_vin(vin)
        vehicle_id = vehicle.vehicle_id if vehicle is not None else None
        if len(self._ids) > 100_000:
            self._ids.clear()
        self._ids[vin] = (vehicle_id, now + VIN_CACHE_S)
        return vehicle_id

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(MAX_BACKLOG)

        def deliver(item: tuple[str, bytes]) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                inbox.put_nowait(item)

        def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
            loop.call_soon_threadsafe(deliver, (message.topic, bytes(message.payload)))

        def on_connect(
            client: mqtt.Client, userdata: object, flags: object, reason: Any, props: object
        ) -> None:
            if reason.is_failure:
                log.warning("bridge_connect_refused", reason=str(reason))
                return
            client.subscribe([(self._topics.all_status, 1), (self._topics.all_heartbeats, 0)])
            loop.call_soon_threadsafe(self.connected.set)

        client = new_client(
            self._settings,
            f"sovd-bridge-{uuid.uuid4().hex[:8]}",
            username=self._settings.mqtt_username,
            password=service_password(self._settings),
        )
        client.on_message = on_message
        client.on_connect = on_connect
        connect_async(client, self._settings)
        client.loop_start()
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(inbox.get())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({getter, stopper}, return_when="FIRST_COMPLETED")
                stopper.cancel()
                if getter not in done:
                    getter.cancel()
                    break
                topic, payload = getter.result()
                try:
                    await self.handle(topic, payload)
                except Exception as exc:  # Redis away: this report is lost, the next comes
                    log.warning("bridge_report_failed", topic=topic, error=repr(exc))
        finally:
            client.disconnect()
            client.loop_stop()


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.connector != "mqtt":
        print("SOVD_CONNECTOR is not 'mqtt': no vehicle bridge.", flush=True)
        await stop.wait()
        return
    wait_for_redis(settings.effective_redis_url)
    client = async_client(settings.effective_redis_url)
    try:
        log.info("bridge_started", broker=f"{settings.mqtt_host}:{settings.mqtt_port}")
        await PresenceBridge(settings, client).run(stop)
    finally:
        await client.aclose()


def main() -> None:
    settings = get_settings()
    configure_logging(settings, "bridge")
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
