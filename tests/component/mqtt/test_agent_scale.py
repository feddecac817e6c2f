"""One agent process holds 1,000 vehicles, each its own MQTT client, and answers any."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from pathlib import Path

from bench.transports import bench_fleet
from common.mqtt import StatusMessage, Topics
from common.settings import Settings
from common.vehicles import ConnectionStatus
from tests.component.mqtt.conftest import AgentProcess, service_probe
from tests.component.mqtt.test_connector import request
from tests.mqtt_support import MosquittoServer
from tests.support import timeout
from workers.connector import DiagnosticRequest
from workers.mqtt_connector import MqttConnector

VEHICLES = 1000


def test_one_agent_brings_a_thousand_vehicles_online_and_answers_the_last(
    mqtt_settings: Settings,
    mosquitto: MosquittoServer,
    start_agent: Callable[..., AgentProcess],
    tmp_path: Path,
) -> None:
    fleet = bench_fleet(VEHICLES)
    mosquitto.write_accounts([v.vin for v in fleet])
    mosquitto.halt()  # reload the accounts
    mosquitto.start()
    (tmp_path / "fleet.json").write_text(json.dumps([v.model_dump(mode="json") for v in fleet]))
    probe = service_probe(mqtt_settings)
    try:
        probe.subscribe(Topics(mqtt_settings.mqtt_topic_prefix).all_status)
        start_agent("--fleet", str(tmp_path / "fleet.json"))
        online: set[str] = set()
        deadline = time.monotonic() + timeout(120)
        while len(online) < VEHICLES and time.monotonic() < deadline:
            try:
                message = probe.next(1)
            except queue.Empty:
                continue
            if StatusMessage.model_validate_json(message.payload).status == "online":
                online.add(message.topic.split("/")[1])
        assert online == {v.vin for v in fleet}
    finally:
        probe.close()
    last = fleet[-1].model_copy(update={"connection_status": ConnectionStatus.CONNECTED})
    base = request()
    connector = MqttConnector(mqtt_settings)
    try:
        parts = list(connector.execute(DiagnosticRequest(
            command_id=base.command_id, command_name="ReadDTC", params={"ecuAddress": "0x10"},
            vehicle=last, deadline=base.deadline,
        )))  # fmt: skip
    finally:
        connector.close()
    assert parts[-1].payload["type"] == "dtc_summary"
    assert parts[-1].is_final
