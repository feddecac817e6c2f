"""One worker, built from settings: broker, runtime, actors and background duties."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from common.broker import WakingRedisBroker, build_broker
from common.settings import Settings
from workers.actors import declare_actors
from workers.background import BackgroundDuties
from workers.connector import VehicleConnector
from workers.middleware import LogContext
from workers.offline import OfflineCommands
from workers.runtime import Runtime, build_runtime

__all__ = ["WorkerParts", "build_worker"]


@dataclass(frozen=True, slots=True)
class WorkerParts:
    """What ``build_worker`` assembled; ``close`` releases the connections."""

    broker: WakingRedisBroker
    runtime: Runtime
    actors: dict[str, dramatiq.Actor[Any, None]]
    duties: BackgroundDuties
    offline: OfflineCommands

    def close(self) -> None:
        self.broker.close()
        self.runtime.close()


def build_worker(settings: Settings, *, connector: VehicleConnector | None = None) -> WorkerParts:
    """The broker with every middleware (Dramatiq's defaults, the current message, log
    context, background duties, the offline-commands follower, Prometheus when enabled),
    the runtime and the actors declared on that broker. The worker entry point and the
    tests both use it; a ``dramatiq.Worker(parts.broker, ...)`` then runs it."""
    broker = build_broker(settings)
    runtime = build_runtime(settings, connector=connector)
    duties = BackgroundDuties(runtime)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(LogContext())
    broker.add_middleware(duties)
    offline = OfflineCommands(runtime)
    broker.add_middleware(offline)
    if settings.worker_metrics:
        # Dramatiq's exporter: port and data folder from dramatiq_prom_port / dramatiq_prom_db,
        # address from dramatiq_prom_host (loopback when unset: workers/metrics_export.py).
        from workers.metrics_export import LoopbackPrometheus

        broker.add_middleware(LoopbackPrometheus())
    actors = declare_actors(broker, runtime)
    return WorkerParts(
        broker=broker, runtime=runtime, actors=actors, duties=duties, offline=offline
    )
