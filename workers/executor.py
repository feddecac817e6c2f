"""Executing one command: load it, drive the connector, record and publish every event.

Safe to run twice for the same command (Dramatiq delivers at least once): the event
log refuses responses already recorded and anything after the terminal status.
"""

from __future__ import annotations

import uuid
from typing import cast

import structlog

from common.commands import TERMINAL_STATUSES, CommandRecord, CommandStatus
from common.events import ErrorEvent, Response, ResponseEvent, StatusEvent
from common.timeutil import isoformat, utcnow
from common.vehicles import Vehicle
from workers.connector import ConnectorError, DiagnosticRequest, NegativeResponse
from workers.runtime import Runtime

__all__ = ["execute_command"]

log = structlog.get_logger(__name__)


def execute_command(
    runtime: Runtime, command_id: str, *, command_name: str
) -> CommandStatus | None:
    """Run ``command_id`` to its terminal status; return it (``None``: nothing to do)."""
    fields = cast(dict[str, str], runtime.client.hgetall(runtime.keys.command(command_id)))
    if not fields:
        log.warning("command_not_found", command_id=command_id)
        return None
    command = CommandRecord.from_redis(fields)
    if command.status in TERMINAL_STATUSES:
        log.info("command_already_terminal", status=command.status.value)
        return command.status
    if command.command_name != command_name:
        return _fail(
            runtime,
            command,
            f"Command type {command.command_name} sent to the {command_name} actor",
            "internal_error",
        )

    raw_vehicle = runtime.client.get(runtime.keys.vehicle(command.vehicle_id))
    if raw_vehicle is None:
        return _fail(
            runtime, command, f"Vehicle {command.vehicle_id} no longer exists", "vehicle_not_found"
        )
    vehicle = Vehicle.model_validate_json(raw_vehicle)

    started = utcnow()
    runtime.events.append(
        StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS, started_at=started),
        fields={"started_at": isoformat(started)},
    )
    log.info("command_started", vehicle_id=command.vehicle_id, command_name=command_name)
    request = DiagnosticRequest(
        command_id=command_id,
        command_name=command_name,
        params=command.command_params,
        vehicle=vehicle,
    )
    number = 0
    try:
        for part in runtime.connector.execute(request):
            number += 1
            _record_response(runtime, command_id, number, part.payload, is_final=part.is_final)
    except NegativeResponse as exc:
        _record_response(runtime, command_id, number + 1, exc.payload, is_final=True)
        return _fail(runtime, command, exc.message, exc.code)
    except ConnectorError as exc:
        return _fail(runtime, command, exc.message, exc.code)
    except Exception:
        log.exception("command_crashed")
        return _fail(
            runtime, command, "Internal error while executing the command", "internal_error"
        )

    completed = utcnow()
    runtime.events.append(
        StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED, completed_at=completed),
        fields={"completed_at": isoformat(completed)},
    )
    log.info("command_completed", responses=number)
    return CommandStatus.COMPLETED


def _record_response(
    runtime: Runtime, command_id: str, number: int, payload: dict[str, object], *, is_final: bool
) -> None:
    response = Response(
        # Derived from the command and position, so a redelivered run produces the same id.
        response_id=str(uuid.uuid5(uuid.UUID(command_id), str(number))),
        response_payload=payload,
        sequence_number=number,
        is_final=is_final,
        received_at=utcnow(),
    )
    runtime.events.append(
        ResponseEvent(command_id=command_id, response=response, sequence_number=number)
    )


def _fail(runtime: Runtime, command: CommandRecord, message: str, code: str) -> CommandStatus:
    """Publish the error, then the one terminal ``failed`` status."""
    command_id = command.command_id
    runtime.events.append(ErrorEvent(command_id=command_id, error_message=message, error_code=code))
    completed = utcnow()
    runtime.events.append(
        StatusEvent(
            command_id=command_id,
            status=CommandStatus.FAILED,
            completed_at=completed,
            error_message=message,
        ),
        fields={"completed_at": isoformat(completed), "error_message": message},
    )
    log.warning("command_failed", error_code=code, error_message=message)
    return CommandStatus.FAILED
