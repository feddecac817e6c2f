"""Submit -> first event and submit -> terminal status, as a WebSocket client sees them.

Starts a private Valkey server and the api, worker and realtime processes (simulator
delays zero), then submits commands one after another through the REST API. For each
command the client sends `subscribe` on an open WebSocket right after the 202 and
times the first event and the terminal status from just before the POST.

    .venv/bin/python -m bench.latency [--commands 200] [--poll-ms 1000 100]

`--poll-ms` sets Dramatiq's worker timeout (its idle polling back-off ceiling); each
value is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
from websockets.sync.client import ClientConnection, connect

from common.fleet import demo_fleet
from common.vehicles import ConnectionStatus
from tests.support import RedisServer, Stack, running_stack

SECRET = "bench-secret-that-is-long-enough-0123456789abcdef"  # noqa: S105 - private bench stack
TERMINAL = {"completed", "failed"}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def measure(stack: Stack, commands: int) -> tuple[list[float], list[float]]:
    http = httpx.Client(base_url=stack.api_url, timeout=10)
    token = http.post(
        "/api/v1/auth/login", json={"username": "engineer", "password": "engineer-demo-pass"}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    vehicle = next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED)
    body = {
        "vehicle_id": vehicle.vehicle_id,
        "command_name": "ReadDataByID",
        "command_params": {"ecuAddress": "0x10", "dataId": "0xF190"},
    }
    warm = http.post("/api/v1/commands", headers=headers, json=body).json()
    first_ms: list[float] = []
    terminal_ms: list[float] = []
    with connect(f"{warm['websocket_url']}?token={token}") as ws:
        _drain(ws, warm["command_id"])
        for _ in range(commands):
            start = time.perf_counter()
            command = http.post("/api/v1/commands", headers=headers, json=body).json()
            ws.send(json.dumps({"action": "subscribe", "command_id": command["command_id"]}))
            first, last = _drain(ws, command["command_id"])
            first_ms.append((first - start) * 1000)
            terminal_ms.append((last - start) * 1000)
            ws.send(json.dumps({"action": "unsubscribe", "command_id": command["command_id"]}))
    http.close()
    return first_ms, terminal_ms


def _drain(ws: ClientConnection, command_id: str) -> tuple[float, float]:
    first = 0.0
    while True:
        event = json.loads(ws.recv(timeout=30))
        if event.get("command_id") != command_id or event["event"] in (
            "subscribed",
            "unsubscribed",
        ):
            continue
        now = time.perf_counter()
        first = first or now
        if event["event"] == "status" and event["status"] in TERMINAL:
            return first, now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--poll-ms", type=int, nargs="+", default=[1000, 100])
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        print(f"{'worker poll':>12} {'metric':>16} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
              f"{'max ms':>8}")  # fmt: skip
        for poll in args.poll_ms:
            with (
                tempfile.TemporaryDirectory() as logs,
                running_stack(
                    server.url,
                    Path(logs),
                    jwt_secret=SECRET,
                    env={"SOVD_SIM_DELAY_SCALE": "0", "dramatiq_worker_timeout": str(poll)},
                ) as stack,
            ):
                first, terminal = measure(stack, args.commands)
            for name, values in (("submit->first", first), ("submit->terminal", terminal)):
                print(
                    f"{poll:>9} ms {name:>16} {statistics.median(values):>8.1f} "
                    f"{percentile(values, 95):>8.1f} {percentile(values, 99):>8.1f} "
                    f"{max(values):>8.1f}"
                )
        print(f"commands per configuration: {args.commands} (sequential, one client)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
