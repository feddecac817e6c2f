"""Commands per second through the real API, and Dramatiq's raw ceiling on this machine.

For 1, 2 and 4 worker processes (4 threads each), starts a private Valkey and the api,
worker and realtime processes (simulator delays zero), submits a batch of ReadDataByID
commands through the REST API with concurrent clients, waits until every command is
terminal, and reports commands/second (first submit to last completion) and
submit->completed latency (``completed_at - submitted_at`` of each command record).
The ``drain`` rows submit the whole batch with no worker running, then start the
workers and time how fast they empty the queue: the workers' own capacity, without
the single api process as the limit.

The ceiling is Dramatiq alone: a no-op actor on the same Redis, messages enqueued first,
then drained by one in-process worker with 8 threads.

    .venv/bin/python -m bench.throughput [--commands 1000] [--processes 1 2 4]

Per-vehicle admission is lifted for the run (``max_concurrent_per_vehicle``), since a
batch this size on a six-vehicle fleet would otherwise be refused by design.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import dramatiq
import httpx2 as httpx
import redis
from dramatiq.brokers.redis import RedisBroker

from common.fleet import demo_fleet
from common.keys import Keys
from common.vehicles import ConnectionStatus
from tests.support import ROOT, RedisServer, Stack, running_stack, wait_for, worker_argv

SECRET = "bench-secret-that-is-long-enough-0123456789abcdef"  # noqa: S105 - private bench stack
TERMINAL = {"completed", "failed", "timeout", "cancelled", "rejected"}
UNLIMITED = json.dumps(
    {name: {"max_concurrent_per_vehicle": 1_000_000} for name in ("ReadDTC", "ReadDataByID")}
)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def _submit_all(stack: Stack, commands: int, concurrency: int) -> list[str]:
    vehicles = [v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED]
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        login = await http.post(
            "/api/v1/auth/login", json={"username": "engineer", "password": "engineer-demo-pass"}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        ids: list[str] = []
        counter = iter(range(commands))

        async def submitter() -> None:
            for n in counter:
                body = {
                    "vehicle_id": vehicles[n % len(vehicles)].vehicle_id,
                    "command_name": "ReadDataByID",
                    "command_params": {"ecuAddress": "0x10", "dataId": "0xF190"},
                }
                response = await http.post("/api/v1/commands", headers=headers, json=body)
                response.raise_for_status()
                ids.append(response.json()["command_id"])

        await asyncio.gather(*(submitter() for _ in range(concurrency)))
        return ids


def _start_workers(stack: Stack, processes: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**stack.env, "dramatiq_worker_timeout": "1000"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            worker_argv(processes=processes, threads=4),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_for(
        lambda: log.read_text().count("Worker process is ready") >= processes,
        timeout_s=60,
        what="the workers",
    )
    return process


def run_service(
    server: RedisServer, processes: int, commands: int, concurrency: int, *, drain: bool
) -> str:
    """Through the API with the workers running, or (``drain``) submit first, then work."""
    env = {
        "SOVD_SIM_DELAY_SCALE": "0",
        "SOVD_POLICIES": UNLIMITED,
        "SOVD_SUBMIT_RATE_PER_MINUTE": "1000000",
    }
    with tempfile.TemporaryDirectory() as logs, running_stack(
        server.url, Path(logs), jwt_secret=SECRET, env=env, worker_processes=processes
    ) as stack:  # fmt: skip
        keys = Keys(stack.settings.key_prefix)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        workers = None
        if drain:
            stack.processes["worker"].terminate()
            stack.processes["worker"].wait()
        ids = asyncio.run(_submit_all(stack, commands, concurrency))
        drain_started = time.time()
        if drain:
            workers = _start_workers(stack, processes, Path(logs) / "drain.log")
            drain_started = time.time()

        def all_done() -> bool:
            with client.pipeline(transaction=False) as pipe:
                for command_id in ids:
                    pipe.hget(keys.command(command_id), "status")
                return all(status in TERMINAL for status in pipe.execute())

        wait_for(all_done, timeout_s=600, interval_s=0.2, what="every command to finish")
        with client.pipeline(transaction=False) as pipe:
            for command_id in ids:
                pipe.hmget(keys.command(command_id), "submitted_at", "completed_at", "status")
            rows = pipe.execute()
        client.close()
        if workers is not None:
            workers.terminate()
            workers.wait()
    submitted = [datetime.fromisoformat(r[0]) for r in rows]
    completed = [datetime.fromisoformat(r[1]) for r in rows]
    statuses = ", ".join(sorted({r[2] for r in rows}))
    if drain:
        span = max(completed).timestamp() - drain_started
        return f"| drain | {processes} x 4 threads | {commands / span:,.0f} | | | | {statuses} |"
    latency = [(c - s).total_seconds() * 1000 for s, c in zip(submitted, completed, strict=True)]
    span = (max(completed) - min(submitted)).total_seconds()
    return (
        f"| through the API | {processes} x 4 threads | {commands / span:,.0f} | "
        f"{statistics.median(latency):.1f} | {percentile(latency, 95):.1f} | "
        f"{percentile(latency, 99):.1f} | {statuses} |"
    )


def run_ceiling(server: RedisServer, messages: int) -> str:
    broker = RedisBroker(url=server.url, namespace=f"ceiling-{time.time_ns()}")
    done = []

    @dramatiq.actor(broker=broker, queue_name="noop", max_retries=0)
    def noop(n: int) -> None:
        done.append(n)

    for n in range(messages):
        broker.enqueue(noop.message(n))
    worker = dramatiq.Worker(broker, worker_threads=8, worker_timeout=100)
    started = time.perf_counter()
    worker.start()
    wait_for(lambda: len(done) >= messages, timeout_s=300, interval_s=0.05, what="the no-ops")
    elapsed = time.perf_counter() - started
    worker.stop()
    broker.close()
    rate = messages / elapsed
    return f"| Dramatiq no-op actor (ceiling) | 1 x 8 threads | {rate:,.0f} | | | | |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--ceiling-messages", type=int, default=5000)
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        print("| mode | worker processes | commands/s | p50 ms | p95 ms | p99 ms | statuses |")
        print("|---|---|---|---|---|---|---|")
        for drain in (False, True):
            for processes in args.processes:
                row = run_service(server, processes, args.commands, args.concurrency, drain=drain)
                print(row, flush=True)
        print(run_ceiling(server, args.ceiling_messages), flush=True)
        print(f"\n{args.commands} commands per run, {args.concurrency} concurrent submitters.")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
