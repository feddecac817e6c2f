"""The gRPC transport beside the in-process simulator, same run, same Redis.

Two levels, each measured for both connectors one after the other:

- ``exchange``: the connector alone, ``threads`` threads running ReadDataByID (one
  part) and ReadDTC (several parts) exchanges back to back with simulator delays at
  zero: exchanges/s and time to the first part. ``simulator`` is ``SimulatedFleet`` in
  this process; ``grpc`` is ``GrpcConnector`` calling the test gateway (``python -m
  gateway``, its own process) over loopback. The gateway's CPU per exchange is printed.
- ``service``: the whole path, api + worker (1 process x 8 threads) + realtime, with
  ``SOVD_CONNECTOR=simulator`` or ``grpc`` (then the gateway process too): commands/s
  for a batch submitted by 16 concurrent REST clients (first submit to last
  completion), and submit -> first event on a WebSocket for sequential commands
  (bench.latency's client).

Ratios are grpc / simulator.

    .venv/bin/python -m bench.grpc_transport [--exchanges 2000] [--threads 8]
        [--commands 500] [--latency-samples 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from bench.latency import Client, _tree_cpu_s, percentile
from bench.throughput import SECRET, TERMINAL, UNLIMITED, _submit_all
from common.keys import Keys
from common.settings import Settings
from common.vehicles import ConnectionStatus, Vehicle
from tests.grpc_support import gateway_process, seed_fleet
from tests.support import RedisServer, free_port, running_stack, wait_for
from workers.connector import DiagnosticRequest, VehicleConnector
from workers.grpc_connector import GrpcConnector
from workers.simulator import SimulatedFleet

EXCHANGES = {
    "ReadDataByID": {"ecuAddress": "0x10", "dataId": "0xF190"},
    "ReadDTC": {"ecuAddress": "0x10"},
}


def run_exchanges(
    connector: VehicleConnector, vehicles: list[Vehicle], name: str, total: int, threads: int
) -> tuple[float, list[float]]:
    """(exchanges/s, time to first part in ms) for ``total`` exchanges on ``threads``."""
    firsts: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def work() -> None:
        local: list[float] = []
        for n in counter:
            request = DiagnosticRequest(
                command_id=str(uuid.uuid4()),
                command_name=name,
                params=EXCHANGES[name],
                vehicle=vehicles[n % len(vehicles)],
                deadline=time.monotonic() + 30,
            )
            start = time.perf_counter()
            first = 0.0
            for _ in connector.execute(request):
                first = first or time.perf_counter()
            local.append((first - start) * 1000)
        with lock:
            firsts.extend(local)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return total / (time.perf_counter() - started), firsts


def exchange_level(server: RedisServer, args: argparse.Namespace) -> list[str]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(_env_file=None, redis_url=server.url, key_prefix=prefix, sim_delay_scale=0)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    keys = Keys(prefix)
    vehicles = [
        v for v in seed_fleet(client, keys) if v.connection_status == ConnectionStatus.CONNECTED
    ]
    env = {"SOVD_REDIS_URL": server.url, "SOVD_KEY_PREFIX": prefix, "SOVD_SIM_DELAY_SCALE": "0"}
    rows = []
    with tempfile.TemporaryDirectory() as logs, gateway_process(env, Path(logs) / "gw.log") as gw:
        connectors: dict[str, VehicleConnector] = {
            "simulator": SimulatedFleet(client, keys, delay_scale=0),
            "grpc": GrpcConnector(settings.model_copy(update={"grpc_target": gw.target})),
        }
        for name in EXCHANGES:
            rates: dict[str, float] = {}
            for kind, connector in connectors.items():
                run_exchanges(connector, vehicles, name, 200, args.threads)  # warm up
                cpu = _tree_cpu_s(gw.process.pid)
                rate, firsts = run_exchanges(
                    connector, vehicles, name, args.exchanges, args.threads
                )
                gateway_us = (_tree_cpu_s(gw.process.pid) - cpu) / args.exchanges * 1e6
                rates[kind] = rate
                note = f"gateway CPU {gateway_us:,.0f} µs/exchange" if kind == "grpc" else ""
                rows.append(
                    f"| exchange | {name} | {kind} | {rate:,.0f} | "
                    f"{statistics.median(firsts):.2f} | {percentile(firsts, 99):.2f} | {note} |"
                )
            ratio = rates["grpc"] / rates["simulator"]
            rows.append(f"| exchange | {name} | grpc / simulator | {ratio:.2f} | | | |")
        grpc_connector = connectors["grpc"]
        assert isinstance(grpc_connector, GrpcConnector)
        grpc_connector.close()
    client.close()
    return rows


@contextmanager
def service(server: RedisServer, kind: str, logs: Path) -> Iterator[object]:
    """The stack with ``SOVD_CONNECTOR=kind`` (and the gateway when ``grpc``)."""
    port = free_port()
    env = {
        "SOVD_SIM_DELAY_SCALE": "0",
        "SOVD_POLICIES": UNLIMITED,
        "SOVD_SUBMIT_RATE_PER_MINUTE": "1000000",
        "SOVD_WS_CLIENT_RATE_PER_S": "100000",
        "SOVD_CONNECTOR": kind,
        "SOVD_GRPC_TARGET": f"127.0.0.1:{port}",
    }
    with running_stack(
        server.url, logs, jwt_secret=SECRET, env=env, worker_threads=8
    ) as stack:  # fmt: skip
        if kind == "grpc":
            with gateway_process(stack.env, logs / "gateway.log", port=port):
                yield stack
        else:
            yield stack


def service_level(server: RedisServer, args: argparse.Namespace) -> list[str]:
    rows = []
    rates: dict[str, float] = {}
    firsts: dict[str, float] = {}
    for kind in ("simulator", "grpc"):
        with tempfile.TemporaryDirectory() as logs, service(server, kind, Path(logs)) as stack:
            keys = Keys(stack.settings.key_prefix)  # type: ignore[attr-defined]
            client = redis.Redis.from_url(server.url, decode_responses=True)
            ids = asyncio.run(_submit_all(stack, args.commands, 16))  # type: ignore[arg-type]
            statuses = _wait_all(client, keys, ids)
            rows_ = _times(client, keys, ids)
            rate = len(ids) / (max(c for _, c in rows_) - min(s for s, _ in rows_))
            viewer = Client(stack)  # type: ignore[arg-type]
            samples = [viewer.run_one()[1] for _ in range(args.latency_samples)]
            viewer.close()
            client.close()
        rates[kind], firsts[kind] = rate, statistics.median(samples)
        rows.append(
            f"| service | ReadDataByID | {kind} | {rate:,.0f} | {statistics.median(samples):.2f} "
            f"| {percentile(samples, 99):.2f} | {statuses} |"
        )
    rows.append(
        f"| service | ReadDataByID | grpc / simulator | {rates['grpc'] / rates['simulator']:.2f} "
        f"| {firsts['grpc'] / firsts['simulator']:.2f} | | |"
    )
    return rows


def _wait_all(client: redis.Redis, keys: Keys, ids: list[str]) -> str:
    def statuses() -> list[str]:
        with client.pipeline(transaction=False) as pipe:
            for command_id in ids:
                pipe.hget(keys.command(command_id), "status")
            return list(pipe.execute())

    done: Callable[[], bool] = lambda: all(s in TERMINAL for s in statuses())  # noqa: E731
    wait_for(done, timeout_s=600, interval_s=0.2, what="every command to finish")
    return ", ".join(sorted(set(statuses())))


def _times(client: redis.Redis, keys: Keys, ids: list[str]) -> list[tuple[float, float]]:
    from datetime import datetime

    with client.pipeline(transaction=False) as pipe:
        for command_id in ids:
            pipe.hmget(keys.command(command_id), "submitted_at", "completed_at")
        raw = pipe.execute()
    return [
        (datetime.fromisoformat(s).timestamp(), datetime.fromisoformat(c).timestamp())
        for s, c in raw
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--levels", nargs="+", default=["exchange", "service"])
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        print(
            "| level | command | connector | per s | first part / event p50 ms | p99 ms | notes |"
        )
        print("|---|---|---|---|---|---|---|")
        if "exchange" in args.levels:
            for row in exchange_level(server, args):
                print(row, flush=True)
        if "service" in args.levels:
            for row in service_level(server, args):
                print(row, flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
