"""paho-mqtt clients configured one way for every process (workers, bridge, agent)."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel

from common.settings import Settings

__all__ = ["connect_async", "is_v5", "new_client", "no_delay", "publish_properties", "wire"]

#: Seconds between reconnect attempts: from the first, doubling up to the last.
RECONNECT_DELAY_S = (1, 4)


def is_v5(settings: Settings) -> bool:
    return settings.mqtt_protocol == "5"


def new_client(
    settings: Settings,
    client_id: str,
    *,
    username: str,
    password: str,
    will: tuple[str, bytes] | None = None,
) -> mqtt.Client:
    """A client that reconnects by itself (paho's loop); ``will`` is a retained QoS 1
    last will ``(topic, payload)``, which with MQTT 5 the broker holds back for
    ``SOVD_MQTT_OFFLINE_GRACE_S`` (a vehicle back within it never went offline). Call
    ``connect_async`` then ``loop_start`` (or hand the client to ``agent.io_loop``)."""
    v5 = is_v5(settings)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        # 3.1.1 has no session expiry: a persistent session, expired by the broker's
        # persistent_client_expiration (deploy/mosquitto/mosquitto.conf).
        clean_session=None if v5 else False,
    )
    client.username_pw_set(username, password)
    client.reconnect_delay_set(*RECONNECT_DELAY_S)
    client.max_queued_messages_set(10_000)
    if will is not None:
        will_properties = None
        if v5 and settings.mqtt_offline_grace_s > 0:
            will_properties = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
            will_properties.WillDelayInterval = int(settings.mqtt_offline_grace_s + 0.999)
        client.will_set(will[0], will[1], qos=1, retain=True, properties=will_properties)
    client.on_socket_open = no_delay
    return client


def no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Small packets go out at once: with Nagle's algorithm and delayed ACKs an answer
    part waited ~40 ms per hop (measured, bench/transports.py)."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket (unix, websockets)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect_async(client: mqtt.Client, settings: Settings) -> None:
    """Start connecting (non-blocking). With MQTT 5 the session outlives a disconnect by
    ``SOVD_MQTT_SESSION_EXPIRY_S``, so QoS 1 messages queued meanwhile are kept."""
    properties = None
    options: dict[str, Any] = {}
    if is_v5(settings):
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = settings.mqtt_session_expiry_s
        options["clean_start"] = mqtt.MQTT_CLEAN_START_FIRST_ONLY
    client.connect_async(
        settings.mqtt_host,
        settings.mqtt_port,
        keepalive=settings.mqtt_keepalive_s,
        properties=properties,
        **options,
    )


def publish_properties(
    *,
    response_topic: str | None = None,
    correlation: str | None = None,
    expiry_s: float | None = None,
) -> Properties:
    """MQTT 5 PUBLISH properties (a 3.1.1 client sends none: callers skip them)."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if response_topic is not None:
        properties.ResponseTopic = response_topic
    if correlation is not None:
        properties.CorrelationData = correlation.encode()
    if expiry_s is not None:
        properties.MessageExpiryInterval = max(1, int(expiry_s + 0.999))
    return properties


def wire(message: BaseModel) -> bytes:
    """A wire message as compact JSON bytes."""
    return message.model_dump_json(exclude_none=True).encode()
