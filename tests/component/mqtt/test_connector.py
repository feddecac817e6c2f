"""The worker's MQTT connector against a real Mosquitto and a real agent process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from common.keys import Keys
from common.mqtt import AnswerMessage, CancelMessage, RequestMessage, Topics
from common.mqtt_auth import vehicle_password, vehicle_secret
from common.settings import Settings
from common.vehicles import ConnectionStatus, Vehicle
from tests.component.mqtt.conftest import AgentProcess, connected_fleet, wait_status
from tests.mqtt_probe import Probe
from tests.mqtt_support import MosquittoServer
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
from workers.mqtt_connector import MqttConnector
from workers.simulator import SimulatedFleet

StartAgent = Callable[..., AgentProcess]
CAR = connected_fleet()[0]


def online(vehicle: Vehicle) -> Vehicle:
    return vehicle.model_copy(update={"connection_status": ConnectionStatus.CONNECTED})


def request(
    name: str = "ReadDTC",
    params: dict[str, Any] | None = None,
    *,
    deadline_s: float = 20,
    cancelled: Callable[[], bool] = lambda: False,
    command_id: str = "00000000-0000-4000-8000-000000000001",
) -> DiagnosticRequest:
    return DiagnosticRequest(
        command_id=command_id,
        command_name=name,
        params=params or {"ecuAddress": "0x10"},
        vehicle=online(CAR),
        deadline=time.monotonic() + timeout(deadline_s),
        cancelled=cancelled,
    )


@pytest.fixture
def connector(mqtt_settings: Settings) -> Iterator[MqttConnector]:
    made = MqttConnector(mqtt_settings)
    yield made
    made.close()


@pytest.fixture
def simulator(mqtt_settings: Settings, sync_redis: redis.Redis) -> SimulatedFleet:
    """The in-worker simulator on the same Redis: the agent's answers must equal its."""
    return SimulatedFleet(sync_redis, Keys(mqtt_settings.key_prefix), delay_scale=0)


@pytest.fixture
def agent(start_agent: StartAgent, mqtt_settings: Settings) -> AgentProcess:
    started = start_agent("--vin", CAR.vin)
    wait_status(mqtt_settings, CAR.vin, "online")
    return started


def vehicle_probe(settings: Settings, vehicle: Vehicle) -> Probe:
    """A hand-driven vehicle: the VIN's own account, no agent."""
    probe = Probe(settings, vehicle.vin, username=vehicle.vin,
                  password=vehicle_password(vehicle_secret(settings), vehicle.vin))  # fmt: skip
    probe.wait_connected()
    return probe


def payloads(parts: list[ResponsePart]) -> list[tuple[dict[str, Any], bool]]:
    return [(part.payload, part.is_final) for part in parts]


def test_read_dtc_over_mqtt_answers_what_the_in_worker_simulator_answers(
    agent: AgentProcess, connector: MqttConnector, simulator: SimulatedFleet
) -> None:
    over_mqtt = list(connector.execute(request()))
    expected = list(simulator.execute(request()))
    assert len(expected) >= 2
    assert payloads(over_mqtt) == payloads(expected)
    assert over_mqtt[-1].payload["type"] == "dtc_summary"


def test_a_negative_response_and_a_silent_ecu_keep_their_error_classes(
    agent: AgentProcess, connector: MqttConnector, simulator: SimulatedFleet
) -> None:
    unknown_did = request(
        "ReadDataByID",
        {"ecuAddress": "0x10", "dataId": "0x1234"},
        command_id="00000000-0000-4000-8000-000000000002",
    )
    with pytest.raises(NegativeResponse) as negative:
        list(connector.execute(unknown_did))
    assert negative.value.payload["nrc_name"] == "requestOutOfRange"
    no_ecu = request(
        params={"ecuAddress": "0x77"}, command_id="00000000-0000-4000-8000-000000000003"
    )
    with pytest.raises(NegativeResponse, match="has no ECU at 0x77"):
        list(connector.execute(no_ecu))
    simulator.inject_fault(CAR.vehicle_id, "silent")
    silent = request(command_id="00000000-0000-4000-8000-000000000004")
    with pytest.raises(EcuNotResponding, match="did not respond"):
        list(connector.execute(silent))


def test_cancel_reaches_the_vehicle(
    agent: AgentProcess, connector: MqttConnector, simulator: SimulatedFleet
) -> None:
    simulator.inject_fault(CAR.vehicle_id, "hang")
    flag = threading.Event()
    threading.Timer(0.3, flag.set).start()
    with pytest.raises(ExchangeCancelled):
        list(connector.execute(request(cancelled=flag.is_set)))
    wait_for(lambda: "vehicle_exchange_cancelled" in agent.log.read_text(),
             what="the agent to stop the exchange")  # fmt: skip


