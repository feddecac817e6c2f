"""``VehicleConnector`` over MQTT: one shared paho client per worker process.

An exchange publishes a ``RequestMessage`` on the vehicle's request topic (QoS 1; with
MQTT 5 also the response topic, the command id as correlation data and a message expiry
at the deadline), follows the vehicle's retained status, and yields the answer parts
from this process's response topic in sequence order, each once (``PartSequencer``).
When the client reconnects after a broker outage, every open exchange sends its request
again with ``resume_from``: the vehicle repeats the parts from there, duplicates are
dropped. The deadline and cancellation publish a ``CancelMessage`` to the vehicle.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from pydantic import ValidationError

from common.mqtt import AnswerMessage, CancelMessage, RequestMessage, StatusMessage, Topics
from common.mqtt_auth import service_password
from common.mqtt_client import connect_async, is_v5, new_client, publish_properties, wire
from common.settings import Settings
from common.timeutil import utcnow
from common.vehicles import ConnectionStatus
from workers.connector import (
    ConnectionLost,
    ConnectorError,
    DiagnosticRequest,
    EcuNotResponding,
    ExchangeCancelled,
    ExchangeTimeout,
    NegativeResponse,
    ResponsePart,
    VehicleUnavailable,
)
from workers.mqtt_parts import PartSequencer

__all__ = ["MqttConnector", "error_from_answer"]

log = structlog.get_logger(__name__)

#: Longest single wait, so cancellation and the deadline are noticed quickly.
WAIT_SLICE_S = 0.05
#: How long an exchange waits for the broker connection before failing (transient).
CONNECT_WAIT_S = 5.0
#: A request never asks the broker to keep it longer than this.
MAX_EXPIRY_S = 24 * 3600.0
#: Longest error message taken from a vehicle.
MAX_MESSAGE_CHARS = 500

_ERRORS: dict[str, type[ConnectorError]] = {
    cls.code: cls
    for cls in (
        VehicleUnavailable,
        EcuNotResponding,
        ConnectionLost,
        ExchangeTimeout,
        ExchangeCancelled,
    )
}


def error_from_answer(part: AnswerMessage) -> ConnectorError:
    """The connector error a vehicle's error part stands for (unknown codes: generic)."""
    assert part.error is not None
    message = part.error.message[:MAX_MESSAGE_CHARS]
    if part.error.code == NegativeResponse.code:
        return NegativeResponse(message, part.payload or {})
    return _ERRORS.get(part.error.code, ConnectorError)(message)


@dataclass
class _Exchange:
    vin: str
    request: RequestMessage
    inbox: queue.Queue[AnswerMessage | StatusMessage] = field(default_factory=queue.Queue)
    sequencer: PartSequencer = field(default_factory=PartSequencer)
    #: The vehicle's last will, while the grace for it to come back runs.
    offline: StatusMessage | None = None
    offline_until: float = 0.0


