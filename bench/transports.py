"""Commands/s and submit -> first event latency per vehicle transport, in one run.

For each transport it starts the api, worker (1 process, 8 threads) and realtime on one
private Valkey, registers ``--vehicles`` simulated vehicles (1,000 by default) and then:

- latency: ``--commands`` ReadDataByID commands one after another from one client that
  holds a WebSocket: submit -> first event (``in_progress``), -> first response (the
  vehicle's first answer part), -> terminal status;
- throughput: ``--clients`` clients, each submitting ReadDTC to random vehicles and
  waiting for the terminal status, for ``--duration`` seconds: commands/s completed.

Transports (``TRANSPORTS``; one function each, add one to compare another):

- ``simulator``: the in-worker simulated fleet (the baseline);
- ``mqtt``: a private Mosquitto with an account per vehicle and the ACL, the vehicle
  bridge, and ONE agent process holding every vehicle as its own MQTT client;
- ``grpc``: the test gRPC gateway over the same simulator (bench/grpc_transport.py
  measures the gRPC connector alone as well).

Simulator delays are zero on both, so the numbers are the transports' own cost.

    .venv/bin/python -m bench.transports [--vehicles 1000] [--commands 200] \\
        [--clients 8] [--duration 20] [--transports simulator mqtt grpc]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import redis
from websockets.sync.client import connect

from bench.latency import _tree_cpu_s, percentile
from common.fleet import demo_fleet
from common.keys import Keys
from common.redis_client import async_client
from common.settings import Settings
from common.vehicles import ConnectionStatus, Vehicle, VehicleStore
from common.vin import with_check_digit
from tests.mqtt_support import MosquittoServer
from tests.support import ROOT, RedisServer, Stack, free_port, running_stack, wait_for

SECRET = "bench-secret-that-is-long-enough-0123456789abcdef"  # noqa: S105 - private bench stack
TERMINAL = {"completed", "failed", "timeout", "cancelled", "rejected"}
_NAMESPACE = uuid.UUID("0b1c5d3e-7a39-4f0e-9d1e-5be0c4a7d201")
BASE_ENV = {
    "SOVD_SIM_DELAY_SCALE": "0",
    "SOVD_WS_CLIENT_RATE_PER_S": "100000",
    "SOVD_WS_CLIENT_BURST": "100000",
    "SOVD_SUBMIT_RATE_PER_MINUTE": "10000000",
    "SOVD_WS_MAX_SUBSCRIPTIONS": "100000",
    "dramatiq_worker_timeout": "100",
}


def bench_fleet(count: int) -> list[Vehicle]:
    """``count`` simulated vehicles with valid VINs, ids derived from them."""
    ecus = demo_fleet()[0].metadata["ecus"]
    vehicles = []
    for index in range(count):
        vin = with_check_digit(f"5SVBENCH_{index:08d}")
        vehicles.append(
            Vehicle(
                vehicle_id=str(uuid.uuid5(_NAMESPACE, vin)),
                vin=vin,
                make="Bench",
                model="Sim",
                year=2024,
                connection_status=ConnectionStatus.DISCONNECTED,
                metadata={"powertrain": "petrol", "ecus": ecus, "simulated": True},
            )
        )
    return vehicles


def register(settings: Settings, vehicles: list[Vehicle]) -> None:
    async def put() -> None:
        client = async_client(settings.effective_redis_url)
        store = VehicleStore(client, Keys(settings.key_prefix))
        for vehicle in vehicles:
            await store.put(vehicle)
        await client.aclose()

    asyncio.run(put())


def connected_count(settings: Settings, vehicles: list[Vehicle]) -> int:
    client = redis.Redis.from_url(settings.effective_redis_url, decode_responses=True)
    keys = Keys(settings.key_prefix)
    raws = client.mget([keys.vehicle(v.vehicle_id) for v in vehicles])
    client.close()
    return sum(1 for raw in raws if raw and '"connection_status":"connected"' in raw)


# -- transports: each yields a running stack whose fleet is online, and notes -------------

Transport = Callable[
    [RedisServer, Path, list[Vehicle]],
    contextlib.AbstractContextManager[tuple[Stack, dict[str, str]]],
]


@contextlib.contextmanager
def simulator(
    server: RedisServer, logs: Path, vehicles: list[Vehicle]
) -> Iterator[tuple[Stack, dict[str, str]]]:
    env = dict(BASE_ENV)  # the api heartbeats the simulated fleet every 15 s (its default)
    with running_stack(server.url, logs, jwt_secret=SECRET, worker_threads=8, env=env) as stack:
        register(stack.settings, vehicles)
        wait_for(lambda: connected_count(stack.settings, vehicles) == len(vehicles),
                 timeout_s=60, what="the simulated fleet online")  # fmt: skip
        yield stack, {}


@contextlib.contextmanager
def mqtt(
    server: RedisServer, logs: Path, vehicles: list[Vehicle]
) -> Iterator[tuple[Stack, dict[str, str]]]:
    accounts = [v.vin for v in vehicles + demo_fleet()]  # the api seeds the demo fleet too
    broker = MosquittoServer(Settings(_env_file=None, jwt_secret=SECRET), accounts)
    broker.start()
    env = {**BASE_ENV, "SOVD_CONNECTOR": "mqtt", "SOVD_MQTT_PORT": str(broker.port)}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with running_stack(server.url, logs, jwt_secret=SECRET, worker_threads=8,
                           env=env) as stack:  # fmt: skip
            register(stack.settings, vehicles)
            for name, module in (("bridge", "workers.vehicle_bridge"), ("agent", "agent")):
                with (logs / f"{name}.log").open("wb") as out:
                    processes.append(subprocess.Popen(
                        [sys.executable, "-m", module], cwd=ROOT, env=stack.env,
                        stdout=out, stderr=subprocess.STDOUT,
                    ))  # fmt: skip
            started = time.monotonic()
            wait_for(lambda: connected_count(stack.settings, vehicles) == len(vehicles),
                     timeout_s=180, what="every vehicle online over MQTT")  # fmt: skip
            online_s = time.monotonic() - started
            agent = processes[1].pid
            rss_kib = _rss_kib(agent)
            cpu_before, at = _tree_cpu_s(agent), time.monotonic()
            time.sleep(10)  # the idle window whose agent CPU is measured
            idle_cpu = (_tree_cpu_s(agent) - cpu_before) / (time.monotonic() - at) * 100
            notes = {
                "agent": f"{len(vehicles)} vehicles online {online_s:.1f} s after the agent "
                f"started; agent RSS {rss_kib / 1024:.0f} MiB "
                f"({rss_kib / len(vehicles):.0f} KiB per vehicle), idle CPU {idle_cpu:.1f} % "
                "of a core (heartbeats every 10 s)",
            }
            yield stack, notes
            notes["cpu"] = f"the agent used {_tree_cpu_s(agent):.1f} CPU seconds in all"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)
        broker.stop()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def grpc(
    server: RedisServer, logs: Path, vehicles: list[Vehicle]
) -> Iterator[tuple[Stack, dict[str, str]]]:
    """The test gRPC gateway (``python -m gateway``, docs/grpc.md), which also reports
    the simulated vehicles' presence."""
    from tests.grpc_support import gateway_process

    port = free_port()
    env = {**BASE_ENV, "SOVD_CONNECTOR": "grpc", "SOVD_GRPC_TARGET": f"127.0.0.1:{port}"}
    with running_stack(server.url, logs, jwt_secret=SECRET, worker_threads=8,
                       env=env) as stack:  # fmt: skip
        register(stack.settings, vehicles)
        with gateway_process(stack.env, logs / "gateway.log", port=port):
            wait_for(lambda: connected_count(stack.settings, vehicles) == len(vehicles),
                     timeout_s=60, what="the gateway's vehicles online")  # fmt: skip
            yield stack, {}


