"""Mapping errors to HTTP responses, in one place."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.errors import AppError, AuthError

__all__ = ["install_error_handlers"]

log = structlog.get_logger(__name__)


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
    body = {"detail": exc.message, **jsonable_encoder(exc.details)}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


async def _redis_down(_request: Request, exc: Exception) -> JSONResponse:
    log.error("redis_unavailable", error=str(exc))
    return JSONResponse(
        {"detail": "Storage temporarily unavailable; try again shortly"},
        status_code=503,
        headers={"Retry-After": "2"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(RedisTimeoutError, _redis_down)
