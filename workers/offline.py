"""Commands of a vehicle that went offline end at once, with ``vehicle_offline``.

Each worker process follows ``Keys.presence_events`` in a daemon thread; on a change to
``disconnected`` it ends every active command of that vehicle (queued or running)
through ``workers.executor.finish``, the one terminal transition: the event log records
one terminal status however many workers act on the same change, and a running
exchange's later responses are refused. Pub/Sub loses what is published while the
thread reconnects, so each (re)subscription first ends what a missed change left
behind; a command delivered later for an offline vehicle ends in ``preflight``.

With ``SOVD_PRESENCE_OFFLINE_GRACE_S`` above 0, a vehicle that went away other than
by a clean disconnect (a last will, a heartbeat timeout) has that long to come back:
its commands end only if it is still offline then (a transport may resume them).
"""

from __future__ import annotations

import threading
from typing import cast

import dramatiq
import redis
import structlog
from pydantic import ValidationError

from common.commands import CommandStatus
from common.presence import PresenceChange
from common.vehicles import ConnectionStatus, Vehicle
from workers.executor import finish
from workers.runtime import Runtime

__all__ = ["OfflineCommands", "fail_offline", "fail_stranded"]

log = structlog.get_logger(__name__)

#: Back-off bounds (seconds) while Redis is away.
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.1, 5.0
#: How long one wait for a presence event lasts before the stop flag is checked again.
POLL_S = 0.5


def fail_offline(runtime: Runtime, vehicle_id: str, vin: str, reason: str) -> list[str]:
    """End every active command of the vehicle (each exactly once, whichever worker
    gets there first); return the ids found active."""
    active = cast(list[str], runtime.client.hkeys(runtime.keys.vehicle_active(vehicle_id)))
    message = f"Vehicle {vin} went offline ({reason}); the command was ended"
    ended = sorted(active)
    for command_id in ended:
        finish(runtime, command_id, CommandStatus.FAILED, message, "vehicle_offline")
    if ended:
        log.warning("offline_commands_ended", vehicle_id=vehicle_id, command_ids=ended)
    return ended


def fail_stranded(runtime: Runtime) -> int:
    """End the active commands of every vehicle that is offline now (a missed change)."""
    keys = runtime.keys
    ids = cast(list[str], runtime.client.zrange(keys.vehicles, 0, -1))
    with runtime.client.pipeline(transaction=False) as pipe:
        for vehicle_id in ids:
            pipe.hlen(keys.vehicle_active(vehicle_id))
        busy = [v for v, n in zip(ids, pipe.execute(), strict=True) if int(n)]
    ended = 0
    for vehicle_id in busy:
        raw = cast(str | None, runtime.client.get(keys.vehicle(vehicle_id)))
        if raw is None:
            continue
        vehicle = Vehicle.model_validate_json(raw)
        if vehicle.connection_status == ConnectionStatus.DISCONNECTED:
            ended += len(fail_offline(runtime, vehicle_id, vehicle.vin, "disconnected"))
    return ended


class OfflineCommands(dramatiq.Middleware):
    """The presence-following thread of one worker process (boot to shutdown)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set once the thread is subscribed (tests wait on it).
        self.subscribed = threading.Event()
        self._grace_s = runtime.settings.presence_offline_grace_s
        self._timers: set[threading.Timer] = set()
        self._timers_lock = threading.Lock()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sovd-offline", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        with self._timers_lock:
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.subscribed.clear()

    @property
    def pending_checks(self) -> int:
        """Grace checks not yet run."""
        with self._timers_lock:
            return len(self._timers)

    def handle(self, data: str) -> list[str]:
        """Act on one message of the presence channel."""
        try:
            change = PresenceChange.model_validate_json(data)
        except ValidationError:
            log.warning("presence_event_unreadable")
            return []
        if change.connection_status != ConnectionStatus.DISCONNECTED:
            return []
        if self._grace_s > 0 and change.reason != "clean_disconnect":
            self._later(change)
            return []
        return fail_offline(self._runtime, change.vehicle_id, change.vin, change.reason)

    def _later(self, change: PresenceChange) -> None:
        """End the vehicle's commands after the grace, if it is still offline then."""

        def check() -> None:
            with self._timers_lock:
                self._timers.discard(timer)
            try:
                raw = cast(str | None, self._runtime.client.get(
                    self._runtime.keys.vehicle(change.vehicle_id)))  # fmt: skip
                if raw is None:
                    return
                vehicle = Vehicle.model_validate_json(raw)
                if vehicle.connection_status == ConnectionStatus.DISCONNECTED:
                    fail_offline(self._runtime, change.vehicle_id, change.vin, change.reason)
            except Exception:  # Redis away: the next (re)subscription catches up
                log.exception("offline_grace_check_failed", vehicle_id=change.vehicle_id)

        timer = threading.Timer(self._grace_s, check)
        timer.daemon = True
        with self._timers_lock:
            self._timers.add(timer)
        timer.start()

    def _loop(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._stop.is_set():
            pubsub = self._runtime.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]  # untyped in redis-py
            try:
                pubsub.subscribe(self._runtime.keys.presence_events)
                fail_stranded(self._runtime)
                self.subscribed.set()
                delay = RECONNECT_MIN_S
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=POLL_S)
                    if message is not None and message["type"] == "message":
                        self.handle(str(message["data"]))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.subscribed.clear()
                log.warning("presence_follow_lost", error=repr(exc), retry_in_s=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
            except Exception:  # a bug must not end the thread silently
                self.subscribed.clear()
                log.exception("presence_follow_failed")
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
            finally:
                pubsub.close()
