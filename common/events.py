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
    "ClientMessage",
    "ErrorEvent",
    "Event",
    "EventAdapter",
    "EventEnvelope",
    "ProtocolErrorEvent",
    "Response",
    "ResponseEvent",
    "StatusEvent",
    "SubscribedEvent",
    "UnsubscribedEvent",
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


class SubscribedEvent(_Model):
    """Answer to a client's ``subscribe`` action on an open connection."""

    event: Literal["subscribed"] = "subscribed"
    command_id: str
    since: int = 0


class UnsubscribedEvent(_Model):
    """Answer to a client's ``unsubscribe`` action."""

    event: Literal["unsubscribed"] = "unsubscribed"
    command_id: str


class ProtocolErrorEvent(_Model):
    """A client message the server could not act on; the connection stays open."""

    event: Literal["error"] = "error"
    command_id: str | None = None
    error_message: str
    error_code: str


class ClientMessage(BaseModel):
    """What a client may send on an open WebSocket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["subscribe", "unsubscribe", "ping"]
    command_id: str | None = Field(default=None, max_length=64)
    since: int = Field(default=0, ge=0)
