"""A logout or a deactivation takes effect on every api process within a second."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from common.keys import Keys
from common.redis_client import async_client
from common.users import UserStore
from tests.conftest import TEST_JWT_SECRET
from tests.support import ROOT, Stack, free_port, running_stack, timeout, wait_for

pytestmark = pytest.mark.e2e

#: The guarantee: a change reaches every api process within this many seconds.
PROPAGATION_S = 1.0


@pytest.fixture
def two_apis(redis_url: str, tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    with running_stack(redis_url, tmp_path, jwt_secret=TEST_JWT_SECRET) as stack:
        port = free_port()
        env = {
            **stack.env, "SOVD_API_PORT": str(port), "SOVD_API_METRICS_PORT": str(free_port()),
            "SOVD_SEED_DEMO": "false",
        }  # fmt: skip
        with (tmp_path / "api-2.log").open("wb") as out:
            second = subprocess.Popen(
                [sys.executable, "-m", "api"], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _ready(url), timeout_s=30, what="the second api")
            yield stack, url
        finally:
            second.terminate()
            second.wait(timeout=timeout(10))


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _login(url: str, username: str) -> dict[str, str]:
    body = {"username": username, "password": f"{username}-demo-pass"}
    response = httpx.post(f"{url}/api/v1/auth/login", json=body)
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _me(url: str, headers: dict[str, str]) -> int:
    return httpx.get(f"{url}/api/v1/auth/me", headers=headers).status_code


def test_a_logout_on_one_api_process_refuses_the_token_on_the_other_within_a_second(
    two_apis: tuple[Stack, str],
) -> None:
    stack, other = two_apis
    headers = _login(stack.api_url, "engineer")
    assert [_me(url, headers) for url in (stack.api_url, other)] == [200, 200]  # both remember
    assert httpx.post(f"{stack.api_url}/api/v1/auth/logout", headers=headers).status_code == 204
    assert _me(stack.api_url, headers) == 401  # the process that revoked: at once
    wait_for(lambda: _me(other, headers) == 401, timeout_s=PROPAGATION_S, interval_s=0.02,
             what="the other api process to refuse the token")  # fmt: skip


def test_a_deactivation_refuses_the_user_on_every_api_process_within_a_second(
    two_apis: tuple[Stack, str],
) -> None:
    stack, other = two_apis
    headers = _login(stack.api_url, "engineer")
    assert [_me(url, headers) for url in (stack.api_url, other)] == [200, 200]

    async def deactivate() -> None:
        client = async_client(stack.settings.effective_redis_url)
        try:
            await UserStore(client, Keys(stack.settings.key_prefix)).set_active("engineer", False)
        finally:
            await client.aclose()

    asyncio.run(deactivate())
    for url in (stack.api_url, other):
        wait_for(lambda url=url: _me(url, headers) == 401, timeout_s=PROPAGATION_S,
                 interval_s=0.02, what=f"{url} to refuse the deactivated user")  # fmt: skip
