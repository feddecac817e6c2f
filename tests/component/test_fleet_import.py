"""``sovd-admin import-fleet`` / ``export-fleet``: row-by-row validation, idempotent on VIN."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from common import admin
from common.settings import Settings, get_settings
from common.vin import with_check_digit
from tests.component.conftest import login

GOOD = [with_check_digit(f"1HGCM826_3A00{n:04d}") for n in range(3)]
BAD_CHECK = GOOD[0][:8] + ("0" if GOOD[0][8] != "0" else "1") + GOOD[0][9:]
ECUS = [{"address": "0x10", "name": "Engine Control Module"}]

CSV = f"""vin,make,model,year,metadata
{GOOD[0]},Honda,Accord,2003,"{json.dumps({"ecus": ECUS}).replace('"', '""')}"
{GOOD[1]},Honda,Civic,2005,
{BAD_CHECK},Honda,Jazz,2007,
{GOOD[2]},Honda,Jazz,1700,
{GOOD[2].lower()},Honda,Jazz,2008,{{not json
"""


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SOVD_REDIS_URL", settings.effective_redis_url)
    monkeypatch.setenv("SOVD_KEY_PREFIX", settings.key_prefix)
    monkeypatch.setenv("SOVD_JWT_SECRET", settings.jwt_secret)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def summaries(out: str) -> list[str]:
    """The CLI's summary lines (the api's log lines share the captured output)."""
    return [line for line in out.splitlines() if line.startswith(("created", "dry run"))]


def fleet_of(api: TestClient, prefix: str = "1HGCM") -> dict[str, dict[str, Any]]:
    listed = api.get(f"/api/v1/vehicles?search={prefix}", headers=login(api, "viewer")).json()
    return {v["vin"]: v for v in listed}


def test_import_takes_the_valid_rows_and_reports_each_refused_one(
    cli_env: None, api: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text(CSV)
    assert admin.main(["import-fleet", str(path)]) == 1
    out, err = capsys.readouterr()
    assert summaries(out) == ["created 2, updated 0, unchanged 0, refused 3"]
    refused = err.strip().splitlines()
    assert refused[0].startswith(f"refused row 3 ({BAD_CHECK}): vin: Value error, not a valid VIN")
    assert refused[1].startswith(f"refused row 4 ({GOOD[2]}): year: Input should be greater")
    assert refused[2].startswith(f"refused row 5 ({GOOD[2].lower()}): metadata: not JSON")
    fleet = fleet_of(api)
    assert sorted(fleet) == sorted(GOOD[:2])
    assert fleet[GOOD[0]]["metadata"] == {"ecus": ECUS}
    assert fleet[GOOD[0]]["connection_status"] == "disconnected"
    audit = api.get("/api/v1/audit?action=vehicle_registered", headers=login(api, "admin")).json()[
        "entries"
    ]
    assert {e["details"]["vin"] for e in audit} == set(GOOD[:2])
    assert {e["username"] for e in audit} == {"sovd-admin"}


def test_import_again_is_idempotent_and_updates_changed_rows(
    cli_env: None, api: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fleet.json"
    rows = [{"vin": GOOD[0], "make": "Honda", "model": "Accord", "year": 2003}]
    path.write_text(json.dumps(rows))
    assert admin.main(["import-fleet", str(path)]) == 0
    first = fleet_of(api)[GOOD[0]]
    assert admin.main(["import-fleet", str(path)]) == 0
    rows[0]["model"] = "Accord Tourer"
    path.write_text(json.dumps({"vehicles": rows}))
    assert admin.main(["import-fleet", str(path)]) == 0
    assert summaries(capsys.readouterr().out) == [
        "created 1, updated 0, unchanged 0, refused 0",
        "created 0, updated 0, unchanged 1, refused 0",
        "created 0, updated 1, unchanged 0, refused 0",
    ]
    after = fleet_of(api)
    assert list(after) == [GOOD[0]]
    assert after[GOOD[0]]["vehicle_id"] == first["vehicle_id"]
    assert after[GOOD[0]]["model"] == "Accord Tourer"


def test_a_dry_run_reports_and_writes_nothing(
    cli_env: None, api: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text(CSV)
    assert admin.main(["import-fleet", str(path), "--dry-run"]) == 1
    assert summaries(capsys.readouterr().out)[0].startswith("dry run, nothing written: created 2,")
    assert fleet_of(api) == {}


def test_an_unreadable_file_is_refused_whole(
    cli_env: None, api: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text("serial,brand\n1,2\n")
    assert admin.main(["import-fleet", str(path)]) == 2
    assert "the CSV header lacks make, model, vin, year" in capsys.readouterr().err
    broken = tmp_path / "fleet.json"
    broken.write_text("[{")
    assert admin.main(["import-fleet", str(broken)]) == 2


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_export_imports_back_unchanged_into_an_empty_fleet(
    cli_env: None,
    api: TestClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> None:
    source = tmp_path / "fleet.csv"
    source.write_text(CSV)
    admin.main(["import-fleet", str(source)])
    exported = tmp_path / f"export.{fmt}"
    assert admin.main(["export-fleet", "-o", str(exported)]) == 0
    capsys.readouterr()
    # The same file read into another deployment (another key prefix) gives the same fleet.
    assert admin.main(["import-fleet", str(exported)]) == 0
    # the 8 demo vehicles and the 2 imported
    assert summaries(capsys.readouterr().out) == ["created 0, updated 0, unchanged 10, refused 0"]
    monkeypatch.setenv("SOVD_KEY_PREFIX", get_settings().key_prefix + "-copy")
    get_settings.cache_clear()
    assert admin.main(["import-fleet", str(exported)]) == 0
    assert summaries(capsys.readouterr().out) == ["created 10, updated 0, unchanged 0, refused 0"]
    assert admin.main(["export-fleet", "--format", fmt]) == 0
    assert capsys.readouterr().out == exported.read_text()
