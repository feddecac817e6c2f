"""Realtime entry point: ``python -m realtime``."""

from __future__ import annotations

import uvicorn

from common.logging import configure_logging
from common.redis_client import wait_for_redis
from common.settings import get_settings
from realtime.app import create_app

#: Largest client message accepted, in bytes (client messages are small JSON actions).
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024


def main() -> None:
    settings = get_settings()
    configure_logging(settings, "realtime")
    wait_for_redis(settings.effective_redis_url)
    uvicorn.run(
        create_app(settings),
        host=settings.realtime_host,
        port=settings.realtime_port,
        log_config=None,
        proxy_headers=True,
        ws="websockets-sansio",
        ws_max_size=MAX_CLIENT_MESSAGE_BYTES,
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
    )


if __name__ == "__main__":
    main()
