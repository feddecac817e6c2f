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
    "MAX_POSITION",
    "ClientMessage",
    "CloseEvent",
    "ErrorEvent",
    "Event",
    "EventAdapter",
    "EventEnvelope",
    "PresenceSnapshotEvent",
    "ProtocolErrorEvent",
    "Response",
    "ResponseEvent",
    "SnapshotEvent",
    "StatusEvent",
    "SubscribedEvent",
    "TokenRefreshedEvent",
    "UnsubscribedEvent",
    "VehiclePresence",
    "WelcomeEvent",
]


#: The largest position (``seq``) a client may name: Redis stream ids are 64-bit.
MAX_POSITION = 2**63 - 1


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
    #: True on events rebuilt from the stored command after its log expired (see
    #: ``SnapshotEvent``); absent on logged and live events.
    snapshot: bool | None = None


class ResponseEvent(_EventBase):
    event: Literal["response"] = "response"
    response: Response
    sequence_number: int = Field(ge=1)


class StatusEvent(_EventBase):
    event: Literal["status"] = "status"
    #: A stored status, or ``retrying`` (published only: an attempt failed, another follows).
    status: CommandStatus | Literal["retrying"]
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error_message: str | None = None
    #: With ``retrying``: the attempt that failed, why, and when the next one starts.
    attempt: int | None = None
    reason: str | None = None
    retry_at: datetime | None = None


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


class SnapshotEvent(_Model):
    """The log no longer holds the events after the client's position, but the command
    does: what follows (until ``last_seq``) is its stored state, each event marked
    ``snapshot``: every stored response, then, for a failure, the error, then the
    command's current status. Its positions are the last ones of the command, not
    those of the original events; follow on from ``last_seq`` as usual."""

    event: Literal["snapshot"] = "snapshot"
    command_id: str
    last_seq: int
    status: CommandStatus
    responses: int


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
    """A client message the server could not act on; the connection stays open.

    With ``error_code`` ``cannot_recover``, ``last_seq`` is the command's latest
    position: fetch the command over REST, then follow it again from there.
    """

    event: Literal["error"] = "error"
    command_id: str | None = None
    error_message: str
    error_code: str
    last_seq: int | None = None


class WelcomeEvent(_Model):
    """The first event on every realtime connection: who it is and when its token expires."""

    event: Literal["welcome"] = "welcome"
    connection_id: str
    #: ISO 8601 (UTC); the connection closes with 4401 a short grace after it unless refreshed.
    expires_at: str


class TokenRefreshedEvent(_Model):
    """Answer to a ``refresh`` action that was accepted."""

    event: Literal["token_refreshed"] = "token_refreshed"
    expires_at: str


class VehiclePresence(_Model):
    """One vehicle's presence as it stands."""

    vehicle_id: str
    vin: str
    connection_status: str
    last_seen_at: datetime | None


class PresenceSnapshotEvent(_Model):
    """The presence of the followed vehicles as it stands, sent when a presence stream
    opens (and again after the relay reconnected), in pages of at most
    ``PRESENCE_SNAPSHOT_PAGE`` vehicles; ``last`` marks the final page. ``presence``
    events follow (``common.presence.PresenceChange``): each carries a vehicle's whole
    state, so applying them in order after the snapshot gives the current state."""

    event: Literal["presence_snapshot"] = "presence_snapshot"
    vehicles: list[VehiclePresence]
    last: bool = True


class CloseEvent(_Model):
    """The last event of a Server-Sent Events stream: the close code a WebSocket would get."""

    event: Literal["close"] = "close"
    code: int
    reason: str


class ClientMessage(BaseModel):
    """What a client may send on an open WebSocket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["subscribe", "unsubscribe", "ping", "refresh"]
    command_id: str | None = Field(default=None, max_length=64)
    since: int = Field(default=0, ge=0, le=MAX_POSITION)
    #: With ``refresh``: a new access token of the same user.
    token: str | None = Field(default=None, max_length=8192)