class MqttConnector:
    """Selected by ``SOVD_CONNECTOR=mqtt``. Thread-safe: every worker thread of the
    process shares the one client; ``close()`` disconnects it."""

    def __init__(self, settings: Settings, *, client_id: str | None = None) -> None:
        self._settings = settings
        self._topics = Topics(settings.mqtt_topic_prefix)
        self.client_id = client_id or (
            f"sovd-worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self._client = new_client(
            settings,
            self.client_id,
            username=settings.mqtt_username,
            password=service_password(settings),
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._lock = threading.Lock()
        self._exchanges: dict[str, _Exchange] = {}
        self._status_refs: dict[str, int] = {}
        self._connected = threading.Event()
        self._started = False
        self._ever_connected = False
        #: Why the broker last refused this client (a wrong password, ...), if it did.
        self._refused: str | None = None

    # -- the connector interface -------------------------------------------------------

    def execute(self, request: DiagnosticRequest) -> Iterator[ResponsePart]:
        vehicle = request.vehicle
        if vehicle.connection_status != ConnectionStatus.CONNECTED:
            seen = vehicle.last_seen_at.isoformat() if vehicle.last_seen_at else "never"
            raise VehicleUnavailable(f"Vehicle {vehicle.vin} is not connected (last seen {seen})")
        self._ensure_started(request)
        remaining = min(request.deadline - time.monotonic(), MAX_EXPIRY_S)
        message = RequestMessage(
            command_id=request.command_id,
            command_name=request.command_name,
            params=request.params,
            deadline_at=utcnow() + timedelta(seconds=max(remaining, 0)),
            response_topic=self._topics.response(vehicle.vin, self.client_id),
        )
        exchange = _Exchange(vin=vehicle.vin, request=message)
        self._open(exchange)
        finished = False
        try:
            self._send_request(exchange)
            while True:
                item = self._next(exchange, request)
                if isinstance(item, StatusMessage):
                    self._on_status(exchange, item)
                    continue
                for part in exchange.sequencer.accept(item):
                    if part.error is not None:
                        finished = True
                        raise error_from_answer(part)
                    finished = part.is_final
                    yield ResponsePart(part.payload or {}, is_final=part.is_final)
                    if finished:
                        return
        finally:
            self._close(exchange)
            if not finished:  # cancelled, timed out, failed or abandoned by the caller
                self._publish(
                    self._topics.cancel(vehicle.vin), CancelMessage(command_id=request.command_id)
                )

    def close(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False

    # -- exchange bookkeeping ----------------------------------------------------------

    def _ensure_started(self, request: DiagnosticRequest) -> None:
        with self._lock:
            if not self._started:
                connect_async(self._client, self._settings)
                self._client.loop_start()
                self._started = True
        wait = min(CONNECT_WAIT_S, max(request.deadline - time.monotonic(), 0))
        if not self._connected.wait(wait):
            where = f"{self._settings.mqtt_host}:{self._settings.mqtt_port}"
            if self._refused is not None:
                raise ConnectionLost(
                    f"The MQTT broker at {where} refused the service account "
                    f"{self._settings.mqtt_username!r} ({self._refused})"
                )
            raise ConnectionLost(f"The MQTT broker at {where} is not reachable")

    def _open(self, exchange: _Exchange) -> None:
        # Subscribing under the lock keeps a concurrent _close of the same VIN from
        # unsubscribing after this subscription (paho only queues the packet here).
        with self._lock:
            self._exchanges[exchange.request.command_id] = exchange
            refs = self._status_refs.get(exchange.vin, 0)
            self._status_refs[exchange.vin] = refs + 1
            if refs == 0:  # the retained status arrives at once: the vehicle's own word
                self._client.subscribe(self._topics.status(exchange.vin), qos=1)

    def _close(self, exchange: _Exchange) -> None:
        with self._lock:
            if self._exchanges.get(exchange.request.command_id) is exchange:
                del self._exchanges[exchange.request.command_id]
            refs = self._status_refs.get(exchange.vin, 1) - 1
            if refs > 0:
                self._status_refs[exchange.vin] = refs
                return
            self._status_refs.pop(exchange.vin, None)
            self._client.unsubscribe(self._topics.status(exchange.vin))

    def _next(
        self, exchange: _Exchange, request: DiagnosticRequest
    ) -> AnswerMessage | StatusMessage:
        """The next message for the exchange, honouring cancellation and the deadline."""
        while True:
            if request.cancelled():
                raise ExchangeCancelled("Cancelled during the exchange")
            if exchange.offline is not None and time.monotonic() >= exchange.offline_until:
                raise self._went_offline(exchange, exchange.offline)
            left = request.deadline - time.monotonic()
            if left <= 0:
                raise ExchangeTimeout(
                    f"Vehicle {exchange.vin} did not answer within the time limit"
                )
            try:
                return exchange.inbox.get(timeout=min(left, WAIT_SLICE_S))
            except queue.Empty:
                continue

    def _on_status(self, exchange: _Exchange, status: StatusMessage) -> None:
        """A clean goodbye ends the exchange at once; a last will (the link dropped, or
        the broker restarted) only after ``SOVD_MQTT_OFFLINE_GRACE_S`` without the
        vehicle coming back; when it does, the exchange resumes."""
        if status.status == "offline":
            if status.reason == "clean_disconnect" or self._settings.mqtt_offline_grace_s <= 0:
                raise self._went_offline(exchange, status)
            if exchange.offline is None:
                exchange.offline = status
                exchange.offline_until = time.monotonic() + self._settings.mqtt_offline_grace_s
        elif exchange.offline is not None:
            exchange.offline = None
            self._send_request(exchange)

    @staticmethod
    def _went_offline(exchange: _Exchange, status: StatusMessage) -> ConnectorError:
        why = status.reason.replace("_", " ")
        if exchange.sequencer.next_sequence == 0:
            return VehicleUnavailable(f"Vehicle {exchange.vin} is not connected ({why})")
        return ConnectionLost(f"Vehicle {exchange.vin} went offline mid-exchange ({why})")

    def _send_request(self, exchange: _Exchange) -> None:
        message = exchange.request.model_copy(
            update={"resume_from": exchange.sequencer.next_sequence}
        )
        left = (message.deadline_at - utcnow()).total_seconds()
        properties = None
        if is_v5(self._settings):
            properties = publish_properties(
                response_topic=message.response_topic,
                correlation=message.command_id,
                expiry_s=max(left, 0),
            )
        self._client.publish(
            self._topics.request(exchange.vin), wire(message), qos=1, properties=properties
        )

    def _publish(self, topic: str, message: CancelMessage) -> None:
        self._client.publish(topic, wire(message), qos=1)

    # -- paho callbacks (its network thread) ---------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            log.warning("mqtt_connect_refused", reason=self._refused)
            return
        self._refused = None
        with self._lock:
            vins = list(self._status_refs)
            open_exchanges = list(self._exchanges.values())
            resumed = self._ever_connected
            self._ever_connected = True
        subscriptions = [(self._topics.responses_for(self.client_id), 1)]
        subscriptions += [(self._topics.status(vin), 1) for vin in vins]
        client.subscribe(subscriptions)
        self._connected.set()
        log.info("mqtt_connected", client_id=self.client_id, open_exchanges=len(open_exchanges))
        if resumed:
            for exchange in open_exchanges:
                self._send_request(exchange)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._connected.clear()
        log.warning("mqtt_disconnected", reason=str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        where = self._topics.split(message.topic)
        if where is None:
            return
        vin, kind = where
        try:
            if kind == "response":
                answer = AnswerMessage.model_validate_json(message.payload)
                with self._lock:
                    exchange = self._exchanges.get(answer.command_id)
                # The topic names the sender (the ACL binds it to the login): a vehicle
                # cannot answer another vehicle's command.
                if exchange is not None and exchange.vin == vin:
                    exchange.inbox.put(answer)
            elif kind == "status":
                status = StatusMessage.model_validate_json(message.payload)
                with self._lock:
                    targets = [e for e in self._exchanges.values() if e.vin == vin]
                for exchange in targets:
                    exchange.inbox.put(status)
        except ValidationError as exc:
            # The error kinds only: pydantic's text would quote the vehicle's payload.
            errors = sorted({str(e["type"]) for e in exc.errors()})
            log.warning("mqtt_message_refused", topic=message.topic, errors=errors)
