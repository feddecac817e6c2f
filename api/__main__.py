"""API entry point: ``python -m api``.

With ``SOVD_API_PROCESSES`` above 1 the sockets are bound here once and served by that
many processes (uvicorn's own supervisor: it restarts a process that dies and passes
SIGTERM on); each process builds its own app, clients and caches from the environment
(``app_in_process``). Otherwise this process serves them itself.
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from api.app import create_app
from api.server import listeners, uvicorn_config
from common.logging import configure_logging
from common.redis_client import wait_for_redis
from common.settings import get_settings


def app_in_process() -> FastAPI:
    """The app of one of several api processes (an entry point: it reads the environment)."""
    settings = get_settings()
    configure_logging(settings, "api")
    return create_app(settings)


def main() -> None:
    settings = get_settings()
    configure_logging(settings, "api")
    wait_for_redis(settings.effective_redis_url)
    sockets = listeners(settings)
    if settings.api_processes > 1:
        config = uvicorn_config(
            settings, "api.__main__:app_in_process", workers=settings.api_processes
        )
        Multiprocess(config, sockets=sockets).run()
        return
    server = uvicorn.Server(uvicorn_config(settings, create_app(settings)))
    server.run(sockets=sockets)


if __name__ == "__main__":
    main()
