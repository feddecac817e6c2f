"""The CLI's stream follower against a real WebSocket server: the server's close-code rule,
and the token in ``Sec-WebSocket-Protocol``, never in the URL."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

from cli.client import ApiError, Client
from cli.config import Credentials
from cli.render import render_event
from common.protocol import TOKEN_EXPIRED_REASON, CloseCode

TOKEN = "header.payload.signature"


class Scripted:
    """A WebSocket server that plays one script per connection and records each handshake."""

    def __init__(self, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.paths: list[str] = []
        self.offered: list[str] = []

    def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        self.offered.append(ws.request.headers.get("Sec-WebSocket-Protocol", ""))
        self.scripts[min(len(self.paths), len(self.scripts)) - 1](ws)


Script = Callable[[ServerConnection], None]
Start = Callable[[list[Script]], tuple["Scripted", str]]


@pytest.fixture
def scripted() -> Iterator[Start]:
    servers: list[Server] = []

    def start(scripts: list[Script]) -> tuple[Scripted, str]:
        recorder = Scripted(scripts)
        server = serve(
            recorder.handler,
            "127.0.0.1",
            0,
            select_subprotocol=lambda _conn, offered: (
                Subprotocol("sovd.v1") if "sovd.v1" in offered else None
            ),
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        port = server.socket.getsockname()[1]
        return recorder, f"ws://127.0.0.1:{port}/ws/responses/c1"

    yield start
    for server in servers:
        server.shutdown()


def _client() -> Client:
    return Client(
        Credentials(
            api_url="http://127.0.0.1:9",
            username="engineer",
            access_token=TOKEN,
            refresh_token="r",
            expires_at=time.time() + 3600,
        )
    )


def _event(seq: int, status: str) -> str:
    return json.dumps({"event": "status", "command_id": "c1", "seq": seq, "status": status})


def _close_with(code: int) -> Callable[[ServerConnection], None]:
    def script(ws: ServerConnection) -> None:
        ws.send(_event(1, "in_progress"))
        ws.close(code, "scripted")

    return script


def _finish(ws: ServerConnection) -> None:
    ws.send(_event(2, "completed"))
    with contextlib.suppress(ConnectionClosed):
        for _ in ws:  # until the client leaves
            pass


def test_the_token_travels_in_the_subprotocol_header_not_the_url(scripted: Start) -> None:
    recorder, url = scripted([_finish])
    events = list(_client().follow(url))
    assert [e["status"] for e in events] == ["completed"]
    assert "token" not in recorder.paths[0]
    assert recorder.offered[0].replace(" ", "").split(",") == ["sovd.v1", f"bearer.{TOKEN}"]


def test_a_rate_limited_close_is_resumed_from_the_last_position(scripted: Start) -> None:
    recorder, url = scripted([_close_with(CloseCode.RATE_LIMITED), _finish])
    reconnects: list[int] = []
    events = list(_client().follow(url, on_reconnect=lambda code, _reason: reconnects.append(code)))
    assert [e["seq"] for e in events] == [1, 2]
    assert reconnects == [4029]
    assert recorder.paths[1].endswith("since=1")


def _refuse_after_accepting(ws: ServerConnection) -> None:
    """What the realtime server does to a client it cannot admit now: accept, then close
    with a reconnect code (no welcome)."""
    ws.close(CloseCode.TRY_AGAIN_LATER, "Event stream unavailable")


def test_refusals_after_the_handshake_count_as_failed_reconnects(scripted: Start) -> None:
    """Only an admission (the welcome) makes a reconnect a success: a server that accepts
    every socket and then refuses it is given up on after ``max_reconnects``."""
    recorder, url = scripted([_refuse_after_accepting] * 5 + [_finish])
    with pytest.raises(ApiError, match="Gave up reconnecting"):
        list(_client().follow(url, max_reconnects=2))
    assert len(recorder.paths) == 3


def test_a_welcome_makes_a_reconnect_a_success(scripted: Start) -> None:
    def admitted_then_refused(ws: ServerConnection) -> None:
        ws.send(json.dumps({"event": "welcome", "connection_id": "x"}))
        ws.close(CloseCode.TRY_AGAIN_LATER, "Event stream unavailable")

    recorder, url = scripted([admitted_then_refused] * 4 + [_finish])
    events = list(_client().follow(url, max_reconnects=2))
    assert [e["status"] for e in events] == ["completed"]
    assert len(recorder.paths) == 5


class _Refreshing(Client):
    """A client whose refresh (a POST to the api, absent here) hands it a new token."""

    refreshed = 0

    def refresh(self) -> None:
        self.refreshed += 1
        self.credentials.access_token = f"{TOKEN}.{self.refreshed}"


@pytest.mark.parametrize(
    "code", [CloseCode.TOKEN_EXPIRED, CloseCode.POLICY_VIOLATION], ids=["on-the-wire", "at-connect"]
)
def test_an_expired_token_is_refreshed_then_the_stream_resumed(scripted: Start, code: int) -> None:
    """The console's rule (``needs_new_token``): 4401, or 1008 ``Token expired``."""

    def expired(ws: ServerConnection) -> None:
        ws.close(code, TOKEN_EXPIRED_REASON)

    recorder, url = scripted([expired, _finish])
    client = _Refreshing(_client().credentials)
    events = list(client.follow(url))
    assert [e["status"] for e in events] == ["completed"]
    assert client.refreshed == 1
    assert recorder.offered[1].endswith(f"bearer.{TOKEN}.1")


@pytest.mark.parametrize(
    "code", [CloseCode.SESSION_REVOKED, CloseCode.IDLE, CloseCode.POLICY_VIOLATION, 4499]
)
def test_a_stop_code_ends_the_follow_with_an_error(scripted: Start, code: int) -> None:
    recorder, url = scripted([_close_with(code), _finish])
    with pytest.raises(ApiError) as refused:
        list(_client().follow(url))
    assert refused.value.status == code
    assert len(recorder.paths) == 1  # never reconnected


def test_a_snapshot_is_announced_before_the_stored_state(scripted: Start) -> None:
    snapshot = {"event": "snapshot", "command_id": "c1", "last_seq": 4, "status": "completed",
                "responses": 2}  # fmt: skip

    def script(ws: ServerConnection) -> None:
        live = {"event": "response", "command_id": "c1", "seq": 1, "sequence_number": 1,
                "response": {"response_payload": {}}}  # fmt: skip
        ws.send(json.dumps(live))
        ws.send(json.dumps(snapshot))
        part = {"event": "response", "command_id": "c1", "seq": 2, "snapshot": True,
                "sequence_number": 1, "response": {"response_payload": {}}}  # fmt: skip
        ws.send(json.dumps(part))
        ws.send(json.dumps({**part, "seq": 3, "sequence_number": 2}))
        _finish_at(ws, 4)

    _, url = scripted([script])
    events = list(_client().follow(url))
    # The snapshot's copy of part 1 is not shown again; part 2 is new.
    assert [(e["event"], e.get("sequence_number")) for e in events] == [
        ("response", 1),
        ("snapshot", None),
        ("response", 2),
        ("status", None),
    ]
    assert render_event(events[1]) == (
        "(the event log has expired: the stored command follows, 2 response(s), status completed)"
    )


def _finish_at(ws: ServerConnection, seq: int) -> None:
    ws.send(_event(seq, "completed"))
    with contextlib.suppress(ConnectionClosed):
        for _ in ws:  # until the client leaves
            pass
