"""common/lua/submit.lua queues the message as Dramatiq does, and a rerun changes nothing."""

from __future__ import annotations

import asyncio
import threading

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from fastapi.testclient import TestClient

from api.schemas import CommandCreate
from api.state import AppState
from api.submission import _admit, check, submit
from common.audit import AuditAction
from common.broker import build_broker
from common.fleet import seed_demo
from common.keys import Keys
from common.policy import DEFAULT_POLICIES
from common.presence import Presence
from common.redis_client import async_client
from common.settings import Settings
from common.users import UserStore
from tests.component.conftest import login, vehicle


def test_a_stock_dramatiq_worker_takes_the_message_the_submit_script_queued(
    api: TestClient, settings: Settings, keys: Keys
) -> None:
    """The enqueue copied from Dramatiq's dispatch.lua is one its own consumer reads."""
    response = api.post(
        "/api/v1/commands",
        headers=login(api, "engineer"),
        json={
            "vehicle_id": vehicle().vehicle_id,
            "command_name": "ReadDTC",
            "command_params": {"ecuAddress": "0x10"},
        },
    )
    assert response.status_code == 202
    command_id = response.json()["command_id"]
    stock = RedisBroker(url=settings.effective_redis_url, namespace=keys.broker_namespace)
    ran: list[str] = []
    done = threading.Event()

    @dramatiq.actor(
        broker=stock, actor_name="read_dtc", queue_name=DEFAULT_POLICIES["ReadDTC"]["queue_name"]
    )
    def read_dtc(command_id: str, **_: object) -> None:
        ran.append(command_id)
        done.set()

    worker = dramatiq.Worker(stock, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        assert done.wait(timeout=10)
    finally:
        worker.stop()
        stock.close()
        stock.client.connection_pool.disconnect()  # Dramatiq's close leaves the pool open
    assert ran == [command_id]


def test_the_submit_script_run_again_for_the_same_command_changes_nothing(
    settings: Settings, sync_redis: redis.Redis, keys: Keys
) -> None:
    """A retry after a dropped reply: no second message, audit entry or rate-limit hit."""

    async def scenario() -> None:
        client = async_client(settings.effective_redis_url)
        broker = build_broker(settings)
        try:
            state = AppState.build(settings, client, broker)
            await seed_demo(client, keys)
            await Presence(client, keys, settings).connected(vehicle().vehicle_id)
            user = await UserStore(client, keys).get_by_username("engineer")
            assert user is not None
            body = CommandCreate(
                vehicle_id=vehicle().vehicle_id,
                command_name="ReadDTC",
                command_params={"ecuAddress": "0x10"},
            )
            submission = await submit(
                state, user, body, request_id=None, idempotency_key=None, who={}
            )
            command_type, _, policy = check(user, body, state.policies)
            before = _snapshot()
            again = await _admit(
                state,
                submission.command,
                command_type,
                policy,
                audit_args=state.audit.args(AuditAction.COMMAND_SUBMITTED)[1],
            )
            assert again is None
            assert _snapshot() == before
        finally:
            broker.close()
            await client.aclose()

    def _snapshot() -> tuple[int, int, list[str]]:
        queue = DEFAULT_POLICIES["ReadDTC"]["queue_name"]
        counters = sorted(sync_redis.scan_iter(f"{keys.rate_limit('submit')}:*"))
        return (
            sync_redis.llen(keys.broker_queue(queue)),
            sync_redis.xlen(keys.audit),
            [sync_redis.get(c) for c in counters],
        )

    asyncio.run(scenario())
