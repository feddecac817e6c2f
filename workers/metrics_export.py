"""Dramatiq's Prometheus exporter, listening on loopback unless told otherwise.

Dramatiq's exporter binds ``dramatiq_prom_host``, ``0.0.0.0`` when unset: every worker
would serve unauthenticated metrics on every interface. Its HTTP server runs in a
process the dramatiq master forks (the middleware's ``forks``); this fork function
runs the same server with loopback as the default address.
"""

from __future__ import annotations

import os
from typing import Any

from dramatiq.middleware.prometheus import Prometheus

__all__ = ["DEFAULT_HOST", "LoopbackPrometheus", "run_exposition_server"]

#: Where worker metrics listen when ``dramatiq_prom_host`` is not set.
DEFAULT_HOST = "127.0.0.1"


def run_exposition_server() -> int:
    """The fork process: Dramatiq's exposition server on ``dramatiq_prom_host``, or on
    loopback when it is unset (Dramatiq read it, with its own default, at import)."""
    from dramatiq.middleware import prometheus

    # Dramatiq's own variable names are lowercase.
    prometheus.HTTP_HOST = os.environ.get("dramatiq_prom_host", DEFAULT_HOST)  # noqa: SIM112
    result: Any = prometheus._run_exposition_server()  # type: ignore[no-untyped-call]
    return int(result)


class LoopbackPrometheus(Prometheus):
    """Dramatiq's Prometheus middleware whose exposition server defaults to loopback."""

    @property
    def forks(self) -> list[Any]:
        return [run_exposition_server]
