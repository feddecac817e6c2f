"""The gateway's gRPC server, built from settings over the simulated fleet."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import redis

from common.keys import Keys
from common.redis_client import sync_client
from common.settings import Settings
from common.vehicles import Vehicle
from gateway.service import Observer, VehicleGateway
from workers.connector import VehicleConnector
from workers.grpc_gen.vehicle_pb2_grpc import add_VehicleServiceServicer_to_server
from workers.simulator import SimulatedFleet

__all__ = ["GatewayServer", "build_gateway"]

#: Keepalive pings the gateway accepts from workers (``SOVD_GRPC_KEEPALIVE_S``) this often.
MIN_CLIENT_PING_INTERVAL_MS = 1_000


@dataclass
class GatewayServer:
    """A built gateway: ``server.start()`` serves it on ``port``; ``close`` after stopping."""

    server: grpc.Server
    port: int
    client: redis.Redis

    def close(self) -> None:
        self.client.close()


def build_gateway(
    settings: Settings,
    *,
    connector: VehicleConnector | None = None,
    observer: Observer | None = None,
    port: int | None = None,
) -> GatewayServer:
    """The gateway for ``settings`` (not started), serving the simulated fleet unless
    ``connector`` is given, on ``port`` (default ``SOVD_GRPC_GATEWAY_PORT``; 0: any)."""
    client = sync_client(settings.effective_redis_url)
    keys = Keys(settings.key_prefix)
    fleet = connector or SimulatedFleet(
        client, keys, seed=settings.sim_seed, delay_scale=settings.sim_delay_scale
    )

    def vehicle(vehicle_id: str) -> Vehicle | None:
        raw = client.get(keys.vehicle(vehicle_id))
        return Vehicle.model_validate_json(raw) if raw else None

    servicer = (
        VehicleGateway(fleet, vehicle)
        if observer is None
        else VehicleGateway(fleet, vehicle, observer=observer)
    )
    calls = settings.grpc_gateway_max_calls
    server = grpc.server(
        ThreadPoolExecutor(max_workers=calls, thread_name_prefix="gateway"),
        # Past this many calls at once, a call is refused with RESOURCE_EXHAUSTED.
        maximum_concurrent_rpcs=calls,
        options=[
            ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
            ("grpc.http2.max_ping_strikes", 0),
        ],
    )
    # The generated registration function has no annotations.
    add_VehicleServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(
        f"{settings.grpc_gateway_host}:{settings.grpc_gateway_port if port is None else port}"
    )
    return GatewayServer(server=server, port=bound, client=client)
