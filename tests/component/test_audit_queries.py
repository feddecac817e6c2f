"""Audit queries are answered from the indexes and give exactly what testing every
entry of the stream would: any entries, any filters, trimming by count included."""

from __future__ import annotations

import asyncio
import uuid

from freezegun import freeze_time
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common.audit import AsyncAuditLog, AuditAction, AuditQuery, backfill_indexes
from common.keys import Keys
from common.redis_client import async_client
from common.settings import Settings

USERS = [str(uuid.uuid4()) for _ in range(2)]
VEHICLES = [str(uuid.uuid4()) for _ in range(2)]
COMMANDS = [str(uuid.uuid4()) for _ in range(2)]
ACTIONS = [AuditAction.LOGIN, AuditAction.COMMAND_SUBMITTED, AuditAction.COMMAND_FAILED]

entries = st.lists(
    st.tuples(
        st.sampled_from(ACTIONS),
        st.one_of(st.none(), st.sampled_from(USERS)),
        st.one_of(st.none(), st.sampled_from(VEHICLES)),
        st.one_of(st.none(), st.sampled_from(COMMANDS)),
    ),
    min_size=1,
    max_size=30,
)
filters = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.sampled_from(USERS),
        "vehicle_id": st.sampled_from(VEHICLES),
        "command_id": st.sampled_from(COMMANDS),
        "action": st.sampled_from(ACTIONS),
    },
)
Entry = tuple[AuditAction, str | None, str | None, str | None]


async def _check(
    redis_url: str, made: list[Entry], wanted: dict[str, object], limit: int, max_entries: int
) -> None:
    client = async_client(redis_url)
    keys = Keys(f"auditq-{uuid.uuid4().hex[:12]}")
    config = Settings(_env_file=None, audit_max_entries=max_entries)
    try:
        log = AsyncAuditLog(client, keys, config)
        for action, user_id, vehicle_id, command_id in made:
            await log.record(action, user_id=user_id, vehicle_id=vehicle_id, command_id=command_id)
        stream = await client.xrevrange(keys.audit)  # what is left after trimming
        expected = [
            entry_id
            for entry_id, fields in stream
            if all(fields.get(name) == str(value) for name, value in wanted.items())
        ]
        seen: list[str] = []
        for offset in range(0, len(expected) + limit, limit):
            page, total = await log.query(AuditQuery(**wanted, limit=limit, offset=offset))
            assert total == len(expected)
            seen += [e.id for e in page]
        assert seen == expected
        await client.delete(*[key async for key in client.scan_iter(match=f"{keys.prefix}:*")])
    finally:
        await client.aclose()


@given(
    made=entries,
    wanted=filters,
    limit=st.integers(min_value=1, max_value=4),
    max_entries=st.sampled_from([100_000, 3]),
)
@example(
    made=[(AuditAction.LOGIN, USERS[0], VEHICLES[0], COMMANDS[0])] * 5,
    wanted={"user_id": USERS[0], "action": AuditAction.LOGIN},
    limit=2,
    max_entries=100_000,
)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_combination_of_audit_filters_pages_exactly_the_matching_entries(
    redis_url: str, made: list[Entry], wanted: dict[str, object], limit: int, max_entries: int
) -> None:
    asyncio.run(_check(redis_url, made, wanted, limit, max_entries))


def test_entries_written_before_the_indexes_existed_are_backfilled_once(redis_url: str) -> None:
    async def run() -> None:
        client = async_client(redis_url)
        keys = Keys(f"auditq-{uuid.uuid4().hex[:12]}")
        config = Settings(_env_file=None)
        try:
            log = AsyncAuditLog(client, keys, config)
            await log.record(AuditAction.LOGIN, user_id=USERS[0])
            await log.record(AuditAction.LOGIN, user_id=USERS[1])
            # As an earlier version wrote them: the stream without its indexes.
            await client.delete(
                *[k async for k in client.scan_iter(match=f"{keys.prefix}:audit:by:*")]
            )
            assert (await log.query(AuditQuery(user_id=USERS[0])))[1] == 0
            assert await backfill_indexes(client, keys, config) == 2
            page, total = await log.query(AuditQuery(user_id=USERS[0]))
            assert total == 1
            assert page[0].user_id == USERS[0]
            assert (await log.query(AuditQuery()))[1] == 2
            assert await backfill_indexes(client, keys, config) is None
            await client.delete(*[k async for k in client.scan_iter(match=f"{keys.prefix}:*")])
        finally:
            await client.aclose()

    asyncio.run(run())


def test_entries_trimmed_by_count_leave_the_totals_and_pages(redis_url: str) -> None:
    """Past ``SOVD_AUDIT_MAX_ENTRIES`` the stream drops whole nodes of old entries; the
    indexes may still name some of them, and no query counts or returns them."""
    made: list[Entry] = [
        (ACTIONS[n % 3], USERS[n % 2], VEHICLES[0], COMMANDS[n % 2]) for n in range(260)
    ]

    async def run() -> None:
        client = async_client(redis_url)
        keys = Keys(f"auditq-{uuid.uuid4().hex[:12]}")
        try:
            log = AsyncAuditLog(client, keys, Settings(_env_file=None, audit_max_entries=3))
            for action, user_id, vehicle_id, command_id in made:
                await log.record(
                    action, user_id=user_id, vehicle_id=vehicle_id, command_id=command_id
                )
            left = await client.xlen(keys.audit)
            assert left < len(made)  # the count trim did drop entries
            assert (await log.query(AuditQuery(limit=500)))[1] == left
            stream = await client.xrevrange(keys.audit)
            mine = [i for i, f in stream if f["user_id"] == USERS[0] and f["action"] == "login"]
            page, total = await log.query(
                AuditQuery(user_id=USERS[0], action=AuditAction.LOGIN, limit=500)
            )
            assert total == len(mine)
            assert [e.id for e in page] == mine
            await client.delete(*[k async for k in client.scan_iter(match=f"{keys.prefix}:*")])
        finally:
            await client.aclose()

    asyncio.run(run())


def test_expired_entries_waiting_for_their_trim_are_never_shown(redis_url: str) -> None:
    async def run() -> None:
        client = async_client(redis_url)
        keys = Keys(f"auditq-{uuid.uuid4().hex[:12]}")
        try:
            log = AsyncAuditLog(client, keys, Settings(_env_file=None, audit_retention_days=1))
            with freeze_time("2026-06-01T00:00:00Z"):
                for _ in range(150):
                    await log.record(AuditAction.LOGIN, user_id=USERS[0])
            with freeze_time("2026-06-03T00:00:00Z"):
                await log.record(AuditAction.LOGIN, user_id=USERS[0])
                assert await client.xlen(keys.audit) > 1  # one write trims at most 100
                page, total = await log.query(AuditQuery(user_id=USERS[0], limit=500))
                assert total == 1
                assert [e.at.day for e in page] == [3]
                assert (await log.query(AuditQuery(limit=500)))[1] == 1
            await client.delete(*[k async for k in client.scan_iter(match=f"{keys.prefix}:*")])
        finally:
            await client.aclose()

    asyncio.run(run())
