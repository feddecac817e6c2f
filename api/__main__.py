"""API entry point: ``python -m api``."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from api.server import listeners, uvicorn_config
from common.logging import configure_logging
from common.redis_client import wait_for_redis
from common.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging(settings, "api")
    wait_for_redis(settings.effective_redis_url)
    server = uvicorn.Server(uvicorn_config(settings, create_app(settings)))
    server.run(sockets=listeners(settings))


if __name__ == "__main__":
    main()
