"""Commands per second through the real API, the workers' own rate, and Dramatiq's ceiling.

For 1 and 2 worker processes (8 threads each, as the Procfile), starts a private Valkey
and the api, worker and realtime processes (simulator delays zero), submits a batch of
ReadDataByID commands through the REST API with concurrent clients, waits until every
command is terminal, and reports commands/second (first submit to last completion) and
submit->completed latency (``completed_at - submitted_at`` of each command record).
The ``drain`` rows submit the whole batch with no worker running, then start the
workers and time how fast they empty the queue: the workers' own capacity, without
the single api process as the limit.

The ceiling is Dramatiq alone: a stock no-op actor (bench/noop_actor.py) on a plain
``RedisBroker`` on the same Redis, run by the ``dramatiq`` CLI with the same processes
and threads, messages enqueued first, timed from the first consumer's first call. The
script prints drain / ceiling and 2 processes / 1 for every mode.

    .venv/bin/python -m bench.throughput [--commands 1000] [--processes 1 2] [--threads 8]

Per-vehicle admission is lifted for the run (``max_concurrent_per_vehicle``), since a
batch this size on a six-vehicle fleet would otherwise be refused by design.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import dramatiq
import httpx2 as httpx
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.flame import py_spy, top_frames
from bench.latency import _tree_cpu_s as tree_cpu_s
from bench.loadgen import build_request, send_all
from common.fleet import demo_fleet
from common.keys import Keys
from common.vehicles import ConnectionStatus
from tests.support import ROOT, RedisServer, Stack, running_stack, wait_for, worker_argv

SECRET = "bench-secret-that-is-long-enough-0123456789abcdef"  # noqa: S105 - private bench stack
#: The api as docs/operations.md tells operators to run it on a machine of this size.
API_PROCESSES = 2
TERMINAL = {"completed", "failed", "timeout", "cancelled", "rejected"}
UNLIMITED = json.dumps(
    {name: {"max_concurrent_per_vehicle": 1_000_000} for name in ("ReadDTC", "ReadDataByID")}
)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def _submit_all(stack: Stack, commands: int, concurrency: int) -> list[str]:
    """Submit ``commands`` ReadDataByID commands over ``concurrency`` keep-alive
    connections with the small client of bench/loadgen.py (prebuilt requests), so the
    load generator costs the shared cores little; the command ids in submission order."""
    vehicles = [v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED]
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        login = await http.post(
            "/api/v1/auth/login", json={"username": "engineer", "password": "engineer-demo-pass"}
        )
    header = f"Authorization: Bearer {login.json()['access_token']}"
    url = f"{stack.api_url}/api/v1/commands"
    per_vehicle = [
        build_request(
            "POST",
            url,
            [header],
            json.dumps(
                {
                    "vehicle_id": v.vehicle_id,
                    "command_name": "ReadDataByID",
                    "command_params": {"ecuAddress": "0x10", "dataId": "0xF190"},
                }
            ),
        )
        for v in vehicles
    ]
    requests = [per_vehicle[n % len(per_vehicle)] for n in range(commands)]
    bodies = await send_all(url, requests, connections=concurrency)
    return [json.loads(body)["command_id"] for body in bodies]


def _start_workers(
    stack: Stack, processes: int, threads: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {**stack.env, "dramatiq_worker_timeout": "1000"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            worker_argv(processes=processes, threads=threads),
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
    server: RedisServer,
    processes: int,
    threads: int,
    commands: int,
    concurrency: int,
    *,
    drain: bool,
    profile: Path | None = None,
    api_processes: int = 1,
) -> tuple[str, float]:
    """Through the API with the workers running, or (``drain``) submit first, then work."""
    env = {
        "SOVD_API_PROCESSES": str(api_processes),
        "SOVD_SIM_DELAY_SCALE": "0",
        "SOVD_POLICIES": UNLIMITED,
        "SOVD_SUBMIT_RATE_PER_MINUTE": "1000000",
    }
    with tempfile.TemporaryDirectory() as logs, running_stack(
        server.url, Path(logs), jwt_secret=SECRET, env=env, worker_processes=processes,
        worker_threads=threads,
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
            workers = _start_workers(stack, processes, threads, Path(logs) / "drain.log")
            drain_started = time.time()
            cpu_before = tree_cpu_s(workers.pid)
            redis_before = tree_cpu_s(server.process.pid)
            spy = None
            if profile is not None:
                spy = subprocess.Popen(
                    [py_spy(), "record", "--subprocesses", "--gil", "-p", str(workers.pid),
                     "-d", "3", "-r", "250", "-f", "raw", "-o", str(profile), "--nonblocking"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip

        def all_done() -> bool:
            with client.pipeline(transaction=False) as pipe:
                for command_id in ids:
                    pipe.hget(keys.command(command_id), "status")
                return all(status in TERMINAL for status in pipe.execute())

        wait_for(all_done, timeout_s=600, interval_s=0.2, what="every command to finish")
        if drain and profile is not None and spy is not None:
            spy.wait()
        cpu_us = (tree_cpu_s(workers.pid) - cpu_before) / commands * 1e6 if workers else 0.0
        redis_us = (
            (tree_cpu_s(server.process.pid) - redis_before) / commands * 1e6 if workers else 0.0
        )
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
        rate = commands / (max(completed).timestamp() - drain_started)
        row = (f"| drain | {processes} x {threads} threads | {rate:,.0f} | | | | {statuses}; "
               f"worker CPU {cpu_us:,.0f} µs/command, "
               f"Redis {redis_us:,.0f} µs/command |")  # fmt: skip
        return row, rate
    latency = [(c - s).total_seconds() * 1000 for s, c in zip(submitted, completed, strict=True)]
    rate = commands / (max(completed) - min(submitted)).total_seconds()
    return (
        f"| through the API | {processes} x {threads} threads | {rate:,.0f} | "
        f"{statistics.median(latency):.1f} | {percentile(latency, 95):.1f} | "
        f"{percentile(latency, 99):.1f} | {statuses} |"
    ), rate


def run_ceiling(
    server: RedisServer, processes: int, threads: int, messages: int
) -> tuple[float, float, float]:
    """Messages/s of a stock Dramatiq no-op actor in ``processes`` x ``threads`` worker
    processes (the ``dramatiq`` CLI, as ours), messages enqueued first, then drained."""
    namespace = f"ceiling-{time.time_ns()}"
    broker = RedisBroker(url=server.url, namespace=namespace)
    with broker.client.pipeline(transaction=False) as pipe:
        for n in range(messages):
            message: dramatiq.Message[None] = dramatiq.Message(
                queue_name="noop", actor_name="noop", args=(n,), kwargs={},
                options={"redis_message_id": str(n)},
            )  # fmt: skip
            pipe.hset(f"{namespace}:noop.msgs", str(n), message.encode())
            pipe.rpush(f"{namespace}:noop", str(n))
        pipe.execute()
    env = {**os.environ, "BENCH_REDIS_URL": server.url, "BENCH_NAMESPACE": namespace}
    argv = [sys.executable, "-m", "dramatiq", "bench.noop_actor", "--skip-logging",
            "--processes", str(processes), "--threads", str(threads)]  # fmt: skip
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        # Timed from the first consumer's first call (its heartbeat), as ours from "ready".
        wait_for(lambda: broker.client.zcard(f"{namespace}:__heartbeats__") > 0, timeout_s=60,
                 interval_s=0.005, what="the no-op workers")  # fmt: skip
        started, cpu_before = time.perf_counter(), tree_cpu_s(process.pid)
        redis_before = tree_cpu_s(server.process.pid)
        wait_for(lambda: broker.client.hlen(f"{namespace}:noop.msgs") == 0, timeout_s=300,
                 interval_s=0.02, what="the no-ops")  # fmt: skip
        elapsed = time.perf_counter() - started
        cpu_us = (tree_cpu_s(process.pid) - cpu_before) / messages * 1e6
        redis_us = (tree_cpu_s(server.process.pid) - redis_before) / messages * 1e6
    finally:
        process.terminate()
        process.wait()
        broker.close()
    return messages / elapsed, cpu_us, redis_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--ceiling-messages", type=int, default=5000)
    parser.add_argument(
        "--modes", nargs="+", default=["through the API", "drain", "ceiling"],
        choices=["through the API", "drain", "ceiling"],
    )  # fmt: skip
    parser.add_argument(
        "--api-processes", type=int, default=API_PROCESSES,
        help="SOVD_API_PROCESSES of the api (docs/operations.md)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the 1-process drain into this folder"
    )
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        print("| mode | worker processes | commands/s | p50 ms | p95 ms | p99 ms | statuses |")
        print("|---|---|---|---|---|---|---|")
        rates: dict[tuple[str, int], float] = {}
        for mode in args.modes:
            for processes in args.processes:
                if mode == "ceiling":
                    rate, cpu_us, redis_us = run_ceiling(
                        server, processes, args.threads, args.ceiling_messages
                    )
                    row = (f"| Dramatiq no-op actor (ceiling) | {processes} x {args.threads} "
                           f"threads | {rate:,.0f} | | | | "
                           f"CPU {cpu_us:,.0f} µs/message, "
                           f"Redis {redis_us:,.0f} µs/message |")  # fmt: skip
                else:
                    profile = None
                    if args.profile is not None and mode == "drain" and processes == 1:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        profile = args.profile / "worker-drain.txt"
                    row, rate = run_service(server, processes, args.threads, args.commands,
                                            args.concurrency, drain=mode == "drain",
                                            profile=profile,
                                            api_processes=args.api_processes)  # fmt: skip
                rates[mode, processes] = rate
                print(row, flush=True)
                if profile is not None:
                    print("\n".join(top_frames(profile, thread_needle="workers/", top=25)))
        print(f"\n{args.commands} commands per run, {args.concurrency} concurrent submitters, "
              f"{args.ceiling_messages} no-op messages, api processes: "
              f"{args.api_processes}.")  # fmt: skip
        for processes in args.processes:
            if ("drain", processes) not in rates or ("ceiling", processes) not in rates:
                continue
            print(f"{processes} process(es): drain / no-op ceiling = "
                  f"{rates['drain', processes] / rates['ceiling', processes]:.2f}")  # fmt: skip
        if len(args.processes) > 1:
            one, more = args.processes[0], args.processes[-1]
            for mode in args.modes:
                print(f"{mode}: {more} processes / {one} = "
                      f"{rates[mode, more] / rates[mode, one]:.2f}")  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    main()
