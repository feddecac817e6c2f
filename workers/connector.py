"""The vehicle connector interface: how a worker talks to a vehicle."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from common.vehicles import Vehicle

__all__ = [
    "ConnectionLost",
    "ConnectorError",
    "DiagnosticRequest",
    "EcuNotResponding",
    "ExchangeCancelled",
    "ExchangeTimeout",
    "NegativeResponse",
    "ResponsePart",
    "VehicleConnector",
    "VehicleUnavailable",
]


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class DiagnosticRequest:
    """One exchange to run. The connector must give up at ``deadline`` (a
    ``time.monotonic()`` value) with ``ExchangeTimeout``, and stop at its next wait once
    ``cancelled()`` is true, with ``ExchangeCancelled``."""

    command_id: str
    command_name: str
    params: dict[str, Any]
    vehicle: Vehicle
    deadline: float = float("inf")
    cancelled: Callable[[], bool] = _never


@dataclass(frozen=True, slots=True)
class ResponsePart:
    """One part of the vehicle's answer; the last part has ``is_final``."""

    payload: dict[str, Any]
    is_final: bool = False


class ConnectorError(Exception):
    """The exchange with the vehicle failed. ``code`` is a stable machine-readable name;
    ``transient`` errors may succeed when tried again."""

    code = "connector_error"
    transient = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VehicleUnavailable(ConnectorError):
    """The vehicle is not connected."""

    code = "vehicle_unavailable"


class EcuNotResponding(ConnectorError):
    """The addressed ECU did not answer."""

    code = "ecu_not_responding"
    transient = True


class ConnectionLost(ConnectorError):
    """The link to the vehicle dropped during the exchange."""

    code = "connection_lost"
    transient = True


class ExchangeTimeout(ConnectorError):
    """The vehicle did not finish answering before the request's deadline."""

    code = "timeout"


class ExchangeCancelled(ConnectorError):
    """The exchange stopped because the command was cancelled."""

    code = "cancelled"


class NegativeResponse(ConnectorError):
    """The ECU answered with a UDS negative response; ``payload`` is that answer."""

    code = "negative_response"

    def __init__(self, message: str, payload: dict[str, Any]) -> None:
        super().__init__(message)
        self.payload = payload


class VehicleConnector(Protocol):
    """Executes one diagnostic request, yielding the answer's parts as they arrive.

    Implementations raise ``ConnectorError`` (or a leaf) when the exchange fails, and
    must give the same answer when the same request is executed again (redelivery).
    """

    def execute(self, request: DiagnosticRequest) -> Iterator[ResponsePart]: ...
