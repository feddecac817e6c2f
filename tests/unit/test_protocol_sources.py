"""The protocol's constants have one source: no client keeps a copy that could drift."""

from __future__ import annotations

import json
import re
from pathlib import Path

from common.protocol import TOKEN_EXPIRED_REASON, CloseCode, protocol_js

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_JS = sorted((ROOT / "api" / "static" / "js").rglob("*.js"))
CLI = sorted((ROOT / "cli").glob("*.py"))
_CODE = r"(?:10(?:0[0-9]|1[0-5])|4[0-9]{3})"
#: A close code written as a number where a rule is made: compared with, collected in a
#: set, or used as a key (``code === 4401``, ``new Set([1001``, ``{4410: ...}``).
CLOSE_CODE_LITERAL = re.compile(
    rf"code\w*\s*(?:===?|!==?|>=?|<=?|\bin\b)\s*[(\[{{]?\s*{_CODE}\b"
    rf"|(?:Set|frozenset)\(\s*[\[{{]\s*{_CODE}\b"
    rf"|[\[{{,]\s*{_CODE}\s*[:\]]"
)
TERMINAL_LIST = re.compile(r"""["']completed["']\s*,\s*["']failed["']""")


def test_the_console_and_the_cli_hold_no_close_code_or_terminal_status_of_their_own() -> None:
    offenders = []
    for path in [*CONSOLE_JS, *CLI]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith(("//", "#", "*", "/*")):
                continue
            if CLOSE_CODE_LITERAL.search(line) or TERMINAL_LIST.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_console_stream_takes_its_rule_from_the_generated_module() -> None:
    stream = (ROOT / "api" / "static" / "js" / "stream.js").read_text()
    assert 'from "./protocol.js"' in stream
    assert "function shouldReconnect" not in stream
    assert "needsNewToken(code, reason)" in stream  # the refresh rule too
    assert "expired/" not in stream  # no pattern of its own for the expired-token reason


def test_the_generated_module_carries_the_refresh_rule() -> None:
    module = protocol_js()
    assert f"TOKEN_EXPIRED_REASON = {json.dumps(TOKEN_EXPIRED_REASON)}" in module
    assert "export function needsNewToken(code, reason)" in module


def test_the_generated_module_names_every_close_code() -> None:
    module = protocol_js()
    for code in CloseCode:
        assert f'"{code.name}": {int(code)}' in module


def test_every_close_code_is_documented() -> None:
    protocol_doc = (ROOT / "docs" / "protocol.md").read_text()
    missing = [int(code) for code in CloseCode if f"`{int(code)}`" not in protocol_doc]
    assert missing == []
