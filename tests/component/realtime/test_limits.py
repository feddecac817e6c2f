"""Limits with clear errors: subscriptions, connections per user, message size and rate;
protocol pings and per-message compression."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time

from websockets.asyncio.client import connect as asyncio_connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from common.settings import Settings
from common.users import Role
from tests.component.realtime_support import (
    World,
    close_of,
    follow,
    open_ws,
    realtime_server,
    receive,
    service_of,
    with_settings,
    ws_url,
)
from tests.support import ServerThread, timeout, wait_for


def test_a_subscription_past_the_limit_gets_an_error_and_the_connection_stays(
    settings: Settings, world: World
) -> None:
    alice = world.user("alice")
    first, second, third = (world.command(alice) for _ in range(3))
    with (
        realtime_server(with_settings(settings, ws_max_subscriptions=2)) as server,
        follow(server, first, world.token(alice)) as ws,
    ):
        ws.send(json.dumps({"action": "subscribe", "command_id": second}))
        assert receive(ws, 1)[0]["event"] == "subscribed"
        ws.send(json.dumps({"action": "subscribe", "command_id": third}))
        refused = receive(ws, 1)[0]
        assert (refused["event"], refused["error_code"], refused["command_id"]) == (
            "error",
            "too_many_subscriptions",
            third,
        )
        assert refused["error_message"] == "At most 2 subscriptions per connection"
        ws.send(json.dumps({"action": "unsubscribe", "command_id": second}))
        assert receive(ws, 1)[0]["event"] == "unsubscribed"
        ws.send(json.dumps({"action": "subscribe", "command_id": third}))
        assert receive(ws, 1)[0]["event"] == "subscribed"


def test_a_connection_past_the_per_user_limit_closes_with_4429(
    settings: Settings, world: World
) -> None:
    alice, bob = world.user("alice"), world.user("bob", active=True)
    command_id = world.command(alice)
    bobs = world.command(bob)
    with realtime_server(with_settings(settings, ws_max_connections_per_user=2)) as server:
        service = service_of(server)
        with (
            follow(server, command_id, world.token(alice)),
            follow(server, command_id, world.token(alice)),
        ):
            with open_ws(server, command_id, world.token(alice)) as third:
                assert close_of(third) == (4429, "Too many connections for this user")
            with follow(server, bobs, world.token(bob)):  # another user is not affected
                pass
        wait_for(lambda: not service.connections, what="the connections to close")
        with follow(server, command_id, world.token(alice)):
            pass


def test_a_message_over_the_size_limit_closes_with_1009(settings: Settings, world: World) -> None:
    alice = world.user("alice")
    with (
        realtime_server(with_settings(settings, ws_max_message_bytes=1024)) as server,
        follow(server, world.command(alice), world.token(alice)) as ws,
    ):
        ws.send(json.dumps({"action": "ping"}) + " " * 900)
        assert receive(ws, 1) == [{"event": "pong"}]
        ws.send(json.dumps({"action": "ping"}) + " " * 2000)
        assert close_of(ws)[0] == 1009


def test_a_few_bad_messages_get_errors_but_a_flood_closes_with_4029(
    settings: Settings, world: World
) -> None:
    alice = world.user("alice")
    limited = with_settings(settings, ws_client_rate_per_s=1.0, ws_client_burst=12)
    with (
        realtime_server(limited) as server,
        follow(server, world.command(alice), world.token(alice)) as ws,
    ):
        for bad in ("nope", "{}", json.dumps({"action": "dance"}), b"\x00binary"):
            ws.send(bad)
            assert receive(ws, 1)[0]["error_code"] == "invalid_message"
        ws.send(json.dumps({"action": "ping"}))
        assert receive(ws, 1) == [{"event": "pong"}]
        with contextlib.suppress(ConnectionClosed):  # the server may close mid-flood
            for _ in range(30):
                ws.send(json.dumps({"action": "ping"}))
        assert close_of(ws) == (4029, "Too many messages: slow down")


def test_the_server_pings_idle_connections_at_the_configured_interval(
    settings: Settings, world: World
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    with realtime_server(with_settings(settings, ws_ping_interval_s=0.2)) as server:
        url = ws_url(server, command_id, world.token(alice))
        pings = _pings_seen(server, url, wanted=2)
    assert pings == 2


def _pings_seen(server: ServerThread, url: str, *, wanted: int) -> int:
    """Open a raw client (sans-I/O protocol over a socket) and count the server's pings."""
    protocol = ClientProtocol(parse_uri(url))
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout(5)) as sock:
        protocol.send_request(protocol.connect())
        for chunk in protocol.data_to_send():
            sock.sendall(chunk)
        pings = 0
        deadline = time.monotonic() + timeout(5)
        while pings < wanted and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Frame) and event.opcode == Opcode.PING:
                    pings += 1
            for chunk in protocol.data_to_send():  # the pongs
                sock.sendall(chunk)
    return pings


def test_per_message_compression_is_off_by_default_and_can_be_enabled(
    settings: Settings, world: World
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    for enabled, expected in ((False, None), (True, "permessage-deflate")):
        with (
            realtime_server(with_settings(settings, ws_per_message_deflate=enabled)) as server,
            follow(server, command_id, world.token(alice)) as ws,
        ):
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            offered = extensions.split(";")[0] if extensions else None
            assert offered == expected


def test_a_burst_of_simultaneous_connections_is_admitted_without_refusals(
    settings: Settings, world: World
) -> None:
    """A reconnect storm: more concurrent handshakes than pooled Redis connections."""
    alice = world.user("alice", Role.ADMIN)
    command_id = world.command(alice)

    async def burst(count: int) -> list[str]:
        async def one() -> str:
            async with asyncio_connect(url, open_timeout=timeout(30)) as ws:
                return str(json.loads(await ws.recv())["event"])

        return await asyncio.gather(*(one() for _ in range(count)))

    with realtime_server(with_settings(settings, ws_max_connections_per_user=1000)) as server:
        url = ws_url(server, command_id, world.token(alice))
        assert asyncio.run(burst(300)) == ["welcome"] * 300
