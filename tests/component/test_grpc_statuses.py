"""The gRPC connector against a scripted gateway: a real gRPC server that answers what a
test tells it (status codes, numbering, broken parts), as other gateways might."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from common.fleet import demo_fleet
from common.settings import Settings
from common.vehicles import Vehicle
from workers.connector import (
    ConnectionLost,
    ConnectorError,
    DiagnosticRequest,
    EcuNotResponding,
    ExchangeTimeout,
    NegativeResponse,
    VehicleUnavailable,
)
from workers.grpc_connector import GrpcConnector
from workers.grpc_contract import (
    SERVICE,
    GatewayBusy,
    GatewayError,
    GatewayProtocolError,
    GatewayRefused,
    GatewayUnsupported,
    encode_params,
)
from workers.grpc_gen.vehicle_pb2 import CommandRequest, CommandResponse

VEHICLE = demo_fleet()[0]

Part = tuple[int, str, bool]  # sequence number, payload text, is_final


@dataclass
class Script:
    """What the scripted gateway does with the next call."""

    parts: list[Part] = field(default_factory=list)
    status: grpc.StatusCode | None = None
    details: str = ""
    trailers: tuple[tuple[str, str], ...] = ()
    command_id: str | None = None  # answer for another command
    hold_s: float = 0.0  # stay open this long after the parts
    seen: list[tuple[CommandRequest, float | None]] = field(default_factory=list)


def part(number: int, *, final: bool = False, **payload: Any) -> Part:
    return (number, json.dumps({"n": number, **payload}), final)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def scripted(script: Script) -> Iterator[int]:
    def execute(
        request: CommandRequest, context: grpc.ServicerContext
    ) -> Iterator[CommandResponse]:
        script.seen.append((request, context.time_remaining()))
        for number, payload, final in script.parts:
            yield CommandResponse(
                command_id=script.command_id or request.command_id,
                response_payload=payload,
                sequence_number=number,
                is_final=final,
                timestamp="2026-01-01T00:00:00+00:00",
            )
        deadline = time.monotonic() + script.hold_s
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.01)  # the scripted gateway keeps the call open
        if script.status is not None:
            context.set_trailing_metadata(script.trailers)
            context.abort(script.status, script.details)

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ExecuteCommand": grpc.unary_stream_rpc_method_handler(
                execute,
                request_deserializer=CommandRequest.FromString,
                response_serializer=CommandResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0).wait()


@pytest.fixture
def connector(settings: Settings, scripted: int) -> Iterator[GrpcConnector]:
    connector = GrpcConnector(settings.model_copy(update={"grpc_target": f"127.0.0.1:{scripted}"}))
    yield connector
    connector.close()


def stream(
    connector: GrpcConnector,
    *,
    params: dict[str, Any] | None = None,
    vehicle: Vehicle = VEHICLE,
    within_s: float = 10.0,
) -> Iterator[dict[str, Any]]:
    request = DiagnosticRequest(
        command_id=str(uuid.uuid4()),
        command_name="ReadDTC",
        params=params or {"ecuAddress": "0x10"},
        vehicle=vehicle,
        deadline=time.monotonic() + within_s,
    )
    for part in connector.execute(request):
        yield part.payload


def run(connector: GrpcConnector, **options: Any) -> list[dict[str, Any]]:
    return list(stream(connector, **options))


def test_the_request_carries_the_contracts_fields_and_the_deadline(
    connector: GrpcConnector, script: Script
) -> None:
    script.parts = [part(0, final=True)]
    params = {"ecuAddress": "0x10", "window": {"from": 1, "to": [2, 3]}}
    run(connector, params=params, within_s=5.0)
    ((request, remaining),) = script.seen
    assert (request.vehicle_id, request.command_name) == (VEHICLE.vehicle_id, "ReadDTC")
    assert dict(request.command_params) == {
        "ecuAddress": "0x10",
        "window": '{"from":1,"to":[2,3]}',
    }
    assert dict(request.command_params) == encode_params(params)
    assert remaining is not None
    assert 0 < remaining <= 5.0


def test_parts_out_of_order_and_repeated_are_given_once_in_order(
    connector: GrpcConnector, script: Script
) -> None:
    script.parts = [part(0), part(2), part(1), part(1), part(0), part(3, final=True)]
    assert [p["n"] for p in run(connector)] == [0, 1, 2, 3]


def test_a_final_part_that_comes_before_the_ones_it_follows_waits_for_them(
    connector: GrpcConnector, script: Script
) -> None:
    script.parts = [part(2, final=True), part(0), part(1)]
    assert [p["n"] for p in run(connector)] == [0, 1, 2]


def test_an_answer_with_a_hole_is_a_lost_connection_naming_the_missing_part(
    connector: GrpcConnector, script: Script
) -> None:
    script.parts = [part(0), part(2, final=True)]
    with pytest.raises(ConnectionLost, match=r"ended the answer early \(part 1 never came\)"):
        run(connector)


def test_an_answer_without_a_final_part_is_a_lost_connection(
    connector: GrpcConnector, script: Script
) -> None:
    script.parts = [part(0), part(1)]
    with pytest.raises(ConnectionLost, match="ended the answer early"):
        run(connector)


def test_parts_after_the_final_one_are_not_given_and_a_call_left_open_is_ended(
    connector: GrpcConnector, script: Script
) -> None:
    script.parts = [part(0, final=True), part(1), (2, "not json", False)]
    script.hold_s = 30.0
    assert [p["n"] for p in run(connector)] == [0]


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([(0, "not json", True)], "Part 0 of the vehicle gateway's answer is not a JSON object"),
        ([(0, "[1, 2]", True)], "Part 0 of the vehicle gateway's answer is not a JSON object"),
        ([(-1, "{}", True)], "out of order: sequence number -1 is negative"),
        ([part(1, final=True), part(2)], "out of order: part 2 comes after the final part 1"),
    ],
)
def test_an_answer_that_breaks_the_contract_is_a_protocol_error(
    connector: GrpcConnector, script: Script, parts: list[Part], message: str
) -> None:
    script.parts = parts
    with pytest.raises(
        GatewayProtocolError, match=message.replace("(", r"\(").replace(")", r"\)")
    ) as raised:
        run(connector)
    assert (raised.value.code, raised.value.transient) == ("protocol_error", False)


def test_an_answer_for_another_command_is_a_protocol_error(
    connector: GrpcConnector, script: Script
) -> None:
    script.parts = [part(0, final=True)]
    script.command_id = "someone-else"
    with pytest.raises(GatewayProtocolError, match="answered for another command"):
        run(connector)


@pytest.mark.parametrize(
    ("status", "trailers", "error", "code", "transient"),
    [
        (grpc.StatusCode.UNAVAILABLE, (), ConnectionLost, "connection_lost", True),
        (
            grpc.StatusCode.UNAVAILABLE,
            (("sovd-error-code", "ecu_not_responding"),),
            EcuNotResponding,
            "ecu_not_responding",
            True,
        ),
        (grpc.StatusCode.ABORTED, (), ConnectionLost, "connection_lost", True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, (), ExchangeTimeout, "timeout", False),
        (grpc.StatusCode.NOT_FOUND, (), VehicleUnavailable, "vehicle_unavailable", False),
        (grpc.StatusCode.FAILED_PRECONDITION, (), NegativeResponse, "negative_response", False),
        (grpc.StatusCode.INVALID_ARGUMENT, (), NegativeResponse, "negative_response", False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, (), GatewayBusy, "gateway_busy", True),
        (grpc.StatusCode.UNAUTHENTICATED, (), GatewayRefused, "gateway_refused", False),
        (grpc.StatusCode.PERMISSION_DENIED, (), GatewayRefused, "gateway_refused", False),
        (grpc.StatusCode.UNIMPLEMENTED, (), GatewayUnsupported, "gateway_unsupported", False),
        (grpc.StatusCode.INTERNAL, (), GatewayError, "gateway_error", False),
        (grpc.StatusCode.UNKNOWN, (), GatewayError, "gateway_error", False),
    ],
)
def test_a_gateways_status_code_ends_the_exchange_with_its_error(
    connector: GrpcConnector, script: Script, status: grpc.StatusCode,
    trailers: tuple[tuple[str, str], ...], error: type[ConnectorError], code: str, transient: bool,
) -> None:  # fmt: skip
    script.parts = [part(0)]
    script.status, script.details, script.trailers = status, "told by the gateway", trailers
    given: list[dict[str, Any]] = []
    with pytest.raises(ConnectorError) as raised:
        given.extend(stream(connector))
    assert type(raised.value) is error
    assert (raised.value.code, raised.value.transient) == (code, transient)
    assert [p["n"] for p in given] == [0]


def test_a_negative_response_carries_the_gateways_payload_trailer(
    connector: GrpcConnector, script: Script
) -> None:
    payload = {"type": "negative_response", "nrc": "0x22", "nrc_name": "conditionsNotCorrect"}
    script.status = grpc.StatusCode.FAILED_PRECONDITION
    script.details = "ECU 0x10 answered 0x22 conditionsNotCorrect"
    script.trailers = (
        ("sovd-error-code", "negative_response"),
        ("sovd-negative-response", json.dumps(payload)),
    )
    with pytest.raises(NegativeResponse) as raised:
        run(connector)
    assert raised.value.payload == payload
    assert raised.value.message == "ECU 0x10 answered 0x22 conditionsNotCorrect"


def test_a_gateway_that_never_answers_times_out_at_the_requests_deadline(
    connector: GrpcConnector, script: Script
) -> None:
    script.hold_s = 30.0
    with pytest.raises(ExchangeTimeout):
        run(connector, within_s=0.3)
