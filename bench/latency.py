"""Submit -> first event and submit -> terminal, back to back and after idle gaps.

Starts a private Valkey server and the api, worker (1 process, 4 threads) and realtime
processes with simulator delays at zero, once per broker configuration:

- ``dramatiq``: Dramatiq's own Redis consumer, which polls with back-off up to the
  worker timeout (1000 ms, its default) when the queue is empty;
- ``wakeup``: our broker (common/broker.py), whose idle consumers block on a wake-up
  list (same 1000 ms worker timeout).

For each command it reports:

- pickup: ``started_at - submitted_at`` from the command record, i.e. from the api
  storing the command to the worker publishing ``in_progress`` (queueing + pickup);
- client first / terminal: from just before the POST to the first event / the terminal
  status on a WebSocket the client already holds (it sends ``subscribe`` after the 202),
  so it includes the REST round trip and the subscribe round trip.

It also reports the worker's CPU use and Redis commands per second while idle.

    .venv/bin/python -m bench.latency [--commands 200] [--idle-samples 15] [--idle-gap 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import redis
from websockets.sync.client import connect

from common.fleet import demo_fleet
from common.vehicles import ConnectionStatus
from tests.support import RedisServer, Stack, running_stack

SECRET = "bench-secret-that-is-long-enough-0123456789abcdef"  # noqa: S105 - private bench stack
TERMINAL = {"completed", "failed", "timeout", "cancelled", "rejected"}
CONFIGS = {
    "dramatiq": {"SOVD_BROKER_WAKEUP": "false", "dramatiq_worker_timeout": "1000"},
    "wakeup": {"SOVD_BROKER_WAKEUP": "true", "dramatiq_worker_timeout": "1000"},
}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of ``root`` and its children (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == root or ppid == root:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


class Client:
    def __init__(self, stack: Stack) -> None:
        self.http = httpx.Client(base_url=stack.api_url, timeout=10)
        self.token = self.http.post(
            "/api/v1/auth/login", json={"username": "engineer", "password": "engineer-demo-pass"}
        ).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}
        vehicle = next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED)
        self.body = {
            "vehicle_id": vehicle.vehicle_id,
            "command_name": "ReadDataByID",
            "command_params": {"ecuAddress": "0x10", "dataId": "0xF190"},
        }
        warm = self.http.post("/api/v1/commands", headers=self.headers, json=self.body).json()
        self.ws = connect(f"{warm['websocket_url']}?token={self.token}")
        self._drain(warm["command_id"])

    def run_one(self) -> tuple[float, float, float]:
        """(pickup ms, client first-event ms, client terminal ms) for one command."""
        start = time.perf_counter()
        command = self.http.post("/api/v1/commands", headers=self.headers, json=self.body).json()
        self.ws.send(json.dumps({"action": "subscribe", "command_id": command["command_id"]}))
        first, last, started_at = self._drain(command["command_id"])
        self.ws.send(json.dumps({"action": "unsubscribe", "command_id": command["command_id"]}))
        submitted = datetime.fromisoformat(command["submitted_at"])
        pickup = (started_at - submitted).total_seconds() * 1000
        return pickup, (first - start) * 1000, (last - start) * 1000

    def _drain(self, command_id: str) -> tuple[float, float, datetime]:
        first = 0.0
        started_at = datetime.now()
        while True:
            event: dict[str, Any] = json.loads(self.ws.recv(timeout=30))
            if event.get("command_id") != command_id or event["event"] not in (
                "status",
                "response",
            ):
                continue
            now = time.perf_counter()
            first = first or now
            if event.get("status") == "in_progress":
                started_at = datetime.fromisoformat(event["started_at"])
            if event["event"] == "status" and event["status"] in TERMINAL:
                return first, now, started_at

    def close(self) -> None:
        self.ws.close()
        self.http.close()


def _row(config: str, mode: str, metric: str, values: list[float]) -> str:
    return (
        f"| {config} | {mode} | {metric} | {statistics.median(values):.2f} | "
        f"{percentile(values, 99):.2f} | {max(values):.2f} |"
    )


def measure(server: RedisServer, config: str, args: argparse.Namespace) -> list[str]:
    rows = []
    # One client drives every command over one socket: lift its message rate limit.
    env = {
        "SOVD_SIM_DELAY_SCALE": "0",
        "SOVD_WS_CLIENT_RATE_PER_S": "100000",
        "SOVD_SUBMIT_RATE_PER_MINUTE": "1000000",
        **CONFIGS[config],
    }
    with tempfile.TemporaryDirectory() as logs, running_stack(
        server.url, Path(logs), jwt_secret=SECRET, env=env
    ) as stack:  # fmt: skip
        client = Client(stack)
        try:
            samples = [client.run_one() for _ in range(args.commands)]
            for index, metric in enumerate(("pickup", "client first event", "client terminal")):
                rows.append(_row(config, "back to back", metric, [s[index] for s in samples]))
            worker_pid = stack.processes["worker"].pid
            probe = redis.Redis.from_url(server.url)
            idle: list[tuple[float, float, float]] = []
            cpu_before, cmds_before = _tree_cpu_s(worker_pid), _commands(probe)
            idle_started = time.monotonic()
            for _ in range(args.idle_samples):
                time.sleep(args.idle_gap)  # the idle gap being measured
                idle.append(client.run_one())
            elapsed = time.monotonic() - idle_started
            cpu = (_tree_cpu_s(worker_pid) - cpu_before) / elapsed * 100
            rate = (_commands(probe) - cmds_before) / elapsed
            probe.close()
            for index, metric in enumerate(("pickup", "client first event", "client terminal")):
                rows.append(
                    _row(
                        config, f"after {args.idle_gap:g} s idle", metric, [s[index] for s in idle]
                    )
                )
            rows.append(
                f"| {config} | idle | worker CPU {cpu:.1f} % of a core, "
                f"Redis {rate:.0f} commands/s (whole server) | | | |"
            )
        finally:
            client.close()
    return rows


def _commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--idle-samples", type=int, default=15)
    parser.add_argument("--idle-gap", type=float, default=5.0)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        print("| broker | mode | metric | p50 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|---|")
        for config in args.configs:
            for row in measure(server, config, args):
                print(row, flush=True)
        print(
            f"\n{args.commands} commands back to back, {args.idle_samples} after idle gaps, "
            "per configuration; one client, sequential."
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
