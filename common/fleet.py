"""The demo fleet and demo users that development setups are seeded with."""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio

from common.keys import Keys
from common.users import Role, UserStore
from common.vehicles import ConnectionStatus, Vehicle, VehicleStore
from common.vin import with_check_digit

__all__ = ["DEMO_USERS", "demo_fleet", "is_simulated", "registered", "seed_demo"]

#: Demo logins (username, password, role, email): for local development only.
DEMO_USERS: tuple[tuple[str, str, Role, str], ...] = (
    ("viewer", "viewer-demo-pass", Role.VIEWER, "viewer@example.com"),
    ("engineer", "engineer-demo-pass", Role.ENGINEER, "engineer@example.com"),
    ("admin", "admin-demo-pass", Role.ADMIN, "admin@example.com"),
)

_FLEET_NAMESPACE = uuid.UUID("6f1d8a52-3c1e-4d55-9a3e-2f0b7c9e4a10")

_ECUS_COMBUSTION = [
    {"address": "0x10", "name": "Engine Control Module"},
    {"address": "0x18", "name": "Transmission Control Module"},
    {"address": "0x28", "name": "ABS / Stability Control"},
    {"address": "0x40", "name": "Body Control Module"},
]
_ECUS_ELECTRIC = [
    {"address": "0x10", "name": "Vehicle Control Unit"},
    {"address": "0x1A", "name": "Battery Management System"},
    {"address": "0x28", "name": "ABS / Stability Control"},
    {"address": "0x40", "name": "Body Control Module"},
]

# (VIN with `_` at the check digit, make, model, year, powertrain, online in the simulation)
_FLEET: tuple[tuple[str, str, str, int, str, bool], ...] = (
    ("WVWZZZ1K_MW123456", "Volkswagen", "Golf", 2021, "petrol", True),
    ("WBA5R1C0_NFH10001", "BMW", "330e", 2022, "plug-in hybrid", True),
    ("5YJ3E1EA_PF400123", "Tesla", "Model 3", 2023, "electric", True),
    ("1FTEW1EP_LFA00042", "Ford", "F-150", 2020, "petrol", False),
    ("JTDEPRAE_KJ000777", "Toyota", "Corolla", 2019, "hybrid", True),
    ("YV1UZA8V_N1000314", "Volvo", "XC60", 2022, "diesel", False),
    ("W1Y4ECHY_MP200500", "Mercedes-Benz", "Sprinter", 2021, "diesel", True),
    ("KM8KRDAF_PU010203", "Hyundai", "Ioniq 5", 2023, "electric", True),
)


def is_simulated(vehicle: Vehicle) -> bool:
    """Whether the simulated fleet speaks for ``vehicle`` (metadata ``"simulated": true``):
    with the simulator connector, the api reports its presence (``api/presence.py``)."""
    return vehicle.metadata.get("simulated") is True


def demo_fleet() -> list[Vehicle]:
    """The demo vehicles as the simulation runs them; ids are derived from the VIN so
    seeding is idempotent.

    ``connection_status`` is what the simulated fleet reports once the api runs (online
    vehicles carry ``"simulated": true``; the others report nothing and stay
    disconnected). Seeding stores every vehicle ``disconnected`` and never seen
    (``registered``): presence comes only from reports (``common.presence``).
    """
    vehicles = []
    for raw_vin, make, model, year, powertrain, connected in _FLEET:
        vin = with_check_digit(raw_vin)
        electric = powertrain == "electric"
        health: dict[str, Any] = {
            "state": "ok" if connected else "unknown",
            "battery_voltage": 12.4 if electric else 12.6,
        }
        vehicles.append(
            Vehicle(
                vehicle_id=str(uuid.uuid5(_FLEET_NAMESPACE, vin)),
                vin=vin,
                make=make,
                model=model,
                year=year,
                connection_status=(
                    ConnectionStatus.CONNECTED if connected else ConnectionStatus.DISCONNECTED
                ),
                metadata={
                    "powertrain": powertrain,
                    "ecus": _ECUS_ELECTRIC if electric else _ECUS_COMBUSTION,
                    "fleet": "demo",
                    "simulated": connected,
                },
                health=health,
            )
        )
    return vehicles


async def seed_demo(client: redis.asyncio.Redis, keys: Keys) -> list[str]:
    """Create missing demo users and vehicles; return the usernames created."""
    users = UserStore(client, keys)
    created = []
    for username, password, role, email in DEMO_USERS:
        if await users.get_by_username(username) is None:
            await users.create(username=username, password=password, role=role, email=email)
            created.append(username)
    vehicles = VehicleStore(client, keys)
    for vehicle in demo_fleet():
        if await vehicles.get(vehicle.vehicle_id) is None:
            await vehicles.put(registered(vehicle))
    return created


def registered(vehicle: Vehicle) -> Vehicle:
    """``vehicle`` as a new registration stores it: disconnected, never seen."""
    return vehicle.model_copy(
        update={"connection_status": ConnectionStatus.DISCONNECTED, "last_seen_at": None}
    )
