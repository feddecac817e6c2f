"""Cursor paging over the real indexes: any scores (ties included), any page size."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.command_store import CommandStore
from common.commands import CommandRecord, CommandStatus
from common.history import CommandHistory, Cursor
from common.keys import Keys
from common.redis_client import async_client

USER = str(uuid.uuid4())
VEHICLE = str(uuid.uuid4())


def _record(second: int) -> CommandRecord:
    return CommandRecord(
        command_id=str(uuid.uuid4()),
        user_id=USER,
        vehicle_id=VEHICLE,
        command_name="ReadDTC",
        command_params={"ecuAddress": "0x10"},
        status=CommandStatus.COMPLETED,
        submitted_at=datetime.fromtimestamp(1_767_225_600 + second, tz=UTC),
    )


async def _walk(
    redis_url: str, seconds: list[int], limit: int, arrivals: int, by_status: bool
) -> tuple[list[str], list[str]]:
    client = async_client(redis_url)
    keys = Keys(f"paging-{uuid.uuid4().hex[:12]}")
    try:
        store, history = CommandStore(client, keys), CommandHistory(client, keys)
        records = [_record(s) for s in seconds]
        for record in records:
            await store.create(record)
        expected = sorted(
            records, key=lambda r: (r.submitted_at.timestamp(), r.command_id), reverse=True
        )
        status = CommandStatus.COMPLETED if by_status else None
        seen: list[str] = []
        cursor: Cursor | None = None
        for _ in range(len(records) + 2):
            page = await history.page(status=status, after=cursor, limit=limit)
            seen += [c.command_id for c in page.commands]
            # Newer commands arrive between pages: they must not shift the walk.
            for _ in range(arrivals):
                await store.create(_record(10_000))
            cursor = page.next_cursor
            if cursor is None:
                break
        created = [key async for key in client.scan_iter(match=f"{keys.prefix}:*")]
        if created:
            await client.delete(*created)
        return seen, [r.command_id for r in expected]
    finally:
        await client.aclose()


@given(
    seconds=st.lists(st.integers(min_value=0, max_value=4), max_size=12),
    limit=st.integers(min_value=1, max_value=5),
    arrivals=st.integers(min_value=0, max_value=2),
    by_status=st.booleans(),
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_following_next_cursor_visits_every_command_once_newest_first(
    redis_url: str, seconds: list[int], limit: int, arrivals: int, by_status: bool
) -> None:
    seen, expected = asyncio.run(_walk(redis_url, seconds, limit, arrivals, by_status))
    assert seen == expected
