"""Prometheus metrics of one app: requests and latency by route template, cache, lines, micro-batches.

Requests are labelled by the route's template (`/ocr`, `/health`), never by the raw URL, and every URL that
matches no route shares the label `unmatched`: a scan of random URLs must not grow the label set (and the
memory) forever. The registry belongs to the app, not to prometheus_client's global one, so two apps in one
process (tests) do not collide. Cache, line and micro-batch figures are read when /metrics is scraped, the
cache's under its own lock.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crnn.serve.cache import ResultCache

UNMATCHED = "unmatched"
LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class ServeMetrics:
    """The app's registry: request counters and latency observed by `MetricsMiddleware`, live figures
    collected from the cache and the engine at each scrape."""

    def __init__(self, cache: ResultCache, engine: object) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "crnn_requests",
            "Requests by route template and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "crnn_request_latency_seconds",
            "Request latency by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_LiveFigures(cache, engine))

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class _LiveFigures(Collector):
    def __init__(self, cache: ResultCache, engine: object) -> None:
        self.cache, self.engine = cache, engine

    def collect(self) -> Iterable[Metric]:
        s = self.cache.stats()
        yield CounterMetricFamily("crnn_cache_hits", "Result cache hits.", value=s.hits)
        yield CounterMetricFamily("crnn_cache_misses", "Result cache misses.", value=s.misses)
        yield GaugeMetricFamily("crnn_cache_bytes", "Bytes held by the result cache.", value=s.bytes)
        yield GaugeMetricFamily("crnn_cache_limit_bytes", "The result cache's byte limit.", value=s.max_bytes)
        yield GaugeMetricFamily("crnn_cache_entries", "Answers held by the result cache.", value=s.entries)
        yield CounterMetricFamily("crnn_lines", "Text lines recognised.", value=self.engine.stats.lines)
        batcher = getattr(self.engine, "batcher", None)
        if batcher is not None:
            b = batcher.stats
            yield CounterMetricFamily(
                "crnn_batch_calls", "Model calls made by the micro-batcher.", value=b.calls
            )
            yield CounterMetricFamily("crnn_batch_lines", "Lines through the micro-batcher.", value=b.items)


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route a request's path matches (whatever its method), or `unmatched`."""
    for route in routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            return getattr(route, "path", UNMATCHED)
    return UNMATCHED


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP request by route template and status, and times it. A
    request whose handler raised counts as a 500 (the app's error handler answers it outside)."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            self.metrics.observe(route_template(self.routes, scope), status, time.perf_counter() - t0)
