"""Worker entry point: ``dramatiq workers.main:setup --skip-logging``.

Builds the broker from settings and installs it before any actor is declared.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

import dramatiq
from dramatiq.middleware import CurrentMessage

from common.broker import build_broker
from common.logging import configure_logging
from common.redis_client import wait_for_redis
from common.settings import get_settings
from workers import runtime
from workers.actors import declare_actors
from workers.background import BackgroundDuties
from workers.middleware import LogContext

__all__ = ["setup"]

#: A second SIGTERM within this window belongs to the same shutdown.
DUPLICATE_SIGNAL_WINDOW_S = 1.0


def _absorb_duplicate_sigterm() -> None:
    """Keep one shutdown request from reading as two.

    honcho (and ``kill`` of a process group) sends SIGTERM to the dramatiq master *and*
    its worker processes; the master then forwards its own copy, and Dramatiq treats a
    second SIGTERM as "kill now", dropping in-flight commands. Within a short window the
    repeat is ignored, so the worker drains gracefully; a later SIGTERM still kills.
    """
    original = signal.getsignal(signal.SIGTERM)
    if not callable(original):
        return
    first: float | None = None

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal first
        now = time.monotonic()
        if first is not None and now - first < DUPLICATE_SIGNAL_WINDOW_S:
            return
        first = first if first is not None else now
        original(signum, frame)

    signal.signal(signal.SIGTERM, handler)


def setup() -> None:
    """Called by the dramatiq CLI in each worker process."""
    if threading.current_thread() is threading.main_thread():
        _absorb_duplicate_sigterm()
    settings = get_settings()
    configure_logging(settings, "worker")
    wait_for_redis(settings.effective_redis_url)
    broker = build_broker(settings)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(LogContext())
    if settings.worker_metrics:
        # Dramatiq's exporter: port and data folder from dramatiq_prom_port / dramatiq_prom_db.
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    dramatiq.set_broker(broker)
    worker_runtime = runtime.build_runtime(settings)
    runtime.configure(worker_runtime)
    declare_actors(broker, worker_runtime.policies)
    BackgroundDuties(worker_runtime, broker).start()
