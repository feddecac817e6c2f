"""The gRPC vehicle gateway contract, both directions: names, parameters, status codes.

``sovd.vehicle.VehicleService/ExecuteCommand`` (proto/sovd/vehicle/v1/vehicle.proto)
runs one command; the worker's connector (``workers.grpc_connector``) is its client and
the test gateway (``gateway``) its server. Both use this module, so a status code means
the same thing on each side. ``STATUS_ERRORS`` is the table docs/grpc.md shows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from workers.connector import (
    ConnectionLost,
    ConnectorError,
    EcuNotResponding,
    ExchangeCancelled,
    ExchangeTimeout,
    NegativeResponse,
    VehicleUnavailable,
)

__all__ = [
    "ERROR_CODE_TRAILER",
    "METHOD",
    "NEGATIVE_RESPONSE_TRAILER",
    "SERVICE",
    "STATUS_ERRORS",
    "GatewayBusy",
    "GatewayError",
    "GatewayProtocolError",
    "GatewayRefused",
    "GatewayUnsupported",
    "decode_params",
    "encode_params",
    "error_for_status",
    "status_for_error",
]

SERVICE = "sovd.vehicle.VehicleService"
METHOD = f"/{SERVICE}/ExecuteCommand"

#: Trailing metadata a gateway may add to a failed call: our error code, to tell apart
#: errors that share a status code (``ecu_not_responding`` under UNAVAILABLE).
ERROR_CODE_TRAILER = "sovd-error-code"
#: Trailing metadata carrying a negative response's payload (a JSON object).
NEGATIVE_RESPONSE_TRAILER = "sovd-negative-response"

#: Longest gateway text (status details) copied into a command's error message.
MAX_DETAILS_CHARS = 300
#: Largest negative-response payload read from the trailers.
MAX_NEGATIVE_PAYLOAD_BYTES = 8 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class GatewayError(ConnectorError):
    """The gateway failed the call for a reason of its own (INTERNAL, UNKNOWN, ...)."""

    code = "gateway_error"


class GatewayBusy(GatewayError):
    """The gateway refused the call for lack of capacity; later may work."""

    code = "gateway_busy"
    transient = True


class GatewayRefused(GatewayError):
    """The gateway did not accept this worker's credentials."""

    code = "gateway_refused"


class GatewayUnsupported(GatewayError):
    """The gateway does not implement the call or the command."""

    code = "gateway_unsupported"


class GatewayProtocolError(GatewayError):
    """The gateway's answer breaks the contract (bad JSON, numbering, command id)."""

    code = "protocol_error"


@dataclass(frozen=True, slots=True)
class StatusError:
    """How a worker reads one status code: the error and the start of its message.
    ``with_details``: the gateway's status text follows (transport-made texts, which
    name internal addresses, are logged instead)."""

    error: type[ConnectorError]
    summary: str
    with_details: bool = True
    #: The summary when parts of the answer had arrived.
    mid_answer: str | None = None


