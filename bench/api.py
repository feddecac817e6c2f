"""One api process against the bare FastAPI endpoint of the same shape, side by side.

Starts a private Valkey, ``python -m api`` (as the docs tell operators to run it) and
``python -m bench.bare_app`` (bench/bare_app.py) on the same uvicorn settings, then drives
each with ``bench.loadgen`` (its own process, N keep-alive connections) in alternating
rounds, and prints requests/s and the ratio ours / bare per round and as the median:

- submit: ``POST /api/v1/commands`` (a ReadDataByID) vs the bare POST;
- read: an authenticated ``GET /api/v1/vehicles/{id}`` vs the bare GET;
- ``GET /health/live`` of our api, for reference.

No worker runs: submissions stay pending (per-vehicle admission and the submit rate
limit are lifted for the run). With ``--profile DIR`` it also records the api under the
submit load with py-spy (``DIR/api-submit.txt``, raw format) and prints where the time
goes.

    .venv/bin/python -m bench.api [--rounds 3] [--duration 5] [--profile /tmp/prof]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.flame import py_spy, top_frames
from bench.latency import _tree_cpu_s as tree_cpu_s
from common.fleet import demo_fleet
from common.vehicles import ConnectionStatus
from tests.support import ROOT, RedisServer, free_port, wait_for

SECRET = "bench-secret-that-is-long-enough-0123456789abcdef"  # noqa: S105 - private bench stack
UNLIMITED = json.dumps(
    {name: {"max_concurrent_per_vehicle": 1_000_000} for name in ("ReadDTC", "ReadDataByID")}
)
#: Frames that name where a request's time goes, for the profile summary.
PROFILE_GROUPS = {
    "redis-py": "redis/",
    "asyncio": "asyncio/",
    "fastapi dependencies": "fastapi/dependencies/",
    "fastapi routing": "fastapi/routing.py",
    "pydantic": "pydantic",
    "logging": "structlog/",
    "stdlib logging": "logging/__init__.py",
    "starlette": "starlette/",
    "jwt": "jwt/",
}


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def load(
    url: str,
    *,
    method: str = "GET",
    headers: list[str] | None = None,
    body: str | None = None,
    connections: int,
    duration_s: float,
) -> dict[str, object]:
    argv = [sys.executable, "-m", "bench.loadgen", url, "--method", method,
            "--connections", str(connections), "--duration", str(duration_s)]  # fmt: skip
    for header in headers or []:
        argv += ["--header", header]
    if body is not None:
        argv += ["--body", body]
    out = subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def summarize_profile(path: Path) -> list[str]:
    """Inclusive share of the main thread's samples per group of frames (raw py-spy)."""
    totals: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit() or "uvicorn/server.py" not in stack:
            continue  # other threads (the thread pool) or a malformed line
        count = int(count_text)
        samples += count
        stack = stack.replace("(asyncio/runners.py", "(runner")  # the root of every stack
        for group, needle in PROFILE_GROUPS.items():
            if needle in stack:
                totals[group] += count
        if stack.rsplit(";", 1)[-1].startswith(("select (", "poll (", "run_forever")):
            totals["waiting in the event loop"] += count
    if not samples:
        return ["(no samples)"]
    groups = (*PROFILE_GROUPS, "waiting in the event loop")
    return [f"- {group}: {totals[group] / samples:.0%}" for group in groups]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    api_port, bare_port = free_port(), free_port()
    env = {
        **os.environ,
        "SOVD_ENV": "dev",
        "SOVD_REDIS_URL": server.url,
        "SOVD_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
        "SOVD_JWT_SECRET": SECRET,
        "SOVD_API_PORT": str(api_port),
        "SOVD_LOG_FORMAT": "json",
        "SOVD_POLICIES": UNLIMITED,
        "SOVD_SUBMIT_RATE_PER_MINUTE": "100000000",
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as logs:
            api = _start([sys.executable, "-m", "api"], env, Path(logs) / "api.log")
            bare = _start(
                [sys.executable, "-m", "bench.bare_app", str(bare_port)], env, Path(logs) / "b.log"
            )
            processes += [api, bare]
            ours, base = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{bare_port}"
            wait_for(lambda: _ready(f"{ours}/health/live"), timeout_s=30, what="the api")
            wait_for(lambda: _ready(f"{base}/docs"), timeout_s=30, what="the bare app")
            token = httpx.post(
                f"{ours}/api/v1/auth/login",
                json={"username": "engineer", "password": "engineer-demo-pass"},
            ).json()["access_token"]
            auth = [f"Authorization: Bearer {token}"]
            vehicle = next(
                v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED
            )
            body = json.dumps(
                {
                    "vehicle_id": vehicle.vehicle_id,
                    "command_name": "ReadDataByID",
                    "command_params": {"ecuAddress": "0x10", "dataId": "0xF190"},
                }
            )
            read_path = f"/api/v1/vehicles/{vehicle.vehicle_id}"
            opts = {"connections": args.connections, "duration_s": args.duration}
            pids = {base: bare.pid, ours: api.pid}

            def measured(root: str, result: dict[str, object], cpu_s: float) -> dict[str, object]:
                done = int(result["requests"]) or 1  # type: ignore[call-overload]
                return {**result, "cpu_us": cpu_s / done * 1e6}

            def timed(root: str, run: Any) -> dict[str, object]:
                before = tree_cpu_s(pids[root])
                result = run(root)
                return measured(root, result, tree_cpu_s(pids[root]) - before)

            scenarios = {
                "submit": (
                    lambda root: load(
                        f"{root}/api/v1/commands", method="POST", headers=auth, body=body, **opts
                    )
                ),
                "read": (lambda root: load(f"{root}{read_path}", headers=auth, **opts)),
            }
            ratios: dict[str, list[float]] = {name: [] for name in scenarios}
            cpu_ratios: dict[str, list[float]] = {name: [] for name in scenarios}
            print("| round | scenario | bare req/s | ours req/s | ours / bare | bare CPU µs/req | "
                  "ours CPU µs/req | bare / ours CPU | ours p50 ms | ours p99 ms | "
                  "statuses bare / ours |")  # fmt: skip
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            for number in range(1, args.rounds + 1):
                for name, run in scenarios.items():
                    bare_result, our_result = timed(base, run), timed(ours, run)
                    ratio = float(our_result["rps"]) / float(bare_result["rps"])  # type: ignore[arg-type]
                    cpu_ratio = float(bare_result["cpu_us"]) / float(our_result["cpu_us"])  # type: ignore[arg-type]
                    ratios[name].append(ratio)
                    cpu_ratios[name].append(cpu_ratio)
                    print(
                        f"| {number} | {name} | {bare_result['rps']:,.0f} | "
                        f"{our_result['rps']:,.0f} | {ratio:.2f} | {bare_result['cpu_us']:.0f} | "
                        f"{our_result['cpu_us']:.0f} | {cpu_ratio:.2f} | "
                        f"{our_result['p50_ms']:.1f} | "
                        f"{our_result['p99_ms']:.1f} | {bare_result['statuses']} / "
                        f"{our_result['statuses']} |",
                        flush=True,
                    )
            live = timed(ours, lambda root: load(f"{root}/health/live", **opts))
            print(f"| - | health/live | | {live['rps']:,.0f} | | | {live['cpu_us']:.0f} | | "
                  f"{live['p50_ms']:.1f} | "
                  f"{live['p99_ms']:.1f} | {live['statuses']} |")  # fmt: skip
            print()
            for name, values in ratios.items():
                print(f"median ratio {name}: {statistics.median(values):.2f} (rounds: "
                      + ", ".join(f"{v:.2f}" for v in values) + "); by CPU per request: "
                      + f"{statistics.median(cpu_ratios[name]):.2f}")  # fmt: skip
            print(f"{args.connections} connections, {args.duration:g} s per measurement, "
                  "bare and ours alternating.")  # fmt: skip
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                for name, run in scenarios.items():
                    out = args.profile / f"api-{name}.txt"
                    spy = subprocess.Popen(
                        [py_spy(), "record", "-p", str(api.pid), "-d", str(int(args.duration)),
                         "-r", "250", "-f", "raw", "-o", str(out), "--nonblocking"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    run(ours)
                    spy.wait()
                    print(f"\nprofile of the api under the {name} load ({out}):")
                    print("\n".join(summarize_profile(out)))
                    print("\n".join(top_frames(out, thread_needle="uvicorn/server.py", top=20)))
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        server.stop()


if __name__ == "__main__":
    main()
