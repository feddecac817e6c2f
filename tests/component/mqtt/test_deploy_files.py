"""deploy/mosquitto: the committed ACL is the generated one, and the config runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from common.embedded_mqtt import find_mosquitto
from common.mqtt_auth import acl_text, write_password_file
from common.settings import Settings
from tests.mqtt_support import _listening
from tests.support import ROOT, free_port, timeout, wait_for

DEPLOY = ROOT / "deploy" / "mosquitto"


def test_the_committed_acl_is_what_sovd_admin_writes_for_the_default_settings() -> None:
    assert (DEPLOY / "acl").read_text() == acl_text(Settings(_env_file=None))


def test_the_committed_config_starts_mosquitto(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/config/acl", str(DEPLOY / "acl"))
    conf = conf.replace("/mosquitto/auth/", f"{tmp_path}/").replace(
        "/mosquitto/data/", f"{tmp_path}/"
    )
    write_password_file(tmp_path / "passwd", settings, [])
    stay = "user root\n" if os.geteuid() == 0 else ""  # as in common.embedded_mqtt
    (tmp_path / "mosquitto.conf").write_text(stay + conf)
    binary = find_mosquitto()
    assert binary is not None
    broker = subprocess.Popen([binary, "-c", str(tmp_path / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: _listening(port), what="mosquitto on the committed config")
    finally:
        broker.terminate()
        broker.wait(timeout=timeout(10))
