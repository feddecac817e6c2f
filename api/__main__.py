"""API entry point: ``python -m api``."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from common.logging import configure_logging
from common.redis_client import wait_for_redis
from common.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging(settings, "api")
    wait_for_redis(settings.effective_redis_url)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        proxy_headers=True,
        ws="none",
    )


if __name__ == "__main__":
    main()
