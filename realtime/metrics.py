"""Prometheus metrics of one realtime process, served at ``/metrics``.

Counters the hub and relay already keep (events relayed, replayed, duplicates,
Pub/Sub reconnects) and the live gauges (connections, channels) are read when the
endpoint is scraped; closes and the send lag are recorded as they happen. Each app
has its own registry, so several apps can live in one process (tests do).

``sovd_realtime_send_lag_seconds`` runs from the moment the relay hands an event to
a connection's queue (on arrival from Redis Pub/Sub, or on reading it from the log)
to the end of its write to the socket: queueing behind a slow client shows here.
The Redis publish -> relay hop is not in it (events carry no publish time);
``bench/realtime.py`` measures publish -> client end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "LiveValues", "RealtimeMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds; fine steps below 10 ms, where a healthy relay sits.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class LiveValues:
    """What the process holds right now, read at scrape time."""

    websocket_connections: int
    sse_connections: int
    subscriptions: int
    channels: int
    events_relayed: int
    events_replayed: int
    duplicates_dropped: int
    pubsub_reconnects: int
    pubsub_connected: bool


class _LiveCollector(Collector):
    def __init__(self, read: Callable[[], LiveValues]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        values = self._read()
        connections = GaugeMetricFamily(
            "sovd_realtime_connections", "Open client connections.", labels=["transport"]
        )
        connections.add_metric(["websocket"], values.websocket_connections)
        connections.add_metric(["sse"], values.sse_connections)
        yield connections
        yield GaugeMetricFamily(
            "sovd_realtime_subscriptions",
            "Client subscriptions to commands.",
            value=values.subscriptions,
        )
        yield GaugeMetricFamily(
            "sovd_realtime_channels",
            "Redis Pub/Sub channels this process subscribes to.",
            value=values.channels,
        )
        yield GaugeMetricFamily(
            "sovd_realtime_pubsub_up",
            "1 while the Pub/Sub connection is up.",
            value=int(values.pubsub_connected),
        )
        yield CounterMetricFamily(
            "sovd_realtime_events_relayed",
            "Live events handed to client queues.",
            value=values.events_relayed,
        )
        yield CounterMetricFamily(
            "sovd_realtime_events_replayed",
            "Events handed to client queues from the durable log.",
            value=values.events_replayed,
        )
        yield CounterMetricFamily(
            "sovd_realtime_duplicates_dropped",
            "Events dropped because the client already had them.",
            value=values.duplicates_dropped,
        )
        yield CounterMetricFamily(
            "sovd_realtime_pubsub_reconnects",
            "Times the Pub/Sub connection dropped and was re-established.",
            value=values.pubsub_reconnects,
        )


class RealtimeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.send_lag = Histogram(
            "sovd_realtime_send_lag_seconds",
            "Time from an event entering a client's queue to its write on the socket.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.closes = Counter(
            "sovd_realtime_closes",
            "Connections closed by the server, by close code.",
            ["code"],
            registry=self.registry,
        )
        self.slow_consumer_closes = Counter(
            "sovd_realtime_slow_consumer_closes",
            "Connections closed because their queue overflowed.",
            registry=self.registry,
        )
        self.refusals_not_audited = Counter(
            "sovd_realtime_refusals_not_audited",
            "Refused admissions past the audit trail's rate (counted here, not audited).",
            registry=self.registry,
        )
        self.connections_opened = Counter(
            "sovd_realtime_connections_opened",
            "Connections accepted after authentication, by transport.",
            ["transport"],
            registry=self.registry,
        )
        #: The child counter of each close code met (server-chosen codes, a few):
        #: ``labels`` takes a lock and formats the label on every call.
        self._closes_by_code: dict[int, Any] = {}

    def count_close(self, code: int) -> None:
        child = self._closes_by_code.get(code)
        if child is None:
            child = self._closes_by_code[code] = self.closes.labels(str(code))
        child.inc()

    def watch(self, read: Callable[[], LiveValues]) -> None:
        """Export the live values ``read`` returns at each scrape."""
        self.registry.register(_LiveCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
