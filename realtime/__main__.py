"""Realtime entry point: ``python -m realtime``."""

from __future__ import annotations

import uvicorn

from common.logging import configure_logging
from common.redis_client import wait_for_redis
from common.settings import get_settings
from realtime.app import create_app
from realtime.server import RealtimeServer, uvicorn_options


def main() -> None:
    settings = get_settings()
    configure_logging(settings, "realtime")
    wait_for_redis(settings.effective_redis_url)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.realtime_host,
        port=settings.realtime_port,
        log_config=None,
        **uvicorn_options(settings),
    )
    RealtimeServer(config).run()


if __name__ == "__main__":
    main()
