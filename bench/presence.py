"""Presence change -> client event latency, beside a raw Redis Pub/Sub subscriber.

Starts a private Valkey and ``python -m realtime``, registers ``--vehicles`` vehicles,
opens ``--clients`` WebSocket clients on ``/ws/vehicles`` (every vehicle's presence)
and one plain Redis subscriber on the presence channel (the floor: what Redis alone
costs). Then it makes ``--changes`` presence changes one after another through
``common.presence.Presence`` (alternately connecting and disconnecting a vehicle) and
times, from just before each call:

- **report**: the ``Presence`` call itself (the optimistic transaction: watch, read,
  write, publish, audit);
- **raw subscriber**: the change arriving at the plain Redis subscriber;
- **WebSocket client**: the change arriving at each realtime client (all of them).

Clients, publisher, Redis and the relay share the machine; times share one clock.

    .venv/bin/python -m bench.presence [--vehicles 1000] [--clients 100] [--changes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx
from pydantic import TypeAdapter
from websockets.asyncio.client import connect

from common.keys import Keys
from common.presence import Presence
from common.redis_client import async_client
from common.settings import Settings
from common.tokens import issue_token
from common.users import Role, UserStore
from common.vehicles import ConnectionStatus, Vehicle, VehicleStore
from common.vin import with_check_digit
from tests.support import ROOT, RedisServer, free_port, wait_for

SECRET = "bench-secret-that-is-long-enough-0123456789abcdef"  # noqa: S105 - private bench stack
#: Longest wait for one change to reach every client, in seconds.
ARRIVAL_TIMEOUT_S = 10.0
#: Report times of the run start here (one second apart), after any real report.
BASE_EPOCH_S = 4_000_000_000.0
#: How pydantic writes a datetime in JSON (as the events carry it).
_AS_JSON: TypeAdapter[datetime] = TypeAdapter(datetime)


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


def _vehicles(count: int) -> list[Vehicle]:
    return [
        Vehicle(
            vehicle_id=str(uuid.uuid4()),
            vin=with_check_digit(f"1HGCM826_3B{n:06d}"),
            make="Bench",
            model="Car",
            year=2024,
            connection_status=ConnectionStatus.DISCONNECTED,
        )
        for n in range(count)
    ]


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Arrivals:
    """When each change (by its key) reached each listener."""

    def __init__(self, listeners: int) -> None:
        self.listeners = listeners
        self.times: dict[str, list[float]] = {}
        self.events: dict[str, asyncio.Event] = {}

    def expect(self, key: str) -> asyncio.Event:
        self.times[key] = []
        self.events[key] = asyncio.Event()
        return self.events[key]

    def arrived(self, key: str) -> None:
        got = self.times.get(key)
        if got is None:
            return
        got.append(time.perf_counter())
        if len(got) == self.listeners:
            self.events[key].set()


def _key(change: dict[str, Any]) -> str:
    return f"{change['vehicle_id']}:{change['connection_status']}:{change['at']}"


async def _read_ws(ws: Any, arrivals: Arrivals) -> None:
    async for raw in ws:
        message = json.loads(raw)
        if message.get("event") == "presence":
            arrivals.arrived(_key(message))


async def _read_raw(pubsub: Any, arrivals: Arrivals) -> None:
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message is not None:
            arrivals.arrived(_key(json.loads(message["data"])))


async def run(args: argparse.Namespace, redis_url: str) -> dict[str, list[float]]:
    settings = Settings(
        _env_file=None,
        redis_url=redis_url,
        key_prefix=f"bench-{uuid.uuid4().hex[:8]}",
        jwt_secret=SECRET,
        access_token_ttl_s=3600,
        presence_timeout_s=3600,
    )
    keys = Keys(settings.key_prefix)
    client = async_client(redis_url)
    fleet = _vehicles(args.vehicles)
    store = VehicleStore(client, keys)
    for vehicle in fleet:
        await store.put(vehicle)
    user = await UserStore(client, keys).create(username="bench", password=SECRET, role=Role.VIEWER)
    token = issue_token(settings, user, "access")[0]
    port = free_port()
    env = {
        **os.environ,
        "SOVD_REDIS_URL": redis_url,
        "SOVD_KEY_PREFIX": settings.key_prefix,
        "SOVD_JWT_SECRET": SECRET,
        "SOVD_REALTIME_PORT": str(port),
        "SOVD_LOG_LEVEL": "WARNING",
        "SOVD_LOG_FORMAT": "json",
        "SOVD_WS_MAX_CONNECTIONS_PER_USER": "1000000",
    }
    relay = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [sys.executable, "-m", "realtime"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    tasks: list[asyncio.Task[None]] = []
    sockets: list[Any] = []
    try:
        await asyncio.to_thread(wait_for, lambda: _ready(port), timeout_s=30, what="realtime")
        ws_arrivals = Arrivals(args.clients)
        raw_arrivals = Arrivals(1)
        for _ in range(args.clients):
            ws = await connect(f"ws://127.0.0.1:{port}/ws/vehicles?token={token}")
            while True:  # welcome, then snapshot pages until the last
                message = json.loads(await ws.recv())
                if message.get("event") == "presence_snapshot" and message["last"]:
                    break
            sockets.append(ws)
            tasks.append(asyncio.create_task(_read_ws(ws, ws_arrivals)))
        pubsub = client.pubsub()
        await pubsub.subscribe(keys.presence_events)
        tasks.append(asyncio.create_task(_read_raw(pubsub, raw_arrivals)))
        presence = Presence(client, keys, settings)
        results: dict[str, list[float]] = {"report": [], "raw": [], "ws": []}
        for n in range(args.changes):
            vehicle = fleet[n // 2 % len(fleet)]
            connect_now = n % 2 == 0
            at = datetime.fromtimestamp(BASE_EPOCH_S + n, tz=UTC)  # distinct, increasing
            status = "connected" if connect_now else "disconnected"
            key = f"{vehicle.vehicle_id}:{status}:{_AS_JSON.dump_python(at, mode='json')}"
            ws_done, raw_done = ws_arrivals.expect(key), raw_arrivals.expect(key)
            started = time.perf_counter()
            if connect_now:
                change = await presence.connected(vehicle.vehicle_id, at=at)
            else:
                change = await presence.disconnected(
                    vehicle.vehicle_id, reason="clean_disconnect", at=at
                )
            results["report"].append(time.perf_counter() - started)
            assert change is not None, "every report in this run is a change"
            await asyncio.wait_for(raw_done.wait(), ARRIVAL_TIMEOUT_S)
            await asyncio.wait_for(ws_done.wait(), ARRIVAL_TIMEOUT_S)
            results["raw"] += [t - started for t in raw_arrivals.times[key]]
            results["ws"] += [t - started for t in ws_arrivals.times[key]]
        await pubsub.aclose()
        return results
    finally:
        for task in tasks:
            task.cancel()
        for ws in sockets:
            await ws.close()
        relay.terminate()
        relay.wait(timeout=10)
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--changes", type=int, default=300)
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        results = asyncio.run(run(args, server.url))
    finally:
        server.stop()
    print(
        f"vehicles={args.vehicles} clients={args.clients} changes={args.changes} "
        f"(machine: {os.cpu_count()} cores, shared)"
    )
    print("| path | samples | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    names = {
        "report": "report (Presence call)",
        "raw": "raw Redis subscriber",
        "ws": "WebSocket client (realtime)",
    }
    for name, label in names.items():
        values = [v * 1000 for v in results[name]]
        print(
            f"| {label} | {len(values)} | {statistics.median(values):.2f} | "
            f"{_percentile(values, 99):.2f} | {max(values):.2f} |"
        )
    ratio = statistics.median(results["ws"]) / statistics.median(results["raw"])
    print(f"WebSocket client / raw subscriber, p50: {ratio:.2f}x")


if __name__ == "__main__":
    main()
