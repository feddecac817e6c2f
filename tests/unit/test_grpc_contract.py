"""The gRPC contract: the proto's field numbers, the generated code, params and statuses."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given
from hypothesis import strategies as st

from tests.support import ROOT
from workers.connector import (
    ConnectionLost,
    ConnectorError,
    EcuNotResponding,
    ExchangeCancelled,
    ExchangeTimeout,
    NegativeResponse,
    VehicleUnavailable,
)
from workers.grpc_contract import (
    MAX_DETAILS_CHARS,
    METHOD,
    STATUS_ERRORS,
    GatewayBusy,
    GatewayError,
    GatewayRefused,
    GatewayUnsupported,
    decode_params,
    encode_params,
    error_for_status,
    status_for_error,
)
from workers.grpc_gen import vehicle_pb2

T = FieldDescriptor


def _fields(message: Any) -> dict[str, tuple[int, int, bool]]:
    """name -> (number, type, repeated) of a message's fields."""
    return {f.name: (f.number, f.type, f.is_repeated) for f in message.DESCRIPTOR.fields}


def test_the_request_has_the_replaced_systems_field_numbers_and_types() -> None:
    assert _fields(vehicle_pb2.CommandRequest) == {
        "command_id": (1, T.TYPE_STRING, False),
        "vehicle_id": (2, T.TYPE_STRING, False),
        "command_name": (3, T.TYPE_STRING, False),
        "command_params": (10, T.TYPE_MESSAGE, True),
    }
    entry = vehicle_pb2.CommandRequest.DESCRIPTOR.fields_by_name["command_params"].message_type
    assert entry.GetOptions().map_entry is True
    assert _fields_of(entry) == {"key": (1, T.TYPE_STRING), "value": (2, T.TYPE_STRING)}


def _fields_of(descriptor: Any) -> dict[str, tuple[int, int]]:
    return {f.name: (f.number, f.type) for f in descriptor.fields}


def test_the_response_has_the_replaced_systems_field_numbers_and_types() -> None:
    assert _fields(vehicle_pb2.CommandResponse) == {
        "command_id": (1, T.TYPE_STRING, False),
        "response_payload": (2, T.TYPE_STRING, False),
        "sequence_number": (3, T.TYPE_INT32, False),
        "is_final": (10, T.TYPE_BOOL, False),
        "timestamp": (11, T.TYPE_STRING, False),
    }


def test_the_service_is_a_unary_request_with_a_server_stream_at_the_contracts_path() -> None:
    service = vehicle_pb2.DESCRIPTOR.services_by_name["VehicleService"]
    assert vehicle_pb2.DESCRIPTOR.package == "sovd.vehicle"
    assert service.full_name == "sovd.vehicle.VehicleService"
    (method,) = service.methods
    assert method.name == "ExecuteCommand"
    assert (method.client_streaming, method.server_streaming) == (False, True)
    assert method.input_type.full_name == "sovd.vehicle.CommandRequest"
    assert method.output_type.full_name == "sovd.vehicle.CommandResponse"
    assert f"/{service.full_name}/{method.name}" == METHOD


def test_a_message_from_the_replaced_systems_wire_format_decodes() -> None:
    """Bytes built by hand from the field numbers: what an existing gateway sends."""
    payload = b'{"type":"dtc"}'
    wire = (
        b"\x0a\x03abc"  # 1: command_id
        + b"\x12" + bytes([len(payload)]) + payload  # 2: response_payload
        + b"\x18\x04"  # 3: sequence_number = 4
        + b"\x50\x01"  # 10: is_final = true
        + b"\x5a\x14" + b"2026-01-01T00:00:00Z"  # 11: timestamp
    )  # fmt: skip
    decoded = vehicle_pb2.CommandResponse.FromString(wire)
    assert (decoded.command_id, decoded.response_payload) == ("abc", payload.decode())
    assert (decoded.sequence_number, decoded.is_final) == (4, True)
    assert decoded.timestamp == "2026-01-01T00:00:00Z"


def test_the_committed_generated_code_matches_a_fresh_generation() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_grpc.py", "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_check_names_a_generated_module_that_was_edited(tmp_path: Any) -> None:
    spec = importlib.util.spec_from_file_location("gen_grpc", ROOT / "scripts" / "gen_grpc.py")
    assert spec is not None
    assert spec.loader is not None
    gen_grpc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_grpc)
    edited = tmp_path / "grpc_gen"
    edited.mkdir()
    for name, text in gen_grpc.generate().items():
        (edited / name).write_text(text)
    (edited / "vehicle_pb2.py").write_text("# edited by hand\n")
    original = gen_grpc.OUT
    gen_grpc.OUT = edited
    try:
        assert gen_grpc.main(["--check"]) == 1
    finally:
        gen_grpc.OUT = original


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.dictionaries(st.text(max_size=5), json_values) | st.lists(json_values),
    )
)
def test_nested_params_travel_as_json_text_and_come_back_equal(params: dict[str, Any]) -> None:
    encoded = encode_params(params)
    assert all(isinstance(v, str) for v in encoded.values())
    assert decode_params(encoded) == params


