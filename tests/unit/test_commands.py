"""Command parameter models and the stored command record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from common.commands import (
    COMMAND_TYPES,
    ClearDTCParams,
    CommandRecord,
    CommandStatus,
    ReadDataByIDParams,
    ReadDTCParams,
)


def test_read_dtc_params_accept_a_one_byte_ecu_address() -> None:
    params = ReadDTCParams.model_validate({"ecuAddress": "0x10"})

    assert params.ecuAddress == "0x10"


def test_read_dtc_params_accept_a_two_byte_ecu_address_and_strip_whitespace() -> None:
    params = ReadDTCParams.model_validate({"ecuAddress": " 0X1A2b "})

    assert params.ecuAddress == "0X1A2b"


@pytest.mark.parametrize(
    "address",
    ["10", "0x1", "0x12345", "0xZZ", "0x", "", "x10", "0x10 0x11", "0x1G"],
)
def test_read_dtc_params_reject_a_malformed_ecu_address(address: str) -> None:
    with pytest.raises(ValidationError):
        ReadDTCParams.model_validate({"ecuAddress": address})


def test_read_dtc_params_reject_a_missing_ecu_address() -> None:
    with pytest.raises(ValidationError):
        ReadDTCParams.model_validate({})


def test_read_dtc_params_reject_extra_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        ReadDTCParams.model_validate({"ecuAddress": "0x10", "dtcCode": "P0420"})

    assert [error["type"] for error in caught.value.errors()] == ["extra_forbidden"]


def test_clear_dtc_params_without_a_code_clear_everything() -> None:
    params = ClearDTCParams.model_validate({"ecuAddress": "0x10"})

    assert params.dtcCode is None


def test_clear_dtc_params_normalise_a_lower_case_code_to_upper_case() -> None:
    params = ClearDTCParams.model_validate({"ecuAddress": "0x10", "dtcCode": "p0420"})

    assert params.dtcCode == "P0420"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("P0420", "P0420"),
        ("C0035", "C0035"),
        ("B1000", "B1000"),
        ("U0100", "U0100"),
        ("u0121", "U0121"),
        ("p0a80", "P0A80"),
        (" B1318 ", "B1318"),
    ],
)
def test_clear_dtc_params_accept_powertrain_chassis_body_and_network_codes(
    code: str, expected: str
) -> None:
    params = ClearDTCParams.model_validate({"ecuAddress": "0x28", "dtcCode": code})

    assert params.dtcCode == expected


@pytest.mark.parametrize("code", ["X0420", "P4420", "P042", "P04200", "P042G", "0420", "", "PP420"])
def test_clear_dtc_params_reject_a_malformed_code(code: str) -> None:
    with pytest.raises(ValidationError):
        ClearDTCParams.model_validate({"ecuAddress": "0x10", "dtcCode": code})


def test_clear_dtc_params_reject_extra_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        ClearDTCParams.model_validate({"ecuAddress": "0x10", "force": True})

    assert [error["type"] for error in caught.value.errors()] == ["extra_forbidden"]


def test_read_data_by_id_params_accept_a_two_byte_data_identifier() -> None:
    params = ReadDataByIDParams.model_validate({"ecuAddress": "0x10", "dataId": "0xF190"})

    assert (params.ecuAddress, params.dataId) == ("0x10", "0xF190")


@pytest.mark.parametrize("data_id", ["F190", "0xF19", "0xF1900", "0xF19G", "0x", "", "190"])
def test_read_data_by_id_params_reject_a_malformed_data_identifier(data_id: str) -> None:
    with pytest.raises(ValidationError):
        ReadDataByIDParams.model_validate({"ecuAddress": "0x10", "dataId": data_id})


def test_read_data_by_id_params_reject_a_missing_data_identifier() -> None:
    with pytest.raises(ValidationError):
        ReadDataByIDParams.model_validate({"ecuAddress": "0x10"})


def test_read_data_by_id_params_reject_extra_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        ReadDataByIDParams.model_validate({"ecuAddress": "0x10", "dataId": "0xF190", "length": 17})

    assert [error["type"] for error in caught.value.errors()] == ["extra_forbidden"]


def test_command_types_name_their_params_model_and_only_clear_dtc_is_destructive() -> None:
    assert {name: t.params_model for name, t in COMMAND_TYPES.items()} == {
        "ReadDTC": ReadDTCParams,
        "ClearDTC": ClearDTCParams,
        "ReadDataByID": ReadDataByIDParams,
    }
    assert [name for name, t in COMMAND_TYPES.items() if t.destructive] == ["ClearDTC"]


def _record(**overrides: Any) -> CommandRecord:
    fields: dict[str, Any] = {
        "command_id": "cmd-1",
        "user_id": "user-1",
        "vehicle_id": "vehicle-1",
        "command_name": "ClearDTC",
        "command_params": {"ecuAddress": "0x10", "dtcCode": "P0420"},
        "status": CommandStatus.PENDING,
        "submitted_at": datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC),
    }
    fields.update(overrides)
    return CommandRecord(**fields)


def test_command_record_to_redis_gives_flat_strings_and_omits_none_fields() -> None:
    fields = _record().to_redis()

    assert fields == {
        "command_id": "cmd-1",
        "user_id": "user-1",
        "vehicle_id": "vehicle-1",
        "command_name": "ClearDTC",
        "command_params": '{"ecuAddress":"0x10","dtcCode":"P0420"}',
        "status": "pending",
        "submitted_at": "2026-11-26T10:00:00.123456Z",
        "attempts": "0",
        "cancel_requested": "False",
    }


def test_command_record_round_trips_through_a_redis_hash() -> None:
    record = _record(
        command_params={"ecuAddress": "0x10", "nested": {"list": [1, 2.5, None, "x"]}},
        status=CommandStatus.FAILED,
        error_message="ECU 0x10 did not respond",
        started_at=datetime(2026, 11, 26, 10, 0, 1, tzinfo=UTC),
        completed_at=datetime(2026, 11, 26, 10, 0, 2, 500000, tzinfo=UTC),
        request_id="req-9",
    )

    assert CommandRecord.from_redis(record.to_redis()) == record


def test_command_record_round_trips_with_only_required_fields() -> None:
    record = _record()

    restored = CommandRecord.from_redis(record.to_redis())

    assert restored == record
    assert (restored.started_at, restored.completed_at, restored.error_message) == (
        None,
        None,
        None,
    )
