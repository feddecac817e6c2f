"""The per-type policy table: defaults, file and env overrides, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.policy import DEFAULT_POLICIES, PolicyError, load_policies
from common.settings import Settings
from common.users import Role

SECRET = "x" * 40


def make(**values: object) -> Settings:
    return Settings(_env_file=None, jwt_secret=SECRET, **values)  # type: ignore[arg-type]


def test_defaults_retry_reads_and_never_clear_dtc() -> None:
    policies = load_policies(make())
    assert set(policies) == set(DEFAULT_POLICIES)
    assert policies["ReadDTC"].max_retries == 3
    assert policies["ReadDTC"].retry_safe is True
    assert policies["ClearDTC"].max_retries == 0
    assert policies["ClearDTC"].retry_safe is False
    assert policies["ClearDTC"].roles == frozenset({Role.ENGINEER, Role.ADMIN})
    assert policies["ClearDTC"].max_concurrent_per_vehicle == 1
    assert {p.queue_name for p in policies.values()} == {
        "sovd.read_dtc", "sovd.clear_dtc", "sovd.read_data_by_id",
    }  # fmt: skip


def test_a_toml_file_overrides_the_defaults_and_env_overrides_the_file(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        "[ReadDTC]\nmax_retries = 5\ntime_limit_ms = 30000\n\n[readdatabyid]\npriority = 3\n"
    )
    policies = load_policies(
        make(policy_file=policy_file, policies={"ReadDTC": {"max_retries": 1}})
    )
    assert policies["ReadDTC"].max_retries == 1
    assert policies["ReadDTC"].time_limit_ms == 30_000
    assert policies["ReadDataByID"].priority == 3
    assert policies["ClearDTC"] == load_policies(make())["ClearDTC"]


def test_the_env_variable_is_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOVD_POLICIES", json.dumps({"ReadDTC": {"queue_name": "reads.fast"}}))
    assert load_policies(make())["ReadDTC"].queue_name == "reads.fast"


def test_a_json_file_works_too(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({"ClearDTC": {"roles": ["admin", "engineer"]}}))
    roles = load_policies(make(policy_file=policy_file))["ClearDTC"].roles
    assert roles == frozenset({Role.ADMIN, Role.ENGINEER})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"FlashECU": {"max_retries": 1}}, "unknown command type 'FlashECU'"),
        ({"ReadDTC": {"retries": 1}}, "Extra inputs are not permitted"),
        ({"ClearDTC": {"max_retries": 2}}, "cannot have max_retries"),
        ({"ReadDTC": {"min_backoff_ms": 5000, "max_backoff_ms": 10}}, "min_backoff_ms"),
        ({"ReadDTC": {"max_age_ms": 10}}, "max_age_ms must be at least time_limit_ms"),
        ({"ReadDTC": {"queue_name": "bad queue"}}, "String should match pattern"),
    ],
)
def test_invalid_policies_are_refused_with_a_message(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policies(make(policies=overrides))


def test_an_unreadable_or_malformed_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policies(make(policy_file=tmp_path / "missing.toml"))
    not_tables = tmp_path / "flat.json"
    not_tables.write_text(json.dumps({"ReadDTC": 5}))
    with pytest.raises(PolicyError, match="ReadDTC must be a table"):
        load_policies(make(policy_file=not_tables))
    broken = tmp_path / "broken.toml"
    broken.write_text("[ReadDTC\n")
    with pytest.raises(PolicyError, match="is not valid"):
        load_policies(make(policy_file=broken))
