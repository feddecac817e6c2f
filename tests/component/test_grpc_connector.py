"""The gRPC connector against the real test gateway (a gRPC server over the simulator)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common.keys import Keys
from common.settings import Settings
from common.vehicles import ConnectionStatus, Vehicle
from gateway.server import GatewayServer, build_gateway
from tests.grpc_support import Outcomes, gateway_process, seed_fleet
from tests.support import free_port, timeout, wait_for
from workers.connector import (
    ConnectionLost,
    DiagnosticRequest,
    EcuNotResponding,
    ExchangeCancelled,
    ExchangeTimeout,
    NegativeResponse,
    ResponsePart,
    VehicleUnavailable,
)
from workers.grpc_connector import GrpcConnector
from workers.grpc_contract import GatewayError, GatewayUnsupported
from workers.runtime import build_runtime
from workers.simulator import SimulatedFleet


@pytest.fixture
def fleet(sync_redis: redis.Redis, keys: Keys) -> list[Vehicle]:
    return seed_fleet(sync_redis, keys)


@pytest.fixture
def connected(fleet: list[Vehicle]) -> Vehicle:
    return next(v for v in fleet if v.connection_status == ConnectionStatus.CONNECTED)


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


def _start(settings: Settings, outcomes: Outcomes) -> GatewayServer:
    gateway = build_gateway(settings, observer=outcomes, port=0)
    gateway.server.start()
    return gateway


@pytest.fixture
def gateway(
    settings: Settings, fleet: list[Vehicle], outcomes: Outcomes
) -> Iterator[GatewayServer]:
    gateway = _start(settings, outcomes)
    yield gateway
    gateway.server.stop(0).wait()
    gateway.close()


def _connector(settings: Settings, target: str) -> GrpcConnector:
    return GrpcConnector(settings.model_copy(update={"grpc_target": target}))


@pytest.fixture
def connector(settings: Settings, gateway: GatewayServer) -> Iterator[GrpcConnector]:
    connector = _connector(settings, f"127.0.0.1:{gateway.port}")
    yield connector
    connector.close()


@pytest.fixture
def simulator(sync_redis: redis.Redis, keys: Keys) -> SimulatedFleet:
    """The simulated fleet the gateway runs, used here for faults and expected answers."""
    return SimulatedFleet(sync_redis, keys, seed=0, delay_scale=0)


def _never() -> bool:
    return False


def request(
    vehicle: Vehicle,
    name: str = "ReadDTC",
    params: dict[str, Any] | None = None,
    *,
    within_s: float = 10.0,
    cancelled: Callable[[], bool] = _never,
    command_id: str | None = None,
) -> DiagnosticRequest:
    import uuid

    return DiagnosticRequest(
        command_id=command_id or str(uuid.uuid4()),
        command_name=name,
        params=params if params is not None else {"ecuAddress": "0x10"},
        vehicle=vehicle,
        deadline=time.monotonic() + timeout(within_s),
        cancelled=cancelled,
    )


def payloads(parts: list[ResponsePart]) -> list[tuple[dict[str, Any], bool]]:
    return [(part.payload, part.is_final) for part in parts]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ReadDTC", {"ecuAddress": "0x10"}),
        ("ReadDTC", {"ecuAddress": "0x28"}),
        ("ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xF190"}),
        ("ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xF4A6"}),
    ],
)
def test_an_answer_through_the_gateway_is_the_simulators_own_part_for_part(
    connector: GrpcConnector, simulator: SimulatedFleet, connected: Vehicle,
    name: str, params: dict[str, str],
) -> None:  # fmt: skip
    through_grpc = list(connector.execute(request(connected, name, params)))
    in_process = list(simulator.execute(request(connected, name, params)))
    assert payloads(through_grpc) == payloads(in_process)
    assert through_grpc[-1].is_final is True
    assert len(through_grpc) >= 1


def test_clear_dtc_through_the_gateway_empties_the_memory_the_workers_see(
    connector: GrpcConnector, simulator: SimulatedFleet, connected: Vehicle
) -> None:
    before = list(simulator.execute(request(connected)))
    (cleared,) = connector.execute(request(connected, "ClearDTC", {"ecuAddress": "0x10"}))
    assert cleared.payload["cleared_count"] == before[-1].payload["dtc_count"]
    assert list(simulator.execute(request(connected)))[-1].payload["dtc_count"] == 0


def test_a_negative_response_arrives_with_the_ecus_payload(
    connector: GrpcConnector, connected: Vehicle
) -> None:
    with pytest.raises(NegativeResponse) as raised:
        list(
            connector.execute(
                request(connected, "ReadDataByID", {"ecuAddress": "0x10", "dataId": "0x1234"})
            )
        )
    assert raised.value.payload["nrc"] == "0x31"
    assert raised.value.payload["nrc_name"] == "requestOutOfRange"
    assert raised.value.message == "ECU 0x10 answered 0x31 requestOutOfRange for DID 0x1234"


def test_a_vehicle_the_gateway_sees_offline_is_unavailable(
    connector: GrpcConnector, fleet: list[Vehicle]
) -> None:
    offline = next(v for v in fleet if v.connection_status == ConnectionStatus.DISCONNECTED)
    with pytest.raises(VehicleUnavailable) as raised:
        list(connector.execute(request(offline)))
    assert raised.value.message.startswith(f"Vehicle {offline.vin} is not connected")


def test_a_vehicle_the_gateway_does_not_know_is_unavailable(
    connector: GrpcConnector, connected: Vehicle
) -> None:
    stranger = connected.model_copy(update={"vehicle_id": "no-such-vehicle"})
    with pytest.raises(VehicleUnavailable) as raised:
        list(connector.execute(request(stranger)))
    assert raised.value.message == (
        "The vehicle is not reachable through its gateway: "
        "Vehicle no-such-vehicle is not known to this gateway"
    )


def test_a_silent_ecu_is_ecu_not_responding_and_transient(
    connector: GrpcConnector, simulator: SimulatedFleet, connected: Vehicle
) -> None:
    simulator.inject_fault(connected.vehicle_id, "silent")
    with pytest.raises(EcuNotResponding) as raised:
        list(connector.execute(request(connected)))
    assert raised.value.transient is True
    assert raised.value.message == f"ECU 0x10 did not respond on vehicle {connected.vin}"


def test_a_link_dropped_mid_answer_gives_the_parts_before_it_then_connection_lost(
    connector: GrpcConnector, simulator: SimulatedFleet, connected: Vehicle
) -> None:
    simulator.inject_fault(connected.vehicle_id, "drop:1")
    received: list[ResponsePart] = []
    with pytest.raises(ConnectionLost):
        received.extend(connector.execute(request(connected)))
    assert len(received) == 1
    assert received[0].payload["type"] == "dtc"


def test_params_the_gateway_refuses_are_a_negative_response_naming_the_param(
    connector: GrpcConnector, connected: Vehicle
) -> None:
    with pytest.raises(NegativeResponse) as raised:
        list(connector.execute(request(connected, "ReadDTC", {"ecuAddress": "ten"})))
    assert "command_params.ecuAddress" in raised.value.message


def test_a_command_the_gateway_does_not_run_is_unsupported(
    connector: GrpcConnector, connected: Vehicle
) -> None:
    with pytest.raises(GatewayUnsupported):
        list(connector.execute(request(connected, "FlashECU", {"ecuAddress": "0x10"})))


def test_the_deadline_becomes_the_calls_and_ends_a_hanging_exchange_on_both_sides(
    connector: GrpcConnector, simulator: SimulatedFleet, connected: Vehicle, outcomes: Outcomes
) -> None:
    simulator.inject_fault(connected.vehicle_id, "hang")
    hanging = request(connected, within_s=0.5)
    with pytest.raises(ExchangeTimeout):
        list(connector.execute(hanging))
    assert outcomes.wait(hanging.command_id) in {"cancelled", "timeout"}


def test_a_request_already_past_its_deadline_is_not_sent(
    connector: GrpcConnector, connected: Vehicle, outcomes: Outcomes
) -> None:
    late = request(connected, within_s=-1)
    with pytest.raises(ExchangeTimeout):
        list(connector.execute(late))
    assert outcomes.of(late.command_id) is None


def test_a_cancel_while_the_vehicle_is_silent_reaches_the_gateway(
    connector: GrpcConnector, simulator: SimulatedFleet, connected: Vehicle, outcomes: Outcomes,
    sync_redis: redis.Redis, keys: Keys,
) -> None:  # fmt: skip
    simulator.inject_fault(connected.vehicle_id, "hang")
    flag = threading.Event()
    hanging = request(connected, cancelled=flag.is_set)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            list(connector.execute(hanging))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    # The gateway took the fault: the exchange is under way and hangs.
    wait_for(
        lambda: sync_redis.llen(keys.sim_faults(connected.vehicle_id)) == 0, what="the exchange"
    )
    flag.set()
    thread.join(timeout(10))
    assert [type(e) for e in failure] == [ExchangeCancelled]
    assert outcomes.wait(hanging.command_id) == "cancelled"


def test_stopping_between_parts_cancels_the_call_at_the_gateway(
    connector: GrpcConnector, simulator: SimulatedFleet, connected: Vehicle, outcomes: Outcomes
) -> None:
    """The executor stops reading (a cancel seen with a part): the gateway stops too."""
    simulator.inject_fault(connected.vehicle_id, "slow:0.5")
    slow = request(connected)
    parts = connector.execute(slow)
    first = next(iter(parts))
    assert first.is_final is False
    parts.close()  # type: ignore[attr-defined]
    assert outcomes.wait(slow.command_id) == "cancelled"


def test_an_unreachable_gateway_is_a_transient_connection_error_naming_no_address(
    settings: Settings, connected: Vehicle
) -> None:
    connector = _connector(settings, f"127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ConnectionLost) as raised:
            list(connector.execute(request(connected)))
    finally:
        connector.close()
    assert raised.value.transient is True
    assert raised.value.message == "The vehicle gateway is unreachable"


def test_one_channel_serves_every_call_to_a_gateway_and_a_vehicle_can_name_its_own(
    settings: Settings, connector: GrpcConnector, connected: Vehicle, outcomes: Outcomes,
) -> None:  # fmt: skip
    first, second = request(connected), request(connected)
    list(connector.execute(first))
    list(connector.execute(second))
    assert len(connector._channels) == 1
    other_outcomes = Outcomes()
    other = _start(settings, other_outcomes)
    try:
        routed = connected.model_copy(
            update={"metadata": {**connected.metadata, "grpc_target": f"127.0.0.1:{other.port}"}}
        )
        third = request(routed)
        list(connector.execute(third))
        assert other_outcomes.wait(third.command_id) == "completed"
        assert outcomes.of(third.command_id) is None
        assert [outcomes.wait(first.command_id), outcomes.wait(second.command_id)] == [
            "completed",
            "completed",
        ]
        assert len(connector._channels) == 2
    finally:
        other.server.stop(0).wait()
        other.close()


@pytest.mark.parametrize("target", ["http://evil.example/", "host", "a b:1", 42, "host:99999999"])
def test_a_vehicle_naming_an_invalid_gateway_address_fails_without_a_call(
    connector: GrpcConnector, connected: Vehicle, target: object
) -> None:
    routed = connected.model_copy(update={"metadata": {"grpc_target": target}})
    with pytest.raises(GatewayError, match="invalid gRPC gateway address"):
        list(connector.execute(request(routed)))
    assert len(connector._channels) == 0


def test_soVD_connector_grpc_makes_the_runtime_use_the_gateway(settings: Settings) -> None:
    built = build_runtime(settings.model_copy(update={"connector": "grpc"}))
    try:
        assert isinstance(built.connector, GrpcConnector)
    finally:
        built.close()
    default = build_runtime(settings)
    try:
        assert isinstance(default.connector, SimulatedFleet)
    finally:
        default.close()


def test_a_gateway_killed_mid_answer_ends_the_exchange_with_a_transient_error(
    settings: Settings, fleet: list[Vehicle], simulator: SimulatedFleet, tmp_path: Path
) -> None:
    connected = next(v for v in fleet if v.connection_status == ConnectionStatus.CONNECTED)
    env = {
        "SOVD_REDIS_URL": settings.effective_redis_url,
        "SOVD_KEY_PREFIX": settings.key_prefix,
        "SOVD_SIM_DELAY_SCALE": "0",
    }
    with gateway_process(env, tmp_path / "gateway.log") as process:
        connector = _connector(settings, process.target)
        try:
            simulator.inject_fault(connected.vehicle_id, "slow:0.5")
            parts = connector.execute(request(connected))
            first = next(iter(parts))
            process.kill()
            with pytest.raises(ConnectionLost) as raised:
                list(parts)
        finally:
            connector.close()
    assert first.payload["type"] == "dtc"
    assert raised.value.transient is True
    assert raised.value.message == "The connection to the vehicle gateway dropped mid-answer"


def test_a_restarted_gateway_is_used_again_without_a_new_connector(
    settings: Settings, fleet: list[Vehicle], tmp_path: Path
) -> None:
    connected = next(v for v in fleet if v.connection_status == ConnectionStatus.CONNECTED)
    env = {
        "SOVD_REDIS_URL": settings.effective_redis_url,
        "SOVD_KEY_PREFIX": settings.key_prefix,
        "SOVD_SIM_DELAY_SCALE": "0",
    }
    with gateway_process(env, tmp_path / "first.log") as first:
        connector = _connector(settings, first.target)
        assert list(connector.execute(request(connected)))[-1].is_final is True
        first.kill()
    try:
        with pytest.raises(ConnectionLost):
            list(connector.execute(request(connected)))
        with gateway_process(env, tmp_path / "second.log", port=first.port):

            def answered() -> bool:
                try:
                    return list(connector.execute(request(connected)))[-1].is_final
                except ConnectionLost:
                    return False

            assert wait_for(answered, timeout_s=15, interval_s=0.2, what="the restarted gateway")
    finally:
        connector.close()


def test_the_procfile_entry_idles_unless_the_workers_use_grpc(
    settings: Settings, tmp_path: Path
) -> None:
    env = {"SOVD_REDIS_URL": settings.effective_redis_url, "SOVD_CONNECTOR": "simulator"}
    with gateway_process(env, tmp_path / "idle.log", argv=("--procfile",)) as process:
        assert [e["event"] for e in process.events()] == ["gateway_idle"]
        process.process.terminate()
        assert process.process.wait(timeout=timeout(10)) == 0


def test_the_gateway_reports_its_simulated_vehicles_online_and_offline_when_it_stops(
    settings: Settings, sync_redis: redis.Redis, keys: Keys
) -> None:
    from common.fleet import demo_fleet, registered
    from gateway.presence import HostedPresence

    fleet = demo_fleet()
    for vehicle in fleet:  # as the api seeds them: offline, never seen
        sync_redis.set(keys.vehicle(vehicle.vehicle_id), registered(vehicle).model_dump_json())
        sync_redis.zadd(keys.vehicles, {vehicle.vehicle_id: 0})

    def statuses() -> dict[str, str]:
        return {
            v.vehicle_id: Vehicle.model_validate_json(
                sync_redis.get(keys.vehicle(v.vehicle_id))
            ).connection_status.value
            for v in fleet
        }

    hosted = HostedPresence(settings)
    hosted.start()
    try:
        assert statuses() == {v.vehicle_id: v.connection_status.value for v in fleet}
        assert hosted.reported == {v.vehicle_id for v in fleet if v.metadata["simulated"]}
    finally:
        hosted.stop()
    assert set(statuses().values()) == {"disconnected"}
    entries: list[tuple[str, dict[str, str]]] = sync_redis.xrange(keys.audit)  # type: ignore[assignment]
    audited = [
        (fields["vehicle_id"], json.loads(fields["details"]).get("reason"))
        for _, fields in entries
        if fields.get("vehicle_id") in hosted.reported
    ]
    assert sorted(v for v, reason in audited if reason == "clean_disconnect") == sorted(
        hosted.reported
    )
