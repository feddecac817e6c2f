"""A revocation that lands while a token is being checked still reaches the connection.

The admission (or a refresh) reads Redis, then registers the connection; a push that
arrives between the two found nothing to close. A gate holds the check between its
reads and what follows, so the push lands exactly there.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

import realtime.service
from common.auth import revoke_access_token
from common.keys import Keys
from common.redis_client import async_client
from common.settings import Settings
from common.tokens import decode_token
from tests.component.realtime_support import (
    World,
    close_of,
    follow,
    open_ws,
    service_of,
)
from tests.support import ServerThread, timeout, wait_for

T = TypeVar("T")


class Gate:
    """Holds a coroutine after it returned, until the test lets it go (at most 10 s)."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()

    def around(self, real: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def held(*args: Any, **kwargs: Any) -> T:
            result = await real(*args, **kwargs)
            self.reached.set()
            # The server's loop goes on meanwhile (the push must be able to arrive).
            await asyncio.to_thread(self.released.wait, timeout(10))
            return result

        return held


def _revoke(settings: Settings, token: str) -> None:
    """What a logout does: the revocation mark and its push, in one transaction."""

    async def revoke() -> None:
        client = async_client(settings.effective_redis_url)
        try:
            claims = decode_token(settings, token, "access")
            await revoke_access_token(client, Keys(settings.key_prefix), claims, now_ts=time.time())
        finally:
            await client.aclose()

    asyncio.run(revoke())


def _revoke_while_held(server: ServerThread, settings: Settings, gate: Gate, token: str) -> None:
    assert gate.reached.wait(timeout(5)), "the check never ran"
    service = service_of(server)
    seen = service.revocations.seen
    _revoke(settings, token)
    wait_for(lambda: service.revocations.seen > seen, what="the push to reach the relay")
    gate.released.set()


def test_a_logout_while_the_handshake_is_checked_closes_the_new_stream(
    server: ServerThread, settings: Settings, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(
        realtime.service, "read_admission", gate.around(realtime.service.read_admission)
    )
    alice = world.user("alice")
    token = world.token(alice)
    with open_ws(server, world.command(alice), token) as ws:  # accepted; admission runs now
        _revoke_while_held(server, settings, gate, token)
        assert close_of(ws) == (4403, "Session revoked")
    wait_for(lambda: not service_of(server).connections, what="the connection to be forgotten")


def test_a_token_revoked_while_a_refresh_checks_it_closes_the_stream(
    server: ServerThread, settings: Settings, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = world.user("alice")
    first, fresh = world.token(alice), world.token(alice)
    with follow(server, world.command(alice), first) as ws:
        gate = Gate()
        checked = gate.around(realtime.service.authenticate_access_token)
        monkeypatch.setattr(realtime.service, "authenticate_access_token", checked)
        ws.send(json.dumps({"action": "refresh", "token": fresh}))
        _revoke_while_held(server, settings, gate, fresh)
        assert close_of(ws) == (4403, "Session revoked")
