"""The demo fleet that development setups are seeded with."""

from __future__ import annotations

from common.fleet import demo_fleet
from common.vehicles import ConnectionStatus
from common.vin import is_valid_vin


def test_demo_fleet_has_at_least_six_vehicles() -> None:
    assert len(demo_fleet()) >= 6


def test_every_demo_vin_is_valid() -> None:
    invalid = [v.vin for v in demo_fleet() if not is_valid_vin(v.vin)]

    assert invalid == []


def test_demo_fleet_has_connected_and_disconnected_vehicles() -> None:
    statuses = {v.connection_status for v in demo_fleet()}

    assert statuses == {ConnectionStatus.CONNECTED, ConnectionStatus.DISCONNECTED}


def test_demo_vehicle_ids_and_vins_are_unique() -> None:
    fleet = demo_fleet()

    assert len({v.vehicle_id for v in fleet}) == len(fleet)
    assert len({v.vin for v in fleet}) == len(fleet)


def test_demo_vehicle_ids_are_the_same_on_every_call() -> None:
    first = [(v.vehicle_id, v.vin) for v in demo_fleet()]
    second = [(v.vehicle_id, v.vin) for v in demo_fleet()]

    assert first == second


def test_every_demo_vehicle_has_an_engine_or_vehicle_control_unit_at_0x10() -> None:
    names = {v.ecu_name("0x10") for v in demo_fleet()}

    assert names == {"Engine Control Module", "Vehicle Control Unit"}
