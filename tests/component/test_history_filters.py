"""Every history filter and every combination of them is answered from the indexes, and
gives exactly what testing each stored command would: any commands, any status changes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common.command_store import CommandStore
from common.commands import COMMAND_TYPES, TERMINAL_STATUSES, CommandRecord, CommandStatus
from common.eventlog import AsyncEventLog
from common.events import StatusEvent
from common.history import CommandHistory, Cursor, backfill_indexes
from common.keys import Keys
from common.redis_client import async_client

USERS = [str(uuid.uuid4()) for _ in range(2)]
VEHICLES = [str(uuid.uuid4()) for _ in range(2)]
TYPES = sorted(COMMAND_TYPES)
#: Where a command can go from ``pending``, by the event script.
PATHS: list[list[CommandStatus]] = [
    [],
    [CommandStatus.IN_PROGRESS],
    [CommandStatus.IN_PROGRESS, CommandStatus.COMPLETED],
    [CommandStatus.IN_PROGRESS, CommandStatus.FAILED],
    [CommandStatus.CANCELLED],
    [CommandStatus.IN_PROGRESS, CommandStatus.TIMEOUT],
]

commands = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.sampled_from(VEHICLES),
        st.sampled_from(TYPES),
        st.integers(min_value=0, max_value=2),
        st.sampled_from(range(len(PATHS))),
    ),
    min_size=1,
    max_size=25,
)
filters = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.sampled_from(USERS),
        "vehicle_id": st.sampled_from(VEHICLES),
        "status": st.sampled_from(list(CommandStatus)),
        "command_name": st.sampled_from(TYPES),
        "since": st.integers(min_value=0, max_value=5),
        "until": st.integers(min_value=0, max_value=5),
    },
)
BASE = 1_767_225_600


def _record(
    *,
    user_id: str = USERS[0],
    vehicle_id: str = VEHICLES[0],
    name: str = "ReadDTC",
    second: int = 0,
    status: CommandStatus = CommandStatus.PENDING,
) -> CommandRecord:
    return CommandRecord(
        command_id=str(uuid.uuid4()), user_id=user_id, vehicle_id=vehicle_id,
        command_name=name, command_params={}, status=status,
        submitted_at=datetime.fromtimestamp(BASE + second, tz=UTC),
    )  # fmt: skip


def _matches(record: CommandRecord, wanted: dict[str, object]) -> bool:
    score = record.submitted_at.timestamp() - BASE
    return (
        all(
            getattr(record, name) == wanted[name]
            for name in ("user_id", "vehicle_id", "status", "command_name")
            if name in wanted
        )
        and score >= int(wanted.get("since", 0))  # type: ignore[call-overload]
        and score <= int(wanted.get("until", 10))  # type: ignore[call-overload]
    )


async def _check(
    redis_url: str, made: list[tuple[str, str, str, int, int]], wanted: dict[str, object],
    limit: int,
) -> None:  # fmt: skip
    client = async_client(redis_url)
    keys = Keys(f"filters-{uuid.uuid4().hex[:12]}")
    try:
        store, history = CommandStore(client, keys), CommandHistory(client, keys)
        log = AsyncEventLog(client, keys, maxlen=100, ttl_s=60)
        records = []
        for user_id, vehicle_id, name, second, path in made:
            record = _record(user_id=user_id, vehicle_id=vehicle_id, name=name, second=second)
            await store.create(record)
            for status in PATHS[path]:
                event = StatusEvent(command_id=record.command_id, status=status)
                assert await log.append(event) > 0
            final = PATHS[path][-1] if PATHS[path] else CommandStatus.PENDING
            records.append(record.model_copy(update={"status": final}))
        expected = [
            r.command_id
            for r in sorted(
                records, key=lambda r: (r.submitted_at.timestamp(), r.command_id), reverse=True
            )
            if _matches(r, wanted)
        ]
        query = {k: v for k, v in wanted.items() if k not in ("since", "until")}
        bounds = {
            k: float(BASE + int(v))  # type: ignore[call-overload]
            for k, v in wanted.items()
            if k in ("since", "until")
        }
        seen: list[str] = []
        cursor: Cursor | None = None
        for _ in range(len(records) + 2):
            page = await history.page(**query, **bounds, after=cursor, limit=limit)  # type: ignore[arg-type]
            assert page.total == len(expected)
            assert all(r.status == next(x.status for x in records if x.command_id == r.command_id)
                       for r in page.commands)  # fmt: skip
            seen += [c.command_id for c in page.commands]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == expected
        by_offset = await history.page(**query, **bounds, offset=1, limit=limit)  # type: ignore[arg-type]
        assert [c.command_id for c in by_offset.commands] == expected[1 : 1 + limit]
        created = [key async for key in client.scan_iter(match=f"{keys.prefix}:*")]
        if created:
            await client.delete(*created)
    finally:
        await client.aclose()


#: Ties at a page boundary, on the path that intersects indexes and on the direct one.
TIES = [(USERS[0], VEHICLES[0], "ReadDTC", 1, 0)] * 3 + [(USERS[1], VEHICLES[0], "ReadDTC", 1, 2)]


@given(made=commands, wanted=filters, limit=st.integers(min_value=1, max_value=4))
@example(made=TIES, wanted={"user_id": USERS[0], "vehicle_id": VEHICLES[0]}, limit=1)
@example(made=TIES, wanted={"status": CommandStatus.PENDING, "command_name": "ReadDTC"}, limit=2)
@example(made=TIES, wanted={"vehicle_id": VEHICLES[0]}, limit=1)
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_combination_of_filters_pages_exactly_the_matching_commands(
    redis_url: str, made: list[tuple[str, str, str, int, int]], wanted: dict[str, object],
    limit: int,
) -> None:  # fmt: skip
    asyncio.run(_check(redis_url, made, wanted, limit))


def test_a_command_sits_in_exactly_one_status_index(redis_url: str) -> None:
    async def run() -> None:
        client = async_client(redis_url)
        keys = Keys(f"filters-{uuid.uuid4().hex[:12]}")
        try:
            record = _record()
            await CommandStore(client, keys).create(record)
            log = AsyncEventLog(client, keys, maxlen=100, ttl_s=60)
            for status in (CommandStatus.IN_PROGRESS, CommandStatus.COMPLETED):
                await log.append(StatusEvent(command_id=record.command_id, status=status))
            holders = [
                s for s in CommandStatus
                if await client.zscore(keys.commands_by_status(s), record.command_id) is not None
            ]  # fmt: skip
            assert holders == [CommandStatus.COMPLETED]
            assert CommandStatus.COMPLETED in TERMINAL_STATUSES
            await client.delete(*[key async for key in client.scan_iter(match=f"{keys.prefix}:*")])
        finally:
            await client.aclose()

    asyncio.run(run())


def test_commands_stored_before_the_status_and_type_indexes_are_backfilled_once(
    redis_url: str,
) -> None:
    async def run() -> None:
        client = async_client(redis_url)
        keys = Keys(f"filters-{uuid.uuid4().hex[:12]}")
        try:
            record = _record(status=CommandStatus.COMPLETED)
            await CommandStore(client, keys).create(record)
            # As an earlier version stored it: no status or type index entry.
            await client.delete(
                keys.commands_by_status(CommandStatus.COMPLETED), keys.commands_by_type("ReadDTC")
            )
            history = CommandHistory(client, keys)
            assert (await history.page(status=CommandStatus.COMPLETED)).total == 0
            assert await backfill_indexes(client, keys) == 1
            page = await history.page(status=CommandStatus.COMPLETED, command_name="ReadDTC")
            assert [c.command_id for c in page.commands] == [record.command_id]
            assert await backfill_indexes(client, keys) is None  # once per store
            await client.delete(*[key async for key in client.scan_iter(match=f"{keys.prefix}:*")])
        finally:
            await client.aclose()

    asyncio.run(run())
