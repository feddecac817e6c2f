"""A simulated fleet behind the connector interface: realistic, streamed, deterministic.

Each simulated ECU keeps its fault memory in Redis (so ClearDTC is visible to the
next ReadDTC from any worker). Initial faults and measured values derive from
``seed``, the VIN and the ECU, so the same seed gives the same answers.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from common.keys import Keys
from common.lua import lua_script
from common.timeutil import isoformat
from common.vehicles import ConnectionStatus, Vehicle
from workers.connector import (
    ConnectionLost,
    DiagnosticRequest,
    EcuNotResponding,
    ExchangeCancelled,
    ExchangeTimeout,
    NegativeResponse,
    ResponsePart,
    VehicleUnavailable,
)

__all__ = ["DATA_IDENTIFIERS", "DTC_CATALOG", "FAULTS", "SimulatedFleet"]

#: Faults that can be injected into a vehicle's next exchange (tests, demos):
#: ``drop:N`` the link drops before part N (transient); ``silent`` the ECU does not
#: answer (transient); ``hang`` the vehicle stops answering (ends at the deadline);
#: ``slow:S`` every part takes S seconds.
FAULTS = frozenset({"drop", "silent", "hang", "slow"})

#: Longest single sleep while waiting, so cancellation is noticed quickly.
PAUSE_SLICE_S = 0.05

#: Faults an ECU may hold, by ECU role: (code, name, severity).
DTC_CATALOG: dict[str, tuple[tuple[str, str, int], ...]] = {
    "engine": (
        ("P0420", "Catalyst System Efficiency Below Threshold (Bank 1)", 2),
        ("P0300", "Random/Multiple Cylinder Misfire Detected", 1),
        ("P0171", "System Too Lean (Bank 1)", 2),
        ("P0128", "Coolant Thermostat Below Regulating Temperature", 3),
        ("P0442", "Evaporative Emission System Leak Detected (Small Leak)", 3),
        ("U0121", "Lost Communication With ABS Control Module", 2),
    ),
    "vcu": (
        ("P0A1A", "Generator Control Module", 2),
        ("P0C73", "Motor Electronics Coolant Pump A Control Circuit", 3),
        ("U0293", "Lost Communication With Hybrid/EV Powertrain Control Module", 2),
    ),
    "transmission": (
        ("P0700", "Transmission Control System Malfunction", 2),
        ("P0730", "Incorrect Gear Ratio", 2),
        ("P0715", "Input/Turbine Speed Sensor Circuit", 2),
    ),
    "battery": (
        ("P0A80", "Replace Hybrid/EV Battery Pack", 1),
        ("P0AFA", "Hybrid/EV Battery System Voltage Low", 2),
        ("P1A0F", "Battery Cell Balancing Out Of Range", 3),
    ),
    "chassis": (
        ("C0035", "Left Front Wheel Speed Sensor Circuit", 2),
        ("C0040", "Right Front Wheel Speed Sensor Circuit", 2),
        ("C0265", "EBCM Motor Relay Circuit", 1),
    ),
    "body": (
        ("B1000", "ECU Internal Malfunction", 3),
        ("B1318", "Battery Voltage Low", 3),
        ("U0100", "Lost Communication With ECM/PCM A", 1),
        ("U0140", "Lost Communication With Body Control Module", 2),
    ),
}

_ECU_ROLE = {0x10: "engine", 0x18: "transmission", 0x1A: "battery", 0x28: "chassis", 0x40: "body"}

#: Data identifiers the simulated ECUs answer: DID -> (name, category, unit).
DATA_IDENTIFIERS: dict[int, tuple[str, str, str | None]] = {
    0xF190: ("VIN", "identData", None),
    0xF18C: ("ECU Serial Number", "identData", None),
    0xF187: ("Spare Part Number", "identData", None),
    0xF40C: ("Engine Speed", "currentData", "rpm"),
    0xF405: ("Engine Coolant Temperature", "currentData", "°C"),
    0xF40D: ("Vehicle Speed", "currentData", "km/h"),
    0xF442: ("Control Module Voltage", "currentData", "V"),
    0xF4A6: ("Odometer", "currentData", "km"),
}

_NRC_REQUEST_OUT_OF_RANGE = (0x31, "requestOutOfRange")
#: UDS service of each command type (for negative responses).
_SERVICE_IDS = {"ReadDTC": "0x19", "ClearDTC": "0x14", "ReadDataByID": "0x22"}
_INIT_FIELD = "_initialized"

#: common/lua/sim_init_memory.lua
_INIT_MEMORY_SCRIPT = lua_script("sim_init_memory")

Sleep = Callable[[float], None]


class SimulatedFleet:
    """``VehicleConnector`` for the demo fleet; ``delay_scale=0`` answers without delays."""

    #: Typical seconds before the first part and between parts (scaled by ``delay_scale``).
    FIRST_PART_DELAY_S = (0.08, 0.25)
    NEXT_PART_DELAY_S = (0.03, 0.12)

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        seed: int = 0,
        delay_scale: float = 1.0,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._client = client
        self._keys = keys
        self._seed = seed
        self._delay_scale = delay_scale
        self._sleep = sleep
        self._init_memory = _INIT_MEMORY_SCRIPT.register(client)

    def inject_fault(self, vehicle_id: str, fault: str) -> None:
        """Make the vehicle's next exchange misbehave (see ``FAULTS``); faults queue up."""
        if fault.split(":", 1)[0] not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
        self._client.rpush(self._keys.sim_faults(vehicle_id), fault)

    def execute(self, request: DiagnosticRequest) -> Iterator[ResponsePart]:
        vehicle = request.vehicle
        fault = self._client.lpop(self._keys.sim_faults(vehicle.vehicle_id))
        kind, _, arg = (str(fault) if fault else "").partition(":")
        if vehicle.connection_status != ConnectionStatus.CONNECTED:
            seen = isoformat(vehicle.last_seen_at) if vehicle.last_seen_at else "never"
            raise VehicleUnavailable(f"Vehicle {vehicle.vin} is not connected (last seen {seen})")
        address = int(request.params["ecuAddress"], 16)
        ecu_name = vehicle.ecu_name(request.params["ecuAddress"])
        if ecu_name is None:
            raise self._no_such_ecu(request, vehicle, address)
        if kind == "silent":
            self._pause(request, self._delay(self.FIRST_PART_DELAY_S, request.command_id, 0))
            raise EcuNotResponding(f"ECU 0x{address:02X} did not respond on vehicle {vehicle.vin}")
        if kind == "hang":
            self._pause(request, float("inf"))
        ecu = {"address": f"0x{address:02X}", "name": ecu_name}
        handler = {
            "ReadDTC": self._read_dtc,
            "ClearDTC": self._clear_dtc,
            "ReadDataByID": self._read_data_by_id,
        }[request.command_name]
        parts = handler(request, vehicle, address, ecu)
        for index, part in enumerate(parts):
            if kind == "drop" and index == int(arg or 0):
                raise ConnectionLost(f"Connection to vehicle {vehicle.vin} lost mid-exchange")
            bounds = self.FIRST_PART_DELAY_S if index == 0 else self.NEXT_PART_DELAY_S
            delay = float(arg) if kind == "slow" else self._delay(bounds, request.command_id, index)
            self._pause(request, delay)
            yield part

    # -- command types -------------------------------------------------------------------

    def _read_dtc(
        self, request: DiagnosticRequest, vehicle: Vehicle, address: int, ecu: dict[str, str]
    ) -> list[ResponsePart]:
        faults = self._fault_memory(vehicle, address)
        parts = [ResponsePart({"type": "dtc", "ecu": ecu, **fault}) for fault in faults]
        parts.append(
            ResponsePart(
                {"type": "dtc_summary", "ecu": ecu, "dtc_count": len(faults)}, is_final=True
            )
        )
        return parts

    def _clear_dtc(
        self, request: DiagnosticRequest, vehicle: Vehicle, address: int, ecu: dict[str, str]
    ) -> list[ResponsePart]:
        self._fault_memory(vehicle, address)  # a clear acts on the current memory
        key = self._keys.sim_dtcs(vehicle.vehicle_id, f"0x{address:02X}")
        code = request.params.get("dtcCode")
        if code:
            cleared = int(self._client.hdel(key, code))
        else:
            codes = [c for c in self._client.hkeys(key) if c != _INIT_FIELD]
            cleared = int(self._client.hdel(key, *codes)) if codes else 0
        payload: dict[str, Any] = {"type": "dtc_cleared", "ecu": ecu, "cleared_count": cleared}
        if code:
            payload["dtc_code"] = code
        return [ResponsePart(payload, is_final=True)]

    def _read_data_by_id(
        self, request: DiagnosticRequest, vehicle: Vehicle, address: int, ecu: dict[str, str]
    ) -> list[ResponsePart]:
        did = int(request.params["dataId"], 16)
        known = DATA_IDENTIFIERS.get(did)
        if known is None:
            nrc, nrc_name = _NRC_REQUEST_OUT_OF_RANGE
            negative: dict[str, Any] = {
                "type": "negative_response",
                "ecu": ecu,
                "service": "0x22",
                "did": f"0x{did:04X}",
                "nrc": f"0x{nrc:02X}",
                "nrc_name": nrc_name,
            }
            raise NegativeResponse(
                f"ECU 0x{address:02X} answered 0x{nrc:02X} {nrc_name} for DID 0x{did:04X}",
                negative,
            )
        name, category, unit = known
        rng = random.Random(f"{self._seed}:{vehicle.vin}:{address}:{did}")  # noqa: S311 - simulation, not security
        value = self._value(did, vehicle, rng)
        payload: dict[str, Any] = {
            "type": "data",
            "ecu": ecu,
            "did": f"0x{did:04X}",
            "name": name,
            "category": category,
            "value": value,
        }
        if unit:
            payload["unit"] = unit
        return [ResponsePart(payload, is_final=True)]

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _no_such_ecu(
        request: DiagnosticRequest, vehicle: Vehicle, address: int
    ) -> NegativeResponse:
        """The gateway's answer for an address the vehicle has no ECU at: final, at once."""
        present = ", ".join(
            f"{ecu['address']} {ecu['name']}" for ecu in vehicle.metadata.get("ecus", [])
        )
        nrc, nrc_name = _NRC_REQUEST_OUT_OF_RANGE
        payload: dict[str, Any] = {
            "type": "negative_response",
            "ecu": {"address": f"0x{address:02X}", "name": None},
            "service": _SERVICE_IDS[request.command_name],
            "nrc": f"0x{nrc:02X}",
            "nrc_name": nrc_name,
            "reason": "no_such_ecu",
        }
        return NegativeResponse(
            f"Vehicle {vehicle.vin} has no ECU at 0x{address:02X} (it has: {present or 'none'})",
            payload,
        )

    @staticmethod
    def _value(did: int, vehicle: Vehicle, rng: random.Random) -> str | int | float:
        electric = vehicle.metadata.get("powertrain") == "electric"
        match did:
            case 0xF190:
                return vehicle.vin
            case 0xF18C:
                return f"SN{rng.randrange(10**9):09d}"
            case 0xF187:
                return (
                    f"{rng.randrange(100, 999)}.{rng.randrange(100, 999)}.{rng.randrange(10, 99)}"
                )
            case 0xF40C:
                return 0 if electric else rng.randrange(700, 900)
            case 0xF405:
                return rng.randrange(82, 96)
            case 0xF40D:
                return 0
            case 0xF442:
                return round(rng.uniform(13.6, 14.4), 2)
            case 0xF4A6:
                return (2026 - vehicle.year) * 13_000 + rng.randrange(0, 9_000)
        raise AssertionError(f"unhandled DID 0x{did:04X}")  # pragma: no cover

    def _fault_memory(self, vehicle: Vehicle, address: int) -> list[dict[str, Any]]:
        """The ECU's stored faults, created from the seed on first use."""
        key = self._keys.sim_dtcs(vehicle.vehicle_id, f"0x{address:02X}")
        if not self._client.hexists(key, _INIT_FIELD):
            rng = random.Random(f"{self._seed}:{vehicle.vin}:{address}")  # noqa: S311 - simulation
            role = _ECU_ROLE.get(address, "body")
            if role == "engine" and vehicle.metadata.get("powertrain") == "electric":
                role = "vcu"
            catalog = DTC_CATALOG[role]
            count = rng.randrange(1, min(4, len(catalog)) + 1)
            chosen = rng.sample(catalog, count)
            initial: dict[str, str] = {}
            for code, name, severity in chosen:
                confirmed = rng.random() < 0.7
                initial[code] = json.dumps(
                    {
                        "code": code,
                        "display_code": code,
                        "fault_name": name,
                        "severity": severity,
                        "status": {
                            "testFailed": confirmed,
                            "confirmedDTC": confirmed,
                            "pendingDTC": not confirmed,
                        },
                    }
                )
            args = [_INIT_FIELD, *(item for pair in initial.items() for item in pair)]
            self._init_memory(keys=[key], args=args)
        raw = self._client.hgetall(key)
        return [json.loads(v) for k, v in sorted(raw.items()) if k != _INIT_FIELD]

    def _delay(self, bounds: tuple[float, float], command_id: str, index: int) -> float:
        if self._delay_scale <= 0:
            return 0.0
        rng = random.Random(f"{self._seed}:{command_id}:{index}")  # noqa: S311 - simulation
        return rng.uniform(*bounds) * self._delay_scale

    def _pause(self, request: DiagnosticRequest, seconds: float) -> None:
        """Wait like a vehicle would, but honour the request's deadline and cancellation."""
        waited = 0.0
        while True:
            if request.cancelled():
                raise ExchangeCancelled("Cancelled during the exchange")
            now = time.monotonic()
            if now >= request.deadline:
                raise ExchangeTimeout(
                    f"Vehicle {request.vehicle.vin} did not answer within the time limit"
                )
            if waited >= seconds:
                return
            step = min(seconds - waited, request.deadline - now, PAUSE_SLICE_S)
            self._sleep(step)
            waited += step
