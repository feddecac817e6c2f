"""Fixtures: a private Redis, isolated settings per test, and real clients."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator

import pytest
import redis
import structlog

from common.keys import Keys
from common.settings import Settings
from tests.support import RedisServer

TEST_JWT_SECRET = "test-secret-that-is-long-enough-0123456789abcdef"

# Code run in the test process (an api under TestClient, its background tasks) logs
# through structlog without ``configure_logging``; structlog's default prints to standard
# output, where a line could land in the middle of what a command-line test reads. Send
# it to standard error, as every configured process does.
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``SOVD_TEST_REDIS_URL`` if set, else a private Valkey server for this session.

    Tests never flush: each test writes under its own key prefix.
    """
    configured = os.environ.get("SOVD_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def key_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> Settings:
    return Settings(
        _env_file=None,
        env="dev",
        redis_url=redis_url,
        key_prefix=key_prefix,
        jwt_secret=TEST_JWT_SECRET,
        sim_delay_scale=0.0,
        seed_demo=True,
        log_format="json",
        realtime_port=8001,
    )


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


@pytest.fixture
def sync_redis(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.effective_redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
