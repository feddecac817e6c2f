"""The gRPC connector over TLS and mutual TLS, against a real gateway with certificates
made by ``openssl`` for the test."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import redis

from common.keys import Keys
from common.settings import Settings
from common.vehicles import ConnectionStatus, Vehicle
from gateway.service import VehicleGateway
from tests.grpc_support import seed_fleet
from workers.connector import ConnectionLost, DiagnosticRequest
from workers.grpc_connector import GrpcConnector
from workers.grpc_gen.vehicle_pb2_grpc import add_VehicleServiceServicer_to_server
from workers.simulator import SimulatedFleet


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    assert binary is not None, "these tests make their certificates with the openssl CLI"
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a gateway certificate for 127.0.0.1 and a worker certificate, signed by it."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "1", "-subj", "/CN=test-ca", cwd=d)  # fmt: skip
    for name, extension in (
        ("gateway", "subjectAltName=IP:127.0.0.1"),
        ("worker", "extendedKeyUsage=clientAuth"),
    ):
        (d / f"{name}.ext").write_text(extension + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile",
                 f"{name}.ext", cwd=d)  # fmt: skip
    return d


@pytest.fixture
def tls_gateway(
    pki: Path, settings: Settings, sync_redis: redis.Redis, keys: Keys
) -> Iterator[tuple[int, Vehicle]]:
    """The gateway's servicer on a TLS port that requires a client certificate."""
    fleet = seed_fleet(sync_redis, keys)
    simulator = SimulatedFleet(sync_redis, keys, delay_scale=0)

    def vehicle(vehicle_id: str) -> Vehicle | None:
        raw = sync_redis.get(keys.vehicle(vehicle_id))
        return Vehicle.model_validate_json(raw) if raw else None

    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    add_VehicleServiceServicer_to_server(VehicleGateway(simulator, vehicle), server)
    credentials = grpc.ssl_server_credentials(
        [((pki / "gateway.key").read_bytes(), (pki / "gateway.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield port, next(v for v in fleet if v.connection_status == ConnectionStatus.CONNECTED)
    server.stop(0).wait()


def _run(connector: GrpcConnector, vehicle: Vehicle) -> list[dict[str, object]]:
    request = DiagnosticRequest(
        command_id=str(uuid.uuid4()),
        command_name="ReadDataByID",
        params={"ecuAddress": "0x10", "dataId": "0xF190"},
        vehicle=vehicle,
        deadline=time.monotonic() + 10,
    )
    try:
        return [part.payload for part in connector.execute(request)]
    finally:
        connector.close()


def test_a_worker_with_the_ca_and_its_certificate_reaches_a_mutual_tls_gateway(
    pki: Path, settings: Settings, tls_gateway: tuple[int, Vehicle]
) -> None:
    port, vehicle = tls_gateway
    connector = GrpcConnector(
        settings.model_copy(
            update={
                "grpc_target": f"127.0.0.1:{port}",
                "grpc_tls": True,
                "grpc_ca_file": pki / "ca.pem",
                "grpc_client_cert_file": pki / "worker.pem",
                "grpc_client_key_file": pki / "worker.key",
            }
        )
    )
    (answer,) = _run(connector, vehicle)
    assert answer["value"] == vehicle.vin


@pytest.mark.parametrize(
    "update",
    [
        {"grpc_tls": True},  # system roots do not know the test CA
        {"grpc_tls": False},  # plaintext to a TLS port
    ],
)
def test_a_worker_that_cannot_complete_the_handshake_finds_the_gateway_unreachable(
    pki: Path, settings: Settings, tls_gateway: tuple[int, Vehicle], update: dict[str, object]
) -> None:
    port, vehicle = tls_gateway
    connector = GrpcConnector(
        settings.model_copy(update={"grpc_target": f"127.0.0.1:{port}", **update})
    )
    with pytest.raises(ConnectionLost, match="unreachable"):
        _run(connector, vehicle)


def test_a_worker_without_a_client_certificate_is_refused_by_a_mutual_tls_gateway(
    pki: Path, settings: Settings, tls_gateway: tuple[int, Vehicle]
) -> None:
    port, vehicle = tls_gateway
    connector = GrpcConnector(
        settings.model_copy(
            update={
                "grpc_target": f"127.0.0.1:{port}",
                "grpc_tls": True,
                "grpc_ca_file": pki / "ca.pem",
            }
        )
    )
    with pytest.raises(ConnectionLost, match="unreachable"):
        _run(connector, vehicle)
