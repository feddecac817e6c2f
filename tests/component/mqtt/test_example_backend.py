"""A car's own software behind the agent: the documented example backend, wired as a
real car would be (its own password file, no registry access)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from common.mqtt_auth import vehicle_password, vehicle_secret
from common.settings import Settings
from tests.component.mqtt.conftest import AgentProcess, wait_status
from tests.component.mqtt.test_connector import CAR, payloads, request
from workers.connector import NegativeResponse, ResponsePart
from workers.mqtt_connector import MqttConnector


def test_the_example_backend_answers_from_the_cars_state_file(
    start_agent: Callable[..., AgentProcess], mqtt_settings: Settings, tmp_path: Path
) -> None:
    car_settings = mqtt_settings.model_copy(update={"data_dir": tmp_path})
    dtc = {"code": "P0420", "fault_name": "Catalyst Efficiency", "severity": 2}
    (tmp_path / "car-state.json").write_text(json.dumps(
        {"ecus": {"0x10": {"name": "Engine", "dtcs": [dtc], "data": {"0xF190": CAR.vin}}}}
    ))  # fmt: skip
    (tmp_path / "fleet.json").write_text(json.dumps([CAR.model_dump(mode="json")]))
    password = tmp_path / "mqtt-password"
    password.write_text(vehicle_password(vehicle_secret(mqtt_settings), CAR.vin) + "\n")
    start_agent("--fleet", str(tmp_path / "fleet.json"), "--vin", CAR.vin,
                "--password-file", str(password), "--backend", "agent.example_backend:build",
                settings=car_settings)  # fmt: skip
    wait_status(mqtt_settings, CAR.vin, "online")
    connector = MqttConnector(mqtt_settings)
    try:
        engine = {"address": "0x10", "name": "Engine"}
        assert payloads(list(connector.execute(request()))) == payloads([
            ResponsePart({"type": "dtc", "ecu": engine, **dtc}),
            ResponsePart({"type": "dtc_summary", "ecu": engine, "dtc_count": 1}, is_final=True),
        ])  # fmt: skip
        vin = request("ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xF190"},
                      command_id="00000000-0000-4000-8000-000000000010")  # fmt: skip
        [part] = connector.execute(vin)
        assert part.payload["value"] == CAR.vin
        clear = request("ClearDTC", command_id="00000000-0000-4000-8000-000000000011")
        with pytest.raises(NegativeResponse, match="conditionsNotCorrect"):
            list(connector.execute(clear))
    finally:
        connector.close()
