"""The serving engine: one ONNX Runtime session per process, the shared preprocessing and CTC decoder, the
lines of a request recognised together (and, as an option, with those of concurrent requests), and an LRU
cache of results keyed by the upload's SHA-256.

Everything the engine needs (alphabet, input spec, stride) is read from the ONNX file's metadata, so any
exported model (FP32 or INT8) serves as it is.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crnn.ctc import greedy_decode
from crnn.data.preprocess import pad_batch, preprocess
from crnn.models.geometry import output_length
from crnn.onnx_model import OnnxBackend
from crnn.serve.batcher import MicroBatcher


@dataclass
class LineResult:
    text: str
    confidence: float
    box: list[int]  # x, y, w, h in the uploaded image


@dataclass
class EngineStats:
    requests: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    lines: int = 0


@dataclass
class Engine:
    model_path: str
    threads: int = 0
    cache_entries: int = 1024
    bucket_px: int = 64  # lines are batched with others of a width within this many pixels
    batch_max: int = 0  # micro-batching of concurrent requests: at most this many lines per call (0: off)
    batch_wait_ms: float = 2.0  # and a request waits at most this long for others to join
    stats: EngineStats = field(default_factory=EngineStats)

    def __post_init__(self) -> None:
        t0 = time.perf_counter()
        self.backend = OnnxBackend(self.model_path, threads=self.threads)
        self.spec = self.backend.spec
        self.charset = self.backend.charset
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self.backend.logits(np.zeros((1, 1, self.spec.height, 64), np.float32))  # warm-up
        self.batcher = (
            MicroBatcher(self.infer, self.batch_max, self.batch_wait_ms) if self.batch_max > 0 else None
        )
        self.load_seconds = time.perf_counter() - t0

    @property
    def name(self) -> str:
        return Path(self.model_path).name

    def recognize(self, crops: list[np.ndarray], boxes: list[list[int]]) -> list[LineResult]:
        """Recognise line crops: alone, or with the lines of concurrent requests when micro-batching is on."""
        if not crops:
            return []
        inputs = [preprocess(c, self.spec) for c in crops]
        decoded = self.batcher.submit(inputs) if self.batcher is not None else self.infer(inputs)
        self.stats.lines += len(crops)
        return [LineResult(text, conf, box) for (text, conf), box in zip(decoded, boxes)]

    def infer(self, inputs: list[np.ndarray]) -> list[tuple[str, float]]:
        """Text and confidence per preprocessed line; lines of similar width go through the model together."""
        order = sorted(range(len(inputs)), key=lambda i: inputs[i].shape[-1])
        results: list[tuple[str, float]] = [("", 0.0)] * len(inputs)
        start = 0
        while start < len(order):
            end = start + 1
            while (
                end < len(order)
                and inputs[order[end]].shape[-1] - inputs[order[start]].shape[-1] <= self.bucket_px
            ):
                end += 1
            idx = order[start:end]
            batch, widths = pad_batch([inputs[i] for i in idx])
            lengths = np.array([output_length(int(w), self.backend.hstride) for w in widths])
            for i, d in zip(idx, greedy_decode(self.backend.logits(batch), self.charset, lengths)):
                results[i] = (d.text, round(d.confidence, 4))
            start = end
        return results

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()

    # -- cache --
    @staticmethod
    def cache_key(data: bytes, options: dict) -> str:
        h = hashlib.sha256(data)
        h.update(repr(sorted(options.items())).encode())
        return h.hexdigest()

    def cache_get(self, key: str) -> dict | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.stats.cache_hits += 1
            else:
                self.stats.cache_misses += 1
            return hit

    def cache_put(self, key: str, value: dict) -> None:
        if self.cache_entries <= 0:
            return
        with self._lock:
            self._cache[key] = value
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)
