"""The api's presence duties: the silent-vehicle sweep, and the simulated fleet's reports.

The sweep (``Presence.expire_silent``) runs in every api process every
``SOVD_PRESENCE_SWEEP_INTERVAL_S``; the transactions in ``common.presence`` make
concurrent sweeps record each timeout once.

With the simulator connector, the vehicles the workers simulate (metadata
``"simulated": true``) report presence here, through the same ``Presence`` calls a
network transport makes: ``connected`` at start, then a heartbeat every
``SOVD_PRESENCE_SIM_HEARTBEAT_S``. A vehicle whose flag is cleared stops reporting and
the sweep disconnects it; the others were never connected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from common.fleet import is_simulated
from common.presence import Presence
from common.settings import Settings
from common.vehicles import ConnectionStatus, VehicleStore

__all__ = ["PresenceDuties"]

log = structlog.get_logger(__name__)

#: Vehicles read per page when the simulated fleet reports.
_PAGE = 500


class PresenceDuties:
    """Background tasks of one api process; ``start`` after the fleet is seeded."""

    def __init__(self, settings: Settings, presence: Presence, vehicles: VehicleStore) -> None:
        self._settings = settings
        self._presence = presence
        self._vehicles = vehicles
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def simulates(self) -> bool:
        return self._settings.connector == "simulator"

    async def start(self) -> None:
        """Report the simulated fleet once (so it is online when the api serves), then
        start the sweep and the heartbeats."""
        if self.simulates:
            await self._guarded(self.report_simulated, "presence_sim_failed")
        self._tasks.append(
            asyncio.create_task(
                self._every(
                    self._settings.presence_sweep_interval_s,
                    self._presence.expire_silent,
                    "presence_sweep_failed",
                ),
                name="presence-sweep",
            )
        )
        if self.simulates:
            self._tasks.append(
                asyncio.create_task(
                    self._every(
                        self._settings.presence_sim_heartbeat_s,
                        self.report_simulated,
                        "presence_sim_failed",
                    ),
                    name="presence-simulated",
                )
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def report_simulated(self) -> int:
        """Connect or heartbeat every simulated vehicle; return how many reported."""
        reported = 0
        async for page in self._vehicles.pages(_PAGE):
            for vehicle in page:
                if not is_simulated(vehicle):
                    continue
                if vehicle.connection_status == ConnectionStatus.CONNECTED:
                    await self._presence.heartbeat(vehicle.vehicle_id)
                else:
                    await self._presence.connected(vehicle.vehicle_id, reason="simulated")
                reported += 1
        return reported

    async def _every(
        self, interval_s: float, duty: Callable[[], Awaitable[object]], failure: str
    ) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self._guarded(duty, failure)

    async def _guarded(self, duty: Callable[[], Awaitable[object]], failure: str) -> None:
        try:
            await duty()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis away: the next round tries again
            log.warning(failure, error=repr(exc))
