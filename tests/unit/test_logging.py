"""Redaction of credentials, and the JSON pipeline that stdlib loggers go through."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from common.logging import configure_logging, redact
from common.settings import Settings

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXBhcnQ_-x"


def test_a_token_query_value_in_a_url_is_masked() -> None:
    line = f"GET /ws?token={JWT}&since=3 HTTP/1.1"

    assert redact(line) == "GET /ws?token=[REDACTED]&since=3 HTTP/1.1"


def test_a_token_query_value_is_masked_whatever_its_shape() -> None:
    assert redact("wss://rt.example.com/ws?Token=opaque-value") == (
        "wss://rt.example.com/ws?Token=[REDACTED]"
    )


def test_a_bearer_credential_is_masked() -> None:
    assert redact("Authorization: Bearer abc.def.ghi") == "Authorization: Bearer [REDACTED]"


def test_a_bare_jwt_is_masked() -> None:
    assert redact(f"refresh failed for {JWT} today") == "refresh failed for [REDACTED-JWT] today"


@pytest.mark.parametrize(
    "text",
    [
        "command 42 completed in 0.31s",
        "vehicle WVWZZZ1KZMW123456 connected",
        "tokens issued: 3",
        "",
    ],
)
def test_normal_text_is_unchanged(text: str) -> None:
    assert redact(text) == text


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back the logging and structlog state that ``configure_logging`` replaces."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "dramatiq")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in names}
    saved_structlog = structlog.get_config()
    yield
    root.handlers[:], level = saved_root
    root.setLevel(level)
    for name, (handlers, propagate) in saved.items():
        lib_logger = logging.getLogger(name)
        lib_logger.handlers[:] = handlers
        lib_logger.propagate = propagate
    structlog.configure(**saved_structlog)


def _json_settings() -> Settings:
    return Settings(_env_file=None, jwt_secret="x" * 40, log_format="json", log_level="INFO")


@pytest.mark.usefixtures("restore_logging")
def test_a_stdlib_logger_line_is_json_without_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(_json_settings(), "realtime")

    logging.getLogger("uvicorn.error").info(
        "connection open %s", f"ws://127.0.0.1:8001/ws?token={JWT}"
    )

    err = capsys.readouterr().err
    assert JWT not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "connection open ws://127.0.0.1:8001/ws?token=[REDACTED]"
    assert record["logger"] == "uvicorn.error"
    assert record["level"] == "info"
    assert record["process"] == "realtime"


@pytest.mark.usefixtures("restore_logging")
def test_a_structlog_line_masks_tokens_in_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(_json_settings(), "api")

    structlog.get_logger("api.test").info(
        "token_refreshed", header=f"Bearer {JWT}", url=f"/ws?token={JWT}"
    )

    err = capsys.readouterr().err
    assert JWT not in err
    record = json.loads(err.strip())
    assert record["event"] == "token_refreshed"
    assert record["header"] == "Bearer [REDACTED]"
    assert record["url"] == "/ws?token=[REDACTED]"
    assert record["process"] == "api"


def test_tokens_nested_in_structured_fields_are_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from common.logging import _redact_processor

    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    event = {"event": "x", "request": {"headers": {"authorization": f"Bearer {token}"}},
             "urls": [f"/ws?token={token}"]}  # fmt: skip
    cleaned = _redact_processor(None, "info", event)
    assert token not in str(cleaned)
    assert cleaned["urls"] == ["/ws?token=[REDACTED]"]
