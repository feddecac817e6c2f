"""The submission's decisions that need no I/O: the checks and the script's answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fastapi.exceptions import RequestValidationError

from api.schemas import CommandCreate
from api.submission import admission_outcome, check
from common.commands import CommandRecord, CommandStatus
from common.errors import ConflictError, ForbiddenError, NotFoundError, RateLimitedError
from common.fleet import demo_fleet
from common.policy import load_policies
from common.settings import Settings
from common.users import Role, User

POLICIES = load_policies(Settings(_env_file=None))
VEHICLE = demo_fleet()[0]
COMMAND = CommandRecord(
    command_id=str(uuid.uuid4()), user_id="u", vehicle_id=VEHICLE.vehicle_id,
    command_name="ReadDTC", command_params={"ecuAddress": "0x10"},
    status=CommandStatus.PENDING, submitted_at=datetime(2026, 1, 1, tzinfo=UTC),
)  # fmt: skip


def user(role: Role) -> User:
    return User(user_id="u", username="u", role=role, password_hash="x")


def body(name: str, params: dict[str, str]) -> CommandCreate:
    return CommandCreate.model_validate(
        {"vehicle_id": VEHICLE.vehicle_id, "command_name": name, "command_params": params}
    )


def test_a_valid_command_passes_with_its_normalised_params_and_policy() -> None:
    command_type, params, policy = check(
        user(Role.ENGINEER), body("ReadDTC", {"ecuAddress": "0x10"}), POLICIES
    )
    assert command_type.name == "ReadDTC"
    assert params["ecuAddress"] == "0x10"
    assert policy is POLICIES["ReadDTC"]


def test_an_unknown_command_or_bad_params_are_422_naming_the_field() -> None:
    with pytest.raises(RequestValidationError) as unknown:
        check(user(Role.ENGINEER), body("FlashECU", {}), POLICIES)
    assert unknown.value.errors()[0]["loc"] == ("body", "command_name")
    with pytest.raises(RequestValidationError) as bad:
        check(user(Role.ENGINEER), body("ReadDTC", {}), POLICIES)
    assert bad.value.errors()[0]["loc"][:2] == ("body", "command_params")


def test_a_role_the_policy_does_not_allow_is_403() -> None:
    with pytest.raises(ForbiddenError, match="ClearDTC requires the role admin or engineer"):
        check(user(Role.VIEWER), body("ClearDTC", {"ecuAddress": "0x10"}), POLICIES)


def test_the_script_answers_map_to_one_outcome_each() -> None:
    raw = VEHICLE.model_dump_json()
    assert admission_outcome(["admitted", raw], COMMAND) is None
    assert admission_outcome(["offline", raw], COMMAND) == VEHICLE
    with pytest.raises(RateLimitedError) as limited:
        admission_outcome(["rate_limited", 17], COMMAND)
    assert limited.value.retry_after_s == 17
    with pytest.raises(NotFoundError):
        admission_outcome(["vehicle_not_found"], COMMAND)
    with pytest.raises(ConflictError) as busy:
        admission_outcome(["busy", "other-id", raw], COMMAND)
    assert busy.value.details == {"blocking_command_id": "other-id"}
