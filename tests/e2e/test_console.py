"""The web console in a real browser: Debian's Chromium, driven by Playwright, against the
api, worker and realtime processes. No browser is downloaded: Chromium must be installed
at /usr/bin/chromium (``apt-get install chromium``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import redis
from playwright.sync_api import Browser, Locator, Page, WebSocketRoute, expect, sync_playwright

from common.fleet import demo_fleet
from common.keys import Keys
from common.presence import Presence
from common.redis_client import async_client
from common.vehicles import ConnectionStatus, Vehicle
from tests.conftest import TEST_JWT_SECRET
from tests.support import ROOT, Stack, running_stack, timeout

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
#: Short-lived access tokens, so the console's refresh runs during these tests.
ACCESS_TOKEN_TTL_S = 10
#: Playwright waits, in ms (scaled like every other test timeout).
WAIT_MS = timeout(15) * 1000
STREAM_WAIT_MS = timeout(30) * 1000

CONNECTED = [v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED]
OFFLINE_VEHICLE = next(
    v for v in demo_fleet() if v.connection_status == ConnectionStatus.DISCONNECTED
)
#: Not simulated and not used by the other tests: reported online and offline by one test.
PRESENCE_VEHICLE = [
    v for v in demo_fleet() if v.connection_status == ConnectionStatus.DISCONNECTED
][1]
#: One vehicle per test that submits, so per-vehicle admission never refuses a test's command.
READ_VEHICLE, RELOAD_VEHICLE, FORM_VEHICLE, CLEAR_VEHICLE, DROP_VEHICLE, CANCEL_VEHICLE = CONNECTED[
    :6
]
#: Taken offline by one test (its stored record), so no other test uses it.
GONE_VEHICLE = READ_VEHICLE
AUDIT_VEHICLE = RELOAD_VEHICLE


@pytest.fixture(scope="module")
def console_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        redis_url,
        tmp_path_factory.mktemp("console-logs"),
        jwt_secret=TEST_JWT_SECRET,
        env={
            "SOVD_SIM_DELAY_SCALE": "0.05",
            "SOVD_SIM_SEED": "7",
            "SOVD_ACCESS_TOKEN_TTL_S": str(ACCESS_TOKEN_TTL_S),
            "SOVD_LOGIN_RATE_PER_MINUTE": "1000",
        },
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium); "
            "the console tests drive the system browser and never download one"
        )
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh profile per test; fails the test on a script error or a CSP violation."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, reduced_motion="reduce", locale="en-US"
    )
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    yield page
    context.close()
    assert problems == []


def sign_in(page: Page, stack: Stack, username: str) -> None:
    page.goto(f"{stack.api_url}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"{username}-demo-pass")
    page.get_by_role("button", name="Sign in").click()
    # The demo users are named after their roles: the role is not repeated.
    expect(page.locator("#account-name")).to_have_text(username)


def nav(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def open_vehicle(page: Page, vehicle: Vehicle) -> None:
    nav(page, "Vehicles").click()
    page.get_by_label("Search by VIN").fill(vehicle.vin[-8:])
    row = page.locator("#vehicle-table tbody tr")
    expect(row).to_have_count(1)
    row.get_by_role("link", name=vehicle.vin).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(vehicle.vin)


def submit(page: Page, command: str, params: dict[str, str]) -> str:
    """Fill and send the command form; the id of the command page it opens."""
    page.get_by_label("Command type").select_option(command)
    for name, value in params.items():
        page.locator(f"#param-{name}").fill(value)
    page.locator("#send-command").click()
    expect(page).to_have_url(re.compile(r"#/commands/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def session_of(page: Page) -> dict[str, Any]:
    stored = page.evaluate("localStorage.getItem('sovd.session')")
    assert stored, "the console keeps its session in localStorage"
    return dict(json.loads(stored))


def api_get(stack: Stack, page: Page, path: str) -> Any:
    token = session_of(page)["access_token"]
    response = httpx.get(f"{stack.api_url}{path}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def wait_until_completed(page: Page) -> None:
    expect(page.locator("#command-status")).to_have_attribute(
        "data-status", "completed", timeout=STREAM_WAIT_MS
    )
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "done")


def timeline_seqs(page: Page) -> list[int]:
    raw = page.locator(".timeline li[data-seq]:not([data-seq=''])").evaluate_all(
        "items => items.map(item => Number(item.dataset.seq))"
    )
    return [int(seq) for seq in raw]


def chunk_numbers(page: Page) -> list[int]:
    raw = page.locator(".chunk").evaluate_all(
        "items => items.map(item => Number(item.dataset.sequenceNumber))"
    )
    return [int(n) for n in raw]


def test_an_engineer_sees_every_readdtc_chunk_and_the_completed_status_live(
    console_stack: Stack, page: Page
) -> None:
    sign_in(page, console_stack, "engineer")
    open_vehicle(page, READ_VEHICLE)
    command_id = submit(page, "ReadDTC", {"ecuAddress": "0x10"})

    wait_until_completed(page)
    stored = api_get(console_stack, page, f"/api/v1/commands/{command_id}/responses")
    assert len(stored) >= 2, "ReadDTC answers with its codes and a summary"
    expect(page.locator(".chunk")).to_have_count(len(stored))
    assert chunk_numbers(page) == [r["sequence_number"] for r in stored]
    for chunk, response in zip(page.locator(".chunk").all(), stored, strict=True):
        payload = response["response_payload"]
        expect(chunk).to_have_attribute("data-type", payload["type"])
        if payload["type"] == "dtc":
            expect(chunk).to_contain_text(payload["display_code"])
            expect(chunk).to_contain_text(payload["fault_name"])
    summary = stored[-1]["response_payload"]
    assert summary["type"] == "dtc_summary"
    assert summary["dtc_count"] == len(stored) - 1
    expect(page.locator(".chunk.final")).to_contain_text(
        re.compile(rf"\b{summary['dtc_count']} trouble codes?\b")
    )
    # in_progress, one event per part, completed: each exactly once, in order.
    assert timeline_seqs(page) == list(range(1, len(stored) + 3))
    expect(page.locator("#command-result")).to_contain_text("Completed")

    screenshot(page, "console-readdtc.png")


def test_the_vehicle_list_searches_by_vin_and_filters_by_connection_status(
    console_stack: Stack, page: Page
) -> None:
    sign_in(page, console_stack, "viewer")
    rows = page.locator("#vehicle-table tbody tr")
    expect(rows).to_have_count(len(demo_fleet()))
    disconnected = [v for v in demo_fleet() if v.connection_status != ConnectionStatus.CONNECTED]
    page.get_by_label("Connection status").select_option("disconnected")
    expect(rows).to_have_count(len(disconnected))
    expect(rows.locator("[data-connection=connected]")).to_have_count(0)
    expect(rows.first).to_contain_text("Disconnected")
    page.get_by_label("Connection status").select_option("")
    page.get_by_label("Search by VIN").fill(READ_VEHICLE.vin[3:9].lower())
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(READ_VEHICLE.vin)


def test_a_reload_keeps_the_session_and_the_open_command(console_stack: Stack, page: Page) -> None:
    sign_in(page, console_stack, "engineer")
    open_vehicle(page, RELOAD_VEHICLE)
    submit(page, "ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xF442"})
    wait_until_completed(page)
    expect(page.locator(".chunk-data")).to_contain_text("Control Module Voltage")
    expect(page.locator(".chunk-data .unit")).to_have_text(" V")

    page.reload()
    expect(page.locator("#account-name")).to_have_text("engineer")
    expect(page.get_by_label("Password")).to_have_count(0)
    expect(page.locator("#command-status")).to_have_attribute("data-status", "completed")
    expect(page.locator(".chunk-data")).to_contain_text("Control Module Voltage")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Password")).to_be_visible()
    assert page.evaluate("localStorage.getItem('sovd.session')") is None


def test_the_console_refreshes_the_access_token_before_it_expires(
    console_stack: Stack, page: Page
) -> None:
    sign_in(page, console_stack, "engineer")
    first = session_of(page)
    page.wait_for_function(
        "token => JSON.parse(localStorage.getItem('sovd.session')).access_token !== token",
        arg=first["access_token"],
        timeout=timeout(ACCESS_TOKEN_TTL_S) * 1000,
    )
    second = session_of(page)
    assert second["refresh_token"] != first["refresh_token"]
    assert second["expires_at"] > first["expires_at"]
    old = httpx.post(
        f"{console_stack.api_url}/api/v1/auth/refresh",
        json={"refresh_token": first["refresh_token"]},
    )
    assert old.status_code == 401, "refresh rotated the pair: the old refresh token is spent"
    nav(page, "Commands").click()
    expect(page.locator("#history-count")).to_be_visible()


def test_the_api_validation_message_is_shown_under_its_field(
    console_stack: Stack, page: Page
) -> None:
    sign_in(page, console_stack, "engineer")
    open_vehicle(page, FORM_VEHICLE)
    token = session_of(page)["access_token"]
    refused = httpx.post(
        f"{console_stack.api_url}/api/v1/commands",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "vehicle_id": FORM_VEHICLE.vehicle_id,
            "command_name": "ReadDataByID",
            "command_params": {"ecuAddress": "0x10", "dataId": "F190"},
        },
    )
    assert refused.status_code == 422
    [problem] = refused.json()["error"]["details"]["errors"]
    assert problem["loc"] == ["body", "command_params", "dataId"]

    page.get_by_label("Command type").select_option("ReadDataByID")
    expect(page.locator("label[for=param-dataId]")).to_contain_text("required")
    expect(page.locator("#param-dataId-hint")).to_contain_text("0xF190")
    page.locator("#param-ecuAddress").fill("0x10")
    page.locator("#param-dataId").fill("F190")
    page.locator("#send-command").click()

    error = page.locator("#param-dataId-error")
    expect(error).to_have_text(problem["msg"])
    expect(page.locator("#param-dataId")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#param-dataId")).to_be_focused()
    expect(page.locator("#param-ecuAddress-error")).to_be_hidden()
    screenshot(page, "console-validation.png")
    expect(page).to_have_url(re.compile(r"#/vehicles/"))
    engineer = page.get_by_label("Command type").locator("option[value=ClearDTC]")
    expect(engineer).to_be_enabled()  # engineers clear fault codes (after confirming)


def test_a_destructive_command_runs_only_after_confirmation(
    console_stack: Stack, page: Page
) -> None:
    sign_in(page, console_stack, "engineer")
    open_vehicle(page, CLEAR_VEHICLE)
    path = f"/api/v1/commands?vehicle_id={CLEAR_VEHICLE.vehicle_id}"
    before = api_get(console_stack, page, path)["total"]
    page.get_by_label("Command type").select_option("ClearDTC")
    page.locator("#param-ecuAddress").fill("0x28")
    page.locator("#send-command").click()

    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Run ClearDTC?")
    expect(dialog).to_contain_text(CLEAR_VEHICLE.vin)
    screenshot(page, "console-confirm.png")
    dialog.get_by_role("button", name="Keep it, go back").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#command-form-error")).to_contain_text("ClearDTC was not sent")
    assert api_get(console_stack, page, path)["total"] == before

    page.locator("#send-command").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Yes, run ClearDTC").click()
    expect(page).to_have_url(re.compile(r"#/commands/[0-9a-f-]{36}$"))
    wait_until_completed(page)
    expect(page.locator(".chunk-dtc_cleared")).to_contain_text("cleared")
    assert api_get(console_stack, page, path)["total"] == before + 1


def test_the_live_view_resumes_after_a_dropped_socket_without_duplicates(
    console_stack: Stack, page: Page
) -> None:
    sockets: list[WebSocketRoute] = []

    def relay(route: WebSocketRoute) -> None:
        route.connect_to_server()
        sockets.append(route)

    page.route_web_socket(re.compile(r"/ws/responses/"), relay)
    # Every part of the next exchange takes 0.3 s: the drop lands mid-stream.
    slow(console_stack, DROP_VEHICLE, "slow:0.3")
    sign_in(page, console_stack, "engineer")
    open_vehicle(page, DROP_VEHICLE)
    command_id = submit(page, "ReadDTC", {"ecuAddress": "0x10"})
    expect(page.locator(".chunk")).not_to_have_count(0, timeout=STREAM_WAIT_MS)
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")
    shown = max(timeline_seqs(page))

    sockets[0].close(code=1012, reason="Service restart")
    # The back-off lasts a few hundred ms: check the indicator on every frame.
    page.wait_for_function(
        "document.querySelector('#stream-state').dataset.state === 'reconnecting'", polling="raf"
    )
    expect(page.locator("#stream-state")).to_contain_text("reconnecting", ignore_case=True)
    screenshot(page, "console-reconnecting.png")
    wait_until_completed(page)

    assert len(sockets) == 2, "one reconnect"
    resumed = re.search(r"[?&]since=(\d+)", sockets[1].url)
    assert resumed is not None, sockets[1].url
    resumed_from = int(resumed.group(1))
    assert resumed_from >= shown >= 2
    assert "token=" not in sockets[1].url, "the token travels in Sec-WebSocket-Protocol"
    stored = api_get(console_stack, page, f"/api/v1/commands/{command_id}/responses")
    assert chunk_numbers(page) == [r["sequence_number"] for r in stored]
    assert timeline_seqs(page) == list(range(1, len(stored) + 3))


def test_a_running_command_can_be_cancelled_from_its_page(console_stack: Stack, page: Page) -> None:
    slow(console_stack, CANCEL_VEHICLE, "slow:2")
    sign_in(page, console_stack, "engineer")
    open_vehicle(page, CANCEL_VEHICLE)
    submit(page, "ReadDTC", {"ecuAddress": "0x10"})
    cancel = page.get_by_role("button", name="Cancel command")
    expect(cancel).to_be_visible()
    cancel.click()
    expect(page.locator("#command-status")).to_have_attribute(
        "data-status", "cancelled", timeout=STREAM_WAIT_MS
    )
    expect(cancel).to_be_hidden()
    expect(page.locator("#command-result")).to_contain_text("Cancelled")


def test_an_offline_vehicle_cannot_be_sent_a_command(console_stack: Stack, page: Page) -> None:
    sign_in(page, console_stack, "engineer")
    open_vehicle(page, OFFLINE_VEHICLE)
    expect(page.locator("[data-connection=disconnected]")).to_contain_text("Disconnected")
    expect(page.locator("#send-command")).to_be_disabled()
    expect(page.locator("#send-command-note")).to_contain_text("Sending is off")


@contextlib.contextmanager
def went_offline(stack: Stack, vehicle: Vehicle) -> Iterator[None]:
    """The vehicle's stored record says it is offline, while the open page has not heard
    (no presence change is published, and the api's simulated reports for it pause),
    until the block ends."""
    client = redis.Redis.from_url(stack.settings.effective_redis_url, decode_responses=True)
    key = Keys(stack.settings.key_prefix).vehicle(vehicle.vehicle_id)
    original = client.get(key)
    assert original is not None
    stored = json.loads(original)
    stored["connection_status"] = "disconnected"
    stored["metadata"] = {**stored.get("metadata", {}), "simulated": False}
    client.set(key, json.dumps(stored))
    try:
        yield
    finally:
        client.set(key, original)
        client.close()


def test_a_vehicle_that_went_offline_refuses_links_the_rejected_command_and_history_filters_it(
    console_stack: Stack, page: Page
) -> None:
    sign_in(page, console_stack, "engineer")
    open_vehicle(page, GONE_VEHICLE)
    expect(page.locator("#send-command")).to_be_enabled()
    # The presence stream's snapshot has arrived: what follows is a change it never hears.
    expect(page.locator("#vehicle-connection")).to_have_attribute("data-presence", "live")
    with went_offline(console_stack, GONE_VEHICLE):
        page.locator("#param-ecuAddress").fill("0x10")
        page.locator("#send-command").click()
        refusal = page.locator("#command-form-error")
        expect(refusal).to_contain_text(
            re.compile(
                r"Vehicle offline: Vehicle \w+ is offline; the command was rejected\. Last seen "
            )
        )
        expect(page.locator("#send-command")).to_be_disabled()
        recent = page.locator(".commands-table tbody tr")
        expect(recent.first).to_have_attribute("data-status", "rejected")
        refusal.get_by_role("link", name="Open the rejected command").click()
        expect(page.locator("#command-status")).to_have_attribute("data-status", "rejected")
        expect(page.locator("#stream-state")).to_have_attribute("data-state", "ended")
        expect(page.locator("#command-result")).to_contain_text("offline")
        command_id = page.url.rsplit("/", 1)[1]

    nav(page, "Commands").click()
    rows = page.locator(".commands-table tbody tr")
    expect(rows).not_to_have_count(0)
    page.get_by_label("Status").focus()
    page.get_by_label("Status").select_option("rejected")
    expect(page).to_have_url(re.compile(r"status=rejected"))
    expect(page.get_by_label("Status")).to_be_focused()
    expect(page.locator(f"tr[data-command-id='{command_id}']")).to_have_count(1)
    statuses = rows.evaluate_all("rows => rows.map(row => row.dataset.status)")
    assert set(statuses) == {"rejected"}
    page.locator(f"tr[data-command-id='{command_id}']").get_by_role("link").click()
    expect(page.locator(".timeline")).to_contain_text("Submitted ReadDTC")


def test_an_empty_required_field_is_marked_below_the_banner(
    console_stack: Stack, page: Page
) -> None:
    sign_in(page, console_stack, "engineer")
    open_vehicle(page, FORM_VEHICLE)
    page.get_by_label("Command type").select_option("ReadDTC")
    page.locator("#send-command").click()
    banner = page.locator("#command-form-error")
    expect(banner).to_contain_text("Check the fields marked below.")
    expect(page.locator("#param-ecuAddress-error")).to_be_visible()
    banner_box = banner.bounding_box()
    field_box = page.locator("#param-ecuAddress").bounding_box()
    assert banner_box is not None
    assert field_box is not None
    assert banner_box["y"] + banner_box["height"] <= field_box["y"], "the field is below"


def test_attempts_follow_the_api_and_every_time_uses_one_locale_format(
    console_stack: Stack, page: Page
) -> None:
    """Two dropped links, then a slow third attempt: the count is 3 while it runs."""
    for fault in ("drop:1", "drop:1", "slow:2"):
        slow(console_stack, READ_VEHICLE, fault)
    sign_in(page, console_stack, "engineer")
    open_vehicle(page, READ_VEHICLE)
    command_id = submit(page, "ReadDTC", {"ecuAddress": "0x10"})
    expect(page.locator(".timeline")).to_contain_text("attempt 2 failed", timeout=STREAM_WAIT_MS)
    expect(page.locator("#command-attempts")).to_have_text("3", timeout=STREAM_WAIT_MS)
    # Still running (the third attempt takes 10 s): the count came from the API, live.
    expect(page.locator("#command-status")).to_have_attribute("data-status", "in_progress")
    assert api_get(console_stack, page, f"/api/v1/commands/{command_id}")["attempts"] == 3
    wait_until_completed(page)
    expect(page.locator("#command-attempts")).to_have_text("3")

    # en-US: 12-hour clock everywhere, the timeline's clock and the details' dates alike.
    times = page.locator("time").all_inner_texts()
    assert times
    clock = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3} [AP]M$")
    stamp = re.compile(r"^\d{2}/\d{2}/\d{4}, \d{2}:\d{2}:\d{2} [AP]M$")
    assert [t for t in times if not (clock.match(t) or stamp.match(t))] == []
    retry_text = page.locator(".tl-entry[data-status=retrying]").first.inner_text()
    assert re.search(r"next attempt at \d{2}:\d{2}:\d{2}\.\d{3} [AP]M", retry_text), retry_text
    # A UUID stays on one line.
    lines = page.locator("#command-id").evaluate("el => el.getClientRects().length")
    assert lines == 1


def test_only_admins_see_the_audit_trail(console_stack: Stack, page: Page) -> None:
    sign_in(page, console_stack, "engineer")
    expect(nav(page, "Audit")).to_be_hidden()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin-demo-pass")
    page.get_by_role("button", name="Sign in").click()
    nav(page, "Audit").click()
    rows = page.locator(".audit-table tbody tr")
    expect(rows).not_to_have_count(0)
    page.get_by_label("Action").select_option("logout")
    expect(rows.first.locator("th")).to_have_text("logout")
    expect(rows.first).to_contain_text("engineer")
    screenshot(page, "console-audit.png")


def report_presence(stack: Stack, vehicle: Vehicle, status: ConnectionStatus) -> None:
    """The vehicle reports presence (as a transport would, through common.presence)."""

    async def go() -> None:
        client = async_client(stack.settings.effective_redis_url)
        try:
            presence = Presence(client, Keys(stack.settings.key_prefix), stack.settings)
            if status == ConnectionStatus.CONNECTED:
                await presence.connected(vehicle.vehicle_id)
            else:
                await presence.disconnected(vehicle.vehicle_id, reason="clean_disconnect")
        finally:
            await client.aclose()

    # Playwright's sync API runs an event loop in this thread: report from another one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(go())).result()


def test_the_vehicle_list_and_page_follow_presence_live_without_a_reload(
    console_stack: Stack, page: Page
) -> None:
    sign_in(page, console_stack, "viewer")
    row = page.locator(f'#vehicle-table tr[data-vehicle-id="{PRESENCE_VEHICLE.vehicle_id}"]')
    expect(row.locator("[data-connection]")).to_have_attribute("data-connection", "disconnected")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    try:
        report_presence(console_stack, PRESENCE_VEHICLE, ConnectionStatus.CONNECTED)
        expect(row.locator("[data-connection]")).to_have_attribute("data-connection", "connected")
        expect(row.locator(".seen")).to_contain_text("just now")
        row.get_by_role("link", name=PRESENCE_VEHICLE.vin).click()
        badge = page.locator("#vehicle-connection [data-connection]")
        expect(badge).to_have_attribute("data-connection", "connected")
        report_presence(console_stack, PRESENCE_VEHICLE, ConnectionStatus.DISCONNECTED)
        expect(badge).to_have_attribute("data-connection", "disconnected")
        assert page.evaluate("window.__sameDocument") is True
    finally:
        report_presence(console_stack, PRESENCE_VEHICLE, ConnectionStatus.DISCONNECTED)


def test_the_audit_trail_names_users_and_vehicles(console_stack: Stack, page: Page) -> None:
    """A worker's entries carry only ids; the view shows the username and the VIN."""
    token = httpx.post(
        f"{console_stack.api_url}/api/v1/auth/login",
        json={"username": "engineer", "password": "engineer-demo-pass"},
    ).json()["access_token"]
    command = httpx.post(
        f"{console_stack.api_url}/api/v1/commands",
        headers={"Authorization": f"Bearer {token}"},
        json={"vehicle_id": AUDIT_VEHICLE.vehicle_id, "command_name": "ReadDTC",
              "command_params": {"ecuAddress": "0x10"}},
    ).json()  # fmt: skip
    sign_in(page, console_stack, "admin")
    page.goto(f"{console_stack.api_url}/#/commands/{command['command_id']}")
    expect(page.locator("#command-status")).to_have_attribute(
        "data-status", "completed", timeout=STREAM_WAIT_MS
    )
    nav(page, "Audit").click()
    page.get_by_label("Action").select_option("command_started")
    row = page.locator(".audit-table tbody tr").first
    expect(row.locator("th")).to_have_text("command_started")
    expect(row.locator(".audit-user")).to_have_text("engineer")
    expect(row.locator(".audit-vehicle")).to_have_text(AUDIT_VEHICLE.vin)


def test_the_processes_logged_no_error_and_no_token(console_stack: Stack) -> None:
    """Runs last in this module: it reads the logs of every browser session above."""
    for name, lines in console_stack.log_lines().items():
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert records, f"{name} logged nothing"
        errors = [r for r in records if r.get("level") in ("error", "critical")]
        assert errors == [], f"{name} logged errors: {errors}"
        assert "eyJ" not in "\n".join(lines), f"{name} logged a JWT"


def screenshot(page: Page, name: str) -> None:
    """Save a full-page screenshot as a test artifact (test-artifacts/ is git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def slow(stack: Stack, vehicle: Vehicle, fault: str) -> None:
    """Queue a simulator fault for the vehicle's next exchange (see workers/simulator.py)."""
    client = redis.Redis.from_url(stack.settings.effective_redis_url)
    try:
        client.rpush(Keys(stack.settings.key_prefix).sim_faults(vehicle.vehicle_id), fault)
    finally:
        client.close()


def test_the_console_applies_the_servers_close_code_rule_and_terminal_statuses(
    console_stack: Stack, page: Page
) -> None:
    """The console's protocol values are the server's (common/protocol.py), in the browser."""
    from common.protocol import TERMINAL_STATUSES, CloseCode, should_reconnect

    codes = [*range(1000, 1016), 3000, 3999, *range(4000, 5000, 7), 4029, 4401, 4403, 4999]
    page.goto(f"{console_stack.api_url}/")
    seen = page.evaluate(
        """async (codes) => {
            const protocol = await import("/js/protocol.js");
            return {
                reconnect: codes.map((code) => protocol.shouldReconnect(code)),
                terminal: [...protocol.TERMINAL].sort(),
                close: protocol.CLOSE,
            };
        }""",
        codes,
    )
    assert seen["reconnect"] == [should_reconnect(code) for code in codes]
    assert seen["terminal"] == sorted(TERMINAL_STATUSES)
    assert seen["close"] == {code.name: int(code) for code in CloseCode}


def test_a_snapshot_reaches_the_page_whole_whatever_the_streams_position(
    console_stack: Stack, page: Page
) -> None:
    """The log expired: the snapshot's positions are the command's last ones, so parts at
    or below the client's position are still the stored state and must be taken."""
    sign_in(page, console_stack, "engineer")
    open_vehicle(page, RELOAD_VEHICLE)
    command_id = submit(page, "ReadDTC", {"ecuAddress": "0x10"})
    wait_until_completed(page)
    stored = api_get(console_stack, page, f"/api/v1/commands/{command_id}/responses")
    last_seq = max(timeline_seqs(page))
    client = redis.Redis.from_url(console_stack.settings.effective_redis_url)
    try:
        client.delete(Keys(console_stack.settings.key_prefix).command_events(command_id))
    finally:
        client.close()
    events = page.evaluate(
        """([commandId, since]) => new Promise(async (resolve) => {
            const { CommandStream, commandStreamUrl } = await import("/js/stream.js");
            const events = [];
            new CommandStream({
                url: commandStreamUrl(commandId),
                commandId,
                since,
                onEvent: (event) => events.push(event),
                onState: (state) => state === "done" && resolve(events),
            }).start();
        })""",
        [command_id, last_seq - 1],
    )
    assert all(e["snapshot"] for e in events)
    assert [e["response"]["sequence_number"] for e in events if e["event"] == "response"] == [
        r["sequence_number"] for r in stored
    ]
    assert (events[-1]["event"], events[-1]["status"]) == ("status", "completed")


def test_the_timeline_shows_each_part_of_a_snapshot_once(console_stack: Stack, page: Page) -> None:
    """Snapshot positions are the command's last ones: a part may land on the seq of a
    status already shown, and must still appear, once."""
    page.goto(f"{console_stack.api_url}/")
    texts = page.evaluate(
        """async () => {
            const { Timeline } = await import("/js/render/timeline.js");
            const timeline = new Timeline();
            const part = (n, seq, snapshot) => ({ event: "response", command_id: "c", seq,
                sequence_number: n, snapshot,
                response: { sequence_number: n, is_final: n === 2, response_payload: {} } });
            const status = (value, seq, snapshot) => ({ event: "status", command_id: "c", seq,
                status: value, snapshot });
            for (const event of [
                status("in_progress", 1), part(1, 2), status("retrying", 3),
                status("in_progress", 4),  // then the log expired: a snapshot of 3 events
                part(1, 3, true), part(2, 4, true), status("completed", 5, true),
            ]) timeline.addEvent(event);
            return [...timeline.list.querySelectorAll(".tl-text")].map((e) => e.textContent);
        }"""
    )
    parts = [t for t in texts if " received: " in t]
    assert [p.split(" received")[0] for p in parts] == ["Part 1", "Final part 2"]
    assert texts[-1] == "Status: Completed"


def test_the_api_docs_render_offline_from_the_api_alone(page: Page, console_stack: Stack) -> None:
    """Every request of /docs goes to the api; one to anywhere else is blocked and noted."""
    elsewhere: list[str] = []

    def only_the_api(route: Any) -> None:
        if route.request.url.startswith(console_stack.api_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_api)
    page.goto(f"{console_stack.api_url}/docs")

    operation = page.locator(".opblock-summary-path", has_text="/api/v1/commands").first
    expect(operation).to_be_visible()
    assert elsewhere == []
