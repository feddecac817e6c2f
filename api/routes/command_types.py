"""The catalog of command types: parameters, policy, and who may submit them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CurrentUser, State
from common.commands import COMMAND_TYPES
from common.users import Role

router = APIRouter(prefix="/api/v1/command-types", tags=["command types"])


class RetryPolicyPublic(BaseModel):
    retry_safe: bool
    max_retries: int
    min_backoff_ms: int
    max_backoff_ms: int


class CommandTypePublic(BaseModel):
    name: str
    description: str
    destructive: bool
    parameters: dict[str, Any]
    timeout_ms: int
    max_age_ms: int
    retry: RetryPolicyPublic
    max_concurrent_per_vehicle: int
    roles_allowed: list[Role]


@router.get("", response_model=list[CommandTypePublic])
async def list_command_types(state: State, _user: CurrentUser) -> list[CommandTypePublic]:
    """Every command type with its parameter JSON schema and its execution policy."""
    catalog = []
    for name, command_type in COMMAND_TYPES.items():
        policy = state.policies[name]
        catalog.append(
            CommandTypePublic(
                name=name,
                description=command_type.description,
                destructive=command_type.destructive,
                parameters=command_type.params_model.model_json_schema(),
                timeout_ms=policy.time_limit_ms,
                max_age_ms=policy.max_age_ms,
                retry=RetryPolicyPublic(
                    retry_safe=policy.retry_safe,
                    max_retries=policy.max_retries,
                    min_backoff_ms=policy.min_backoff_ms,
                    max_backoff_ms=policy.max_backoff_ms,
                ),
                max_concurrent_per_vehicle=policy.max_concurrent_per_vehicle,
                roles_allowed=sorted(policy.roles, key=list(Role).index),
            )
        )
    return catalog
