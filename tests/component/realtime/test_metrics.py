"""Prometheus metrics at /metrics: the names are there and the counters move."""

from __future__ import annotations

import httpx2 as httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from common.commands import CommandStatus
from common.eventlog import EventLog
from common.events import StatusEvent
from tests.component.realtime_support import (
    World,
    close_of,
    follow,
    open_ws,
    publish_run,
    receive,
    subscribers,
)
from tests.support import ServerThread, timeout, wait_for

EXPECTED = {
    "sovd_realtime_connections",
    "sovd_realtime_subscriptions",
    "sovd_realtime_channels",
    "sovd_realtime_pubsub_up",
    "sovd_realtime_events_relayed",
    "sovd_realtime_events_replayed",
    "sovd_realtime_duplicates_dropped",
    "sovd_realtime_pubsub_reconnects",
    "sovd_realtime_slow_consumer_closes",
    "sovd_realtime_closes",
    "sovd_realtime_connections_opened",
    "sovd_realtime_send_lag_seconds",
}


def _scrape(server: ServerThread) -> dict[str, float]:
    """Every sample of /metrics by name and labels, e.g. ``x_total{code="4404"}``."""
    response = httpx.get(f"{server.http_base}/metrics", timeout=timeout(5))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        samples[f"family:{family.name}"] = 1
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_metrics_name_every_family(server: ServerThread) -> None:
    names = {key.split(":", 1)[1] for key in _scrape(server) if key.startswith("family:")}

    assert EXPECTED - names == set()


def test_the_counters_and_gauges_move_with_the_traffic(
    server: ServerThread, world: World, events: EventLog, sync_redis: redis.Redis
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    publish_run(events, command_id, chunks=2)  # 4 events in the log
    before = _scrape(server)
    with follow(server, command_id, world.token(alice)) as ws:
        assert len(receive(ws, 4)) == 4  # replayed
        other = world.command(alice)
        ws.send(f'{{"action":"subscribe","command_id":"{other}"}}')
        assert receive(ws, 1)[0]["event"] == "subscribed"
        events.append(StatusEvent(command_id=other, status=CommandStatus.IN_PROGRESS))
        assert receive(ws, 1)[0]["seq"] == 1  # relayed live
        during = _scrape(server)
        sync_redis.client_kill_filter(_type="pubsub")
        wait_for(
            lambda: (
                _scrape(server)["sovd_realtime_pubsub_reconnects_total"] >= 1
                and subscribers(sync_redis, other) == 1
            ),
            what="the relay to reconnect",
        )
    with open_ws(server, "not-a-uuid", world.token(alice)) as refused:
        assert close_of(refused)[0] == 4404
    after = _scrape(server)

    assert during['sovd_realtime_connections{transport="websocket"}'] == 1
    assert during["sovd_realtime_subscriptions"] == 2
    assert during["sovd_realtime_channels"] == 2
    assert during["sovd_realtime_pubsub_up"] == 1
    replayed = during["sovd_realtime_events_replayed_total"]
    replayed -= before.get("sovd_realtime_events_replayed_total", 0)
    relayed = during["sovd_realtime_events_relayed_total"]
    assert replayed >= 4  # the first command's log; the second's event may come either way
    assert replayed + relayed == 5
    assert during["sovd_realtime_send_lag_seconds_count"] >= 7  # welcome, 4, subscribed, 1
    assert during['sovd_realtime_connections_opened_total{transport="websocket"}'] == 1
    assert after["sovd_realtime_pubsub_reconnects_total"] >= 1
    assert after['sovd_realtime_closes_total{code="4404"}'] == 1
