"""The fleet: list, detail and connection status; registration for admins."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from api.deps import CurrentUser, FleetAdmin, State, client_info
from api.schemas import MAX_OFFSET, VehiclePublic, VehicleStatusPublic
from common.errors import NotFoundError
from common.registry import Registry, VehicleSpec, VehicleUpdate
from common.users import User
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


def _actor(request: Request, admin: User) -> dict[str, Any]:
    return {"user_id": admin.user_id, "username": admin.username, **client_info(request)}


_ADMIN_ONLY: dict[int | str, dict[str, Any]] = {403: {"description": "Not an admin"}}


@router.post(
    "",
    response_model=VehiclePublic,
    status_code=status.HTTP_201_CREATED,
    responses={**_ADMIN_ONLY, 409: {"description": "A vehicle with this VIN is registered"}},
)
async def create_vehicle(
    spec: VehicleSpec, request: Request, response: Response, state: State, admin: FleetAdmin
) -> VehiclePublic:
    """Register a vehicle (admins). It is `disconnected` until it reports presence."""
    registry = Registry(state.vehicles, state.audit)
    vehicle = await registry.register(spec, **_actor(request, admin))
    response.headers["Location"] = f"/api/v1/vehicles/{vehicle.vehicle_id}"
    return _public(vehicle)


@router.patch("/{vehicle_id}", response_model=VehiclePublic, responses=_ADMIN_ONLY)
async def update_vehicle(
    vehicle_id: uuid.UUID,
    update: VehicleUpdate,
    request: Request,
    state: State,
    admin: FleetAdmin,
) -> VehiclePublic:
    """Change a vehicle's make, model, year or metadata (admins); the VIN is fixed."""
    registry = Registry(state.vehicles, state.audit)
    return _public(await registry.update(str(vehicle_id), update, **_actor(request, admin)))


@router.delete(
    "/{vehicle_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**_ADMIN_ONLY, 409: {"description": "The vehicle has active commands"}},
)
async def delete_vehicle(
    vehicle_id: uuid.UUID, request: Request, state: State, admin: FleetAdmin
) -> Response:
    """Remove a vehicle with no active command (admins); its command history stays."""
    registry = Registry(state.vehicles, state.audit)
    await registry.remove(str(vehicle_id), **_actor(request, admin))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
