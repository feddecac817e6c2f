"""The lean WebSocket protocol's ``Inbox``: what uvicorn asks of its ``asyncio.Queue``."""

from __future__ import annotations

import asyncio

import pytest

from realtime.ws_protocol import Inbox

WAIT_S = 5.0


def test_messages_come_out_in_order_and_the_inbox_holds_nothing_when_empty() -> None:
    async def scenario() -> None:
        inbox = Inbox()
        assert inbox.empty() is True
        inbox.put_nowait({"type": "websocket.connect"})
        inbox.put_nowait({"type": "websocket.receive", "text": "a"})
        assert inbox.qsize() == 2
        assert await inbox.get() == {"type": "websocket.connect"}
        assert await inbox.get() == {"type": "websocket.receive", "text": "a"}
        assert inbox.empty() is True
        assert inbox._items is None

    asyncio.run(scenario())


def test_get_waits_for_the_next_message() -> None:
    async def scenario() -> None:
        inbox = Inbox()
        getter = asyncio.create_task(inbox.get())
        await asyncio.sleep(0)
        assert getter.done() is False
        inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        assert await asyncio.wait_for(getter, WAIT_S) == {
            "type": "websocket.disconnect",
            "code": 1000,
        }

    asyncio.run(scenario())


def test_a_cancelled_get_loses_no_message() -> None:
    async def scenario() -> None:
        inbox = Inbox()
        getter = asyncio.create_task(inbox.get())
        await asyncio.sleep(0)
        getter.cancel()
        await asyncio.gather(getter, return_exceptions=True)
        inbox.put_nowait({"type": "websocket.receive", "text": "kept"})
        assert await asyncio.wait_for(inbox.get(), WAIT_S) == {
            "type": "websocket.receive",
            "text": "kept",
        }

    asyncio.run(scenario())


def test_two_readers_at_once_are_a_programming_error() -> None:
    async def scenario() -> None:
        inbox = Inbox()
        first = asyncio.create_task(inbox.get())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="one reader"):
            await inbox.get()
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)

    asyncio.run(scenario())
