"""Command history as the replaced web client reads it: time range, user, bounded paging."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from common.command_store import CommandStore
from common.commands import CommandRecord, CommandStatus
from common.keys import Keys
from common.redis_client import async_client
from common.settings import Settings
from common.users import Role, UserStore
from tests.component.conftest import create_user, login, vehicle

INT64_MAX = 9223372036854775807


def _user_id(settings: Settings, username: str) -> str:
    async def go() -> str:
        client = async_client(settings.effective_redis_url)
        try:
            user = await UserStore(client, Keys(settings.key_prefix)).get_by_username(username)
        finally:
            await client.aclose()
        assert user is not None
        return user.user_id

    return asyncio.run(go())


def _store(settings: Settings, owner: str, *moments: datetime) -> list[str]:
    """Commands of ``owner`` submitted at ``moments``, written as the api writes them."""
    records = [
        CommandRecord(
            command_id=str(uuid.uuid4()),
            user_id=owner,
            vehicle_id=vehicle().vehicle_id,
            command_name="ReadDTC",
            command_params={"ecuAddress": "0x10"},
            status=CommandStatus.COMPLETED,
            submitted_at=moment,
        )
        for moment in moments
    ]

    async def go() -> None:
        client = async_client(settings.effective_redis_url)
        try:
            store = CommandStore(client, Keys(settings.key_prefix))
            for record in records:
                await store.create(record)
        finally:
            await client.aclose()

    asyncio.run(go())
    return [r.command_id for r in records]


def _ids(api: TestClient, query: str, headers: dict[str, str]) -> tuple[list[str], int]:
    response = api.get(f"/api/v1/commands?{query}", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    return [c["command_id"] for c in body["commands"]], body["total"]


def test_start_date_and_end_date_bound_the_submission_time(
    api: TestClient, settings: Settings
) -> None:
    engineer = _user_id(settings, "engineer")
    jan, feb, mar = _store(
        settings,
        engineer,
        datetime(2026, 1, 15, 12, tzinfo=UTC),
        datetime(2026, 2, 15, 12, tzinfo=UTC),
        datetime(2026, 3, 15, 12, tzinfo=UTC),
    )
    headers = login(api, "admin")
    assert _ids(api, "start_date=2026-02-01T00:00:00Z", headers) == ([mar, feb], 2)
    assert _ids(api, "end_date=2026-02-15T12:00:00Z", headers) == ([feb, jan], 2)
    both = "start_date=2026-02-01T00:00:00%2B01:00&end_date=2026-02-28T23:59:59Z"
    assert _ids(api, both, headers) == ([feb], 1)
    # A date alone covers its whole day; no offset means UTC.
    assert _ids(api, "start_date=2026-02-15&end_date=2026-02-15", headers) == ([feb], 1)
    assert _ids(api, "start_date=2026-03-15T12:00:00", headers) == ([mar], 1)
    assert _ids(api, "start_date=2026-02-01&limit=1&offset=1", headers) == ([feb], 2)
    assert _ids(api, "end_date=2026-02-15&status=completed", headers) == ([feb, jan], 2)


def test_status_type_vehicle_and_user_filters_combine(api: TestClient, settings: Settings) -> None:
    engineer = _user_id(settings, "engineer")
    jan, feb = _store(
        settings, engineer, datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 2, 15, tzinfo=UTC)
    )
    headers = login(api, "admin")
    mine = f"user_id={engineer}&vehicle_id={vehicle().vehicle_id}"
    assert _ids(api, f"{mine}&status=completed&command_name=ReadDTC", headers) == ([feb, jan], 2)
    assert _ids(api, f"{mine}&status=completed&command_name=ClearDTC", headers) == ([], 0)
    assert _ids(api, f"{mine}&status=failed", headers) == ([], 0)
    assert _ids(api, "command_name=ReadDTC&end_date=2026-01-31", headers) == ([jan], 1)


@pytest.mark.parametrize(
    "query",
    [
        "start_date=yesterday",
        "start_date=0.5",
        "end_date=1767225600",
        "start_date=2026-02-30",
        "end_date=2026-13-01T00:00:00Z",
        "start_date=2026-03-01&end_date=2026-02-01",
        "user_id=not-a-user-id",
        "command_name=FlashECU",
    ],
)
def test_an_invalid_history_filter_is_422_naming_it(api: TestClient, query: str) -> None:
    response = api.get(f"/api/v1/commands?{query}", headers=login(api, "admin"))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    name = query.rsplit("&", 1)[-1].split("=")[0]
    assert error["message"].startswith(f"{name}: ")


def test_user_id_narrows_for_roles_that_see_everything_and_never_widens_for_engineers(
    api: TestClient, settings: Settings
) -> None:
    create_user(settings, "other", Role.ENGINEER)
    engineer, other = _user_id(settings, "engineer"), _user_id(settings, "other")
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    [mine] = _store(settings, engineer, moment)
    [theirs] = _store(settings, other, moment)
    for role in ("admin", "viewer"):
        headers = login(api, role)
        assert _ids(api, f"user_id={other}", headers) == ([theirs], 1)
        assert _ids(api, f"user_id={engineer}", headers) == ([mine], 1)
        assert _ids(api, f"user_id={uuid.uuid4()}", headers) == ([], 0)
    engineer_headers = login(api, "engineer")
    assert _ids(api, f"user_id={other}", engineer_headers) == ([mine], 1)
    assert _ids(api, "", engineer_headers) == ([mine], 1)


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/commands?offset={INT64_MAX}",
        f"/api/v1/commands?offset={INT64_MAX}&status=pending",
        f"/api/v1/commands?offset={INT64_MAX * 10}",
        f"/api/v1/vehicles?offset={INT64_MAX}",
        f"/api/v1/audit?offset={INT64_MAX}",
        f"/api/v1/commands?limit={INT64_MAX}",
        "/api/v1/commands?offset=-1",
    ],
)
def test_numeric_inputs_past_their_bounds_are_422_not_a_redis_error(
    api: TestClient, path: str
) -> None:
    response = api.get(path, headers=login(api, "admin"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


def test_the_largest_accepted_offset_is_an_empty_page(api: TestClient) -> None:
    headers = login(api, "admin")
    for path in ("/api/v1/commands", "/api/v1/vehicles"):
        response = api.get(f"{path}?offset=1000000000", headers=headers)
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "query",
    [
        "since=0001-01-01T00:00:00Z",
        "until=0251-06-15T16:26:43.254233Z",
        "until=9999-12-31T23:59:59-05:00",
        "since=9999-12-31&until=9999-12-31",
    ],
)
def test_audit_time_bounds_at_the_calendars_edges_are_no_server_error(
    api: TestClient, query: str
) -> None:
    response = api.get(f"/api/v1/audit?{query}", headers=login(api, "admin"))
    assert response.status_code == 200, response.text


# -- cursor paging ------------------------------------------------------------------------------


def _page(api: TestClient, query: str, headers: dict[str, str]) -> tuple[list[str], str | None]:
    response = api.get(f"/api/v1/commands?{query}", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    return [c["command_id"] for c in body["commands"]], body["next_cursor"]


def _walk(api: TestClient, query: str, headers: dict[str, str]) -> list[str]:
    """Every id, following next_cursor from the first page to the last."""
    seen, cursor = [], None
    for _ in range(100):
        suffix = f"&cursor={cursor}" if cursor else ""
        ids, cursor = _page(api, query + suffix, headers)
        seen += ids
        if cursor is None:
            return seen
    raise AssertionError("next_cursor never ended")


def test_cursor_paging_neither_repeats_nor_skips_while_new_commands_arrive(
    api: TestClient, settings: Settings
) -> None:
    engineer = _user_id(settings, "engineer")
    older = _store(settings, engineer, *(datetime(2026, 1, d, tzinfo=UTC) for d in range(1, 6)))
    headers = login(api, "admin")
    first, cursor = _page(api, "limit=2", headers)
    assert first == [older[4], older[3]]
    assert cursor is not None
    _store(settings, engineer, *(datetime(2026, 2, d, tzinfo=UTC) for d in range(1, 4)))
    second, cursor = _page(api, f"limit=2&cursor={cursor}", headers)
    assert second == [older[2], older[1]]
    last, cursor = _page(api, f"limit=2&cursor={cursor}", headers)
    assert (last, cursor) == ([older[0]], None)


def test_cursor_paging_is_stable_across_equal_submission_times_and_filters(
    api: TestClient, settings: Settings
) -> None:
    engineer = _user_id(settings, "engineer")
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    same = _store(settings, engineer, *([moment] * 5))
    earlier = _store(settings, engineer, datetime(2025, 12, 31, tzinfo=UTC))
    headers = login(api, "admin")
    expected = [*sorted(same, reverse=True), *earlier]
    assert _walk(api, "limit=2", headers) == expected
    assert _walk(api, "limit=3&status=completed", headers) == expected
    assert _walk(api, f"limit=1&user_id={engineer}&vehicle_id={vehicle().vehicle_id}", headers) == (
        expected
    )
    assert _walk(api, "limit=2&end_date=2026-01-01T00:00:00Z", headers) == expected
    assert _walk(api, "limit=2&start_date=2026-01-01", headers) == expected[:5]
    # offset counts from the cursor
    _, cursor = _page(api, "limit=2", headers)
    assert _page(api, f"limit=2&offset=1&cursor={cursor}", headers)[0] == expected[3:5]


@pytest.mark.parametrize("cursor", ["nonsense", "bmFufDEyMw", "", "a" * 300])
def test_a_cursor_the_api_did_not_return_is_422(api: TestClient, cursor: str) -> None:
    response = api.get(f"/api/v1/commands?cursor={cursor}", headers=login(api, "admin"))
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("cursor: ")
