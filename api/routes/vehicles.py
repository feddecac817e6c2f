"""The fleet: list, detail and connection status."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentUser, State
from api.schemas import MAX_OFFSET, VehiclePublic, VehicleStatusPublic
from common.errors import NotFoundError
from common.vehicles import ConnectionStatus, Vehicle

router = APIRouter(prefix="/api/v1/vehicles", tags=["vehicles"])


def _public(vehicle: Vehicle) -> VehiclePublic:
    return VehiclePublic.model_validate(vehicle.model_dump(exclude={"health"}))


async def _get(state: State, vehicle_id: uuid.UUID) -> Vehicle:
    vehicle = await state.vehicles.get(str(vehicle_id))
    if vehicle is None:
        raise NotFoundError(f"Vehicle {vehicle_id} not found")
    return vehicle


@router.get("", response_model=list[VehiclePublic])
async def list_vehicles(
    state: State,
    _user: CurrentUser,
    status: ConnectionStatus | None = None,
    search: Annotated[str | None, Query(max_length=17, description="VIN fragment")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[VehiclePublic]:
    """Vehicles ordered by VIN, filtered by connection status and VIN fragment."""
    vehicles = await state.vehicles.list_vehicles(
        status=status, search=search, limit=limit, offset=offset
    )
    return [_public(v) for v in vehicles]


@router.get("/{vehicle_id}", response_model=VehiclePublic)
async def read_vehicle(vehicle_id: uuid.UUID, state: State, _user: CurrentUser) -> VehiclePublic:
    """One vehicle."""
    return _public(await _get(state, vehicle_id))


@router.get("/{vehicle_id}/status", response_model=VehicleStatusPublic)
async def read_vehicle_status(
    vehicle_id: uuid.UUID, state: State, _user: CurrentUser
) -> VehicleStatusPublic:
    """A vehicle's connection status, when it was last seen, and its health summary."""
    vehicle = await _get(state, vehicle_id)
    return VehicleStatusPublic(
        connection_status=vehicle.connection_status,
        last_seen_at=vehicle.last_seen_at,
        health=vehicle.health,
    )
