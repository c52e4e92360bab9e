"""Prometheus metrics of one app: requests and latency by route template, cache, lines, micro-batches.

Requests are labelled by the route's template (`/ocr`, `/health`), never by the raw URL, and every URL that
matches no route shares the label `unmatched`: a scan of random URLs must not grow the label set (and the
memory) forever. The registry belongs to the app, not to prometheus_client's global one, so two apps in one
process (tests) do not collide. Cache, line and micro-batch figures are published before each scrape and,
with several workers, after each request (ServeMetrics), the cache's read under its own lock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crnn.serve.cache import ResultCache

UNMATCHED = "unmatched"
LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class ServeMetrics:
    """The app's metrics: request counters and latency observed by `MetricsMiddleware`, and the cache's,
    the engine's and the micro-batcher's own figures, published into the registry before every scrape and,
    when workers share the files, after every request.

    Why published rather than read at the scrape: with `--workers N` each worker is its own process, and a
    scrape is answered by one of them; its figures alone made the counters seem to jump and reset between
    scrapes. Under prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, which `crnn serve`
    sets for several workers) every worker's counters go to shared files and a scrape sums them all, the
    cache's byte and entry gauges over the live workers."""

    def __init__(self, cache: ResultCache, engine: object) -> None:
        self.cache, self.engine = cache, engine
        self.shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "crnn_requests", "Requests by route template and status.", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "crnn_request_latency_seconds",
            "Request latency by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.counters = {
            "hits": Counter("crnn_cache_hits", "Result cache hits.", registry=r),
            "misses": Counter("crnn_cache_misses", "Result cache misses.", registry=r),
            "lines": Counter("crnn_lines", "Text lines recognised.", registry=r),
        }
        if getattr(engine, "batcher", None) is not None:
            self.counters["calls"] = Counter(
                "crnn_batch_calls", "Model calls made by the micro-batcher.", registry=r
            )
            self.counters["items"] = Counter(
                "crnn_batch_lines", "Lines through the micro-batcher.", registry=r
            )
        self.gauges = {
            "bytes": Gauge(
                "crnn_cache_bytes", "Bytes held by the result cache.", registry=r, multiprocess_mode="livesum"
            ),
            "max_bytes": Gauge(
                "crnn_cache_limit_bytes",
                "The result cache's byte limit.",
                registry=r,
                multiprocess_mode="livesum",
            ),
            "entries": Gauge(
                "crnn_cache_entries",
                "Answers held by the result cache.",
                registry=r,
                multiprocess_mode="livesum",
            ),
        }
        self._published = {k: 0 for k in self.counters}
        self._lock = threading.Lock()

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)
        if self.shared:  # another worker may answer the next scrape; alone, the scrape publishes
            self.publish()

    def publish(self) -> None:
        """This process's cache, line and batch figures into the registry (counters by what they grew)."""
        s = self.cache.stats()
        now = {"hits": s.hits, "misses": s.misses, "lines": self.engine.stats.lines}
        batcher = getattr(self.engine, "batcher", None)
        if batcher is not None:
            now.update(calls=batcher.stats.calls, items=batcher.stats.items)
        with self._lock:
            for k, counter in self.counters.items():
                if now[k] > self._published[k]:
                    counter.inc(now[k] - self._published[k])
                    self._published[k] = now[k]
            for k, gauge in self.gauges.items():
                gauge.set(getattr(s, k))

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes: every worker's figures summed when they share files."""
        self.publish()
        if not self.shared:
            return generate_latest(self.registry)
        summed = CollectorRegistry()
        multiprocess.MultiProcessCollector(summed)
        return generate_latest(summed)


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
