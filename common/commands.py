"""Diagnostic command types, their parameters, and the stored command record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

__all__ = [
    "COMMAND_TYPES",
    "RETRYING",
    "TERMINAL_STATUSES",
    "ClearDTCParams",
    "CommandRecord",
    "CommandStatus",
    "CommandType",
    "ReadDTCParams",
    "ReadDataByIDParams",
]

EcuAddress = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^0[xX][0-9A-Fa-f]{2,4}$"),
    Field(description="ECU address in hex, e.g. `0x10` (1 or 2 bytes).", examples=["0x10"]),
]
DataIdentifier = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^0[xX][0-9A-Fa-f]{4}$"),
    Field(description="UDS data identifier in hex, e.g. `0xF190` (VIN).", examples=["0xF190"]),
]
DtcCode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_upper=True, pattern=r"^[PCBUpcbu][0-3][0-9A-Fa-f]{3}$"
    ),
    Field(
        description="OBD-style DTC such as `P0420`, `C0035`, `B1000`, `U0100`.", examples=["P0420"]
    ),
]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadDTCParams(_Params):
    """Read the diagnostic trouble codes stored in one ECU."""

    ecuAddress: EcuAddress


class ClearDTCParams(_Params):
    """Clear all DTCs of one ECU, or one code when `dtcCode` is given."""

    ecuAddress: EcuAddress
    dtcCode: DtcCode | None = None


class ReadDataByIDParams(_Params):
    """Read one data identifier (UDS service 0x22) from one ECU."""

    ecuAddress: EcuAddress
    dataId: DataIdentifier


@dataclass(frozen=True, slots=True)
class CommandType:
    """One diagnostic command type: what it is. How it runs is its policy (common/policy.py)."""

    name: str
    params_model: type[_Params]
    actor_name: str
    description: str
    destructive: bool = False


COMMAND_TYPES: dict[str, CommandType] = {
    t.name: t
    for t in (
        CommandType(
            name="ReadDTC",
            params_model=ReadDTCParams,
            actor_name="read_dtc",
            description="Read the diagnostic trouble codes stored in one ECU.",
        ),
        CommandType(
            name="ClearDTC",
            params_model=ClearDTCParams,
            actor_name="clear_dtc",
            description="Clear the DTCs of one ECU (all, or the one named by dtcCode).",
            destructive=True,
        ),
        CommandType(
            name="ReadDataByID",
            params_model=ReadDataByIDParams,
            actor_name="read_data_by_id",
            description="Read one data identifier (VIN, odometer, battery voltage, ...).",
        ),
    )
}


CommandParamsJSON: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


class CommandStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    #: Refused before execution (e.g. the vehicle is offline).
    REJECTED = "rejected"


TERMINAL_STATUSES = frozenset(
    {
        CommandStatus.COMPLETED,
        CommandStatus.FAILED,
        CommandStatus.TIMEOUT,
        CommandStatus.CANCELLED,
        CommandStatus.REJECTED,
    }
)

#: Status published (not stored) when an attempt failed and another one is scheduled.
RETRYING: Final = "retrying"


class CommandRecord(BaseModel):
    """A command as stored and as returned by the API."""

    model_config = ConfigDict(frozen=True)

    command_id: str
    user_id: str
    vehicle_id: str
    command_name: str
    command_params: dict[str, Any]
    status: CommandStatus
    error_message: str | None = None
    #: Why it failed, as a stable name (with ``error_message``), e.g. ``not_responding``.
    error_code: str | None = None
    submitted_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    request_id: str | None = None
    #: Executions started so far (1 for the first attempt; redeliveries do not count).
    attempts: int = 0
    #: The command ends as ``timeout`` if it has not finished by then (the type's max age).
    deadline_at: datetime | None = None
    cancel_requested: bool = False

    def to_redis(self) -> dict[str, str]:
        """Flat string fields for a Redis hash (``None`` fields are omitted)."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["command_params"] = CommandParamsJSON.dump_json(self.command_params).decode()
        return {k: str(v) for k, v in data.items()}

    @classmethod
    def from_redis(cls, fields: dict[str, str]) -> CommandRecord:
        data: dict[str, Any] = dict(fields)
        data["command_params"] = CommandParamsJSON.validate_json(fields["command_params"])
        return cls.model_validate(data)
