"""The ``sovd`` command-line client against the real processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.fleet import demo_fleet
from common.vehicles import ConnectionStatus
from tests.conftest import TEST_JWT_SECRET
from tests.support import Stack, running_stack, timeout

pytestmark = pytest.mark.e2e

SOVD = str(Path(sys.executable).parent / "sovd")
VEHICLE = next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED)


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        redis_url,
        tmp_path_factory.mktemp("cli-logs"),
        jwt_secret=TEST_JWT_SECRET,
        env={"SOVD_SIM_DELAY_SCALE": "0.02"},
    ) as stack:
        yield stack


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def sovd(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home)}
    return subprocess.run(
        [SOVD, *args], input=stdin, capture_output=True, text=True, env=env,
        timeout=timeout(60), check=False,
    )  # fmt: skip


def logged_in(stack: Stack, home: Path, user: str = "engineer") -> None:
    result = sovd(home, "login", "--api-url", stack.api_url, "--username", user,
                  "--password-stdin", stdin=f"{user}-demo-pass\n")  # fmt: skip
    assert result.returncode == 0, result.stderr


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_login_caches_the_token_readable_only_by_its_owner(stack: Stack, home: Path) -> None:
    logged_in(stack, home)
    credentials = home / "config" / "sovd" / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert json.loads(credentials.read_text())["username"] == "engineer"
    wrong = sovd(home, "login", "--api-url", stack.api_url, "--username", "engineer",
                 "--password-stdin", stdin="nope\n")  # fmt: skip
    assert wrong.returncode == 2
    assert "Invalid username or password" in wrong.stderr


def test_vehicles_lists_the_fleet_as_json_lines(stack: Stack, home: Path) -> None:
    logged_in(stack, home)
    result = sovd(home, "--json", "vehicles", "--status", "connected")
    assert result.returncode == 0, result.stderr
    vins = {v["vin"] for v in lines(result)}
    assert vins == {v.vin for v in demo_fleet() if v.connection_status == "connected"}


def test_run_follow_streams_every_event_and_exits_0_on_completed(stack: Stack, home: Path) -> None:
    logged_in(stack, home)
    result = sovd(home, "--json", "run", VEHICLE.vin[-6:], "ReadDTC", "--param", "ecuAddress=0x10",
                  "--follow")  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = lines(result)
    assert events[0]["event"] == "submitted"
    stream = events[1:]
    assert [e["seq"] for e in stream] == list(range(1, len(stream) + 1))
    assert stream[-1]["status"] == "completed"
    assert any(e["event"] == "response" for e in stream)


def test_the_exit_code_reflects_a_failed_command_and_text_output_is_readable(
    stack: Stack, home: Path
) -> None:
    logged_in(stack, home)
    result = sovd(home, "run", VEHICLE.vehicle_id, "ReadDataByID", "--param", "ecuAddress=0x10",
                  "--param", "dataId=0xBEEF", "--follow")  # fmt: skip
    assert result.returncode == 1
    assert "negative response 0x31 requestOutOfRange" in result.stdout
    assert "FAILED" in result.stdout


def test_refusals_exit_2_with_the_services_message(stack: Stack, home: Path) -> None:
    logged_in(stack, home, "viewer")
    clear = sovd(home, "run", VEHICLE.vehicle_id, "ClearDTC", "--param", "ecuAddress=0x10")
    assert clear.returncode == 2
    assert "Role 'viewer' may not submit commands" in clear.stderr
    logged_in(stack, home)
    bad = sovd(home, "run", VEHICLE.vehicle_id, "ReadDTC", "--param", "ecuAddress=16")
    assert bad.returncode == 2
    assert "ecuAddress" in bad.stderr


def test_watch_and_history_show_an_earlier_command(stack: Stack, home: Path) -> None:
    logged_in(stack, home)
    submitted = lines(sovd(home, "--json", "run", VEHICLE.vehicle_id, "ReadDataByID",
                           "--param", "ecuAddress=0x10", "--param", "dataId=0xF190"))  # fmt: skip
    command_id = submitted[0]["command_id"]
    watched = sovd(home, "--json", "watch", command_id)
    assert watched.returncode == 0, watched.stderr
    response = next(e for e in lines(watched) if e["event"] == "response")
    assert response["response"]["response_payload"]["value"] == VEHICLE.vin
    history = sovd(home, "--json", "history", "--limit", "50")
    assert command_id in {c["command_id"] for c in lines(history)}


def test_commands_need_a_login(stack: Stack, home: Path) -> None:
    result = sovd(home, "vehicles")
    assert result.returncode == 2
    assert "run `sovd login` first" in result.stderr
