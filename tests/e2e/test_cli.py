"""The ``sovd`` command-line client against the real processes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common.fleet import demo_fleet
from common.keys import Keys
from common.vehicles import ConnectionStatus
from tests.conftest import TEST_JWT_SECRET
from tests.support import Stack, free_port, running_stack, timeout, wait_for

pytestmark = pytest.mark.e2e

SOVD = str(Path(sys.executable).parent / "sovd")
CONNECTED = [v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED]
VEHICLE, SLOW_VEHICLE, CANCEL_VEHICLE = CONNECTED[:3]
OFFLINE = next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.DISCONNECTED)


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        redis_url,
        tmp_path_factory.mktemp("cli-logs"),
        jwt_secret=TEST_JWT_SECRET,
        env={
            "SOVD_SIM_DELAY_SCALE": "0.02",
            "SOVD_LOGIN_RATE_PER_MINUTE": "1000",
            "SOVD_LOGIN_RATE_PER_USERNAME_PER_MINUTE": "1000",
        },
    ) as stack:
        yield stack


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home)}


def sovd(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = _env(home)
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
    assert bad.stderr.startswith("error: command_params.ecuAddress: ")
    assert '"errors"' not in bad.stderr, "the message, not the error's JSON"
    assert len(bad.stderr.strip().splitlines()) == 1


def test_an_ecu_the_vehicle_lacks_fails_at_once_naming_the_ecus_it_has(
    stack: Stack, home: Path
) -> None:
    logged_in(stack, home)
    result = sovd(home, "run", VEHICLE.vehicle_id, "ReadDTC", "--param", "ecuAddress=0x99",
                  "--follow")  # fmt: skip
    assert result.returncode == 1, result.stderr
    present = ", ".join(f"{e['address']} {e['name']}" for e in VEHICLE.metadata["ecus"])
    assert f"FAILED: Vehicle {VEHICLE.vin} has no ECU at 0x99 (it has: {present})" in result.stdout
    assert "retrying" not in result.stdout
    assert "negative response 0x31 requestOutOfRange" in result.stdout


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


def test_common_options_are_accepted_after_the_subcommand(stack: Stack, home: Path) -> None:
    """The README's example: ``--json`` after ``run``."""
    logged_in(stack, home)
    result = sovd(home, "run", VEHICLE.vin[-6:], "ReadDataByID", "--param", "ecuAddress=0x10",
                  "--param", "dataId=0xF190", "--follow", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = lines(result)
    assert events[0]["event"] == "submitted"
    assert events[-1]["status"] == "completed"


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    result = subprocess.run([SOVD, "--version"], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout.strip()) == (
        0,
        f"sovd {version('sovd-command-service')}",
    )


def test_whoami_names_the_user_role_and_api(stack: Stack, home: Path) -> None:
    logged_in(stack, home, "viewer")
    result = sovd(home, "whoami")
    assert (result.returncode, result.stdout.strip()) == (0, f"viewer (viewer) at {stack.api_url}")


def test_types_lists_each_command_type_with_its_parameters(stack: Stack, home: Path) -> None:
    logged_in(stack, home)
    result = sovd(home, "types")
    assert result.returncode == 0, result.stderr
    assert "ReadDataByID: Read one data identifier" in result.stdout
    assert "ClearDTC  (destructive):" in result.stdout
    assert "  --param dataId=...  required:" in result.stdout
    assert "  --param dtcCode=...  optional:" in result.stdout
    as_json = lines(sovd(home, "types", "--json"))
    assert sorted(t["name"] for t in as_json) == ["ClearDTC", "ReadDTC", "ReadDataByID"]


def test_an_offline_vehicle_exits_5_with_one_readable_line(stack: Stack, home: Path) -> None:
    logged_in(stack, home)
    result = sovd(home, "run", OFFLINE.vin, "ReadDTC", "--param", "ecuAddress=0x10")
    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith(f"Rejected: Vehicle {OFFLINE.vin} is offline (last seen ")
    assert "is recorded as rejected." in result.stderr
    assert "{" not in result.stderr, "no raw JSON"


def test_show_prints_a_commands_fields_and_responses(stack: Stack, home: Path) -> None:
    logged_in(stack, home)
    run = sovd(home, "run", VEHICLE.vehicle_id, "ReadDataByID", "--param", "ecuAddress=0x10",
               "--param", "dataId=0xF190", "--follow", "--json")  # fmt: skip
    command_id = lines(run)[0]["command_id"]
    shown = sovd(home, "show", command_id)
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(None, 1) for line in shown.stdout.splitlines()[1:5])
    assert fields == {"command": "ReadDataByID ecuAddress=0x10 dataId=0xF190",
                      "id": command_id, "vehicle": VEHICLE.vin, "status": "completed"}  # fmt: skip
    assert f"VIN (0xF190) = {VEHICLE.vin} (final)" in shown.stdout
    assert lines(sovd(home, "show", command_id, "--json"))[0]["responses"][0]["is_final"] is True


