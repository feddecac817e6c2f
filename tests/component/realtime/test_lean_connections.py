"""What an open WebSocket costs the relay: two tasks, uvicorn's protocol without its
per-socket extras, and the stream served outside FastAPI (unknown paths still 403)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from realtime.ws_protocol import Inbox, LeanWebSocketProtocol
from tests.component.realtime_support import World, follow, service_of
from tests.support import ServerThread, timeout, wait_for

CLIENTS = 3


def _tasks(server: ServerThread) -> collections.Counter[str]:
    """The server loop's tasks by coroutine name."""
    service = service_of(server)
    loop = service.relay._task.get_loop()

    async def names() -> collections.Counter[str]:
        return collections.Counter(t.get_coro().__qualname__ for t in asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(names(), loop).result(timeout(5))


def _ws_protocols(server: ServerThread) -> list[Any]:
    return [
        p for p in list(server.server.server_state.connections) if hasattr(p, "handshake_complete")
    ]


def test_an_open_websocket_costs_two_tasks_once_it_is_live(
    server: ServerThread, world: World
) -> None:
    alice = world.user("alice")
    before = sum(_tasks(server).values())
    with contextlib.ExitStack() as stack:
        for _ in range(CLIENTS):
            stack.enter_context(follow(server, world.command(alice), world.token(alice)))
        wait_for(lambda: len(service_of(server).hub) == CLIENTS, what="every client subscribed")
        # Once each subscription is live its subscribe task ends: a reader and the
        # handshake's own task (the writer) remain, and no timer task for the token.
        wait_for(
            lambda: sum(_tasks(server).values()) - before == 2 * CLIENTS,
            what="two tasks per client",
        )
        tasks = _tasks(server)
        assert tasks["_read"] == CLIENTS
        assert (
            tasks["LeanWebSocketProtocol.run_asgi"] + tasks["WebSocketsSansIOProtocol.run_asgi"]
            == CLIENTS
        )


def test_an_open_websocket_keeps_no_handshake_objects_and_no_asyncio_queue(
    server: ServerThread, world: World
) -> None:
    alice = world.user("alice")
    with follow(server, world.command(alice), world.token(alice)):
        wait_for(lambda: len(_ws_protocols(server)) == 1, what="the socket's protocol")
        (protocol,) = _ws_protocols(server)
        assert isinstance(protocol, LeanWebSocketProtocol)
        assert vars(protocol)["request"] is None
        assert vars(protocol)["response"] is None
        assert isinstance(protocol.queue, Inbox)


@pytest.mark.parametrize("path", ["/ws/other", "/ws/responses/", "/ws/responses/a/b"])
def test_a_websocket_on_an_unknown_path_is_refused_with_403(
    server: ServerThread, path: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_base}{path}", open_timeout=timeout(5))
    assert refused.value.response.status_code == 403
