"""The vehicle registry: what a registration may say, and the audited changes.

Used by the api (``POST/PATCH/DELETE /api/v1/vehicles``) and by ``sovd-admin
import-fleet``, so both validate alike. A registration never sets presence: a new
vehicle is ``disconnected`` and never seen until it reports (``common.presence``).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.audit import AsyncAuditLog, AuditAction
from common.vehicles import ConnectionStatus, Vehicle, VehicleStore
from common.vin import is_valid_vin

__all__ = [
    "MAX_ECUS",
    "MAX_METADATA_BYTES",
    "Ecu",
    "Registry",
    "VehicleSpec",
    "VehicleUpdate",
]

#: The largest metadata document a vehicle may carry, as compact JSON (bytes).
MAX_METADATA_BYTES = 16 * 1024
#: The most ECUs one vehicle may list.
MAX_ECUS = 64
#: Registered model years (the first car, 1886, to a few years ahead).
MIN_YEAR, MAX_YEAR = 1886, 2100

_ADDRESS = re.compile(r"^0[xX][0-9A-Fa-f]{1,4}$")


class Ecu(BaseModel):
    """One ECU of the vehicle: its diagnostic address (hex) and name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(examples=["0x10"], description="Hex, `0x` and 1-4 digits.")
    name: str = Field(min_length=1, max_length=64)

    @field_validator("address")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError("must be a hex address such as 0x10")
        return value


def _printable_text(value: str) -> str:
    text = value.strip()
    if not text or not text.isprintable():
        raise ValueError("must be printable text")
    return text


def _check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"is {size} bytes as JSON; at most {MAX_METADATA_BYTES}")
    if "ecus" in value:
        ecus = value["ecus"]
        if not isinstance(ecus, list) or len(ecus) > MAX_ECUS:
            raise ValueError(f"ecus must be a list of at most {MAX_ECUS} ECUs")
        value = {**value, "ecus": [Ecu.model_validate(e).model_dump() for e in ecus]}
        addresses = [int(e["address"], 16) for e in value["ecus"]]
        if len(set(addresses)) != len(addresses):
            raise ValueError("ecus: two ECUs share an address")
    if "simulated" in value and not isinstance(value["simulated"], bool):
        raise ValueError("simulated must be true or false")
    return value


class VehicleSpec(BaseModel):
    """A vehicle to register. ``metadata.ecus`` lists its ECUs; ``metadata.simulated``
    (true/false) puts it in the simulated fleet."""

    model_config = ConfigDict(extra="forbid")

    vin: str = Field(
        min_length=17,
        max_length=17,
        examples=["WVWZZZ1K3MW123456"],
        description="17 characters, no I, O or Q, with a correct check digit (position 9).",
    )
    make: str = Field(min_length=1, max_length=64, examples=["Volkswagen"])
    model: str = Field(min_length=1, max_length=64, examples=["Golf"])
    year: int = Field(ge=MIN_YEAR, le=MAX_YEAR, examples=[2021])
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        max_length=64,
        examples=[{"ecus": [{"address": "0x10", "name": "Engine Control Module"}]}],
    )

    @field_validator("vin")
    @classmethod
    def _vin(cls, value: str) -> str:
        vin = value.upper()
        if not is_valid_vin(vin):
            raise ValueError("not a valid VIN (17 characters of A-Z and 0-9 without I, O, Q; "
                             "position 9 is the check digit)")  # fmt: skip
        return vin

    @field_validator("make", "model")
    @classmethod
    def _printable(cls, value: str) -> str:
        return _printable_text(value)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_metadata(value)

    def vehicle(self, vehicle_id: str | None = None) -> Vehicle:
        """The record to store: disconnected and never seen."""
        return Vehicle(
            vehicle_id=vehicle_id or str(uuid.uuid4()),
            vin=self.vin,
            make=self.make,
            model=self.model,
            year=self.year,
            connection_status=ConnectionStatus.DISCONNECTED,
            last_seen_at=None,
            metadata=self.metadata,
        )


class VehicleUpdate(BaseModel):
    """Fields to change; absent ones stay. ``metadata`` replaces the whole document."""

    model_config = ConfigDict(extra="forbid")

    make: str | None = Field(default=None, min_length=1, max_length=64)
    model: str | None = Field(default=None, min_length=1, max_length=64)
    year: int | None = Field(default=None, ge=MIN_YEAR, le=MAX_YEAR)
    metadata: dict[str, Any] | None = Field(default=None, max_length=64)

    @field_validator("make", "model")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else _printable_text(value)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_metadata(value)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude_none=True)


def _diff(before: Vehicle, after: Vehicle) -> dict[str, Any]:
    return {
        name: {"from": getattr(before, name), "to": getattr(after, name)}
        for name in ("make", "model", "year")
        if getattr(before, name) != getattr(after, name)
    } | ({"metadata": "replaced"} if before.metadata != after.metadata else {})


class Registry:
    """Audited registry changes; ``actor`` holds the audit fields of who asks."""

    def __init__(self, vehicles: VehicleStore, audit: AsyncAuditLog) -> None:
        self._vehicles = vehicles
        self._audit = audit

    async def register(
        self, spec: VehicleSpec, *, vehicle_id: str | None = None, **actor: Any
    ) -> Vehicle:
        """Store a new vehicle; ``ConflictError`` for a VIN (or id) already registered."""
        vehicle = spec.vehicle(vehicle_id)
        await self._vehicles.create(vehicle)
        await self._audit.record(
            AuditAction.VEHICLE_REGISTERED,
            vehicle_id=vehicle.vehicle_id,
            details={"vin": vehicle.vin, "make": vehicle.make, "model": vehicle.model},
            **actor,
        )
        return vehicle

    async def update(self, vehicle_id: str, update: VehicleUpdate, **actor: Any) -> Vehicle:
        """Apply ``update``; ``NotFoundError`` for an unknown vehicle."""
        before, after = await self._vehicles.update(vehicle_id, update.changes())
        await self._audit.record(
            AuditAction.VEHICLE_UPDATED,
            vehicle_id=vehicle_id,
            details={"vin": after.vin, "changed": _diff(before, after)},
            **actor,
        )
        return after

    async def remove(self, vehicle_id: str, **actor: Any) -> Vehicle:
        """Remove a vehicle without active commands (``ConflictError`` otherwise)."""
        vehicle = await self._vehicles.delete(vehicle_id)
        await self._audit.record(
            AuditAction.VEHICLE_REMOVED,
            vehicle_id=vehicle_id,
            details={"vin": vehicle.vin},
            **actor,
        )
        return vehicle
