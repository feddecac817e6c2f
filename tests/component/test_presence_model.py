"""Presence bookkeeping under any sequence of reports and sweeps (hypothesis, real Redis)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from common.audit import AuditAction
from common.fleet import demo_fleet, registered
from common.keys import Keys
from common.presence import Presence
from common.redis_client import async_client
from common.settings import Settings
from common.vehicles import VehicleStore
from tests.support import timeout

VEHICLES = [registered(v) for v in demo_fleet()[:3]]
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TIMEOUT_S = 30.0


@pytest.fixture
def machine_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"presence_timeout_s": TIMEOUT_S})


def test_presence_matches_a_model_under_any_sequence_of_reports(
    machine_settings: Settings, redis_url: str
) -> None:
    class PresenceMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
            self.prefix = f"test-{uuid.uuid4().hex[:12]}"
            self.keys = Keys(self.prefix)
            config = machine_settings.model_copy(update={"key_prefix": self.prefix})
            self.client = self.runner.run(self._client())
            self.presence = Presence(self.client, self.keys, config)
            self.sync = redis.Redis.from_url(redis_url, decode_responses=True)
            self.pubsub = self.sync.pubsub(ignore_subscribe_messages=True)
            self.pubsub.subscribe(self.keys.presence_events)
            self.now = T0
            #: vehicle id -> (status, last seen)
            self.model: dict[str, tuple[str, datetime | None]] = {
                v.vehicle_id: ("disconnected", None) for v in VEHICLES
            }
            self.transitions = 0
            self.published = 0
            store = VehicleStore(self.client, self.keys)
            for vehicle in VEHICLES:
                self.runner.run(store.put(vehicle))

        async def _client(self) -> Any:
            return async_client(redis_url)

        def teardown(self) -> None:
            self.pubsub.close()
            self.sync.close()
            self.runner.run(self.client.aclose())
            self.runner.close()

        def _apply(self, vehicle_id: str, status: str, seen: bool, changed: bool) -> None:
            before, last = self.model[vehicle_id]
            self.model[vehicle_id] = (status, self.now if seen else last)
            assert changed == (before != status)
            self.transitions += changed

        @rule(i=st.integers(0, 2), step_s=st.integers(0, 40))
        def connect(self, i: int, step_s: int) -> None:
            self.now += timedelta(seconds=step_s)
            vid = VEHICLES[i].vehicle_id
            change = self.runner.run(self.presence.connected(vid, at=self.now))
            self._apply(vid, "connected", True, change is not None)

        @rule(i=st.integers(0, 2), step_s=st.integers(0, 40))
        def heartbeat(self, i: int, step_s: int) -> None:
            self.now += timedelta(seconds=step_s)
            vid = VEHICLES[i].vehicle_id
            change = self.runner.run(self.presence.heartbeat(vid, at=self.now))
            self._apply(vid, "connected", True, change is not None)

        @rule(i=st.integers(0, 2), step_s=st.integers(0, 40))
        def disconnect(self, i: int, step_s: int) -> None:
            self.now += timedelta(seconds=step_s)
            vid = VEHICLES[i].vehicle_id
            change = self.runner.run(
                self.presence.disconnected(vid, reason="last_will", at=self.now)
            )
            self._apply(vid, "disconnected", False, change is not None)

        @rule(step_s=st.integers(0, 40))
        def sweep(self, step_s: int) -> None:
            self.now += timedelta(seconds=step_s)
            changes = self.runner.run(self.presence.expire_silent(now=self.now))
            cutoff = self.now - timedelta(seconds=TIMEOUT_S)
            due = {
                vid
                for vid, (status, last) in self.model.items()
                if status == "connected" and last is not None and last <= cutoff
            }
            assert {c.vehicle_id for c in changes} == due
            for vid in due:
                self._apply(vid, "disconnected", False, True)

        @invariant()
        def stored_state_matches_the_model(self) -> None:
            for vid, (status, last) in self.model.items():
                raw = self.sync.get(self.keys.vehicle(vid))
                stored = json.loads(raw)
                assert stored["connection_status"] == status
                seen = stored["last_seen_at"]
                assert (datetime.fromisoformat(seen) if seen else None) == last
            connected = {vid for vid, (s, _) in self.model.items() if s == "connected"}
            assert set(self.sync.zrange(self.keys.presence_seen, 0, -1)) == connected

        @invariant()
        def one_event_and_one_audit_entry_per_transition(self) -> None:
            presence_actions = {AuditAction.VEHICLE_CONNECTED, AuditAction.VEHICLE_DISCONNECTED}
            entries = cast(list[tuple[str, dict[str, str]]], self.sync.xrange(self.keys.audit))
            audited = [f["action"] for _, f in entries if f["action"] in presence_actions]
            assert len(audited) == self.transitions
            # Published in the same transaction; delivery to this subscriber may trail a
            # little, so wait (bounded) for it, then make sure no extra one follows.
            deadline = time.monotonic() + timeout(2)
            while self.published < self.transitions and time.monotonic() < deadline:
                if self.pubsub.get_message(timeout=0.05) is not None:
                    self.published += 1
            while self.pubsub.get_message(timeout=0.01) is not None:
                self.published += 1
            assert self.published == self.transitions

    PresenceMachine.TestCase.settings = settings(
        max_examples=15,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    PresenceMachine.TestCase().runTest()