def test_the_deadline_ends_the_exchange_and_sends_cancel_to_the_vehicle(
    mqtt_settings: Settings, connector: MqttConnector
) -> None:
    topics = Topics(mqtt_settings.mqtt_topic_prefix)
    car = vehicle_probe(mqtt_settings, CAR)  # a vehicle that takes requests and never answers
    try:
        car.subscribe(topics.request(CAR.vin))
        car.subscribe(topics.cancel(CAR.vin))
        with pytest.raises(ExchangeTimeout, match="did not answer within the time limit"):
            list(connector.execute(request(deadline_s=1)))
        asked = car.next()
        assert asked.topic == topics.request(CAR.vin)
        sent = RequestMessage.model_validate_json(asked.payload)
        assert asked.properties.CorrelationData == sent.command_id.encode()
        assert asked.properties.ResponseTopic == sent.response_topic
        assert 1 <= asked.properties.MessageExpiryInterval <= timeout(1) + 1
        cancel = car.next()
        assert cancel.topic == topics.cancel(CAR.vin)
        assert CancelMessage.model_validate_json(cancel.payload).command_id == sent.command_id
    finally:
        car.close()


def test_agent_killed_mid_command_ends_the_exchange_with_connection_lost(
    agent: AgentProcess, connector: MqttConnector, simulator: SimulatedFleet
) -> None:
    simulator.inject_fault(CAR.vehicle_id, "slow:1")
    parts = connector.execute(request(deadline_s=30))
    first = next(parts)
    assert first.payload["type"] == "dtc"
    agent.kill()
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match=r"went offline mid-exchange \(last will\)"):
        list(parts)
    assert time.monotonic() - started < timeout(10)  # the last will, not the deadline


def test_a_vehicle_that_said_goodbye_is_unavailable_at_once(
    agent: AgentProcess, connector: MqttConnector, mqtt_settings: Settings
) -> None:
    agent.stop()
    wait_status(mqtt_settings, CAR.vin, "offline")
    with pytest.raises(VehicleUnavailable, match=r"is not connected \(clean disconnect\)"):
        list(connector.execute(request()))


def test_broker_restart_mid_command_resumes_without_duplicates(
    agent: AgentProcess,
    connector: MqttConnector,
    simulator: SimulatedFleet,
    mosquitto: MosquittoServer,
) -> None:
    expected = payloads(list(simulator.execute(request())))
    simulator.inject_fault(CAR.vehicle_id, "slow:0.5")
    parts = connector.execute(request(deadline_s=60))
    received = [next(parts)]
    mosquitto.halt()
    mosquitto.start()
    received += list(parts)
    assert payloads(received) == expected


def test_mqtt_3_1_1_carries_the_same_exchange(
    start_agent: StartAgent, mqtt_settings: Settings, simulator: SimulatedFleet
) -> None:
    v311 = mqtt_settings.model_copy(update={"mqtt_protocol": "3.1.1"})
    start_agent("--vin", CAR.vin, settings=v311)
    wait_status(v311, CAR.vin, "online")
    connector = MqttConnector(v311)
    try:
        assert payloads(list(connector.execute(request()))) == payloads(
            list(simulator.execute(request()))
        )
    finally:
        connector.close()


def test_duplicate_and_reordered_deliveries_are_dropped_by_command_and_sequence(
    mqtt_settings: Settings, connector: MqttConnector
) -> None:
    """A vehicle (hand-driven here) whose answers arrive twice and out of order, after
    malformed ones: the connector yields each sequence number once, in order."""
    topics = Topics(mqtt_settings.mqtt_topic_prefix)
    car = vehicle_probe(mqtt_settings, CAR)
    car.subscribe(topics.request(CAR.vin))
    results: list[ResponsePart] = []
    worker = threading.Thread(
        target=lambda: results.extend(connector.execute(request(deadline_s=20))), daemon=True
    )
    worker.start()
    try:
        sent = RequestMessage.model_validate_json(car.next().payload)
        answers = [
            AnswerMessage(command_id=sent.command_id, sequence=n, is_final=n == 2,
                          payload={"type": "dtc", "n": n})
            for n in range(3)
        ]  # fmt: skip
        other = AnswerMessage(command_id="00000000-0000-4000-8000-00000000dead", sequence=0,
                              payload={"type": "not yours"})  # fmt: skip
        car.publish(sent.response_topic, b"{not json")  # refused, the exchange goes on
        car.publish(sent.response_topic, b'{"command_id": "x", "sequence": -1}')
        for part in (answers[0], answers[0], other, answers[2], answers[1], answers[1]):
            car.publish(sent.response_topic, part.model_dump_json().encode())
        worker.join(timeout(10))
    finally:
        car.close()
    assert [part.payload for part in results] == [{"type": "dtc", "n": n} for n in range(3)]
    assert [part.is_final for part in results] == [False, False, True]


def test_a_refused_service_account_is_named_in_the_error(mqtt_settings: Settings) -> None:
    wrong = mqtt_settings.model_copy(update={"mqtt_password": "not-the-password"})
    connector = MqttConnector(wrong)
    try:
        with pytest.raises(ConnectionLost, match=r"refused the service account 'sovd-service'"):
            list(connector.execute(request(deadline_s=2)))
    finally:
        connector.close()


def test_an_unreachable_broker_fails_the_exchange_as_transient(mqtt_settings: Settings) -> None:
    nowhere = mqtt_settings.model_copy(update={"mqtt_port": free_port()})
    connector = MqttConnector(nowhere)
    try:
        with pytest.raises(ConnectionLost, match="is not reachable") as lost:
            list(connector.execute(request(deadline_s=1)))
        assert lost.value.transient
    finally:
        connector.close()
