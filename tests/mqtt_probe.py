"""A plain MQTT client for tests: connect as someone, publish, collect what arrives."""

from __future__ import annotations

import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt

from common.mqtt_client import connect_async, new_client
from common.settings import Settings
from tests.support import timeout


class Probe:
    def __init__(self, settings: Settings, client_id: str, *, username: str, password: str,
                 will: tuple[str, bytes] | None = None) -> None:  # fmt: skip
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.refused: Any = None
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        self.client = new_client(settings, client_id, username=username, password=password,
                                 will=will)  # fmt: skip
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.put(list(codes))
        connect_async(self.client, settings)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused = reason
            client.disconnect()
        else:
            self.connected.set()

    def wait_connected(self) -> None:
        if not self.connected.wait(timeout(10)):
            raise AssertionError(f"not connected (refused: {self.refused})")

    def subscribe(self, topic: str) -> list[Any]:
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=timeout(10))

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> Any:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=timeout(10))
        return info

    def next(self, seconds: float = 10) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout(seconds))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
