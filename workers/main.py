"""Worker entry point: ``dramatiq workers.main:setup --skip-logging``.

Builds the worker from settings (``workers.build.build_worker``); the actors are
declared on that broker, which is then installed as Dramatiq's global one.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

import dramatiq

from common.logging import configure_logging
from common.redis_client import wait_for_redis
from common.settings import get_settings
from workers.build import build_worker

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
    parts = build_worker(settings)
    dramatiq.set_broker(parts.broker)
