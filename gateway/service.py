"""The ``VehicleService`` servicer: one ``ExecuteCommand`` call runs one exchange on a
``VehicleConnector`` and streams its parts; a failed exchange ends the call with the
status code of ``workers.grpc_contract``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import grpc
import structlog
from pydantic import ValidationError

from common.commands import COMMAND_TYPES
from common.timeutil import isoformat, utcnow
from common.vehicles import Vehicle
from workers.connector import ConnectorError, DiagnosticRequest, ExchangeCancelled, VehicleConnector
from workers.grpc_contract import decode_params, status_for_error
from workers.grpc_gen.vehicle_pb2 import CommandRequest, CommandResponse
from workers.grpc_gen.vehicle_pb2_grpc import VehicleServiceServicer

__all__ = ["MAX_ID_CHARS", "Observer", "VehicleGateway"]

log = structlog.get_logger(__name__)

#: Longest command or vehicle id accepted.
MAX_ID_CHARS = 128

#: Told how each call ended: (command id, outcome); the outcome is ``completed``,
#: ``cancelled`` or the error code.
Observer = Callable[[str, str], None]


def _ignore(command_id: str, outcome: str) -> None:
    return None


class VehicleGateway(VehicleServiceServicer):
    """Serves ``ExecuteCommand`` with ``connector``; ``vehicles`` looks a vehicle up by id."""

    def __init__(
        self,
        connector: VehicleConnector,
        vehicles: Callable[[str], Vehicle | None],
        *,
        observer: Observer = _ignore,
    ) -> None:
        self._connector = connector
        self._vehicles = vehicles
        self._observer = observer

    def ExecuteCommand(  # the contract's method name
        self, request: CommandRequest, context: grpc.ServicerContext
    ) -> Iterator[CommandResponse]:
        command_id = request.command_id
        with structlog.contextvars.bound_contextvars(command_id=command_id[:MAX_ID_CHARS]):
            outcome: str | None = None
            try:
                diagnostic = self._request(request, context)
                for number, part in enumerate(self._connector.execute(diagnostic)):
                    yield CommandResponse(
                        command_id=command_id,
                        response_payload=json.dumps(part.payload),
                        sequence_number=number,
                        is_final=part.is_final,
                        timestamp=isoformat(utcnow()),
                    )
                outcome = "completed"
            except _Refused as refused:
                outcome = refused.outcome
                context.abort(refused.status, refused.message)
            except ExchangeCancelled:
                outcome = "cancelled"
            except ConnectorError as exc:
                outcome = exc.code
                status, trailers = status_for_error(exc)
                context.set_trailing_metadata(tuple(trailers))
                context.abort(status, exc.message)
            finally:
                if outcome is None:  # the call ended under the exchange (client gone) or a bug
                    outcome = "cancelled" if not context.is_active() else "internal_error"
                log.info("gateway_command_ended", outcome=outcome, vehicle_id=request.vehicle_id)
                self._observer(command_id, outcome)

    def _request(self, request: CommandRequest, context: grpc.ServicerContext) -> DiagnosticRequest:
        """The exchange the call asks for, or ``_Refused`` when it cannot be one."""
        if not request.command_id or len(request.command_id) > MAX_ID_CHARS:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "command_id is missing or too long")
        if not request.vehicle_id or len(request.vehicle_id) > MAX_ID_CHARS:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "vehicle_id is missing or too long")
        command_type = COMMAND_TYPES.get(request.command_name)
        if command_type is None:
            raise _Refused(
                grpc.StatusCode.UNIMPLEMENTED,
                f"This gateway does not run {request.command_name[:64]!r}",
            )
        try:
            params = command_type.params_model.model_validate(
                decode_params(request.command_params)
            ).model_dump(exclude_none=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "command_params"
            raise _Refused(
                grpc.StatusCode.INVALID_ARGUMENT, f"command_params.{where}: {first['msg']}"
            ) from None
        vehicle = self._vehicles(request.vehicle_id)
        if vehicle is None:
            raise _Refused(
                grpc.StatusCode.NOT_FOUND,
                f"Vehicle {request.vehicle_id} is not known to this gateway",
                outcome="vehicle_unavailable",
            )
        remaining = context.time_remaining()
        return DiagnosticRequest(
            command_id=request.command_id,
            command_name=request.command_name,
            params=params,
            vehicle=vehicle,
            deadline=time.monotonic() + remaining if remaining is not None else float("inf"),
            cancelled=lambda: not context.is_active(),
        )


class _Refused(Exception):
    """A call refused before any exchange."""

    def __init__(
        self, status: grpc.StatusCode, message: str, *, outcome: str = "invalid_request"
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome
