"""Per-process background duties of a worker: the deadline sweeper and the heartbeat.

The sweeper ends commands that passed their deadline without a terminal status (a
worker died and the message was never redelivered, or the message expired unseen):
it records an error and ``timeout``. Every worker process sweeps; the event log's
terminal guard makes concurrent sweeps harmless.

The heartbeat keeps this process's Dramatiq heartbeat fresh while all its threads are
busy with long commands (Dramatiq only heartbeats when it talks to Redis), so a busy
worker is never mistaken for a dead one and its commands are not run twice.
"""

from __future__ import annotations

import threading
import time
from typing import cast

import structlog
from dramatiq.brokers.redis import RedisBroker

from common.commands import CommandStatus
from workers.executor import finish
from workers.runtime import Runtime

__all__ = ["BackgroundDuties", "sweep_expired"]

log = structlog.get_logger(__name__)


def sweep_expired(runtime: Runtime, *, now_ts: float | None = None) -> list[str]:
    """End every command whose deadline (plus grace) has passed; return their ids."""
    now_ts = time.time() if now_ts is None else now_ts
    expired = cast(list[str], runtime.client.zrangebyscore(runtime.keys.deadlines, "-inf", now_ts))
    swept = []
    for command_id in expired:
        message = "The command did not finish before its deadline (no worker completed it)"
        finish(runtime, command_id, CommandStatus.TIMEOUT, message, "deadline_exceeded")
        # finish() removes the deadline when it records the status; an unknown or already
        # terminal command leaves it behind, so drop it here.
        runtime.client.zrem(runtime.keys.deadlines, command_id)
        swept.append(command_id)
    if swept:
        log.warning("commands_swept", count=len(swept), command_ids=swept)
    return swept


class BackgroundDuties:
    """A daemon thread that sweeps deadlines and refreshes the broker heartbeat."""

    def __init__(self, runtime: Runtime, broker: RedisBroker) -> None:
        self._runtime = runtime
        self._broker = broker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sovd-background", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        settings = self._runtime.settings
        heartbeat_s = settings.broker_heartbeat_timeout_ms / 1000 / 3
        interval = min(settings.sweep_interval_s, heartbeat_s)
        next_sweep = 0.0
        while not self._stop.wait(interval):
            try:
                queue = next(iter(self._broker.get_declared_queues()), None)
                if queue is not None:
                    self._broker.do_qsize(queue)  # any broker call refreshes the heartbeat
                if time.monotonic() >= next_sweep:
                    sweep_expired(self._runtime)
                    next_sweep = time.monotonic() + settings.sweep_interval_s
            except Exception as exc:  # Redis down: try again next round
                log.warning("background_duty_failed", error=str(exc))
