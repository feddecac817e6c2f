"""Property-based run of every API operation from its own OpenAPI document (schemathesis).

Authenticated as an admin against a real uvicorn and Redis: no response may be a 5xx,
every status code must be one the document lists for the operation, and every
response must match the content type and schema the document gives for that status.
A new mismatch between the code and its document fails this test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from common.settings import Settings
from tests.support import ServerThread


@pytest.fixture(scope="module")
def served(redis_url: str) -> Iterator[tuple[ServerThread, str]]:
    fuzz_settings = Settings(
        _env_file=None,
        redis_url=redis_url,
        key_prefix="fuzz-api",
        jwt_secret="fuzz-secret-that-is-long-enough-0123456789",
        login_rate_per_minute=100_000,
        login_rate_per_username_per_minute=100_000,
        submit_rate_per_minute=100_000,
    )
    server = ServerThread(create_app(fuzz_settings))
    server.start()
    yield server, _admin_token(server)
    server.stop()


def _admin_token(server: ServerThread) -> str:
    response = httpx.post(
        f"{server.http_base}/api/v1/auth/login",
        json={"username": "admin", "password": "admin-demo-pass"},
    )
    token: str = response.json()["access_token"]
    return token


# The document does not depend on the settings' values, only on the app's routes.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(_env_file=None, jwt_secret="schema-only-" + "x" * 32)).openapi()
)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_operation_answers_5xx_or_breaks_its_documented_schema(
    case: Any, served: tuple[ServerThread, str]
) -> None:
    server, token = served
    if case.operation.path == "/api/v1/auth/logout":
        token = _admin_token(server)  # logging out revokes it: keep the shared one alive
    response = case.call(base_url=server.http_base, headers={"Authorization": f"Bearer {token}"})
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