TRANSPORTS: dict[str, Transport] = {"simulator": simulator, "mqtt": mqtt, "grpc": grpc}


# -- workloads --------------------------------------------------------------------------


class Client:
    """One engineer with an HTTP client and one WebSocket following its commands (opened
    on a first command's URL, then ``subscribe`` for each next one)."""

    def __init__(self, stack: Stack, warm: Vehicle) -> None:
        self.http = httpx.Client(base_url=stack.api_url, timeout=30)
        self.token = self.http.post(
            "/api/v1/auth/login", json={"username": "engineer", "password": "engineer-demo-pass"}
        ).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}
        body = {"vehicle_id": warm.vehicle_id, "command_name": "ReadDataByID",
                "command_params": {"ecuAddress": "0x10", "dataId": "0xF190"}}  # fmt: skip
        command = self.http.post("/api/v1/commands", headers=self.headers, json=body).json()
        self.ws = connect(f"{command['websocket_url']}?token={self.token}")
        while True:
            event = json.loads(self.ws.recv(timeout=60))
            if event.get("event") == "status" and event.get("status") in TERMINAL:
                break

    def run(
        self, vehicle: Vehicle, name: str, params: dict[str, str]
    ) -> tuple[float, float, float, str]:
        """(first event ms, first response ms, terminal ms, terminal status)."""
        body = {"vehicle_id": vehicle.vehicle_id, "command_name": name, "command_params": params}
        start = time.perf_counter()
        command = self.http.post("/api/v1/commands", headers=self.headers, json=body).json()
        command_id = command["command_id"]
        self.ws.send(json.dumps({"action": "subscribe", "command_id": command_id}))
        first = first_response = 0.0
        while True:
            event: dict[str, Any] = json.loads(self.ws.recv(timeout=60))
            if event.get("command_id") != command_id or event["event"] not in (
                "status",
                "response",
            ):
                continue
            now = time.perf_counter()
            first = first or now
            if event["event"] == "response":
                first_response = first_response or now
            if event["event"] == "status" and event["status"] in TERMINAL:
                self.ws.send(json.dumps({"action": "unsubscribe", "command_id": command_id}))
                ms = lambda t: (t - start) * 1000 if t else float("nan")  # noqa: E731
                return ms(first), ms(first_response), ms(now), event["status"]

    def close(self) -> None:
        self.ws.close()
        self.http.close()


