"""Memory that must not grow without bound: the result cache holds at most its byte limit however many big
previews it is asked to keep, and /metrics keeps one label set per route however many URLs are scanned."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from crnn.serve.cache import ResultCache
from tests.conftest import bundled_model
from tests.test_serve import ocr_preview, start_server

BUNDLED = bundled_model()
CACHE_MB = 2


@pytest.fixture(scope="module")
def server():
    proc, base = start_server(BUNDLED, "--threads", "1", "--cache-mb", str(CACHE_MB))
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def _metrics(base: str) -> list:
    r = requests.get(base + "/metrics", timeout=5)
    assert r.status_code == 200
    return list(text_string_to_metric_families(r.text))  # Prometheus' own parser


def _series(families: list) -> set[tuple]:
    """Every time series exposed: metric sample name and its labels."""
    return {(s.name, tuple(sorted(s.labels.items()))) for f in families for s in f.samples}


def _value(families: list, sample: str) -> float:
    return next(s.value for f in families for s in f.samples if s.name == sample)


def _noisy_png(seed: int, side: int = 600) -> bytes:
    """A line-shaped image that PNG cannot compress: its preview is about 0.25 MB of base64."""
    img = np.random.default_rng(seed).integers(0, 256, (side // 6, side * 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def _ocr(base: str, data: bytes) -> dict:
    return ocr_preview(base, data)


def test_scanning_random_urls_does_not_grow_the_label_set(server):
    requests.get(f"{server}/scan-{uuid.uuid4().hex}", timeout=5)  # the first 404 may add its series
    requests.post(f"{server}/ocr", timeout=5)  # and a 422 on a known route
    _metrics(server)  # and the scrape itself, counted once it has answered
    before = _series(_metrics(server))
    for _ in range(500):
        path = f"/{uuid.uuid4().hex}/{uuid.uuid4().hex[:6]}"
        assert requests.get(server + path, timeout=5).status_code == 404
    after = _series(_metrics(server))
    grown = after - before
    print(f"{len(before)} series before 500 random URLs, {len(after)} after; new: {sorted(grown)[:5]}")
    assert grown == set()


def test_metrics_parse_and_label_by_route_template(server):
    requests.get(server + "/health", timeout=5)
    requests.get(f"{server}/no/such/{uuid.uuid4().hex}", timeout=5)
    families = {f.name: f for f in _metrics(server)}
    routes = {s.labels["route"] for s in families["crnn_requests"].samples}
    assert {"/health", "unmatched"} <= routes
    assert not any("no/such" in r for r in routes)
    assert families["crnn_request_latency_seconds"].type == "histogram"
    for name in ("crnn_cache_hits", "crnn_cache_misses", "crnn_cache_bytes", "crnn_lines"):
        assert name in families, name


def test_the_cache_holds_at_most_its_byte_limit(server):
    limit = CACHE_MB * 1e6
    images = [_noisy_png(seed) for seed in range(20)]  # about 5 MB of answers in all
    held = []
    for data in images:
        body = _ocr(server, data)
        assert body["cached"] is False
        families = _metrics(server)
        held.append(_value(families, "crnn_cache_bytes"))
        assert 0 < held[-1] <= limit
    print(f"cache bytes after each of {len(images)} previews (limit {limit / 1e6:.0f} MB): {held}")
    # checked from outside: the oldest answers were evicted to make room, the newest is still there
    assert _ocr(server, images[0])["cached"] is False
    assert _ocr(server, images[-1])["cached"] is True
    assert _value(_metrics(server), "crnn_cache_entries") < len(images)


def test_result_cache_counts_bytes_from_many_threads_and_refuses_what_cannot_fit():
    cache = ResultCache(100_000)
    sizes = [1_000, 5_000, 20_000, 30_000]

    def fill(worker: int) -> None:
        for i in range(200):
            cache.put(f"{worker}-{i}", {"preview": "x" * sizes[(worker + i) % 4], "i": i})
            assert cache.stats().bytes <= 100_000

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fill, range(8)))
    s = cache.stats()
    assert 0 < s.bytes <= s.max_bytes == 100_000 and s.entries >= 3
    assert cache.put("last", {"i": -1}) is True
    assert cache.get("last")["i"] == -1 and cache.get("0-0") is None  # newest kept, oldest gone
    assert cache.put("huge", {"preview": "x" * 200_000}) is False and cache.get("huge") is None
    assert (cache.stats().hits, cache.stats().misses) == (1, 2)
    assert ResultCache(0).put("k", {}) is False  # 0 MB: off
