"""Running the api: one uvicorn server with its public listener and a loopback metrics one.

The api port serves clients. ``SOVD_API_METRICS_PORT`` (bound to
``SOVD_API_METRICS_HOST``, loopback by default) serves only ``/metrics``, for a
Prometheus on the same host or network namespace; 0 turns that listener off.
Forwarded headers are applied by the app from ``SOVD_TRUSTED_PROXIES`` (``api.app``),
so uvicorn's own handling, which trusts loopback by default, stays off.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from common.settings import Settings

__all__ = ["listeners", "uvicorn_config"]


def uvicorn_config(settings: Settings, app: FastAPI | str, *, workers: int = 1) -> uvicorn.Config:
    """The server's configuration; the sockets come from ``listeners``. ``app`` is the
    app, or (``workers`` > 1) the import path of a factory each process calls."""
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        workers=workers,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,  # the app's own line (SOVD_ACCESS_LOG), without query strings
        proxy_headers=False,  # the app decides which peers may forward (trusted_proxies)
        ws="none",
        loop="uvloop",
        http="httptools",
        # Without a bound uvicorn waits for every request in flight, however long.
        timeout_graceful_shutdown=settings.api_shutdown_timeout_s,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def listeners(settings: Settings) -> list[socket.socket]:
    """The bound sockets: the api's, then the metrics one when its port is not 0."""
    sockets = [_bind(settings.api_host, settings.api_port)]
    if settings.api_metrics_port:
        try:
            sockets.append(_bind(settings.api_metrics_host, settings.api_metrics_port))
        except OSError:
            sockets[0].close()
            raise
    return sockets