def test_cancel_stops_a_running_command(stack: Stack, home: Path) -> None:
    logged_in(stack, home)
    client = redis.Redis.from_url(stack.settings.effective_redis_url, decode_responses=True)
    keys = Keys(stack.settings.key_prefix)
    client.rpush(keys.sim_faults(CANCEL_VEHICLE.vehicle_id), "slow:2")
    run = sovd(home, "run", CANCEL_VEHICLE.vehicle_id, "ReadDTC", "--param", "ecuAddress=0x10",
               "--json")  # fmt: skip
    command_id = lines(run)[0]["command_id"]
    key = keys.command(command_id)
    wait_for(lambda: client.hget(key, "status") == "in_progress", what="the start")
    cancel = sovd(home, "cancel", command_id)
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stdout.startswith(f"Cancel requested for {command_id}")
    wait_for(lambda: client.hget(key, "status") == "cancelled", timeout_s=15, what="the stop")
    again = sovd(home, "cancel", command_id)
    assert (again.returncode, again.stderr.strip()) == (
        2,
        "error: Command already ended (cancelled)",
    )
    client.close()


def test_ctrl_c_while_following_says_the_command_keeps_running(stack: Stack, home: Path) -> None:
    logged_in(stack, home)
    client = redis.Redis.from_url(stack.settings.effective_redis_url, decode_responses=True)
    client.rpush(Keys(stack.settings.key_prefix).sim_faults(SLOW_VEHICLE.vehicle_id), "slow:1")
    client.close()
    process = subprocess.Popen(
        [SOVD, "run", SLOW_VEHICLE.vehicle_id, "ReadDTC", "--param", "ecuAddress=0x10",
         "--follow"], env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.startswith("Submitted ReadDTC "), first
    command_id = first.split()[-1]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=timeout(15))
    assert process.returncode == 130
    assert stderr.strip() == (f"Stopped following. Command {command_id} keeps running; "
                              f"watch it again with: sovd watch {command_id}")  # fmt: skip


def test_a_url_without_scheme_means_http(stack: Stack, home: Path) -> None:
    bare = stack.api_url.removeprefix("http://")
    result = sovd(home, "login", "--api-url", bare, "--username", "viewer", "--password-stdin",
                  stdin="viewer-demo-pass\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Logged in to {stack.api_url} as viewer")


def test_an_unreachable_service_is_named_in_the_error(home: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = sovd(home, "login", "--api-url", url, "--username", "viewer", "--password-stdin",
                  stdin="x\n")  # fmt: skip
    assert result.returncode == 6
    assert result.stderr.startswith(f"error: cannot reach the service at {url}: ")


def test_the_realtime_port_is_recognised_as_not_the_api(stack: Stack, home: Path) -> None:
    result = sovd(home, "login", "--api-url", stack.realtime_url, "--username", "viewer",
                  "--password-stdin", stdin="viewer-demo-pass\n")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {stack.realtime_url} answered 404 Not Found for "
                                    "/api/v1/auth/login: it is not the SOVD api")  # fmt: skip


def _column_starts(header: str, names: list[str]) -> list[int]:
    return [header.index(name) for name in names]


def test_vehicles_and_history_print_aligned_columns_with_the_vin(stack: Stack, home: Path) -> None:
    logged_in(stack, home)
    vehicles = sovd(home, "vehicles").stdout.splitlines()
    starts = _column_starts(vehicles[0], ["VIN", "STATUS", "VEHICLE", "ECUS", "LAST SEEN", "ID"])
    for row in vehicles[1:]:
        assert all(row[s - 2 : s] == "  " and row[s] != " " for s in starts[1:]), row
    assert len(vehicles) == 1 + len(demo_fleet())
    sovd(home, "run", VEHICLE.vehicle_id, "ReadDTC", "--param", "ecuAddress=0x10")
    history = sovd(home, "history", "--limit", "5").stdout.splitlines()
    names = ["SUBMITTED", "STATUS", "VEHICLE", "COMMAND", "PARAMETERS", "ID"]
    starts = _column_starts(history[0], names)
    rows = history[1:-1]
    assert rows
    for row in rows:
        vin = row[starts[2] : starts[3]].strip()
        assert vin in {v.vin for v in demo_fleet()}, row
        assert all(row[s - 2 : s] == "  " and row[s] != " " for s in starts[1:]), row
