"""The presence of the vehicles the gateway hosts, reported through ``common.presence``.

The gateway speaks for the simulated vehicles (metadata ``"simulated": true``), as the
api does when the workers simulate them: each is ``connected`` when the gateway starts
serving, heartbeats every ``SOVD_PRESENCE_SIM_HEARTBEAT_S``, and is disconnected
(``clean_disconnect``) when the gateway stops. A gateway that dies stops heartbeating,
and the api's sweep disconnects its vehicles after ``SOVD_PRESENCE_TIMEOUT_S``.

The reports run on their own asyncio loop in a thread, beside the gRPC server's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable

import structlog

from common.fleet import is_simulated
from common.keys import Keys
from common.presence import Presence
from common.redis_client import async_client
from common.settings import Settings
from common.vehicles import ConnectionStatus, VehicleStore

__all__ = ["HostedPresence"]

log = structlog.get_logger(__name__)

#: Vehicles read per page when reporting.
_PAGE = 500
#: Longest wait for the final reports when the gateway stops.
STOP_TIMEOUT_S = 5.0


class HostedPresence:
    """``start`` reports the hosted vehicles online and keeps them so; ``stop`` reports
    them gone and returns once that is recorded (or ``STOP_TIMEOUT_S`` passed)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-presence", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.reported: set[str] = set()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(STOP_TIMEOUT_S)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        client = async_client(self._settings.effective_redis_url)
        keys = Keys(self._settings.key_prefix)
        presence = Presence(client, keys, self._settings)
        vehicles = VehicleStore(client, keys)
        try:
            await self._guarded(self._report(presence, vehicles))
            self._ready.set()
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stopping.wait(), self._settings.presence_sim_heartbeat_s
                    )
                if not self._stopping.is_set():
                    await self._guarded(self._report(presence, vehicles))
            for vehicle_id in sorted(self.reported):
                await self._guarded(presence.disconnected(vehicle_id, reason="clean_disconnect"))
            log.info("gateway_presence_stopped", vehicles=len(self.reported))
        finally:
            self._ready.set()
            await client.aclose()

    async def _report(self, presence: Presence, vehicles: VehicleStore) -> None:
        """Connect or heartbeat every hosted vehicle."""
        offset = 0
        while True:
            page = await vehicles.list_vehicles(limit=_PAGE, offset=offset)
            for vehicle in page:
                if not is_simulated(vehicle):
                    continue
                if vehicle.connection_status == ConnectionStatus.CONNECTED:
                    await presence.heartbeat(vehicle.vehicle_id)
                else:
                    await presence.connected(vehicle.vehicle_id)
                self.reported.add(vehicle.vehicle_id)
            if len(page) < _PAGE:
                return
            offset += _PAGE

    @staticmethod
    async def _guarded(report: Awaitable[object]) -> None:
        try:
            await report
        except Exception:  # a Redis blip: the next round reports again
            log.warning("gateway_presence_failed", exc_info=True)
