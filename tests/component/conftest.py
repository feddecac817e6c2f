"""Component fixtures: the API app in-process against the real Redis, with users."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime

import dramatiq
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from common.fleet import DEMO_USERS, demo_fleet
from common.keys import Keys
from common.presence import Presence
from common.redis_client import async_client
from common.settings import Settings
from common.users import Role, UserStore
from common.vehicles import ConnectionStatus, Vehicle
from workers import runtime
from workers.build import WorkerParts, build_worker

PASSWORDS = {username: password for username, password, _, _ in DEMO_USERS}


@pytest.fixture
def worker_parts(settings: Settings) -> Iterator[WorkerParts]:
    parts = build_worker(settings)
    yield parts
    parts.close()


@pytest.fixture
def worker(worker_parts: WorkerParts) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(worker_parts.broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def rt(settings: Settings) -> Iterator[runtime.Runtime]:
    """A worker runtime for calling the executor directly."""
    built = runtime.build_runtime(settings)
    yield built
    built.close()


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    """The API app, lifespan run (demo users and fleet seeded under the test's prefix)."""
    with TestClient(create_app(settings)) as client:
        yield client


def login(api: TestClient, username: str, password: str | None = None) -> dict[str, str]:
    """Authorization headers for ``username`` (a demo user unless a password is given)."""
    response = api.post(
        "/api/v1/auth/login",
        json={"username": username, "password": password or PASSWORDS[username]},
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def create_user(settings: Settings, username: str, role: Role, *, active: bool = True) -> None:
    async def go() -> None:
        client = async_client(settings.effective_redis_url)
        try:
            await UserStore(client, Keys(settings.key_prefix)).create(
                username=username, password=f"{username}-password", role=role, active=active
            )
        finally:
            await client.aclose()

    asyncio.run(go())


def report_presence(
    settings: Settings, vehicle_id: str, status: ConnectionStatus, *, at: datetime | None = None
) -> None:
    """Report the vehicle connected (or disconnected) through ``common.presence``."""

    async def go() -> None:
        client = async_client(settings.effective_redis_url)
        try:
            presence = Presence(client, Keys(settings.key_prefix), settings)
            if status == ConnectionStatus.CONNECTED:
                await presence.connected(vehicle_id, at=at)
            else:
                await presence.disconnected(vehicle_id, reason="clean_disconnect", at=at)
        finally:
            await client.aclose()

    asyncio.run(go())


def vehicle(status: ConnectionStatus = ConnectionStatus.CONNECTED) -> Vehicle:
    return next(v for v in demo_fleet() if v.connection_status == status)
