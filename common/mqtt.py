"""The MQTT topic scheme and wire messages shared by the service and the vehicles.

Every topic of a vehicle lives under ``<prefix>/<VIN>/`` (docs/vehicles.md, "MQTT"):

=================================  ==========  ======================================
topic                              direction   message
=================================  ==========  ======================================
``<p>/<VIN>/request``              to car      ``RequestMessage`` (QoS 1)
``<p>/<VIN>/cancel``               to car      ``CancelMessage`` (QoS 1)
``<p>/<VIN>/response/<client>``    from car    ``AnswerMessage`` (QoS 1), one per part
``<p>/<VIN>/status``               from car    ``StatusMessage`` (QoS 1, retained; the
                                               last will is the offline one)
``<p>/<VIN>/heartbeat``            from car    ``HeartbeatMessage`` (QoS 0)
=================================  ==========  ======================================

``<client>`` is the requesting worker process's MQTT client id, so each worker
receives only the answers to its own requests. The broker's ACL lets the account
named ``<VIN>`` read only its own request and cancel topics and write only its own
response, status and heartbeat topics (deploy/mosquitto/acl).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AnswerError",
    "AnswerMessage",
    "CancelMessage",
    "HeartbeatMessage",
    "RequestMessage",
    "StatusMessage",
    "Topics",
]


class Topics:
    """Topic names under one prefix (the only place they are spelled)."""

    def __init__(self, prefix: str = "sovd") -> None:
        self.prefix = prefix

    def request(self, vin: str) -> str:
        return f"{self.prefix}/{vin}/request"

    def cancel(self, vin: str) -> str:
        return f"{self.prefix}/{vin}/cancel"

    def response(self, vin: str, client_id: str) -> str:
        return f"{self.prefix}/{vin}/response/{client_id}"

    def status(self, vin: str) -> str:
        return f"{self.prefix}/{vin}/status"

    def heartbeat(self, vin: str) -> str:
        return f"{self.prefix}/{vin}/heartbeat"

    def responses_for(self, client_id: str) -> str:
        """Subscription of one worker process: answers of every vehicle to it."""
        return f"{self.prefix}/+/response/{client_id}"

    @property
    def all_status(self) -> str:
        return f"{self.prefix}/+/status"

    @property
    def all_heartbeats(self) -> str:
        return f"{self.prefix}/+/heartbeat"

    def split(self, topic: str) -> tuple[str, str] | None:
        """``(vin, kind)`` of a vehicle topic (kind: request, response, status, ...)."""
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != self.prefix or not parts[1]:
            return None
        return parts[1], parts[2]


class _Wire(BaseModel):
    # Readers tolerate fields added later (additive changes only).
    model_config = ConfigDict(extra="ignore", frozen=True)


class RequestMessage(_Wire):
    """One exchange asked of a vehicle. A repeated request with the same ``command_id``
    resumes it: the vehicle sends again the parts from ``resume_from`` on (to the new
    ``response_topic``) instead of starting a second exchange."""

    command_id: str
    command_name: str
    params: dict[str, Any] = Field(default_factory=dict)
    #: When the service stops waiting; a vehicle drops a request received after it.
    deadline_at: datetime
    #: Where to answer (also given as the MQTT 5 response topic property).
    response_topic: str
    resume_from: int = Field(default=0, ge=0)


class CancelMessage(_Wire):
    command_id: str


class AnswerError(_Wire):
    """Why an exchange failed: ``code`` is a connector error code (workers/connector.py)."""

    code: str
    message: str


class AnswerMessage(_Wire):
    """One part of an answer. Parts count from 0; the last has ``is_final``; a part with
    ``error`` ends the exchange (its ``payload``, if any, is the vehicle's negative
    response and is recorded as the last response)."""

    command_id: str
    sequence: int = Field(ge=0)
    is_final: bool = False
    payload: dict[str, Any] | None = None
    error: AnswerError | None = None


class StatusMessage(_Wire):
    """The retained presence of a vehicle; the last will carries ``last_will``."""

    status: Literal["online", "offline"]
    reason: str = "connected"
    at: datetime | None = None


class HeartbeatMessage(_Wire):
    at: datetime | None = None