#: Status code -> what the command ends with (CANCELLED when the worker cancelled is
#: ``ExchangeCancelled``; OK without a final part is a lost connection).
STATUS_ERRORS: dict[grpc.StatusCode, StatusError] = {
    grpc.StatusCode.UNAVAILABLE: StatusError(
        ConnectionLost,
        "The vehicle gateway is unreachable",
        with_details=False,
        mid_answer="The connection to the vehicle gateway dropped mid-answer",
    ),
    grpc.StatusCode.ABORTED: StatusError(
        ConnectionLost, "The vehicle gateway aborted the exchange"
    ),
    grpc.StatusCode.CANCELLED: StatusError(
        ConnectionLost, "The vehicle gateway cancelled the exchange"
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: StatusError(
        ExchangeTimeout, "The vehicle did not answer within the time limit", with_details=False
    ),
    grpc.StatusCode.NOT_FOUND: StatusError(
        VehicleUnavailable, "The vehicle is not reachable through its gateway"
    ),
    grpc.StatusCode.FAILED_PRECONDITION: StatusError(NegativeResponse, "The ECU refused"),
    grpc.StatusCode.INVALID_ARGUMENT: StatusError(NegativeResponse, "The ECU refused"),
    grpc.StatusCode.OUT_OF_RANGE: StatusError(NegativeResponse, "The ECU refused"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: StatusError(GatewayBusy, "The vehicle gateway is busy"),
    grpc.StatusCode.UNAUTHENTICATED: StatusError(
        GatewayRefused, "The vehicle gateway refused the worker", with_details=False
    ),
    grpc.StatusCode.PERMISSION_DENIED: StatusError(
        GatewayRefused, "The vehicle gateway refused the worker", with_details=False
    ),
    grpc.StatusCode.UNIMPLEMENTED: StatusError(
        GatewayUnsupported, "The vehicle gateway does not support this command"
    ),
    grpc.StatusCode.INTERNAL: StatusError(GatewayError, "The vehicle gateway failed"),
    grpc.StatusCode.UNKNOWN: StatusError(GatewayError, "The vehicle gateway failed"),
    grpc.StatusCode.DATA_LOSS: StatusError(GatewayError, "The vehicle gateway failed"),
    grpc.StatusCode.ALREADY_EXISTS: StatusError(GatewayError, "The vehicle gateway failed"),
}

#: Error codes a gateway may name (``ERROR_CODE_TRAILER``) to refine a status code.
_REFINEMENTS: dict[tuple[grpc.StatusCode, str], type[ConnectorError]] = {
    (grpc.StatusCode.UNAVAILABLE, EcuNotResponding.code): EcuNotResponding,
}

#: The gateway's side: connector error -> status code (most specific first).
_ERROR_STATUS: tuple[tuple[type[ConnectorError], grpc.StatusCode], ...] = (
    (VehicleUnavailable, grpc.StatusCode.NOT_FOUND),
    (EcuNotResponding, grpc.StatusCode.UNAVAILABLE),
    (ConnectionLost, grpc.StatusCode.UNAVAILABLE),
    (ExchangeTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ExchangeCancelled, grpc.StatusCode.CANCELLED),
    (NegativeResponse, grpc.StatusCode.FAILED_PRECONDITION),
    (ConnectorError, grpc.StatusCode.INTERNAL),
)


def encode_params(params: Mapping[str, Any]) -> dict[str, str]:
    """``command_params`` of a request: strings as they are, other values as JSON text."""
    return {
        name: value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        for name, value in params.items()
    }


def decode_params(params: Mapping[str, str]) -> dict[str, Any]:
    """The gateway's reading of ``command_params``: text that is a JSON object or array
    becomes that value; everything else stays a string (``"0x10"``, ``"12"``)."""
    decoded: dict[str, Any] = {}
    for name, text in params.items():
        value: Any = text
        if text[:1] in ("{", "["):
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        decoded[name] = value
    return decoded


def clean_details(details: str | None) -> str:
    """A gateway's status text, made safe for an error message: one line, bounded."""
    text = _CONTROL.sub(" ", details or "").strip()
    if len(text) > MAX_DETAILS_CHARS:
        text = text[: MAX_DETAILS_CHARS - 1] + "…"
    return text


def _trailer(trailers: Sequence[tuple[str, str | bytes]] | None, key: str) -> str | None:
    for name, value in trailers or ():
        if name == key:
            return value if isinstance(value, str) else None
    return None


def error_for_status(
    code: grpc.StatusCode,
    details: str | None,
    trailers: Sequence[tuple[str, str | bytes]] | None = None,
    *,
    cancelled_here: bool = False,
    mid_answer: bool = False,
) -> ConnectorError:
    """The connector error a call that ended with ``code`` raises. ``cancelled_here``:
    this side cancelled the call (the command was cancelled); ``mid_answer``: parts of
    the answer had arrived."""
    if code == grpc.StatusCode.CANCELLED and cancelled_here:
        return ExchangeCancelled("Cancelled during the exchange")
    entry = STATUS_ERRORS.get(code, StatusError(GatewayError, "The vehicle gateway failed"))
    named = _trailer(trailers, ERROR_CODE_TRAILER)
    error = _REFINEMENTS.get((code, named or ""), entry.error)
    text = clean_details(details)
    if named is not None and text:  # the gateway wrote the text itself
        message = text
    elif entry.with_details and text:
        message = f"{entry.summary}: {text}"
    else:
        message = entry.mid_answer if mid_answer and entry.mid_answer else entry.summary
    if error is NegativeResponse:
        return NegativeResponse(message, _negative_payload(code, text, trailers))
    return error(message)


def _negative_payload(
    code: grpc.StatusCode, text: str, trailers: Sequence[tuple[str, str | bytes]] | None
) -> dict[str, Any]:
    raw = _trailer(trailers, NEGATIVE_RESPONSE_TRAILER)
    if raw is not None and len(raw) <= MAX_NEGATIVE_PAYLOAD_BYTES:
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            return payload
    return {"type": "negative_response", "grpc_status": code.name, "message": text}


def status_for_error(exc: ConnectorError) -> tuple[grpc.StatusCode, list[tuple[str, str]]]:
    """The gateway's side: the status code and trailers a failed exchange ends with."""
    trailers = [(ERROR_CODE_TRAILER, exc.code)]
    if isinstance(exc, NegativeResponse):
        trailers.append((NEGATIVE_RESPONSE_TRAILER, json.dumps(exc.payload)))
    for kind, status in _ERROR_STATUS:
        if isinstance(exc, kind):
            return status, trailers
    raise AssertionError("ConnectorError is the last row")  # pragma: no cover
