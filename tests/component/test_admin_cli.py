"""``sovd-admin``: users created from the command line can log in."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from common import admin
from common.settings import Settings, get_settings
from tests.component.conftest import login


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI reads its settings from the environment, like every entry point."""
    monkeypatch.setenv("SOVD_REDIS_URL", settings.effective_redis_url)
    monkeypatch.setenv("SOVD_KEY_PREFIX", settings.key_prefix)
    monkeypatch.setenv("SOVD_JWT_SECRET", settings.jwt_secret)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_create_user_reads_the_password_from_stdin_and_the_user_can_log_in(
    cli_env: None,
    api: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-password\n"))
    code = admin.main(["create-user", "carol", "--role", "admin", "--password-stdin"])
    assert code == 0
    assert capsys.readouterr().out.startswith("created carol (admin) user_id=")
    me = api.get("/api/v1/auth/me", headers=login(api, "carol", "s3cret-password")).json()
    assert (me["username"], me["role"]) == ("carol", "admin")


def test_create_user_refuses_a_duplicate_and_a_short_password(
    cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-1\n"))
    assert admin.main(["create-user", "dave", "--role", "viewer", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-2\n"))
    assert admin.main(["create-user", "dave", "--role", "viewer", "--password-stdin"]) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert admin.main(["create-user", "erin", "--role", "viewer", "--password-stdin"]) == 2


def test_seed_demo_is_refused_outside_dev(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SOVD_ENV", "production")
    get_settings.cache_clear()
    assert admin.main(["seed-demo"]) == 2
    assert "only with SOVD_ENV=dev" in capsys.readouterr().err
