"""Helpers for the gRPC tests: the gateway as a process, its outcomes, a seeded fleet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from common.fleet import demo_fleet
from common.keys import Keys
from common.vehicles import Vehicle
from tests.support import ROOT, free_port, timeout, wait_for


def seed_fleet(client: redis.Redis, keys: Keys) -> list[Vehicle]:
    """The demo vehicles, written where the gateway (and the api) read them."""
    vehicles = demo_fleet()
    for vehicle in vehicles:
        client.set(keys.vehicle(vehicle.vehicle_id), vehicle.model_dump_json())
        client.zadd(keys.vehicles, {vehicle.vehicle_id: 0})
    return vehicles


class Outcomes:
    """The in-process gateway's observer: how each call ended, by command id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ended: dict[str, str] = {}

    def __call__(self, command_id: str, outcome: str) -> None:
        with self._lock:
            self._ended[command_id] = outcome

    def of(self, command_id: str) -> str | None:
        with self._lock:
            return self._ended.get(command_id)

    def wait(self, command_id: str, *, timeout_s: float = 10.0) -> str:
        return wait_for(
            lambda: self.of(command_id),
            timeout_s=timeout_s,
            what=f"the gateway to end {command_id}",
        )


@dataclass
class GatewayProcess:
    """``python -m gateway`` as a separate OS process, its JSON log in ``log``."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def ended(self, command_id: str) -> str | None:
        """The outcome the gateway logged for ``command_id``, if it ended."""
        for event in self.events():
            if (
                event.get("event") == "gateway_command_ended"
                and event.get("command_id") == command_id
            ):
                return str(event["outcome"])
        return None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=timeout(10))


@contextmanager
def gateway_process(
    env: Mapping[str, str], log: Path, *, argv: tuple[str, ...] = (), port: int | None = None
) -> Iterator[GatewayProcess]:
    """Start the gateway with ``env`` (the ``SOVD_*`` of the stack it serves) on ``port``
    (a free one by default); wait until it listens (or idles, with ``--procfile``); stop
    it on exit."""
    port = port or free_port()
    full_env = {
        **os.environ,
        "SOVD_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        **env,
        "SOVD_GRPC_GATEWAY_PORT": str(port),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", *argv],
            cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    gateway = GatewayProcess(process=process, port=port, log=log)
    try:
        wait_for(
            lambda: (
                any(
                    e.get("event") in ("gateway_listening", "gateway_idle")
                    for e in gateway.events()
                )
                or process.poll() is not None
            ),
            timeout_s=30,
            what="the gateway to start",
        )
        assert process.poll() is None, log.read_text()
        yield gateway
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout(10))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()  # reaped, so it is not left running behind the test
