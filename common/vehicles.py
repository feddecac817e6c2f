"""Vehicles of the fleet: the record and its store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

import redis.asyncio
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import WatchError

from common.errors import ConflictError, NotFoundError
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
        """Store ``vehicle`` as given (seeding and tests; the registry uses ``create``)."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.vehicle(vehicle.vehicle_id), vehicle.model_dump_json())
            pipe.zadd(self._keys.vehicles, {vehicle.vehicle_id: 0})
            pipe.hset(self._keys.vehicle_vins, vehicle.vin, vehicle.vehicle_id)
            await pipe.execute()

    async def get(self, vehicle_id: str) -> Vehicle | None:
        raw = await self._client.get(self._keys.vehicle(vehicle_id))
        return Vehicle.model_validate_json(raw) if raw else None

    async def by_vin(self, vin: str) -> Vehicle | None:
        """The vehicle registered under ``vin`` (case-insensitive), if any."""
        vehicle_id = await self._client.hget(self._keys.vehicle_vins, vin.strip().upper())
        return await self.get(str(vehicle_id)) if vehicle_id else None

    async def create(self, vehicle: Vehicle) -> None:
        """Register a new vehicle; ``ConflictError`` when its VIN or id is taken."""
        key = self._keys.vehicle(vehicle.vehicle_id)
        async with self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self._keys.vehicle_vins, key)
                    holder = await pipe.hget(self._keys.vehicle_vins, vehicle.vin)
                    if holder is not None or await pipe.exists(key):
                        raise ConflictError(
                            f"A vehicle with VIN {vehicle.vin} is already registered",
                            vehicle_id=holder or vehicle.vehicle_id,
                        )
                    pipe.multi()  # type: ignore[no-untyped-call]  # untyped in redis-py
                    pipe.set(key, vehicle.model_dump_json())
                    pipe.zadd(self._keys.vehicles, {vehicle.vehicle_id: 0})
                    pipe.hset(self._keys.vehicle_vins, vehicle.vin, vehicle.vehicle_id)
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    async def update(self, vehicle_id: str, changes: dict[str, Any]) -> tuple[Vehicle, Vehicle]:
        """Apply ``changes`` (registry fields only) to the stored vehicle, keeping its
        presence; return ``(before, after)``. ``NotFoundError`` for an unknown id."""
        forbidden = {"vehicle_id", "vin", "connection_status", "last_seen_at"} & changes.keys()
        if forbidden:
            raise ValueError(f"not registry fields: {sorted(forbidden)}")
        key = self._keys.vehicle(vehicle_id)
        async with self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise NotFoundError(f"Vehicle {vehicle_id} not found")
                    before = Vehicle.model_validate_json(raw)
                    after = before.model_copy(update=changes)
                    pipe.multi()  # type: ignore[no-untyped-call]  # untyped in redis-py
                    pipe.set(key, after.model_dump_json())
                    await pipe.execute()
                    return before, after
                except WatchError:
                    continue

    async def delete(self, vehicle_id: str) -> Vehicle:
        """Remove a vehicle that has no active command (``ConflictError`` otherwise, with
        the active command ids); its commands and audit entries stay."""
        key = self._keys.vehicle(vehicle_id)
        active_key = self._keys.vehicle_active(vehicle_id)
        async with self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # Watching the active hash orders this against a concurrent submission.
                    await pipe.watch(key, active_key)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise NotFoundError(f"Vehicle {vehicle_id} not found")
                    active = cast(list[str], await pipe.hkeys(active_key))
                    if active:
                        raise ConflictError(
                            f"Vehicle {vehicle_id} has active commands; cancel them or wait "
                            "for them to end",
                            active_command_ids=sorted(active)[:20],
                        )
                    vehicle = Vehicle.model_validate_json(raw)
                    pipe.multi()  # type: ignore[no-untyped-call]  # untyped in redis-py
                    pipe.delete(key)
                    pipe.zrem(self._keys.vehicles, vehicle_id)
                    pipe.hdel(self._keys.vehicle_vins, vehicle.vin)
                    pipe.zrem(self._keys.presence_seen, vehicle_id)
                    await pipe.execute()
                    return vehicle
                except WatchError:
                    continue

    async def pages(self, size: int) -> AsyncIterator[list[Vehicle]]:
        """Every vehicle, ``size`` at a time, by id (one read per page). Each page starts
        after the last id read, not at an offset: a vehicle removed between two reads
        does not shift the next page past one that is still there."""
        after = "-"
        while True:
            ids = cast(
                list[str],
                await self._client.zrangebylex(self._keys.vehicles, after, "+", start=0, num=size),
            )
            if not ids:
                return
            raws = await self._client.mget([self._keys.vehicle(i) for i in ids])
            yield [Vehicle.model_validate_json(r) for r in raws if r]
            if len(ids) < size:
                return
            after = f"({ids[-1]}"

    async def count(self) -> int:
        return int(await self._client.zcard(self._keys.vehicles))

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
