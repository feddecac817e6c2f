"""The simulated fleet behind the connector interface, against a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from common.fleet import demo_fleet
from common.keys import Keys
from common.vehicles import ConnectionStatus, Vehicle
from workers.connector import (
    DiagnosticRequest,
    EcuNotResponding,
    NegativeResponse,
    ResponsePart,
    VehicleUnavailable,
)
from workers.simulator import DTC_CATALOG, PAUSE_SLICE_S, SimulatedFleet


def _connected() -> Vehicle:
    return next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED)


def _disconnected() -> Vehicle:
    return next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.DISCONNECTED)


def _run(
    fleet: SimulatedFleet, vehicle: Vehicle, name: str, params: dict[str, Any]
) -> list[ResponsePart]:
    request = DiagnosticRequest(
        command_id="cmd-1", command_name=name, params=params, vehicle=vehicle
    )
    return list(fleet.execute(request))


@pytest.fixture
def fleet(sync_redis: redis.Redis, keys: Keys) -> SimulatedFleet:
    return SimulatedFleet(sync_redis, keys, seed=1, delay_scale=0)


def test_read_dtc_streams_the_faults_then_a_final_summary_with_their_count(
    fleet: SimulatedFleet,
) -> None:
    parts = _run(fleet, _connected(), "ReadDTC", {"ecuAddress": "0x10"})

    *faults, summary = parts
    engine_codes = {code for code, _, _ in DTC_CATALOG["engine"]}
    assert len(faults) >= 1
    assert all(p.payload["type"] == "dtc" and not p.is_final for p in faults)
    assert {p.payload["code"] for p in faults} <= engine_codes
    assert summary.is_final is True
    assert summary.payload == {
        "type": "dtc_summary",
        "ecu": {"address": "0x10", "name": "Engine Control Module"},
        "dtc_count": len(faults),
    }


def test_the_same_seed_gives_the_same_faults(sync_redis: redis.Redis, keys: Keys) -> None:
    """Two fleets with separate fault memories (key prefixes) but the same seed agree."""
    first = SimulatedFleet(sync_redis, Keys(f"{keys.prefix}-a"), seed=1, delay_scale=0)
    second = SimulatedFleet(sync_redis, Keys(f"{keys.prefix}-b"), seed=1, delay_scale=0)

    for vehicle in demo_fleet():
        if vehicle.connection_status != ConnectionStatus.CONNECTED:
            continue
        for ecu in vehicle.metadata["ecus"]:
            params = {"ecuAddress": ecu["address"]}
            a = [p.payload for p in _run(first, vehicle, "ReadDTC", params)]
            b = [p.payload for p in _run(second, vehicle, "ReadDTC", params)]
            assert a == b


def test_reading_twice_gives_the_same_answer(fleet: SimulatedFleet) -> None:
    vehicle = _connected()

    first = _run(fleet, vehicle, "ReadDTC", {"ecuAddress": "0x28"})
    second = _run(fleet, vehicle, "ReadDTC", {"ecuAddress": "0x28"})

    assert first == second


def test_clear_dtc_then_read_dtc_reports_no_faults(fleet: SimulatedFleet) -> None:
    vehicle = _connected()
    before = _run(fleet, vehicle, "ReadDTC", {"ecuAddress": "0x10"})

    cleared = _run(fleet, vehicle, "ClearDTC", {"ecuAddress": "0x10"})
    after = _run(fleet, vehicle, "ReadDTC", {"ecuAddress": "0x10"})

    assert [p.payload for p in cleared] == [
        {
            "type": "dtc_cleared",
            "ecu": {"address": "0x10", "name": "Engine Control Module"},
            "cleared_count": len(before) - 1,
        }
    ]
    assert cleared[0].is_final is True
    assert len(after) == 1
    assert after[0].payload["type"] == "dtc_summary"
    assert after[0].payload["dtc_count"] == 0


def test_clear_dtc_as_the_first_command_clears_the_seeded_faults(fleet: SimulatedFleet) -> None:
    vehicle = _connected()

    cleared = _run(fleet, vehicle, "ClearDTC", {"ecuAddress": "0x40"})
    after = _run(fleet, vehicle, "ReadDTC", {"ecuAddress": "0x40"})

    assert cleared[0].payload["cleared_count"] >= 1
    assert after[-1].payload["dtc_count"] == 0


def test_clear_dtc_of_one_code_keeps_the_others(fleet: SimulatedFleet) -> None:
    vehicle = _connected()
    before = _run(fleet, vehicle, "ReadDTC", {"ecuAddress": "0x10"})
    codes = [p.payload["code"] for p in before[:-1]]

    cleared = _run(fleet, vehicle, "ClearDTC", {"ecuAddress": "0x10", "dtcCode": codes[0]})
    after = _run(fleet, vehicle, "ReadDTC", {"ecuAddress": "0x10"})

    assert cleared[0].payload["cleared_count"] == 1
    assert cleared[0].payload["dtc_code"] == codes[0]
    assert [p.payload["code"] for p in after[:-1]] == codes[1:]
    assert after[-1].payload["dtc_count"] == len(codes) - 1


def test_read_data_by_id_f190_returns_the_vehicle_vin(fleet: SimulatedFleet) -> None:
    vehicle = _connected()

    parts = _run(fleet, vehicle, "ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xF190"})

    assert len(parts) == 1
    assert parts[0].is_final is True
    assert parts[0].payload == {
        "type": "data",
        "ecu": {"address": "0x10", "name": "Engine Control Module"},
        "did": "0xF190",
        "name": "VIN",
        "category": "identData",
        "value": vehicle.vin,
    }


def test_read_data_by_id_of_an_unknown_identifier_is_a_request_out_of_range(
    fleet: SimulatedFleet,
) -> None:
    with pytest.raises(NegativeResponse) as caught:
        _run(fleet, _connected(), "ReadDataByID", {"ecuAddress": "0x10", "dataId": "0x1234"})

    assert caught.value.code == "negative_response"
    assert caught.value.payload["nrc"] == "0x31"
    assert caught.value.payload["nrc_name"] == "requestOutOfRange"
    assert caught.value.payload["did"] == "0x1234"
    assert caught.value.payload["service"] == "0x22"


def test_a_disconnected_vehicle_is_unavailable(fleet: SimulatedFleet) -> None:
    with pytest.raises(VehicleUnavailable, match="is not connected"):
        _run(fleet, _disconnected(), "ReadDTC", {"ecuAddress": "0x10"})


def test_an_ecu_the_vehicle_does_not_have_is_a_final_negative_response_at_once(
    sync_redis: redis.Redis, keys: Keys
) -> None:
    slept: list[float] = []
    fleet = SimulatedFleet(sync_redis, keys, seed=1, delay_scale=1.0, sleep=slept.append)
    vehicle = _connected()

    with pytest.raises(NegativeResponse) as caught:
        _run(fleet, vehicle, "ReadDTC", {"ecuAddress": "0x99"})

    assert slept == [], "answered at once, without waiting like a silent ECU"
    assert caught.value.transient is False, "no retry can find an ECU that is not there"
    assert caught.value.payload == {
        "type": "negative_response",
        "ecu": {"address": "0x99", "name": None},
        "service": "0x19",
        "nrc": "0x31",
        "nrc_name": "requestOutOfRange",
        "reason": "no_such_ecu",
    }
    present = ", ".join(f"{e['address']} {e['name']}" for e in vehicle.metadata["ecus"])
    assert caught.value.message == f"Vehicle {vehicle.vin} has no ECU at 0x99 (it has: {present})"


def test_a_silent_ecu_does_not_respond(fleet: SimulatedFleet) -> None:
    vehicle = _connected()
    fleet.inject_fault(vehicle.vehicle_id, "silent")
    with pytest.raises(EcuNotResponding, match="ECU 0x10 did not respond"):
        _run(fleet, vehicle, "ReadDTC", {"ecuAddress": "0x10"})


def test_delays_go_through_the_injected_sleep(sync_redis: redis.Redis, keys: Keys) -> None:
    slept: list[float] = []
    fleet = SimulatedFleet(sync_redis, keys, seed=1, delay_scale=1.0, sleep=slept.append)

    parts = _run(fleet, _connected(), "ReadDTC", {"ecuAddress": "0x10"})

    assert len(parts) == 5
    assert all(0 < step <= PAUSE_SLICE_S + 1e-9 for step in slept)
    first_low, _ = SimulatedFleet.FIRST_PART_DELAY_S
    next_low, next_high = SimulatedFleet.NEXT_PART_DELAY_S
    _, first_high = SimulatedFleet.FIRST_PART_DELAY_S
    total = sum(slept)
    assert first_low + 4 * next_low <= total <= first_high + 4 * next_high + 1e-6
