"""The serving engine: one ONNX Runtime session per process read through the shared predictor
(preprocessing, width-bucketed batches with true widths, CTC decoding), the lines of a request recognised
together (and, as an option, with those of concurrent requests), and an LRU cache of results keyed by the
upload's SHA-256. A line's answer does not depend on what it was batched with.

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

from crnn.data.preprocess import preprocess
from crnn.onnx_model import OnnxBackend
from crnn.predictor import Predictor
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
    max_lines_per_call: int = 32  # bounds one model call's memory (a page's lines go in several)
    decoder: str = "greedy"  # greedy | beam
    batch_max: int = 0  # micro-batching of concurrent requests: at most this many lines per call (0: off)
    batch_wait_ms: float = 2.0  # and a request waits at most this long for others to join
    stats: EngineStats = field(default_factory=EngineStats)

    def __post_init__(self) -> None:
        t0 = time.perf_counter()
        self.backend = OnnxBackend(self.model_path, threads=self.threads)
        self.predictor = Predictor(
            self.backend, decoder=self.decoder, bucket_px=self.bucket_px, max_batch=self.max_lines_per_call
        )
        self.spec = self.backend.spec
        self.charset = self.backend.charset
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self.predictor.read_inputs([np.zeros((1, self.spec.height, 64), np.float32)])  # warm-up
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
        """Text and confidence per preprocessed line (the predictor batches lines of similar width)."""
        return [(d.text, round(d.confidence, 4)) for d in self.predictor.read_inputs(inputs)]

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
