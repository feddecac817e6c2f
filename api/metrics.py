"""Prometheus metrics of the api: HTTP traffic, and command outcomes read from Redis.

Command counts by type and terminal status, the submit-to-terminal duration histogram
and queue depths are kept in Redis by the event script and Dramatiq, so they are exact
across any number of worker processes; the api reads them at scrape time.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from typing import Any, cast

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.state import AppState
from common.eventlog import DURATION_BUCKETS_S
from common.http_errors import error_response

__all__ = ["ApiMetrics", "HttpMetrics", "MetricsListener", "metrics_endpoint"]

log = structlog.get_logger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _CommandCollector(Collector):
    """Yields the snapshot read from Redis just before the scrape."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] = {}

    def collect(self) -> Iterator[Any]:
        totals = CounterMetricFamily(
            "sovd_commands", "Commands that reached a terminal status.", labels=["type", "status"]
        )
        for key, value in self.snapshot.get("totals", {}).items():
            command_type, _, status = key.partition("|")
            totals.add_metric([command_type, status], float(value))
        yield totals
        durations = HistogramMetricFamily(
            "sovd_command_duration_seconds",
            "Time from submission to the terminal status.",
            labels=["type"],
        )
        for command_type, fields in self.snapshot.get("durations", {}).items():
            buckets = [(str(b), float(fields.get(str(b), 0))) for b in DURATION_BUCKETS_S]
            count = float(fields.get("count", 0))
            buckets.append(("+Inf", count))
            durations.add_metric([command_type], buckets, float(fields.get("sum", 0)))
        yield durations
        depth = GaugeMetricFamily(
            "sovd_queue_depth", "Messages waiting in each Dramatiq queue.", labels=["queue"]
        )
        for queue, size in self.snapshot.get("queues", {}).items():
            depth.add_metric([queue], float(size))
        yield depth


class ApiMetrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sovd_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sovd_http_request_duration_seconds",
            "HTTP request duration by route template.",
            ["route", "method"],
            registry=self.registry,
        )
        self.commands = _CommandCollector()
        self.registry.register(self.commands)

    async def render(self, state: AppState) -> Response:
        keys = state.keys
        queues = sorted({policy.queue_name for policy in state.policies.values()})
        async with state.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.stats("commands"))
            for name in state.policies:
                pipe.hgetall(keys.stats(f"duration:{name}"))
            for queue in queues:
                pipe.llen(keys.broker_queue(queue))
            results = await pipe.execute()
        totals = cast(dict[str, str], results[0])
        durations = dict(zip(state.policies, results[1 : 1 + len(state.policies)], strict=True))
        depth = dict(zip(queues, results[1 + len(state.policies) :], strict=True))
        self.commands.snapshot = {"totals": totals, "durations": durations, "queues": depth}
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)


class HttpMetrics:
    """Pure ASGI middleware counting requests by route template (not raw path), and
    with ``access_log`` the request's log line (path without its query string)."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, access_log: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = _route_template(scope)
            method = scope["method"]
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(elapsed)
            if self.access_log:
                client = scope.get("client")
                log.info(
                    "http_request",
                    method=method,
                    path=scope["path"],
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    client=client[0] if client else None,
                )


def _route_template(scope: Scope) -> str:
    """The matched route's template (routing records it in the scope), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


#: Scope key set by ``MetricsListener`` on requests that came in on the metrics listener.
_ON_METRICS_LISTENER = "sovd.metrics_listener"


class MetricsListener:
    """The metrics listener serves ``/metrics`` and nothing else (pure ASGI).

    A request belongs to it when it arrived on its port (``scope["server"]``, the local
    socket's address: no header a client sends can change it).
    """

    def __init__(self, app: ASGIApp, *, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if self.port and scope["type"] == "http" and server and server[1] == self.port:
            if scope["path"] != "/metrics":
                await error_response(404, "not_found", "Not Found")(scope, receive, send)
                return
            scope[_ON_METRICS_LISTENER] = True
        await self.app(scope, receive, send)


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus exposition: on the metrics listener, or with the metrics token."""
    state: AppState = request.app.state.sovd
    if not request.scope.get(_ON_METRICS_LISTENER):
        token = state.settings.metrics_token
        if not token:
            return error_response(404, "not_found", "Not Found")
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), token.encode()
        ):
            return error_response(
                401,
                "unauthorized",
                "The metrics token is missing or wrong",
                headers={"WWW-Authenticate": "Bearer"},
            )
    metrics: ApiMetrics = request.app.state.metrics
    return await metrics.render(state)
