"""Per-process background duties of a worker: queue maintenance, the deadline sweeper.

The sweeper ends commands that passed their deadline without a terminal status (a
worker died and the message was never redelivered, or the message expired unseen):
it records an error and ``timeout``. Every worker process sweeps; the event log's
terminal guard makes concurrent sweeps harmless.

Maintenance runs Dramatiq's requeue of dead workers' unacknowledged messages for every
queue this process consumes, every ``SOVD_BROKER_MAINTENANCE_INTERVAL_S``: a worker
killed mid-command has its messages redelivered within its heartbeat timeout plus that
interval, on every queue (Dramatiq alone does it by chance, per queue). The same call
refreshes this process's heartbeat while all its threads are busy with long commands,
so a busy worker is never mistaken for a dead one and its commands are not run twice.

The duties run in a daemon thread started by the ``after_worker_boot`` hook and
stopped by ``before_worker_shutdown`` (a Dramatiq middleware).
"""

from __future__ import annotations

import threading
import time
from typing import cast

import dramatiq
import structlog

from common.broker import WakingRedisBroker
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


class BackgroundDuties(dramatiq.Middleware):
    """A daemon thread per worker process that maintains the queues and sweeps deadlines."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._broker: WakingRedisBroker | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        assert isinstance(broker, WakingRedisBroker)  # build_worker pairs them
        self._broker = broker
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sovd-background", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def run_once(self, *, sweep: bool) -> None:
        """One round: maintenance for every queue, then (``sweep``) the deadline sweep."""
        assert self._broker is not None
        self._broker.maintain(self._broker.get_declared_queues())
        if sweep:
            sweep_expired(self._runtime)

    def _loop(self) -> None:
        settings = self._runtime.settings
        heartbeat_s = settings.broker_heartbeat_timeout_ms / 1000 / 3
        interval = min(settings.broker_maintenance_interval_s, heartbeat_s)
        next_sweep = 0.0
        while not self._stop.wait(interval):
            try:
                due = time.monotonic() >= next_sweep
                self.run_once(sweep=due)
                if due:
                    next_sweep = time.monotonic() + settings.sweep_interval_s
            except Exception as exc:  # Redis down: try again next round
                log.warning("background_duty_failed", error=str(exc))
