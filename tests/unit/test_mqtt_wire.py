"""The MQTT wire pieces: topic names, error mapping, broker password hashes."""

from __future__ import annotations

import base64
import hashlib

import pytest

from common.mqtt import AnswerError, AnswerMessage, RequestMessage, Topics
from common.mqtt_auth import password_file_line, vehicle_password
from workers.connector import (
    ConnectionLost,
    ConnectorError,
    EcuNotResponding,
    NegativeResponse,
    VehicleUnavailable,
)
from workers.mqtt_connector import MAX_MESSAGE_CHARS, error_from_answer

VIN = "WVWZZZ1K3MW123456"


def test_topics_live_under_the_vin_and_split_back() -> None:
    topics = Topics("fleet")
    assert topics.request(VIN) == f"fleet/{VIN}/request"
    assert topics.response(VIN, "w1") == f"fleet/{VIN}/response/w1"
    assert topics.responses_for("w1") == "fleet/+/response/w1"
    assert topics.split(topics.response(VIN, "w1")) == (VIN, "response")
    assert topics.split(topics.status(VIN)) == (VIN, "status")
    assert topics.split(f"other/{VIN}/status") is None
    assert topics.split("fleet//status") is None


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("vehicle_unavailable", VehicleUnavailable),
        ("ecu_not_responding", EcuNotResponding),
        ("connection_lost", ConnectionLost),
        ("something_new", ConnectorError),
    ],
)
def test_an_error_part_becomes_the_connector_error_of_its_code(
    code: str, cls: type[ConnectorError]
) -> None:
    part = AnswerMessage(command_id="c", sequence=0, is_final=True,
                         error=AnswerError(code=code, message="x" * 2000))  # fmt: skip
    error = error_from_answer(part)
    assert type(error) is cls
    assert error.message == "x" * MAX_MESSAGE_CHARS  # a vehicle's text is bounded


def test_a_negative_response_keeps_the_ecus_answer() -> None:
    payload = {"type": "negative_response", "nrc": "0x31"}
    part = AnswerMessage(command_id="c", sequence=2, is_final=True, payload=payload,
                         error=AnswerError(code="negative_response", message="0x31"))  # fmt: skip
    error = error_from_answer(part)
    assert isinstance(error, NegativeResponse)
    assert error.payload == payload


def test_wire_messages_ignore_unknown_fields_and_refuse_negative_sequences() -> None:
    request = RequestMessage.model_validate_json(
        '{"command_id": "c", "command_name": "ReadDTC", "deadline_at": "2026-12-02T10:00:00Z",'
        ' "response_topic": "sovd/V/response/w", "added_later": 1}'
    )
    assert (request.resume_from, request.params) == (0, {})
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        AnswerMessage(command_id="c", sequence=-1)


def test_password_lines_are_mosquittos_pbkdf2_sha512_format() -> None:
    salt = bytes(range(12))
    line = password_file_line(VIN, "secret", salt=salt)
    user, _, hashed = line.partition(":")
    marker, iterations, encoded_salt, digest = hashed.split("$")[1:]
    assert (user, marker, iterations) == (VIN, "7", "101")
    assert base64.b64decode(encoded_salt) == salt
    assert base64.b64decode(digest) == hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101)


def test_vehicle_passwords_differ_per_vin_and_per_secret() -> None:
    other = "1HGCM82633A004352"
    assert vehicle_password("a" * 32, VIN) == vehicle_password("a" * 32, VIN)
    assert vehicle_password("a" * 32, VIN) != vehicle_password("a" * 32, other)
    assert vehicle_password("a" * 32, VIN) != vehicle_password("b" * 32, VIN)
