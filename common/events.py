"""The events of the realtime protocol, defined once for producers and consumers.

Every event carries ``seq``: its position in the command's event log, strictly
increasing from 1. Consumers ignore fields they do not know; changes are additive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from common.commands import CommandStatus

__all__ = [
    "ErrorEvent",
    "Event",
    "EventAdapter",
    "EventEnvelope",
    "Response",
    "ResponseEvent",
    "StatusEvent",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Response(_Model):
    """One part of a vehicle's answer, as stored and as listed over REST."""

    response_id: str
    response_payload: dict[str, Any]
    sequence_number: int = Field(ge=1)
    is_final: bool
    received_at: datetime


class _EventBase(_Model):
    command_id: str
    seq: int = Field(default=0, ge=0, description="Position in the command's event log.")


class ResponseEvent(_EventBase):
    event: Literal["response"] = "response"
    response: Response
    sequence_number: int = Field(ge=1)


class StatusEvent(_EventBase):
    event: Literal["status"] = "status"
    status: CommandStatus
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error_message: str | None = None


class ErrorEvent(_EventBase):
    event: Literal["error"] = "error"
    error_message: str
    error_code: str | None = None


Event = Annotated[ResponseEvent | StatusEvent | ErrorEvent, Field(discriminator="event")]
EventAdapter: TypeAdapter[ResponseEvent | StatusEvent | ErrorEvent] = TypeAdapter(Event)


class EventEnvelope(BaseModel):
    """The few fields a relay needs to route and order an event without parsing all of it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event: str
    command_id: str
    seq: int = Field(ge=1)
