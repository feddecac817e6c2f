"""Vehicles of the fleet: the record and its store."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, cast

import redis.asyncio
from pydantic import BaseModel, ConfigDict, Field

from common.keys import Keys

__all__ = ["ConnectionStatus", "Vehicle", "VehicleStore"]


class ConnectionStatus(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class Vehicle(BaseModel):
    """A vehicle as stored. ``health`` is served by the status endpoint only."""

    model_config = ConfigDict(frozen=True)

    vehicle_id: str
    vin: str
    make: str
    model: str
    year: int
    connection_status: ConnectionStatus
    last_seen_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    health: dict[str, Any] = Field(default_factory=dict)

    def ecu_name(self, address: str) -> str | None:
        """The name of the ECU at ``address`` (case-insensitive hex), if the vehicle has it."""
        for ecu in self.metadata.get("ecus", []):
            if int(ecu["address"], 16) == int(address, 16):
                return str(ecu["name"])
        return None


class VehicleStore:
    """Vehicles as JSON documents, indexed by VIN order for listing."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    async def put(self, vehicle: Vehicle) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.vehicle(vehicle.vehicle_id), vehicle.model_dump_json())
            pipe.zadd(self._keys.vehicles, {vehicle.vehicle_id: 0})
            await pipe.execute()

    async def get(self, vehicle_id: str) -> Vehicle | None:
        raw = await self._client.get(self._keys.vehicle(vehicle_id))
        return Vehicle.model_validate_json(raw) if raw else None

    async def list_vehicles(
        self,
        *,
        status: ConnectionStatus | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Vehicle]:
        """Vehicles ordered by VIN, filtered by status and a case-insensitive VIN fragment."""
        ids = cast(list[str], await self._client.zrange(self._keys.vehicles, 0, -1))
        if not ids:
            return []
        raws = await self._client.mget([self._keys.vehicle(i) for i in ids])
        vehicles = sorted((Vehicle.model_validate_json(r) for r in raws if r), key=lambda v: v.vin)
        if status is not None:
            vehicles = [v for v in vehicles if v.connection_status == status]
        if search:
            needle = search.strip().upper()
            vehicles = [v for v in vehicles if needle in v.vin]
        return vehicles[offset : offset + limit]
