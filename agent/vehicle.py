"""One vehicle as an MQTT client: presence, requests, answers, cancel and resume.

The client logs in as the VIN, leaves a retained ``offline``/``last_will`` status as its
last will, publishes a retained ``online`` status on every (re)connect and, on a clean
stop, a retained ``offline``/``clean_disconnect``. Requests run on a shared thread pool
through the backend; every part is kept until the exchange is pruned, so a repeated
request (the service resuming after an outage, or a QoS 1 duplicate) is answered by
sending the kept parts again from ``resume_from``, never by running the exchange twice.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from pydantic import ValidationError

from agent.backend import VehicleBackend
from agent.io_loop import ClientLoop
from common.mqtt import (
    AnswerError,
    AnswerMessage,
    CancelMessage,
    HeartbeatMessage,
    RequestMessage,
    StatusMessage,
    Topics,
)
from common.mqtt_client import connect_async, is_v5, new_client, publish_properties, wire
from common.settings import Settings
from common.timeutil import utcnow
from common.vehicles import ConnectionStatus, Vehicle
from workers.connector import ConnectorError, DiagnosticRequest, ExchangeCancelled

__all__ = ["SimulatedVehicle"]

log = structlog.get_logger(__name__)

#: Finished exchanges are kept this long for resumes, then forgotten.
KEEP_FINISHED_S = 600.0


@dataclass
class _Run:
    request: RequestMessage
    response_topic: str
    parts: list[AnswerMessage] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished_at: float | None = None


class SimulatedVehicle:
    """A vehicle's MQTT presence and request handling; ``start()`` connects through the
    shared ``ClientLoop``, ``stop()`` says goodbye (clean disconnect) and closes."""

    def __init__(
        self,
        settings: Settings,
        vehicle: Vehicle,
        *,
        password: str,
        backend: VehicleBackend,
        pool: Executor,
        loop: ClientLoop,
    ) -> None:
        self.vehicle = vehicle.model_copy(update={"connection_status": ConnectionStatus.CONNECTED})
        self.vin = vehicle.vin
        self._settings = settings
        self._topics = Topics(settings.mqtt_topic_prefix)
        self._backend = backend
        self._pool = pool
        self._loop = loop
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self.connected = threading.Event()
        will = StatusMessage(status="offline", reason="last_will")
        self._client = new_client(
            settings,
            self.vin,
            username=self.vin,
            password=password,
            will=(self._topics.status(self.vin), wire(will)),
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def start(self) -> None:
        connect_async(self._client, self._settings)
        self._loop.add(self._client)

    def say_goodbye(self) -> mqtt.MQTTMessageInfo | None:
        """Publish the clean-disconnect status (retained); ``None`` when not connected
        (the last will speaks instead). Cancels the exchanges in flight."""
        for run in list(self._runs.values()):
            run.cancelled.set()
        if not self.connected.is_set():
            return None
        goodbye = StatusMessage(status="offline", reason="clean_disconnect", at=utcnow())
        return self._client.publish(
            self._topics.status(self.vin), wire(goodbye), qos=1, retain=True
        )

    def close(self) -> None:
        self._loop.remove(self._client)

    def stop(self, *, wait_s: float = 2.0) -> None:
        """Say goodbye, wait up to ``wait_s`` for the broker to take it, disconnect."""
        info = self.say_goodbye()
        if info is not None:
            # RuntimeError: the connection dropped meanwhile; the last will says it.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=wait_s)
        self.close()

    def heartbeat(self) -> None:
        if self.connected.is_set():
            message = HeartbeatMessage(at=utcnow())
            self._client.publish(self._topics.heartbeat(self.vin), wire(message), qos=0)

    # -- paho callbacks ------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.warning("vehicle_connect_refused", vin=self.vin, reason=str(reason))
            return
        client.subscribe([(self._topics.request(self.vin), 1), (self._topics.cancel(self.vin), 1)])
        online = StatusMessage(status="online", reason="connected", at=utcnow())
        client.publish(self._topics.status(self.vin), wire(online), qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        where = self._topics.split(message.topic)
        if where is None or where[0] != self.vin:
            return
        try:
            if where[1] == "request":
                self._on_request(RequestMessage.model_validate_json(message.payload))
            elif where[1] == "cancel":
                cancel = CancelMessage.model_validate_json(message.payload)
                with self._lock:
                    run = self._runs.get(cancel.command_id)
                if run is not None:
                    run.cancelled.set()
        except ValidationError as exc:
            # The error kinds only: pydantic's text would quote the (sender's) payload.
            errors = sorted({str(e["type"]) for e in exc.errors()})
            log.warning("vehicle_message_refused", vin=self.vin, errors=errors)

    # -- exchanges -----------------------------------------------------------------------

    def _on_request(self, request: RequestMessage) -> None:
        if not request.response_topic.startswith(f"{self._topics.prefix}/{self.vin}/response/"):
            log.warning("vehicle_request_refused", vin=self.vin, reason="foreign response topic")
            return
        with self._lock:
            self._prune()
            run = self._runs.get(request.command_id)
            new = run is None
            if run is not None:  # a resume or a duplicate delivery: repeat, never rerun
                run.response_topic = request.response_topic
                repeat = run.parts[request.resume_from :]
            else:
                if request.deadline_at <= utcnow():
                    log.info("vehicle_request_expired", vin=self.vin,
                             command_id=request.command_id)  # fmt: skip
                    return
                run = _Run(request=request, response_topic=request.response_topic)
                self._runs[request.command_id] = run
                repeat = []
        for part in repeat:
            self._send(run, part)
        if new:
            self._pool.submit(self._execute, run)

    def _execute(self, run: _Run) -> None:
        request = run.request
        left = (request.deadline_at - utcnow()).total_seconds()
        exchange = DiagnosticRequest(
            command_id=request.command_id,
            command_name=request.command_name,
            params=request.params,
            vehicle=self.vehicle,
            deadline=time.monotonic() + left,
            cancelled=run.cancelled.is_set,
        )
        try:
            for part in self._backend.execute(exchange):
                self._add(run, payload=part.payload, is_final=part.is_final)
                if part.is_final:
                    break
        except ExchangeCancelled:  # the service stopped listening: nothing to answer
            log.info("vehicle_exchange_cancelled", vin=self.vin, command_id=request.command_id)
        except ConnectorError as exc:
            error = AnswerError(code=exc.code, message=exc.message)
            self._add(run, payload=getattr(exc, "payload", None), is_final=True, error=error)
        except Exception:
            log.exception("vehicle_backend_crashed", vin=self.vin, command_id=request.command_id)
            error = AnswerError(code="connector_error", message="The vehicle's software failed")
            self._add(run, payload=None, is_final=True, error=error)
        finally:
            run.finished_at = time.monotonic()

    def _add(
        self,
        run: _Run,
        *,
        payload: dict[str, Any] | None,
        is_final: bool,
        error: AnswerError | None = None,
    ) -> None:
        with self._lock:
            part = AnswerMessage(
                command_id=run.request.command_id,
                sequence=len(run.parts),
                is_final=is_final,
                payload=payload,
                error=error,
            )
            run.parts.append(part)
        self._send(run, part)

    def _send(self, run: _Run, part: AnswerMessage) -> None:
        properties = None
        if is_v5(self._settings):
            properties = publish_properties(correlation=part.command_id)
        self._client.publish(run.response_topic, wire(part), qos=1, properties=properties)

    def _prune(self) -> None:
        cutoff = time.monotonic() - KEEP_FINISHED_S
        for command_id in [
            c for c, r in self._runs.items() if r.finished_at is not None and r.finished_at < cutoff
        ]:
            del self._runs[command_id]
