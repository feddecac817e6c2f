"""Retention: ended commands past it leave Redis with every key and index entry they own."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import redis
from fastapi.testclient import TestClient

from api.app import create_app
from common.command_store import CommandStore
from common.commands import CommandRecord, CommandStatus
from common.keys import Keys
from common.redis_client import async_client
from common.retention import RetentionSweeper, sweep
from common.settings import Settings
from tests.component.conftest import login
from tests.support import wait_for

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY_S = 86400.0


def _record(status: CommandStatus, age: timedelta) -> CommandRecord:
    return CommandRecord(
        command_id=str(uuid.uuid4()),
        user_id=str(uuid.uuid4()),
        vehicle_id=str(uuid.uuid4()),
        command_name="ReadDTC",
        command_params={"ecuAddress": "0x10"},
        status=status,
        submitted_at=NOW - age,
    )


def _store(settings: Settings, *records: CommandRecord) -> None:
    async def go() -> None:
        client = async_client(settings.effective_redis_url)
        keys = Keys(settings.key_prefix)
        try:
            store = CommandStore(client, keys)
            for record in records:
                await store.create(record)
                await client.hset(keys.command_responses(record.command_id), "1", "{}")
                await client.xadd(keys.command_events(record.command_id), {"event": "{}"})
                score = record.submitted_at.timestamp()
                await client.zadd(keys.deadlines, {record.command_id: score + 60})
        finally:
            await client.aclose()

    asyncio.run(go())


def _owned_keys(keys: Keys, record: CommandRecord) -> list[str]:
    return [
        keys.command(record.command_id),
        keys.command_responses(record.command_id),
        keys.command_events(record.command_id),
    ]


def _indexed_in(sync_redis: redis.Redis, keys: Keys, record: CommandRecord) -> set[str]:
    indexes = {
        "all": keys.commands,
        "user": keys.commands_by_user(record.user_id),
        "vehicle": keys.commands_by_vehicle(record.vehicle_id),
        "deadlines": keys.deadlines,
    }
    return {name for name, key in indexes.items() if sync_redis.zscore(key, record.command_id)}


def _sweep(
    settings: Settings, *, retention_s: float, batch: int = 500, max_removed: int = 50_000
) -> int:
    async def go() -> int:
        client = async_client(settings.effective_redis_url)
        try:
            return await sweep(
                client,
                Keys(settings.key_prefix),
                retention_s=retention_s,
                now_ts=NOW.timestamp(),
                batch=batch,
                max_removed=max_removed,
            )
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_ended_commands_past_retention_are_removed_whole_and_the_rest_stay(
    settings: Settings, sync_redis: redis.Redis, keys: Keys
) -> None:
    old = [_record(s, timedelta(days=31)) for s in (CommandStatus.COMPLETED,
           CommandStatus.FAILED, CommandStatus.REJECTED, CommandStatus.CANCELLED)]  # fmt: skip
    running = _record(CommandStatus.IN_PROGRESS, timedelta(days=31))
    recent = _record(CommandStatus.COMPLETED, timedelta(days=29))
    _store(settings, *old, running, recent)
    assert _sweep(settings, retention_s=30 * DAY_S, batch=2) == 4
    for record in old:
        assert sync_redis.exists(*_owned_keys(keys, record)) == 0
        assert _indexed_in(sync_redis, keys, record) == set()
    for record in (running, recent):
        assert sync_redis.exists(*_owned_keys(keys, record)) == 3
        assert _indexed_in(sync_redis, keys, record) == {"all", "user", "vehicle", "deadlines"}
    assert _sweep(settings, retention_s=30 * DAY_S) == 0


def test_a_sweep_removes_at_most_its_bound_and_the_next_one_continues(
    settings: Settings, sync_redis: redis.Redis, keys: Keys
) -> None:
    _store(settings, *(_record(CommandStatus.COMPLETED, timedelta(days=40)) for _ in range(5)))
    assert _sweep(settings, retention_s=DAY_S, batch=2, max_removed=3) == 4
    assert _sweep(settings, retention_s=DAY_S, batch=2, max_removed=3) == 1
    assert sync_redis.zcard(keys.commands) == 0


def test_one_process_sweeps_per_round(settings: Settings) -> None:
    async def go() -> list[int | None]:
        client = async_client(settings.effective_redis_url)
        keys = Keys(settings.key_prefix)
        try:
            sweepers = [
                RetentionSweeper(client, keys, retention_s=DAY_S, interval_s=60) for _ in range(3)
            ]
            return [await s.run_once() for s in sweepers]
        finally:
            await client.aclose()

    assert asyncio.run(go()) == [0, None, None]


def test_the_api_sweeps_in_the_background_and_a_removed_command_is_404(
    settings: Settings, sync_redis: redis.Redis, keys: Keys
) -> None:
    ended = _record(CommandStatus.COMPLETED, timedelta(days=400))  # NOW is in the past too
    _store(settings, ended)
    fast = settings.model_copy(update={"retention_sweep_interval_s": 0.05})
    with TestClient(create_app(fast)) as api:
        wait_for(
            lambda: not sync_redis.exists(keys.command(ended.command_id)),
            what="the retention sweep",
        )
        response = api.get(f"/api/v1/commands/{ended.command_id}", headers=login(api, "admin"))
        assert response.status_code == 404
        assert api.get("/api/v1/commands", headers=login(api, "admin")).json()["total"] == 0
