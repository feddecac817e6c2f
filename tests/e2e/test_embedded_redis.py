"""The ``redis`` Procfile entry stops last: it serves until the other clients are gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.embedded_redis import DRAIN_BOUND_S
from tests.support import ROOT, free_port, timeout, wait_for

pytestmark = pytest.mark.e2e


def _answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVD_")} | {
        "SOVD_EMBEDDED_REDIS_PORT": str(port),
        "SOVD_DATA_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "common.embedded_redis"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _answers(port), timeout_s=20, what="the embedded server")
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        wait_for(lambda: not _answers(port), timeout_s=10, what="the server to stop")


def test_on_sigterm_the_server_keeps_serving_a_connected_client_until_it_leaves(
    supervisor: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = supervisor
    worker = redis.Redis(port=port)
    worker.set("still", "here")
    process.send_signal(signal.SIGTERM)
    # A worker draining its last commands still reads and writes.
    for _ in range(5):
        assert worker.get("still") == b"here"
    assert process.poll() is None
    worker.close()
    assert process.wait(timeout=timeout(10)) == 0
    assert not _answers(port)


def test_a_client_that_never_leaves_holds_the_stop_no_longer_than_the_bound(
    supervisor: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = supervisor
    stuck = redis.Redis(port=port)
    stuck.ping()
    process.send_signal(signal.SIGINT)  # Ctrl-C in a terminal
    assert process.wait(timeout=timeout(DRAIN_BOUND_S + 5)) == 0
    assert not _answers(port)
    stuck.close()


def test_a_killed_supervisor_takes_the_server_with_it(
    supervisor: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = supervisor
    process.kill()  # honcho's SIGKILL after its 5 s
    process.wait()
    wait_for(lambda: not _answers(port), timeout_s=10, what="the orphaned server to stop")
