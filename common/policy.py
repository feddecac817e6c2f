"""Execution policy per command type: one table, defaults in code, overridable by config.

Resolution order, later wins: the defaults below, then the file named by
``SOVD_POLICY_FILE`` (TOML or JSON: a table per command type), then ``SOVD_POLICIES``
(JSON, same shape). Unknown command types or fields are refused at start-up.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.commands import COMMAND_TYPES
from common.settings import Settings
from common.users import Role

__all__ = ["DEFAULT_POLICIES", "CommandPolicy", "PolicyError", "load_policies"]


class PolicyError(ValueError):
    """The policy configuration is invalid."""


class CommandPolicy(BaseModel):
    """How one command type is queued, retried, limited and who may submit it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue_name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9._-]*$")
    #: Automatic retries after a transient vehicle error (only if ``retry_safe``).
    max_retries: int = Field(ge=0, le=20)
    min_backoff_ms: int = Field(ge=0)
    max_backoff_ms: int = Field(ge=0)
    #: Limit for one attempt; the vehicle exchange is cut at this deadline.
    time_limit_ms: int = Field(gt=0)
    #: Total deadline from submission, across retries; the command ends as ``timeout``.
    max_age_ms: int = Field(gt=0)
    #: Dramatiq priority (orders prefetched messages within one worker only).
    priority: int = Field(default=0, ge=0)
    #: Whether re-executing the command is harmless (reads are; clearing codes is not).
    retry_safe: bool
    #: Commands that may run at once on one vehicle while this one is admitted.
    max_concurrent_per_vehicle: int = Field(ge=1)
    #: Roles allowed to submit this command type.
    roles: frozenset[Role]

    @model_validator(mode="after")
    def _consistent(self) -> CommandPolicy:
        if self.min_backoff_ms > self.max_backoff_ms:
            raise ValueError("min_backoff_ms must not exceed max_backoff_ms")
        if self.max_age_ms < self.time_limit_ms:
            raise ValueError("max_age_ms must be at least time_limit_ms")
        if self.max_retries and not self.retry_safe:
            raise ValueError("a command type that is not retry_safe cannot have max_retries")
        return self


_READ = {
    "max_retries": 3,
    "min_backoff_ms": 200,
    "max_backoff_ms": 2_000,
    "max_age_ms": 60_000,
    "retry_safe": True,
    "max_concurrent_per_vehicle": 4,
    "roles": {Role.ENGINEER, Role.ADMIN},
}

DEFAULT_POLICIES: dict[str, dict[str, Any]] = {
    "ReadDTC": {**_READ, "queue_name": "sovd.read_dtc", "time_limit_ms": 15_000},
    "ReadDataByID": {**_READ, "queue_name": "sovd.read_data_by_id", "time_limit_ms": 10_000},
    # Destructive: never retried automatically, runs alone on its vehicle. Engineers clear
    # the fault codes they work on; docs/operations.md shows an admin-only override.
    "ClearDTC": {
        "queue_name": "sovd.clear_dtc",
        "max_retries": 0,
        "min_backoff_ms": 0,
        "max_backoff_ms": 0,
        "time_limit_ms": 20_000,
        "max_age_ms": 60_000,
        "priority": 0,
        "retry_safe": False,
        "max_concurrent_per_vehicle": 1,
        "roles": {Role.ENGINEER, Role.ADMIN},
    },
}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise PolicyError(f"policy file {path} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {path} must hold a table per command type")
    return data


def _merge(base: dict[str, dict[str, Any]], overrides: dict[str, Any], source: str) -> None:
    names = {name.lower(): name for name in base}
    for raw_name, fields in overrides.items():
        name = names.get(raw_name.lower())
        if name is None:
            raise PolicyError(f"{source}: unknown command type {raw_name!r}")
        if not isinstance(fields, dict):
            raise PolicyError(f"{source}: {name} must be a table of policy fields")
        base[name] = {**base[name], **fields}


def load_policies(settings: Settings) -> dict[str, CommandPolicy]:
    """The effective policy of every command type for ``settings``."""
    merged = {name: dict(fields) for name, fields in DEFAULT_POLICIES.items()}
    if settings.policy_file is not None:
        _merge(merged, _read_file(settings.policy_file), str(settings.policy_file))
    _merge(merged, settings.policies, "SOVD_POLICIES")
    policies = {}
    for name, fields in merged.items():
        try:
            policies[name] = CommandPolicy.model_validate(fields)
        except ValueError as exc:
            raise PolicyError(f"invalid policy for {name}: {exc}") from None
    missing = set(COMMAND_TYPES) - set(policies)
    if missing:
        raise PolicyError(f"no policy for {sorted(missing)}")
    return policies
