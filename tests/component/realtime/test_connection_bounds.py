"""Connections that never finish: bounded handshakes, bounded heads, idle connections."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection

from common.settings import Settings
from tests.component.realtime_support import (
    World,
    close_of,
    follow,
    realtime_server,
    receive,
    service_of,
    with_settings,
)
from tests.support import ServerThread, timeout, wait_for


@pytest.fixture
def bounded(settings: Settings) -> Iterator[ServerThread]:
    changed = with_settings(
        settings, ws_handshake_timeout_s=0.5, ws_idle_timeout_s=0.5, ws_max_request_head_bytes=4096
    )
    with realtime_server(changed) as server:
        yield server


def _upgrade_head(server: ServerThread, path: str, extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout(10))
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_an_oversized_websocket_handshake_is_answered_431(bounded: ServerThread) -> None:
    head = _upgrade_head(bounded, "/ws/responses/x", "X-Padding: " + "a" * 10_000 + "\r\n")
    with socket.create_connection(("127.0.0.1", bounded.port)) as sock:
        sock.sendall(head)
        assert _answer(sock).startswith(b"HTTP/1.1 431 ")


def test_an_oversized_event_stream_request_is_answered_431(bounded: ServerThread) -> None:
    head = (
        f"GET /api/v1/commands/x/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {'a' * 9000}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", bounded.port)) as sock:
        sock.sendall(head)
        assert _answer(sock).startswith(b"HTTP/1.1 431 ")


def test_a_head_pipelined_behind_an_event_stream_is_bounded_too(
    bounded: ServerThread, world: World
) -> None:
    """An event stream never completes its response, so the next request's head waits
    behind it: past the bound the connection is closed, not buffered without end."""
    token = world.token(world.user("alice"))
    with socket.create_connection(("127.0.0.1", bounded.port)) as sock:
        head = f"GET /sse/vehicles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        sock.sendall(head.encode())
        sock.settimeout(timeout(10))
        assert sock.recv(12) == b"HTTP/1.1 200"
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 5000)
        # The rest of the stream's response head, whatever it sent meanwhile, then the
        # close (``_answer`` reads until the server closes; a timeout fails the test).
        assert b"text/event-stream" in _answer(sock)


def test_a_handshake_that_never_finishes_is_answered_408_and_closed(
    bounded: ServerThread,
) -> None:
    partial = _upgrade_head(bounded, "/ws/responses/x")[:60]
    with socket.create_connection(("127.0.0.1", bounded.port)) as sock:
        sock.sendall(partial)
        assert _answer(sock).startswith(b"HTTP/1.1 408 ")


def test_a_connection_that_sends_nothing_is_closed(bounded: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", bounded.port)) as sock:
        assert _answer(sock).startswith(b"HTTP/1.1 408 ")


def test_a_head_within_the_bounds_still_upgrades(bounded: ServerThread) -> None:
    head = _upgrade_head(bounded, "/ws/responses/x", "X-Padding: " + "a" * 3000 + "\r\n")
    with socket.create_connection(("127.0.0.1", bounded.port)) as sock:
        sock.sendall(head)
        sock.settimeout(timeout(10))
        assert sock.recv(12) == b"HTTP/1.1 101"  # then a 1008 close: no token


def test_a_connection_left_without_subscriptions_is_closed_after_the_idle_timeout(
    bounded: ServerThread, world: World
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    with follow(bounded, command_id, world.token(alice)) as ws:
        ws.send(json.dumps({"action": "unsubscribe", "command_id": command_id}))
        assert receive(ws, 1)[0]["event"] == "unsubscribed"
        assert close_of(ws) == (4408, "No subscription: closed after the idle timeout")
    wait_for(lambda: not service_of(bounded).connections, what="the connection to be forgotten")


@pytest.fixture
def patient(settings: Settings) -> Iterator[ServerThread]:
    """Idle connections are closed after 30 s: no timer fires while a test looks at it."""
    with realtime_server(with_settings(settings, ws_idle_timeout_s=30)) as server:
        yield server


def _idle_timer(server: ServerThread) -> asyncio.TimerHandle:
    """The idle timer of the server's one connection, once it has one."""
    timers: dict[str, asyncio.TimerHandle] = service_of(server)._idle_timers
    wait_for(lambda: len(timers) == 1, what="the idle timer")
    return next(iter(timers.values()))


def _left_empty(ws: ClientConnection, command_id: str) -> None:
    ws.send(json.dumps({"action": "unsubscribe", "command_id": command_id}))
    assert receive(ws, 1)[0]["event"] == "unsubscribed"


def test_the_idle_timer_counts_from_the_last_time_the_connection_went_empty(
    patient: ServerThread, world: World
) -> None:
    """Emptied, subscribed again, emptied again: the first timer must not close it."""
    alice = world.user("alice")
    first, second = world.command(alice), world.command(alice)
    with follow(patient, first, world.token(alice)) as ws:
        _left_empty(ws, first)
        earlier = _idle_timer(patient)
        ws.send(json.dumps({"action": "subscribe", "command_id": second}))
        assert receive(ws, 1)[0]["event"] == "subscribed"
        _left_empty(ws, second)
        later = _idle_timer(patient)
        assert later is not earlier
        assert earlier.cancelled()
        assert not later.cancelled()
    wait_for(lambda: not service_of(patient)._idle_timers, what="no timer left behind")


def test_a_refused_subscribe_does_not_keep_an_empty_connection_open(
    patient: ServerThread, world: World
) -> None:
    """Only a subscription that was followed restarts the idle timer."""
    alice = world.user("alice")
    first, second = world.command(alice), world.command(alice)
    with follow(patient, first, world.token(alice)) as ws:
        _left_empty(ws, first)
        timer = _idle_timer(patient)
        ws.send(json.dumps({"action": "subscribe", "command_id": second, "since": 9}))
        assert receive(ws, 1)[0]["error_code"] == "position_ahead"
        assert _idle_timer(patient) is timer
        assert not timer.cancelled()
