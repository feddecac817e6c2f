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
