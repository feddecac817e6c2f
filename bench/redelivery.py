"""Redelivery after a worker is killed mid-command, over N kills, on every queue.

Starts a private Valkey and the api, realtime and one worker process (1 process,
2 threads) with the default heartbeat timeout (``SOVD_BROKER_HEARTBEAT_TIMEOUT_MS``),
then N times: submits a command that takes about 3 s (an injected ``slow`` fault),
waits until it runs, SIGKILLs the worker's whole process group, starts a new worker at
once, and measures the time from the kill until the command is delivered again
(``attempts`` reaches 2) and until it is terminal. The command types alternate, so
every queue is exercised.

    .venv/bin/python -m bench.redelivery [--kills 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
import redis

from common.fleet import demo_fleet
from common.keys import Keys
from common.vehicles import ConnectionStatus
from tests.support import ROOT, RedisServer, Stack, running_stack, wait_for, worker_argv

SECRET = "bench-secret-that-is-long-enough-0123456789abcdef"  # noqa: S105 - private bench stack
TERMINAL = {"completed", "failed", "timeout", "cancelled", "rejected"}
COMMANDS = (
    ("ReadDTC", {"ecuAddress": "0x10"}),
    ("ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xF190"}),
)


def _worker(stack: Stack, log: Path) -> subprocess.Popen[bytes]:
    before = log.read_text().count("Worker process is ready") if log.exists() else 0
    with log.open("ab") as out:
        process = subprocess.Popen(
            worker_argv(processes=1, threads=2), cwd=ROOT, env=stack.env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    wait_for(lambda: log.read_text().count("Worker process is ready") > before, timeout_s=60,
             what="the worker")  # fmt: skip
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    vehicle = next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED)
    server = RedisServer()
    server.start()
    rows: list[tuple[str, float, float, str, str]] = []
    try:
        with tempfile.TemporaryDirectory() as logs, running_stack(
            server.url, Path(logs), jwt_secret=SECRET
        ) as stack:  # fmt: skip
            stack.processes["worker"].terminate()
            stack.processes["worker"].wait()
            keys = Keys(stack.settings.key_prefix)
            client = redis.Redis.from_url(server.url, decode_responses=True)
            token = httpx.post(
                f"{stack.api_url}/api/v1/auth/login",
                json={"username": "engineer", "password": "engineer-demo-pass"},
            ).json()["access_token"]
            log = Path(logs) / "workers.log"
            worker = _worker(stack, log)
            print("| kill | command | redelivered after s | terminal after s | status | attempts |")
            print("|---|---|---|---|---|---|", flush=True)
            for number in range(args.kills):
                name, params = COMMANDS[number % len(COMMANDS)]
                client.rpush(keys.sim_faults(vehicle.vehicle_id), "slow:3")
                command_id = httpx.post(
                    f"{stack.api_url}/api/v1/commands",
                    headers={"Authorization": f"Bearer {token}"},
                    json={"vehicle_id": vehicle.vehicle_id, "command_name": name,
                          "command_params": params},
                ).json()["command_id"]  # fmt: skip
                key = keys.command(command_id)
                wait_for(lambda key=key: client.hget(key, "status") == "in_progress",
                         timeout_s=30, what="the command to start")  # fmt: skip
                os.killpg(worker.pid, signal.SIGKILL)
                killed = time.monotonic()
                worker.wait()
                worker = _worker(stack, log)
                wait_for(lambda key=key: client.hget(key, "attempts") == "2", timeout_s=300,
                         interval_s=0.05, what="the redelivery")  # fmt: skip
                redelivered = time.monotonic() - killed
                wait_for(lambda key=key: client.hget(key, "status") in TERMINAL, timeout_s=120,
                         interval_s=0.05, what="the end")  # fmt: skip
                ended = time.monotonic() - killed
                status = str(client.hget(key, "status"))
                rows.append((name, redelivered, ended, status, str(client.hget(key, "attempts"))))
                print(f"| {number + 1} | {name} | {redelivered:.1f} | {ended:.1f} | {status} | "
                      f"{rows[-1][4]} |", flush=True)  # fmt: skip
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait()
            client.close()
    finally:
        server.stop()
    timeout_s = stack.settings.broker_heartbeat_timeout_ms / 1000
    delays = [r[1] for r in rows]
    print(f"\nredelivery after SIGKILL: median {statistics.median(delays):.1f} s, max "
          f"{max(delays):.1f} s (heartbeat timeout {timeout_s:g} s, bound {timeout_s + 5:g} s); "
          f"statuses: {sorted({r[3] for r in rows})}")  # fmt: skip


if __name__ == "__main__":
    main()
