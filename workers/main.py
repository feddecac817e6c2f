"""Worker entry point: ``dramatiq workers.main:setup --skip-logging``.

Builds the broker from settings and installs it before any actor is declared.
"""

from __future__ import annotations

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


def setup() -> None:
    """Called by the dramatiq CLI in each worker process."""
    settings = get_settings()
    configure_logging(settings, "worker")
    wait_for_redis(settings.effective_redis_url)
    broker = build_broker(settings)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(LogContext())
    dramatiq.set_broker(broker)
    worker_runtime = runtime.build_runtime(settings)
    runtime.configure(worker_runtime)
    declare_actors(broker, worker_runtime.policies)
    BackgroundDuties(worker_runtime, broker).start()