def latency(
    stack: Stack, vehicles: list[Vehicle], commands: int
) -> list[tuple[float, float, float, str]]:
    client = Client(stack, vehicles[0])
    rng = random.Random(1)
    params = {"ecuAddress": "0x10", "dataId": "0xF190"}
    try:
        return [client.run(rng.choice(vehicles), "ReadDataByID", params) for _ in range(commands)]
    finally:
        client.close()


def throughput(
    stack: Stack, vehicles: list[Vehicle], clients: int, duration_s: float
) -> tuple[float, dict[str, int]]:
    stop_at = time.monotonic() + duration_s
    done: list[str] = []
    lock = threading.Lock()

    def drive(seed: int) -> None:
        rng = random.Random(seed)
        client = Client(stack, rng.choice(vehicles))
        try:
            while time.monotonic() < stop_at:
                status = client.run(rng.choice(vehicles), "ReadDTC", {"ecuAddress": "0x10"})[3]
                with lock:
                    done.append(status)
        finally:
            client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=drive, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    counts: dict[str, int] = {}
    for status in done:
        counts[status] = counts.get(status, 0) + 1
    return len(done) / elapsed, counts


def _cell(values: list[float]) -> str:
    clean = [v for v in values if v == v]  # drop NaN (a command with no response)
    if not clean:
        return "-"
    return f"{statistics.median(clean):.1f} / {percentile(clean, 99):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument(
        "--transports", nargs="+", default=list(TRANSPORTS), choices=list(TRANSPORTS)
    )
    args = parser.parse_args()
    vehicles = bench_fleet(args.vehicles)
    server = RedisServer()
    server.start()
    rows: list[tuple[str, float, list[tuple[float, float, float, str]], dict[str, int]]] = []
    notes: dict[str, dict[str, str]] = {}
    try:
        for name in args.transports:
            with tempfile.TemporaryDirectory() as logs, TRANSPORTS[name](
                server, Path(logs), vehicles
            ) as (stack, extra):  # fmt: skip
                samples = latency(stack, vehicles, args.commands)
                rate, statuses = throughput(stack, vehicles, args.clients, args.duration)
                rows.append((name, rate, samples, statuses))
                notes[name] = extra
            print(f"{name}: done", file=sys.stderr, flush=True)
    finally:
        server.stop()
    baseline = rows[0][1]
    print("| transport | commands/s | x baseline | first event p50 / p99 ms | "
          "first response p50 / p99 ms | terminal p50 / p99 ms | statuses |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, rate, samples, statuses in rows:
        print(
            f"| {name} | {rate:.1f} | {rate / baseline:.2f} | {_cell([s[0] for s in samples])} | "
            f"{_cell([s[1] for s in samples])} | {_cell([s[2] for s in samples])} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))} |"
        )
    for name, extra in notes.items():
        for key, text in extra.items():
            print(f"\n{name} {key}: {text}")
    print(
        f"\n{args.vehicles} vehicles; latency: {args.commands} ReadDataByID one after another "
        f"from one client; throughput: {args.clients} clients x ReadDTC for {args.duration:g} s. "
        f"Baseline: {rows[0][0]}."
    )


if __name__ == "__main__":
    main()
