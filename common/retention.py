"""Command retention: finished commands older than the retention leave Redis, whole.

A command owns its hash, its responses hash and its event log (which also expires on
its own), plus one entry in each index: all commands, per user, per vehicle, per status,
per type, and the deadlines. Once the command has ended and its submission is older than
``SOVD_COMMAND_RETENTION_DAYS``, ``sweep`` deletes all of them in one script per
command, which checks again that the command has ended, so a command still running
is never touched (the deadline sweeper ends it first). A late event for a removed
command is refused by the event script (it needs the hash), so nothing half-exists.

The api runs the sweep (``RetentionSweeper``), one process at a time by a Redis lock.
The audit trail has its own retention (``common.audit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import cast

import redis.asyncio
import structlog

from common.commands import TERMINAL_STATUSES
from common.keys import Keys

__all__ = ["RetentionSweeper", "sweep"]

log = structlog.get_logger(__name__)

#: Commands examined per round trip.
DEFAULT_BATCH = 500
#: A sweep stops after the batch that reaches this many removals (bounded work).
DEFAULT_MAX_PER_SWEEP = 50_000

_REMOVE_SCRIPT = """
-- KEYS: command hash, responses hash, events stream, commands index, user index,
--       vehicle index, deadlines, by-status index, by-type index
-- ARGV: command id, terminal statuses (space-separated)
-- Returns 1 when the ended command was removed, 0 when it has not ended (kept).
local command_key, responses_key, events_key = KEYS[1], KEYS[2], KEYS[3]
local command_id, terminal = ARGV[1], ARGV[2]
local status = redis.call('HGET', command_key, 'status')
if not status or not string.find(' ' .. terminal .. ' ', ' ' .. status .. ' ', 1, true) then
  return 0
end
redis.call('DEL', command_key, responses_key, events_key)
for i = 4, 9 do redis.call('ZREM', KEYS[i], command_id) end
return 1
"""


async def sweep(
    client: redis.asyncio.Redis,
    keys: Keys,
    *,
    retention_s: float,
    now_ts: float | None = None,
    batch: int = DEFAULT_BATCH,
    max_removed: int = DEFAULT_MAX_PER_SWEEP,
) -> int:
    """Remove ended commands submitted more than ``retention_s`` ago; returns how many."""
    cutoff = (time.time() if now_ts is None else now_ts) - retention_s
    remove = client.register_script(_REMOVE_SCRIPT)
    terminal = " ".join(sorted(s.value for s in TERMINAL_STATUSES))
    removed, skipped = 0, 0
    while removed < max_removed:
        ids = cast(
            list[str],
            await client.zrangebyscore(keys.commands, "-inf", cutoff, start=skipped, num=batch),
        )
        if not ids:
            break
        async with client.pipeline(transaction=False) as pipe:
            for command_id in ids:
                pipe.hmget(
                    keys.command(command_id), ["user_id", "vehicle_id", "status", "command_name"]
                )
            owners = cast(list[list[str | None]], await pipe.execute())
        async with client.pipeline(transaction=False) as pipe:
            for command_id, (user_id, vehicle_id, status, name) in zip(ids, owners, strict=True):
                if user_id is None or vehicle_id is None:  # an index entry without its hash
                    pipe.zrem(keys.commands, command_id)
                    pipe.zrem(keys.deadlines, command_id)
                    continue
                await remove(  # queued on the pipeline, run by execute()
                    keys=[
                        keys.command(command_id),
                        keys.command_responses(command_id),
                        keys.command_events(command_id),
                        keys.commands,
                        keys.commands_by_user(user_id),
                        keys.commands_by_vehicle(vehicle_id),
                        keys.deadlines,
                        keys.commands_by_status(status or ""),
                        keys.commands_by_type(name or ""),
                    ],
                    args=[command_id, terminal],
                    client=pipe,
                )
            results = await pipe.execute()
        done, kept = 0, 0
        position = 0
        for user_id, vehicle_id, _, _ in owners:
            if user_id is None or vehicle_id is None:
                done += 1
                position += 2
                continue
            if int(results[position]):
                done += 1
            else:
                kept += 1  # still running: stays, and the next batch starts past it
            position += 1
        removed += done
        skipped += kept
    return removed


class RetentionSweeper:
    """Runs ``sweep`` every ``interval_s`` in one api process at a time (a Redis lock)."""

    def __init__(
        self, client: redis.asyncio.Redis, keys: Keys, *, retention_s: float, interval_s: float
    ) -> None:
        self._client = client
        self._keys = keys
        self._retention_s = retention_s
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: try again next round
                log.warning("retention_sweep_failed", error=repr(exc))
            await asyncio.sleep(self._interval_s)

    async def run_once(self) -> int | None:
        """Sweep if no other process holds this round's lock; None when it did not."""
        lock_s = max(1, int(self._interval_s))
        if not await self._client.set(self._keys.retention_lock, "1", nx=True, ex=lock_s):
            return None
        removed = await sweep(self._client, self._keys, retention_s=self._retention_s)
        if removed:
            log.info("retention_swept", removed=removed)
        return removed