def test_string_params_travel_as_they_are() -> None:
    params = {"ecuAddress": "0x10", "dataId": "0xF190", "count": 3, "flag": True}
    assert encode_params(params) == {
        "ecuAddress": "0x10",
        "dataId": "0xF190",
        "count": "3",
        "flag": "true",
    }
    assert decode_params({"ecuAddress": "0x10", "text": "{not json"}) == {
        "ecuAddress": "0x10",
        "text": "{not json",
    }


def test_every_failure_status_code_has_a_row() -> None:
    failures = {code for code in grpc.StatusCode if code != grpc.StatusCode.OK}
    assert set(STATUS_ERRORS) == failures


@pytest.mark.parametrize(
    ("code", "error", "error_code", "transient"),
    [
        (grpc.StatusCode.UNAVAILABLE, ConnectionLost, "connection_lost", True),
        (grpc.StatusCode.ABORTED, ConnectionLost, "connection_lost", True),
        (grpc.StatusCode.CANCELLED, ConnectionLost, "connection_lost", True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ExchangeTimeout, "timeout", False),
        (grpc.StatusCode.NOT_FOUND, VehicleUnavailable, "vehicle_unavailable", False),
        (grpc.StatusCode.FAILED_PRECONDITION, NegativeResponse, "negative_response", False),
        (grpc.StatusCode.INVALID_ARGUMENT, NegativeResponse, "negative_response", False),
        (grpc.StatusCode.OUT_OF_RANGE, NegativeResponse, "negative_response", False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, GatewayBusy, "gateway_busy", True),
        (grpc.StatusCode.UNAUTHENTICATED, GatewayRefused, "gateway_refused", False),
        (grpc.StatusCode.PERMISSION_DENIED, GatewayRefused, "gateway_refused", False),
        (grpc.StatusCode.UNIMPLEMENTED, GatewayUnsupported, "gateway_unsupported", False),
        (grpc.StatusCode.INTERNAL, GatewayError, "gateway_error", False),
        (grpc.StatusCode.UNKNOWN, GatewayError, "gateway_error", False),
        (grpc.StatusCode.DATA_LOSS, GatewayError, "gateway_error", False),
    ],
)
def test_a_status_code_becomes_its_connector_error(
    code: grpc.StatusCode, error: type[ConnectorError], error_code: str, transient: bool
) -> None:
    raised = error_for_status(code, "details from the gateway")
    assert type(raised) is error
    assert (raised.code, raised.transient) == (error_code, transient)


def test_cancelled_by_this_side_is_a_cancelled_exchange() -> None:
    raised = error_for_status(grpc.StatusCode.CANCELLED, "Locally cancelled", cancelled_here=True)
    assert isinstance(raised, ExchangeCancelled)


def test_transport_texts_of_an_unreachable_gateway_stay_out_of_the_message() -> None:
    raised = error_for_status(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: 10.0.0.7:50051",
    )
    assert raised.message == "The vehicle gateway is unreachable"


def test_gateway_text_is_one_bounded_line() -> None:
    raised = error_for_status(grpc.StatusCode.INTERNAL, "line one\nline two\x1b[31m" + "x" * 1000)
    assert "\n" not in raised.message
    assert "\x1b" not in raised.message
    assert raised.message.startswith("The vehicle gateway failed: line one line two")
    assert len(raised.message) <= len("The vehicle gateway failed: ") + MAX_DETAILS_CHARS


def test_a_negative_response_without_a_payload_trailer_gets_one_naming_the_status() -> None:
    raised = error_for_status(grpc.StatusCode.FAILED_PRECONDITION, "conditionsNotCorrect")
    assert isinstance(raised, NegativeResponse)
    assert raised.payload == {
        "type": "negative_response",
        "grpc_status": "FAILED_PRECONDITION",
        "message": "conditionsNotCorrect",
    }


@pytest.mark.parametrize("trailer", ["[1, 2]", "not json", "{" + '"a":1,' * 3000 + '"b":2}'])
def test_a_negative_payload_trailer_that_is_not_a_small_object_is_replaced(trailer: str) -> None:
    raised = error_for_status(
        grpc.StatusCode.FAILED_PRECONDITION, "refused", [("sovd-negative-response", trailer)]
    )
    assert isinstance(raised, NegativeResponse)
    assert raised.payload["grpc_status"] == "FAILED_PRECONDITION"


def test_a_trailer_cannot_turn_a_status_into_an_unrelated_error() -> None:
    raised = error_for_status(grpc.StatusCode.INTERNAL, "x", [("sovd-error-code", "cancelled")])
    assert type(raised) is GatewayError


@pytest.mark.parametrize(
    "sent",
    [
        VehicleUnavailable("Vehicle V is not connected (last seen never)"),
        EcuNotResponding("ECU 0x10 did not respond on vehicle V"),
        ConnectionLost("Connection to vehicle V lost mid-exchange"),
        ExchangeTimeout("Vehicle V did not answer within the time limit"),
        NegativeResponse("ECU 0x10 answered 0x31", {"type": "negative_response", "nrc": "0x31"}),
    ],
)
def test_an_error_sent_by_the_gateway_is_read_back_as_the_same_error(sent: ConnectorError) -> None:
    status, trailers = status_for_error(sent)
    read = error_for_status(status, sent.message, trailers)
    assert (type(read), read.code, read.message) == (type(sent), sent.code, sent.message)
    if isinstance(sent, NegativeResponse):
        assert isinstance(read, NegativeResponse)
        assert read.payload == sent.payload
