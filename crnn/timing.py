"""Latency measurement shared by the export, quantize and eval stages: warm-up, then percentiles."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def measure(fn: Callable[[], object], reps: int = 50, warmup: int = 5) -> dict[str, float]:
    """Milliseconds per call: p50, p95, p99 and mean over `reps` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = np.empty(reps)
    for i in range(reps):
        t = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t
    ms = times * 1000
    return {
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
    }
