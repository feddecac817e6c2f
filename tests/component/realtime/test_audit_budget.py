"""Refused admissions cost a caller nothing (a forged token will do) and the audit trail
is bounded: past their rate they are counted, not audited, so they cannot push out
the entries an admin relies on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2 as httpx

from common.audit import AsyncAuditLog, AuditAction, AuditQuery
from common.keys import Keys
from common.redis_client import async_client
from common.settings import Settings
from realtime.service import AUDIT_REFUSALS_BURST
from tests.component.realtime_support import realtime_server, service_of, with_settings
from tests.support import timeout

FORGED = 500


def _audit(settings: Settings, use: Callable[[AsyncAuditLog], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        client = async_client(settings.effective_redis_url)
        try:
            return await use(AsyncAuditLog(client, Keys(settings.key_prefix), settings))
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_a_flood_of_forged_tokens_does_not_push_real_entries_out_of_the_trail(
    settings: Settings,
) -> None:
    small = with_settings(settings, audit_max_entries=300)
    _audit(small, lambda a: a.record(AuditAction.TOKEN_REUSED, outcome="denied", username="eve"))
    with (
        realtime_server(small) as server,
        httpx.Client(base_url=server.http_base, timeout=timeout(10)) as http,
    ):
        for _ in range(FORGED):
            answer = http.get("/sse/vehicles", headers={"Authorization": "Bearer forged"})
            assert answer.status_code == 401
        metrics = service_of(server).metrics
        not_audited = metrics.refusals_not_audited._value.get()
    reused = _audit(small, lambda a: a.query(AuditQuery(action=AuditAction.TOKEN_REUSED)))
    refused = _audit(small, lambda a: a.query(AuditQuery(action=AuditAction.SUBSCRIPTION_REFUSED)))
    assert reused[1] == 1, "the real entry was pushed out"
    assert AUDIT_REFUSALS_BURST <= refused[1] < FORGED  # some audited, the rest counted
    assert refused[1] + not_audited == FORGED
