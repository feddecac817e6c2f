"""Command history at scale: Redis bytes per stored command, and the time of one page.

Starts a private Valkey, stores ``--commands`` command records the way the api stores
them (the hash and its five index entries: all, per user, per vehicle, per status, per
type), spread over 60 days, 50 users, 6 vehicles and the three command types, then
times pages of 50 read the way ``GET /api/v1/commands`` reads them (``common.history``,
Redis round trips and record decoding; no HTTP), each repeated and reported as p50/p99:

- newest page; newest page of one user; a one-week ``start_date``/``end_date`` range;
- the page after a cursor in the middle of the history, and the same page by ``offset``;
- ``status`` over everything (its index alone), ``status`` for one user, ``status`` and
  type and vehicle for one user (the indexes intersected in Redis, walking the smallest).

    .venv/bin/python -m bench.history [--commands 1000000] [--repeat 200]

Responses are not stored here (their size depends on the vehicle's answers).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import cast

import redis

from common.commands import COMMAND_TYPES, CommandRecord, CommandStatus
from common.history import CommandHistory, Cursor
from common.keys import Keys
from common.redis_client import async_client
from tests.support import RedisServer

START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_S = 60 * 86400
STATUSES = [CommandStatus.COMPLETED] * 17 + [CommandStatus.FAILED, CommandStatus.TIMEOUT,
            CommandStatus.CANCELLED]  # fmt: skip


TYPES = sorted(COMMAND_TYPES)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def populate(client: redis.Redis, keys: Keys, count: int, users: list[str]) -> None:
    vehicles = [str(uuid.uuid4()) for _ in range(6)]
    template = CommandRecord(
        command_id="x", user_id="x", vehicle_id="x", command_name="ReadDTC",
        command_params={"ecuAddress": "0x10"}, status=CommandStatus.COMPLETED,
        submitted_at=START, started_at=START, completed_at=START, request_id=uuid.uuid4().hex,
        attempts=1, deadline_at=START,
    ).to_redis()  # fmt: skip
    rng = random.Random(7)
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        command_id, user, vehicle = str(uuid.uuid4()), rng.choice(users), rng.choice(vehicles)
        status, name = rng.choice(STATUSES).value, rng.choice(TYPES)
        score = START.timestamp() + rng.random() * SPAN_S
        at = datetime.fromtimestamp(score, tz=UTC).isoformat().replace("+00:00", "Z")
        fields = {**template, "command_id": command_id, "user_id": user, "vehicle_id": vehicle,
                  "status": status, "command_name": name, "submitted_at": at, "started_at": at,
                  "completed_at": at, "deadline_at": at, "submitted_ts": str(score)}  # fmt: skip
        pipe.hset(keys.command(command_id), mapping=fields)
        pipe.zadd(keys.commands, {command_id: score})
        pipe.zadd(keys.commands_by_user(user), {command_id: score})
        pipe.zadd(keys.commands_by_vehicle(vehicle), {command_id: score})
        pipe.zadd(keys.commands_by_status(status), {command_id: score})
        pipe.zadd(keys.commands_by_type(name), {command_id: score})
        if n % 2000 == 1999:
            pipe.execute()
    pipe.execute()


async def timed(repeat: int, query: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await query()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), percentile(samples, 99)


async def measure(url: str, keys: Keys, users: list[str], repeat: int) -> None:
    client = async_client(url)
    history = CommandHistory(client, keys)
    total = await client.zcard(keys.commands)
    found = cast(
        list[tuple[str, float]],
        await client.zrevrange(keys.commands, total // 2, total // 2, withscores=True),
    )
    middle_id, middle_score = found[0]
    middle = Cursor(float(middle_score), str(middle_id))
    week = START.timestamp() + 30 * 86400
    user = users[0]
    vehicle = str((await client.hget(keys.command(str(middle_id)), "vehicle_id")) or "")
    cases: list[tuple[str, int, Callable[[], Awaitable[object]]]] = [
        ("newest page", repeat, lambda: history.page(limit=50)),
        ("newest page of one user", repeat, lambda: history.page(user_id=user, limit=50)),
        ("one-week range", repeat,
         lambda: history.page(since=week, until=week + 7 * 86400, limit=50)),
        ("page after a mid-history cursor", repeat, lambda: history.page(after=middle, limit=50)),
        ("same page by offset", repeat, lambda: history.page(offset=total // 2, limit=50)),
        ("status=failed, everything", repeat,
         lambda: history.page(status=CommandStatus.FAILED, limit=50)),
        ("status=failed, one user", repeat,
         lambda: history.page(user_id=user, status=CommandStatus.FAILED, limit=50)),
        ("failed ClearDTC on one vehicle, one user", repeat,
         lambda: history.page(user_id=user, vehicle_id=vehicle, status=CommandStatus.FAILED,
                              command_name="ClearDTC", limit=50)),
        ("status=completed, type=ReadDTC, everything", 20,
         lambda: history.page(status=CommandStatus.COMPLETED, command_name="ReadDTC", limit=50)),
    ]  # fmt: skip
    print(f"{'page of 50':<36} {'runs':>5} {'p50 ms':>9} {'p99 ms':>9}")
    for name, runs, query in cases:
        p50, p99 = await timed(runs, query)
        print(f"{name:<36} {runs:>5} {p50:>9.2f} {p99:>9.2f}")
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        keys = Keys("bench-history")
        users = [str(uuid.uuid4()) for _ in range(50)]
        before = int(client.info("memory")["used_memory"])
        started = time.perf_counter()
        populate(client, keys, args.commands, users)
        elapsed = time.perf_counter() - started
        after = int(client.info("memory")["used_memory"])
        sample = client.zrange(keys.commands, 0, 0)[0]
        hash_bytes = client.memory_usage(keys.command(sample))
        print(f"stored {args.commands:,} commands in {elapsed:.0f} s")
        per_command = (after - before) / args.commands
        print(f"Redis memory per command (hash + 5 index entries): {per_command:.0f} B; "
              f"the hash alone: {hash_bytes} B")  # fmt: skip
        asyncio.run(measure(server.url, keys, users, args.repeat))
        client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
