"""Token lifetime on open connections: welcome with expiry, refresh, 4401; token sources."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import jwt
import pytest
from websockets.sync.client import connect

from common.settings import Settings
from realtime.websocket import BEARER_PREFIX, SUBPROTOCOL
from tests.component.realtime_support import (
    World,
    close_of,
    follow,
    open_ws,
    realtime_server,
    receive,
    with_settings,
)
from tests.support import ServerThread, timeout

#: A token's ``exp`` is in whole seconds, so it lives between SHORT_TTL_S - 1 and
#: SHORT_TTL_S: 2 leaves a busy machine at least a second to open the stream first.
SHORT_TTL_S = 2
GRACE_S = 0.2


@pytest.fixture
def short_lived(settings: Settings) -> Iterator[ServerThread]:
    """A server that closes connections 0.2 s after their token expires."""
    with realtime_server(with_settings(settings, ws_token_grace_s=GRACE_S)) as server:
        yield server


def _exp(token: str) -> int:
    return int(jwt.decode(token, options={"verify_signature": False})["exp"])


def test_the_first_event_tells_when_the_token_expires(server: ServerThread, world: World) -> None:
    alice = world.user("alice")
    token = world.token(alice)
    with open_ws(server, world.command(alice), token) as ws:
        welcome = receive(ws, 1)[0]
    assert set(welcome) == {"event", "connection_id", "expires_at"}
    assert welcome["event"] == "welcome"
    assert welcome["expires_at"].endswith("Z")
    assert datetime.fromisoformat(welcome["expires_at"]).timestamp() == _exp(token)
    assert len(welcome["connection_id"]) == 32


def test_without_a_refresh_the_connection_closes_with_4401_after_expiry(
    short_lived: ServerThread, world: World
) -> None:
    alice = world.user("alice")
    token = world.token(alice, access_token_ttl_s=SHORT_TTL_S)
    with follow(short_lived, world.command(alice), token) as ws:
        assert close_of(ws, timeout_s=SHORT_TTL_S + GRACE_S + 5) == (4401, "Token expired")


def test_a_refreshed_connection_outlives_its_first_token(
    short_lived: ServerThread, world: World
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    token = world.token(alice, access_token_ttl_s=SHORT_TTL_S)
    fresh = world.token(alice, access_token_ttl_s=3600)
    with (
        follow(short_lived, command_id, token) as refreshed,
        follow(short_lived, command_id, token) as twin,
    ):
        refreshed.send(json.dumps({"action": "refresh", "token": fresh}))
        answer = receive(refreshed, 1)[0]
        assert answer["event"] == "token_refreshed"
        assert datetime.fromisoformat(answer["expires_at"]).timestamp() == _exp(fresh)
        # The twin, on the same first token, shows when that token's time is up.
        assert close_of(twin, timeout_s=SHORT_TTL_S + GRACE_S + 5)[0] == 4401
        refreshed.send(json.dumps({"action": "ping"}))
        assert receive(refreshed, 1) == [{"event": "pong"}]


def test_a_refresh_with_a_bad_token_or_another_users_token_is_refused(
    server: ServerThread, world: World
) -> None:
    alice, bob = world.user("alice"), world.user("bob")
    with follow(server, world.command(alice), world.token(alice)) as ws:
        for token, message in (
            ("garbage", "Refresh refused: Invalid token"),
            (world.token(bob), "Refresh refused: the token is for another user"),
        ):
            ws.send(json.dumps({"action": "refresh", "token": token}))
            refused = receive(ws, 1)[0]
            assert (refused["event"], refused["error_code"], refused["error_message"]) == (
                "error",
                "invalid_token",
                message,
            )
        ws.send(json.dumps({"action": "refresh"}))
        assert receive(ws, 1)[0]["error_message"] == "refresh needs token"
        ws.send(json.dumps({"action": "ping"}))
        assert receive(ws, 1) == [{"event": "pong"}]


def test_the_token_may_come_in_the_subprotocol_header_instead_of_the_url(
    server: ServerThread, world: World
) -> None:
    alice = world.user("alice")
    url = f"{server.ws_base}/ws/responses/{world.command(alice)}"
    with connect(
        url,
        subprotocols=[SUBPROTOCOL, f"{BEARER_PREFIX}{world.token(alice)}"],  # type: ignore[list-item]
        open_timeout=timeout(5),
    ) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        assert receive(ws, 1)[0]["event"] == "welcome"
    with connect(url, subprotocols=[SUBPROTOCOL], open_timeout=timeout(5)) as ws:  # type: ignore[list-item]
        assert close_of(ws) == (1008, "Missing token")
