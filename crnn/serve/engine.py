"""The serving engine: one ONNX Runtime session per process read through the shared predictor
(preprocessing, width-bucketed batches with true widths, CTC decoding), the lines of a request recognised
together (and, as an option, with those of concurrent requests). A line's answer does not depend on what it
was batched with. Results are cached by the app (crnn.serve.cache), not here.

Everything the engine needs (alphabet, input spec, stride) is read from the ONNX file's metadata, so any
exported model (FP32 or INT8) serves as it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from crnn.ctc import DECODERS
from crnn.data.preprocess import preprocess
from crnn.formats import SERVED_FORMATS
from crnn.lm import load_lm_for
from crnn.onnx_model import OnnxBackend
from crnn.predictor import Predictor, SecondLook
from crnn.serve.batcher import MicroBatcher


@dataclass
class LineResult:
    text: str
    confidence: float
    box: list[int]  # x, y, w, h in the uploaded image


@dataclass
class EngineStats:
    requests: int = 0
    lines: int = 0


@dataclass
class Engine:
    model_path: str
    threads: int = 0
    bucket_px: int = 64  # lines are batched with others of a width within this many pixels
    max_lines_per_call: int = 32  # bounds one model call's memory (a page's lines go in several)
    max_logits_mb: float = 4.0  # and so does this: a call's output is lines x frames x classes floats
    decoder: str = "greedy"  # greedy | beam | lm (beam search + the character LM of `lm_path`)
    lm_path: str = ""  # a character LM file (crnn.lm_build): offers decoder "lm"
    batch_max: int = 0  # micro-batching of concurrent requests: at most this many lines per call (0: off)
    batch_wait_ms: float = 2.0  # and a request waits at most this long for others to join
    # doubtful lines read again blurred, the surer reading kept (crnn.predictor.SecondLook; None: off)
    second_look: SecondLook | None = field(default_factory=SecondLook)
    # readings that look like a licence plate decoded again held to a plate's grammar (crnn.formats; (): off)
    formats: tuple[str, ...] = SERVED_FORMATS
    stats: EngineStats = field(default_factory=EngineStats)

    def __post_init__(self) -> None:
        t0 = time.perf_counter()
        self.backend = OnnxBackend(self.model_path, threads=self.threads)
        fp = self.backend.charset.fingerprint()
        self.lm = load_lm_for(self.lm_path, fp, self.model_path) if self.lm_path else None
        self.predictor = Predictor(
            self.backend,
            decoder=self.decoder,
            lm=self.lm,
            bucket_px=self.bucket_px,
            max_batch=self.max_lines_per_call,
            max_logits_mb=self.max_logits_mb,
            second_look=self.second_look,
            formats=tuple(self.formats),
        )
        self.spec = self.backend.spec
        self.charset = self.backend.charset
        self.by_decoder = {d: replace(self.predictor, decoder=d) for d in self.decoders}
        self.predictor.read_inputs([np.zeros((1, self.spec.height, 64), np.float32)])  # warm-up
        self.batcher = (
            MicroBatcher(self.infer, self.batch_max, self.batch_wait_ms) if self.batch_max > 0 else None
        )
        self.load_seconds = time.perf_counter() - t0

    @property
    def decoders(self) -> tuple[str, ...]:
        """The decoders this engine can serve: lm only with a character LM."""
        return tuple(d for d in DECODERS if d != "lm" or self.lm is not None)

    @property
    def name(self) -> str:
        return Path(self.model_path).name

    def recognize(
        self, crops: list[np.ndarray], boxes: list[list[int]], decoder: str | None = None
    ) -> list[LineResult]:
        """Recognise line crops: alone, or with the lines of concurrent requests when micro-batching is on.
        `decoder` overrides the engine's for this request (beam search skips the micro-batcher)."""
        if not crops:
            return []
        inputs = [preprocess(c, self.spec) for c in crops]
        if decoder not in (None, self.predictor.decoder):
            decoded = [(d.text, round(d.confidence, 4)) for d in self.by_decoder[decoder].read_inputs(inputs)]
        elif self.batcher is not None:
            decoded = self.batcher.submit(inputs)
        else:
            decoded = self.infer(inputs)
        self.stats.lines += len(crops)
        return [LineResult(text, conf, box) for (text, conf), box in zip(decoded, boxes)]

    def infer(self, inputs: list[np.ndarray]) -> list[tuple[str, float]]:
        """Text and confidence per preprocessed line (the predictor batches lines of similar width)."""
        return [(d.text, round(d.confidence, 4)) for d in self.predictor.read_inputs(inputs)]

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
