"""Redis memory under a steady load, before and after the retention is reached.

Starts a private Valkey and runs a synthetic clock: each round submits ``--per-round``
commands the way the api and workers store them (the command and its five index
entries, ``in_progress``, three responses, ``completed``, each through the event
script, and three audit entries), moves the clock on by ``--round-s``, and runs the
retention sweep as the api does (``common.retention.sweep``). Commands live for
``--retention-rounds`` rounds; the audit trail is capped by ``--audit-max``. Prints, per
round, the commands kept, Redis keys and used memory; then memory at the end against
memory when the retention was first reached (1.00 = flat).

    .venv/bin/python -m bench.retention [--rounds 30] [--per-round 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from freezegun import freeze_time

from common.audit import AsyncAuditLog, AuditAction
from common.command_store import CommandStore
from common.commands import CommandRecord, CommandStatus
from common.eventlog import AsyncEventLog
from common.events import Response, ResponseEvent, StatusEvent
from common.keys import Keys
from common.redis_client import async_client
from common.retention import sweep
from common.settings import Settings
from tests.support import RedisServer

START = datetime(2026, 1, 1, tzinfo=UTC)
PAYLOAD = {"ecu": "0x10", "dtcs": [{"code": "P0420", "status": "confirmed"}] * 3}


async def _one_command(
    store: CommandStore, log: AsyncEventLog, audit: AsyncAuditLog, at: datetime, n: int
) -> None:
    record = CommandRecord(
        command_id=str(uuid.uuid4()), user_id=f"user-{n % 20}", vehicle_id=f"vehicle-{n % 8}",
        command_name="ReadDTC", command_params={"ecuAddress": "0x10"},
        status=CommandStatus.PENDING, submitted_at=at, deadline_at=at + timedelta(seconds=60),
        attempts=1, request_id=uuid.uuid4().hex,
    )  # fmt: skip
    ids = {"user_id": record.user_id, "vehicle_id": record.vehicle_id}
    await store.create(record)
    await audit.record(AuditAction.COMMAND_SUBMITTED, command_id=record.command_id, **ids)
    await log.append(StatusEvent(command_id=record.command_id, status=CommandStatus.IN_PROGRESS))
    await audit.record(AuditAction.COMMAND_STARTED, command_id=record.command_id, **ids)
    for number in (1, 2, 3):
        response = Response(
            response_id=str(uuid.uuid4()), response_payload=PAYLOAD, sequence_number=number,
            is_final=number == 3, received_at=at,
        )  # fmt: skip
        event = ResponseEvent(
            command_id=record.command_id, response=response, sequence_number=number
        )
        await log.append(event)
    await log.append(StatusEvent(command_id=record.command_id, status=CommandStatus.COMPLETED))
    await audit.record(AuditAction.COMMAND_COMPLETED, command_id=record.command_id, **ids)


async def run(url: str, args: argparse.Namespace) -> None:
    client = async_client(url)
    keys = Keys("bench-retention")
    settings = Settings(_env_file=None, audit_max_entries=args.audit_max)
    store = CommandStore(client, keys)
    log = AsyncEventLog(client, keys, maxlen=1000, ttl_s=86400)
    audit = AsyncAuditLog(client, keys, settings)
    retention_s = args.retention_rounds * args.round_s
    print(f"{'round':>5} {'commands kept':>14} {'keys':>8} {'used MB':>9}")
    reached: int | None = None
    n = 0
    for round_number in range(1, args.rounds + 1):
        for i in range(args.per_round):
            at = START + timedelta(seconds=(round_number - 1) * args.round_s + i)
            with freeze_time(at):
                await _one_command(store, log, audit, at, n)
            n += 1
        now = START + timedelta(seconds=round_number * args.round_s)
        await sweep(client, keys, retention_s=retention_s, now_ts=now.timestamp())
        kept = await client.zcard(keys.commands)
        used = int((await client.info("memory"))["used_memory"])
        print(f"{round_number:>5} {kept:>14,} {await client.dbsize():>8,} {used / 2**20:>9.1f}")
        if round_number == args.retention_rounds + 1:
            reached = used
    if reached:
        print(f"memory at the end / when the retention was reached: {used / reached:.2f}")
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=1000)
    parser.add_argument("--round-s", type=int, default=3600)
    parser.add_argument("--retention-rounds", type=int, default=10)
    parser.add_argument("--audit-max", type=int, default=20_000)
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        asyncio.run(run(server.url, args))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
