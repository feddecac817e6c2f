"""Redis memory per command, by type, with its responses, events, index and audit entries.

Starts a private Valkey and the api, worker and realtime processes (simulator delays
zero) and, per command type, runs N commands to completion through the REST API, one
at a time (ClearDTC runs alone on its vehicle), then prints the growth of Redis's
``used_memory`` per command next to ``MEMORY USAGE`` of one command's own keys: its
hash, its responses and its event stream. The rest of the growth is its entries in the
time, user, vehicle and deadline indexes, its three audit entries and the counters.

    .venv/bin/python -m bench.memory [--commands 200]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import httpx2 as httpx
import redis

from common.fleet import demo_fleet
from common.keys import Keys
from common.vehicles import ConnectionStatus
from tests.support import RedisServer, running_stack, wait_for

SECRET = "bench-secret-that-is-long-enough-0123456789abcdef"  # noqa: S105 - private bench stack
TERMINAL = {"completed", "failed", "timeout", "cancelled", "rejected"}
TYPES = (
    ("ReadDTC", {"ecuAddress": "0x10"}),
    ("ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xF190"}),
    ("ClearDTC", {"ecuAddress": "0x10"}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    args = parser.parse_args()
    vehicles = [v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED]
    server = RedisServer()
    server.start()
    env = {"SOVD_SIM_DELAY_SCALE": "0", "SOVD_SUBMIT_RATE_PER_MINUTE": "1000000"}
    try:
        with tempfile.TemporaryDirectory() as logs, running_stack(
            server.url, Path(logs), jwt_secret=SECRET, env=env
        ) as stack:  # fmt: skip
            keys = Keys(stack.settings.key_prefix)
            client = redis.Redis.from_url(server.url, decode_responses=True)
            http = httpx.Client(base_url=stack.api_url, timeout=30)
            token = http.post(
                "/api/v1/auth/login", json={"username": "admin", "password": "admin-demo-pass"}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            print("| type | commands | used_memory growth B/command | hash B | responses B | "
                  "events B | responses/command |")  # fmt: skip
            print("|---|---|---|---|---|---|---|")
            for name, params in TYPES:
                client.execute_command("MEMORY", "PURGE")
                before = int(client.info("memory")["used_memory"])
                ids = []
                for n in range(args.commands):
                    body = {"vehicle_id": vehicles[n % len(vehicles)].vehicle_id,
                            "command_name": name, "command_params": params}  # fmt: skip
                    response = http.post("/api/v1/commands", headers=headers, json=body)
                    response.raise_for_status()
                    key = keys.command(response.json()["command_id"])
                    wait_for(lambda key=key: client.hget(key, "status") in TERMINAL,
                             what="the command")  # fmt: skip
                    ids.append(response.json()["command_id"])
                client.execute_command("MEMORY", "PURGE")
                growth = (int(client.info("memory")["used_memory"]) - before) / len(ids)
                sample = ids[-1]
                own = [
                    client.memory_usage(k) or 0
                    for k in (keys.command(sample), keys.command_responses(sample),
                              keys.command_events(sample))
                ]  # fmt: skip
                responses = client.hlen(keys.command_responses(sample))
                print(f"| {name} | {len(ids)} | {growth:,.0f} | {own[0]:,} | {own[1]:,} | "
                      f"{own[2]:,} | {responses} |", flush=True)  # fmt: skip
            http.close()
            client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
