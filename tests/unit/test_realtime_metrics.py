"""The realtime metrics registry: live values read at scrape time, per-app registries."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from realtime.metrics import LiveValues, RealtimeMetrics


def _samples(metrics: RealtimeMetrics) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def test_live_values_are_read_at_each_scrape() -> None:
    metrics = RealtimeMetrics()
    current = {"relayed": 1}
    metrics.watch(
        lambda: LiveValues(
            websocket_connections=2,
            sse_connections=1,
            subscriptions=3,
            channels=2,
            events_relayed=current["relayed"],
            events_replayed=5,
            duplicates_dropped=0,
            pubsub_reconnects=1,
            pubsub_connected=True,
        )
    )

    first = _samples(metrics)
    current["relayed"] = 9
    second = _samples(metrics)

    assert first["sovd_realtime_connections{transport=websocket}"] == 2
    assert first["sovd_realtime_connections{transport=sse}"] == 1
    assert first["sovd_realtime_channels"] == 2
    assert first["sovd_realtime_pubsub_up"] == 1
    assert (
        first["sovd_realtime_events_relayed_total"],
        second["sovd_realtime_events_relayed_total"],
    ) == (1, 9)


def test_two_registries_do_not_clash() -> None:
    first, second = RealtimeMetrics(), RealtimeMetrics()

    first.slow_consumer_closes.inc()
    first.send_lag.observe(0.002)

    assert _samples(first)["sovd_realtime_slow_consumer_closes_total"] == 1
    assert _samples(second)["sovd_realtime_slow_consumer_closes_total"] == 0
    assert _samples(first)["sovd_realtime_send_lag_seconds_count"] == 1
