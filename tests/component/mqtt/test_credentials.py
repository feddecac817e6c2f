"""``sovd-admin mqtt-credentials``: the files a Mosquitto runs on, and a car's password."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from common import admin
from common.embedded_mqtt import broker_config, find_mosquitto
from common.mqtt_auth import DEV_VEHICLE_SECRET, vehicle_password
from common.settings import Settings, get_settings
from common.vehicles import Vehicle
from tests.mqtt_probe import Probe
from tests.mqtt_support import _listening
from tests.support import free_port, timeout, wait_for

UNREGISTERED = "1HGCM82633A004352"


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SOVD_REDIS_URL", settings.effective_redis_url)
    monkeypatch.setenv("SOVD_KEY_PREFIX", settings.key_prefix)
    monkeypatch.setenv("SOVD_JWT_SECRET", settings.jwt_secret)
    monkeypatch.setenv("SOVD_MQTT_VEHICLE_SECRET", "s" * 40)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_written_files_let_registered_vehicles_in_and_no_one_else(
    cli_env: None,
    fleet: list[Vehicle],
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    code = admin.main(["mqtt-credentials", "--password-file", str(passwd), "--acl-file", str(acl)])
    assert code == 0
    assert f"sovd-service and {len(fleet)} vehicles" in capsys.readouterr().out
    assert oct(passwd.stat().st_mode & 0o777) == "0o600"
    assert admin.main(["mqtt-credentials", "--show", fleet[0].vin]) == 0
    password = capsys.readouterr().out.strip()
    assert (
        password
        == vehicle_password("s" * 40, fleet[0].vin)
        != vehicle_password(DEV_VEHICLE_SECRET, fleet[0].vin)
    )
    port = free_port()
    (tmp_path / "data").mkdir()
    config = tmp_path / "mosquitto.conf"
    config.write_text(broker_config(host="127.0.0.1", port=port, password_file=passwd,
                                    acl_file=acl, data_dir=tmp_path / "data"))  # fmt: skip
    binary = find_mosquitto()
    assert binary is not None
    broker = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(port), what="mosquitto")
        options = settings.model_copy(update={"mqtt_port": port})
        member = Probe(options, "member", username=fleet[0].vin, password=password)
        member.wait_connected()
        member.close()
        outsider_password = vehicle_password("s" * 40, UNREGISTERED)
        outsider = Probe(options, "outsider", username=UNREGISTERED, password=outsider_password)
        deadline = time.monotonic() + timeout(10)
        while outsider.refused is None and time.monotonic() < deadline:
            time.sleep(0.01)  # bounded poll of the connect outcome
        outsider.close()
        assert outsider.refused is not None
    finally:
        broker.terminate()
        broker.wait(timeout=timeout(10))


def test_bad_vins_and_missing_outputs_are_refused(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin.main(["mqtt-credentials", "--show", "NOT-A-VIN"]) == 2
    assert "not a valid VIN: NOT-A-VIN" in capsys.readouterr().err
    assert admin.main(["mqtt-credentials"]) == 2


def test_production_over_mqtt_needs_its_own_vehicle_secret() -> None:
    base = {"_env_file": None, "env": "production", "jwt_secret": "j" * 40, "connector": "mqtt"}
    with pytest.raises(ValidationError, match="SOVD_MQTT_VEHICLE_SECRET must be at least 32"):
        Settings(**base)  # type: ignore[arg-type]
    assert Settings(**base, mqtt_vehicle_secret="v" * 32).connector == "mqtt"  # type: ignore[arg-type]
