"""Holes found by attacking the api: each test states what an attacker tried and what stops it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2 as httpx
import pytest

from api.app import create_app
from common.settings import Settings
from tests.component.conftest import PASSWORDS
from tests.support import ServerThread, timeout


@pytest.fixture
def served(settings: Settings) -> Iterator[ServerThread]:
    """The api on a real uvicorn (HTTP/1.1, chunked bodies as a client sends them)."""
    server = ServerThread(create_app(settings))
    server.start()
    yield server
    server.stop()


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/commands"])
def test_a_chunked_10_mb_body_is_413_not_400(served: ServerThread, path: str) -> None:
    response = httpx.post(
        f"{served.http_base}{path}",
        content=_chunks(10 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
        timeout=timeout(30),
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_chunked_body_under_the_limit_still_reaches_the_route(served: ServerThread) -> None:
    body = b'{"username": "engineer", "password": "%s"}' % PASSWORDS["engineer"].encode()
    response = httpx.post(
        f"{served.http_base}/api/v1/auth/login",
        content=iter([body[:10], body[10:]]),
        headers={"Content-Type": "application/json"},
        timeout=timeout(10),
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"
