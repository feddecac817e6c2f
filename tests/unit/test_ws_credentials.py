"""Where a WebSocket client's token comes from: the query string or a subprotocol."""

from __future__ import annotations

from common.protocol import BEARER_PREFIX, SUBPROTOCOL
from realtime.websocket import credentials


def test_the_query_token_wins_over_a_subprotocol_token() -> None:
    assert credentials("q", [SUBPROTOCOL, f"{BEARER_PREFIX}s"]) == ("q", SUBPROTOCOL)


def test_a_token_can_come_in_the_subprotocol_list() -> None:
    assert credentials(None, [f"{BEARER_PREFIX}abc.def", SUBPROTOCOL]) == ("abc.def", SUBPROTOCOL)


def test_no_token_and_no_known_subprotocol() -> None:
    assert credentials(None, ["chat"]) == (None, None)
    assert credentials("", [BEARER_PREFIX]) == (None, None)
