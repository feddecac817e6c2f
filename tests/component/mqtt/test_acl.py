"""The broker's ACL: a vehicle uses its own topics only (deploy/mosquitto, %u = VIN)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from common.mqtt import Topics
from common.mqtt_auth import service_password, vehicle_password, vehicle_secret
from common.settings import Settings
from tests.component.mqtt.conftest import connected_fleet
from tests.mqtt_probe import Probe
from tests.support import timeout


@pytest.fixture
def probes(mqtt_settings: Settings) -> Iterator[dict[str, Probe]]:
    a, b = connected_fleet()[:2]
    secret = vehicle_secret(mqtt_settings)
    made = {
        name: Probe(mqtt_settings, f"probe-{name}", username=car.vin,
                    password=vehicle_password(secret, car.vin))
        for name, car in (("a", a), ("b", b))
    } | {
        "service": Probe(mqtt_settings, "probe-service", username=mqtt_settings.mqtt_username,
                         password=service_password(mqtt_settings)),
    }  # fmt: skip
    for probe in made.values():
        probe.wait_connected()
    yield made
    for probe in made.values():
        probe.close()


def _drain_until(probe: Probe, topic: str) -> list[str]:
    """Topics received up to and including the first message on ``topic``."""
    seen = []
    deadline = time.monotonic() + timeout(10)
    while time.monotonic() < deadline:
        message = probe.next()
        seen.append(message.topic)
        if message.topic == topic:
            return seen
    raise AssertionError(f"no message on {topic}")


def test_a_vehicle_cannot_read_another_vehicles_requests(
    mqtt_settings: Settings, probes: dict[str, Probe]
) -> None:
    a, b = connected_fleet()[:2]
    topics = Topics(mqtt_settings.mqtt_topic_prefix)
    # Mosquitto 2.0 grants the subscription and then delivers nothing the ACL does not
    # allow (later versions refuse it with 0x87): what matters is what arrives.
    probes["a"].subscribe(topics.request(b.vin))
    probes["a"].subscribe(topics.request(a.vin))
    probes["b"].subscribe(topics.request(b.vin))
    probes["a"].subscribe(f"{mqtt_settings.mqtt_topic_prefix}/+/request")  # a wildcard try

    probes["service"].publish(topics.request(b.vin), b'{"for": "b"}')
    probes["service"].publish(topics.request(a.vin), b'{"for": "a"}')

    assert probes["b"].next().topic == topics.request(b.vin)
    # A's own request arrives (twice: its topic and the wildcard), B's never did before it.
    assert _drain_until(probes["a"], topics.request(a.vin)) == [topics.request(a.vin)]


def test_a_vehicle_cannot_answer_or_speak_for_another_vehicle(
    mqtt_settings: Settings, probes: dict[str, Probe]
) -> None:
    a, b = connected_fleet()[:2]
    topics = Topics(mqtt_settings.mqtt_topic_prefix)
    probes["service"].subscribe(topics.responses_for("worker-1"))
    probes["service"].subscribe(topics.all_status)
    while not probes["service"].messages.empty():  # retained statuses of earlier runs
        probes["service"].next()

    forged = probes["a"].publish(topics.response(b.vin, "worker-1"), b'{"forged": true}')
    probes["a"].publish(topics.status(b.vin), b'{"status": "offline"}', retain=True)
    probes["a"].publish(topics.request(b.vin), b'{"injected": true}')
    probes["a"].publish(topics.response(a.vin, "worker-1"), b'{"own": true}')

    assert forged.is_published()  # the broker took it (QoS 1 acknowledged) ...
    message = probes["service"].next()
    # ... and delivered nothing of it: the first thing through is A's own answer.
    assert (message.topic, message.payload) == (
        topics.response(a.vin, "worker-1"),
        b'{"own": true}',
    )
    assert probes["service"].messages.empty()


def test_a_wrong_password_or_another_vehicles_password_is_refused(
    mqtt_settings: Settings,
) -> None:
    a, b = connected_fleet()[:2]
    secret = vehicle_secret(mqtt_settings)
    for username, password in ((a.vin, "wrong"), (a.vin, vehicle_password(secret, b.vin))):
        probe = Probe(mqtt_settings, f"intruder-{username}", username=username, password=password)
        try:
            deadline = time.monotonic() + timeout(10)
            while probe.refused is None and time.monotonic() < deadline:
                time.sleep(0.01)  # bounded poll of the connect outcome
            assert probe.refused is not None
            assert not probe.connected.is_set()
            assert probe.refused.value in (0x86, 0x87)  # bad user name or password / not authorized
        finally:
            probe.close()
