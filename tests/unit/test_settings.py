"""Settings validation and derived values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from common.settings import DEFAULT_EMBEDDED_REDIS_PORT, DEFAULT_JWT_SECRET, Settings

PRIVATE_SECRET = "a-private-secret-of-forty-characters-xyz"


def _settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **overrides)


def test_production_with_the_default_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="SOVD_JWT_SECRET must be set"):
        _settings(env="production", jwt_secret=DEFAULT_JWT_SECRET)


def test_production_with_a_private_secret_is_accepted() -> None:
    settings = _settings(env="production", jwt_secret=PRIVATE_SECRET)

    assert settings.env == "production"


def test_dev_accepts_the_default_secret() -> None:
    assert _settings(env="dev", jwt_secret=DEFAULT_JWT_SECRET).jwt_secret == DEFAULT_JWT_SECRET


@pytest.mark.parametrize("env", ["dev", "production"])
def test_a_secret_shorter_than_32_characters_is_refused(env: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        _settings(env=env, jwt_secret="x" * 31)


def test_a_secret_of_exactly_32_characters_is_accepted() -> None:
    assert _settings(jwt_secret="x" * 32).jwt_secret == "x" * 32


def test_effective_redis_url_uses_the_embedded_port_when_no_url_is_set() -> None:
    settings = _settings(redis_url=None, embedded_redis_port=6501, jwt_secret=PRIVATE_SECRET)

    assert settings.effective_redis_url == "redis://127.0.0.1:6501/0"


def test_effective_redis_url_defaults_to_the_embedded_default_port() -> None:
    settings = _settings(redis_url=None, jwt_secret=PRIVATE_SECRET)

    assert DEFAULT_EMBEDDED_REDIS_PORT == 6390
    assert settings.effective_redis_url == "redis://127.0.0.1:6390/0"


def test_effective_redis_url_is_the_configured_url_when_set() -> None:
    settings = _settings(redis_url="redis://cache.internal:6379/2", jwt_secret=PRIVATE_SECRET)

    assert settings.effective_redis_url == "redis://cache.internal:6379/2"


def test_effective_realtime_url_strips_a_trailing_slash() -> None:
    settings = _settings(public_realtime_url="wss://rt.example.com/ws/", jwt_secret=PRIVATE_SECRET)

    assert settings.effective_realtime_url == "wss://rt.example.com/ws"


def test_effective_realtime_url_is_derived_from_host_and_port_when_not_set() -> None:
    settings = _settings(
        public_realtime_url="",
        realtime_host="0.0.0.0",
        realtime_port=9001,
        jwt_secret=PRIVATE_SECRET,
    )

    assert settings.effective_realtime_url == "ws://0.0.0.0:9001"


def test_settings_are_frozen() -> None:
    settings = _settings(jwt_secret=PRIVATE_SECRET)

    with pytest.raises(ValidationError):
        settings.env = "production"


def test_a_key_prefix_with_a_colon_is_refused() -> None:
    with pytest.raises(ValidationError):
        _settings(key_prefix="bad:prefix", jwt_secret=PRIVATE_SECRET)


def test_the_realtime_process_believes_forwarded_headers_only_from_trusted_proxies() -> None:
    from realtime.server import uvicorn_options

    assert uvicorn_options(Settings(_env_file=None))["proxy_headers"] is False
    behind_edge = uvicorn_options(Settings(_env_file=None, trusted_proxies="10.0.0.5"))
    assert (behind_edge["proxy_headers"], behind_edge["forwarded_allow_ips"]) == (True, "10.0.0.5")


def test_a_grpc_client_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(
        ValidationError, match="SOVD_GRPC_CLIENT_CERT_FILE and SOVD_GRPC_CLIENT_KEY_FILE"
    ):
        Settings(_env_file=None, grpc_client_cert_file=Path("worker.pem"))


def test_the_connector_is_the_simulator_unless_grpc_is_named() -> None:
    assert Settings(_env_file=None).connector == "simulator"
    assert Settings(_env_file=None, connector="grpc").connector == "grpc"
    with pytest.raises(ValidationError):
        Settings(_env_file=None, connector="carrier-pigeon")


def test_every_grpc_setting_has_a_readme_row() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    names = [f"SOVD_{name.upper()}" for name in Settings.model_fields if name.startswith("grpc_")]
    assert names
    assert [n for n in names if f"`{n}`" not in readme] == []
