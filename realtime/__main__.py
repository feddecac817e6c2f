"""Realtime entry point: ``python -m realtime``."""

from __future__ import annotations

import structlog
import uvicorn

from common.logging import configure_logging
from common.redis_client import wait_for_redis
from common.settings import get_settings
from realtime.app import create_app
from realtime.server import RealtimeServer, raise_fd_limit, uvicorn_options

log = structlog.get_logger(__name__)


def main() -> None:
    settings = get_settings()
    configure_logging(settings, "realtime")
    soft, hard = raise_fd_limit()
    log.info("realtime_fd_limit", soft=soft, hard=hard)
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
