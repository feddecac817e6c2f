"""An example of a car's own software behind the agent (docs/vehicles.md, MQTT).

Run it with::

    python -m agent --vin <VIN> --password-file /etc/sovd/mqtt-password \\
        --backend agent.example_backend:build

This backend reads the car's diagnostic state from ``<SOVD_DATA_DIR>/car-state.json``,
a file the car's own diagnostic software keeps up to date::

    {"ecus": {"0x10": {"dtcs": [{"code": "P0420", "fault_name": "...", "severity": 2}],
                       "data": {"0xF190": "WVWZZZ1KZMW123456", "0xF40C": 812}}}}

A real integration replaces ``_state`` with calls into the car (a UDS stack, a
diagnostic gateway's API); the rest shows the contract: yield parts, the last with
``is_final``, raise a ``ConnectorError`` leaf to fail, watch ``request.cancelled()`` and
``request.deadline`` in anything that waits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.settings import Settings
from workers.connector import (
    DiagnosticRequest,
    EcuNotResponding,
    ExchangeCancelled,
    ExchangeTimeout,
    NegativeResponse,
    ResponsePart,
)

__all__ = ["FileBackedCar", "build"]


class FileBackedCar:
    """Answers ReadDTC, ReadDataByID and ClearDTC from the car's state file."""

    def __init__(self, state_file: Path) -> None:
        self._state_file = state_file

    def execute(self, request: DiagnosticRequest) -> Iterator[ResponsePart]:
        address = f"0x{int(request.params['ecuAddress'], 16):02X}"
        ecu = self._state().get("ecus", {}).get(address)
        if ecu is None:
            raise EcuNotResponding(
                f"ECU {address} did not respond on vehicle {request.vehicle.vin}"
            )
        about = {"address": address, "name": ecu.get("name", address)}
        if request.command_name == "ReadDTC":
            dtcs = ecu.get("dtcs", [])
            for dtc in dtcs:
                self._check(request)
                yield ResponsePart({"type": "dtc", "ecu": about, **dtc})
            yield ResponsePart(
                {"type": "dtc_summary", "ecu": about, "dtc_count": len(dtcs)}, is_final=True
            )
        elif request.command_name == "ReadDataByID":
            did = f"0x{int(request.params['dataId'], 16):04X}"
            if did not in ecu.get("data", {}):
                raise NegativeResponse(
                    f"ECU {address} answered 0x31 requestOutOfRange for DID {did}",
                    {"type": "negative_response", "ecu": about, "service": "0x22", "did": did,
                     "nrc": "0x31", "nrc_name": "requestOutOfRange"},
                )  # fmt: skip
            value = ecu["data"][did]
            yield ResponsePart(
                {"type": "data", "ecu": about, "did": did, "value": value}, is_final=True
            )
        else:  # ClearDTC: this example's car refuses it (a real one would clear and answer)
            raise NegativeResponse(
                f"ECU {address} answered 0x22 conditionsNotCorrect",
                {"type": "negative_response", "ecu": about, "service": "0x14", "nrc": "0x22",
                 "nrc_name": "conditionsNotCorrect"},
            )  # fmt: skip

    def _state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state_file.read_text()))
        except FileNotFoundError:
            return {}

    @staticmethod
    def _check(request: DiagnosticRequest) -> None:
        if request.cancelled():
            raise ExchangeCancelled("Cancelled during the exchange")
        if time.monotonic() >= request.deadline:
            raise ExchangeTimeout(f"Vehicle {request.vehicle.vin} ran out of time")


def build(settings: Settings) -> FileBackedCar:
    """The factory ``--backend agent.example_backend:build`` names."""
    return FileBackedCar(settings.data_dir / "car-state.json")
