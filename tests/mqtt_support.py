"""A private Mosquitto for the tests: own port, config, ACL and password file."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from common.embedded_mqtt import broker_config, find_mosquitto
from common.mqtt_auth import acl_text, write_password_file
from common.settings import Settings
from tests.support import free_port, wait_for


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class MosquittoServer:
    """``/usr/sbin/mosquitto`` on a free port; ``halt()`` then ``start()`` is a restart
    (persistence on, so queued messages and retained statuses survive it)."""

    def __init__(self, settings: Settings, vins: Iterable[str]) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError(
                "mosquitto is required for the MQTT tests (apt-get install mosquitto)"
            )
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sovd-test-mosquitto-"))
        (self.dir / "data").mkdir()
        self.settings = settings
        self.write_accounts(vins)
        (self.dir / "acl").write_text(acl_text(settings))
        self.config = self.dir / "mosquitto.conf"
        self.config.write_text(
            broker_config(host="127.0.0.1", port=self.port, password_file=self.dir / "passwd",
                          acl_file=self.dir / "acl", data_dir=self.dir / "data")
        )  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def write_accounts(self, vins: Iterable[str]) -> None:
        write_password_file(self.dir / "passwd", self.settings, vins)

    def start(self) -> None:
        with (self.dir / "broker.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for(lambda: _listening(self.port), timeout_s=10, what="mosquitto to listen")
        except AssertionError:
            self.halt()
            raise AssertionError((self.dir / "broker.log").read_text()) from None

    def halt(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)
