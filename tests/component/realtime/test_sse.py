"""Server-Sent Events on the realtime process, read with a real HTTP client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import redis

from common.commands import CommandStatus
from common.eventlog import EventLog
from common.events import StatusEvent
from common.keys import Keys
from common.settings import Settings
from common.users import Role
from tests.component.realtime_support import (
    World,
    publish_run,
    realtime_server,
    service_of,
    with_settings,
)
from tests.support import ServerThread, timeout, wait_for


def _url(server: ServerThread, command_id: str) -> str:
    return f"{server.http_base}/api/v1/commands/{command_id}/events"


def _error(response: httpx.Response) -> tuple[str, str]:
    """The error code and message of an HTTP error answer."""
    error = response.json()["error"]
    return error["code"], error["message"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _messages(lines: Iterator[str], count: int) -> list[dict[str, Any]]:
    """The next ``count`` SSE messages as ``{"id": ..., "data": {...}}`` (comments skipped)."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in lines:
        if line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and "data" in current:
            out.append(current)
            current = {}
            if len(out) == count:
                return out
    raise AssertionError(f"the stream ended after {len(out)} of {count} messages")


def _stream(server: ServerThread, command_id: str, token: str, **headers: str) -> Any:
    return httpx.stream(
        "GET",
        _url(server, command_id),
        headers={**_bearer(token), **headers},
        timeout=httpx.Timeout(timeout(5)),
    )


def test_a_stream_sends_the_replay_then_live_events_with_seq_as_the_id(
    server: ServerThread, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
    with _stream(server, command_id, world.token(alice)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        lines = response.iter_lines()
        assert next(lines) == "retry: 2000"
        welcome, first = _messages(lines, 2)
        assert "id" not in welcome
        assert welcome["data"]["event"] == "welcome"
        assert (first["id"], first["data"]["status"]) == ("1", "in_progress")
        events.append(StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED))
        (last,) = _messages(lines, 1)
        assert (last["id"], last["data"]["seq"], last["data"]["status"]) == ("2", 2, "completed")
    service = service_of(server)
    wait_for(lambda: not service.connections and len(service.hub) == 0, what="the cleanup")


def test_last_event_id_or_since_resumes_after_that_event(
    server: ServerThread, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    publish_run(events, command_id, chunks=3)  # seq 1..5
    with _stream(server, command_id, world.token(alice), **{"Last-Event-ID": "3"}) as response:
        got = _messages(response.iter_lines(), 3)[1:]
    assert [m["id"] for m in got] == ["4", "5"]
    with httpx.stream(
        "GET",
        _url(server, command_id) + "?since=4",
        headers=_bearer(world.token(alice)),
        timeout=timeout(5),
    ) as response:
        assert [m["id"] for m in _messages(response.iter_lines(), 2)[1:]] == ["5"]


def test_a_stream_needs_a_valid_bearer_token(server: ServerThread, world: World) -> None:
    alice = world.user("alice")
    url = _url(server, world.command(alice))

    missing = httpx.get(url, timeout=timeout(5))
    invalid = httpx.get(url, headers=_bearer("not.a.jwt"), timeout=timeout(5))

    assert (missing.status_code, _error(missing)) == (401, ("unauthorized", "Missing token"))
    assert missing.headers["www-authenticate"] == "Bearer"
    assert (invalid.status_code, _error(invalid)) == (401, ("unauthorized", "Invalid token"))


def test_a_command_the_user_may_not_see_answers_404_like_an_unknown_one(
    server: ServerThread, world: World
) -> None:
    command_id = world.command(world.user("alice"))
    bob_token = world.token(world.user("bob"))
    viewer_token = world.token(world.user("vera", Role.VIEWER))

    for target in (command_id, "not-a-uuid", "8c4a8f30-53a7-4a0b-9a8e-6f3c0d5e4b21"):
        answer = httpx.get(_url(server, target), headers=_bearer(bob_token), timeout=timeout(5))
        assert (answer.status_code, _error(answer)) == (
            404,
            ("command_not_found", "Command not found"),
        )
    with _stream(server, command_id, viewer_token) as response:
        assert response.status_code == 200


def test_a_position_the_log_no_longer_holds_streams_the_stored_command_as_a_snapshot(
    server: ServerThread,
    world: World,
    events: EventLog,
    sync_redis: redis.Redis,
    keys: Keys,
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    publish_run(events, command_id, chunks=1)  # seq 1..3
    sync_redis.delete(keys.command_events(command_id))  # what the log's TTL does

    with httpx.stream(
        "GET",
        _url(server, command_id) + "?since=1",
        headers=_bearer(world.token(alice)),
        timeout=timeout(5),
    ) as response:
        assert response.status_code == 200
        _, marker, answer, status = _messages(response.iter_lines(), 4)
    assert marker["data"]["event"] == "snapshot"
    assert (marker["data"]["last_seq"], marker["data"]["status"]) == (3, "completed")
    assert (answer["id"], answer["data"]["event"], answer["data"]["snapshot"]) == (
        "2",
        "response",
        True,
    )
    assert (status["id"], status["data"]["status"], status["data"]["snapshot"]) == (
        "3",
        "completed",
        True,
    )


def test_absurd_positions_are_invalid_input_never_an_outage(
    server: ServerThread, world: World
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    headers = _bearer(world.token(alice))
    answers = [
        httpx.get(_url(server, command_id) + f"?since={since}", headers=headers, timeout=5)
        for since in (2**63, 2**64 + 7, "abc", "1.5", "-1", "%20", "9" * 200)
    ] + [
        httpx.get(_url(server, command_id), headers={**headers, "Last-Event-ID": value}, timeout=5)
        for value in ("-1", "99999999999999999999", "x", "1" * 200)
    ]
    for answer in answers:
        assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_position")


def test_a_stream_ends_with_a_close_event_when_the_token_expires(
    settings: Settings, world: World
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    with realtime_server(with_settings(settings, ws_token_grace_s=0.2)) as server:
        token = world.token(alice, access_token_ttl_s=2)  # issued once the server is up
        with _stream(server, command_id, token) as response:
            welcome, closing = _messages(response.iter_lines(), 2)
            assert welcome["data"]["event"] == "welcome"
            assert closing["data"] == {"event": "close", "code": 4401, "reason": "Token expired"}
        wait_for(lambda: not service_of(server).connections, what="the connection to close")


def test_sse_and_websocket_share_the_per_user_connection_limit(
    settings: Settings, world: World
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    with (
        realtime_server(with_settings(settings, ws_max_connections_per_user=1)) as server,
        _stream(server, command_id, world.token(alice)) as first,
    ):
        assert first.status_code == 200
        second = httpx.get(
            _url(server, command_id), headers=_bearer(world.token(alice)), timeout=timeout(5)
        )
        assert (second.status_code, _error(second)) == (
            429,
            ("too_many_connections", "Too many connections for this user"),
        )
