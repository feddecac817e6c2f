"""Serving the realtime app with uvicorn: options from settings, and a draining shutdown.

Uvicorn's own shutdown closes every WebSocket at once with 1012. ``RealtimeServer``
first stops listening, then has the app close each client with 1001 "going away"
once its queue is sent (at most ``SOVD_WS_SHUTDOWN_DRAIN_S``), then shuts down as usual.
"""

from __future__ import annotations

import resource
import socket
from typing import Any

import uvicorn

from common.settings import Settings
from realtime.app import go_away
from realtime.http_guard import guarded_protocol
from realtime.websocket import CLOSE_TIMEOUT_S
from realtime.ws_protocol import LeanWebSocketProtocol

__all__ = ["RealtimeServer", "raise_fd_limit", "uvicorn_options"]


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's descriptor limit to its hard limit (each socket is one); a
    process may not go past the hard limit without CAP_SYS_RESOURCE. Returns both."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, hard
        soft = target
    return soft, hard


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings the realtime process runs with (tests use the same)."""
    return {
        "http": guarded_protocol(
            max_head_bytes=settings.ws_max_request_head_bytes,
            timeout_s=settings.ws_handshake_timeout_s,
        ),
        # X-Forwarded-For is believed only from the configured proxies (none by default).
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": ",".join(settings.trusted_proxies),
        "ws": LeanWebSocketProtocol,
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_per_message_deflate": settings.ws_per_message_deflate,
        "ws_ping_interval": settings.ws_ping_interval_s,
        "ws_ping_timeout": settings.ws_ping_timeout_s,
        # After the drain: give up on clients that do not take their close frame.
        "timeout_graceful_shutdown": settings.ws_shutdown_drain_s + 2 * CLOSE_TIMEOUT_S,
    }


class RealtimeServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting before the drain
        await go_away(self.config.app)
        await super().shutdown(sockets)
