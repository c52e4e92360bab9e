"""The one way to read text lines: preprocess -> model -> CTC decode, whatever the backend.

Evaluation, export parity, quantization, serving, the command line and the tests all read lines through a
`Predictor`, the way docTR's predictors are one object. It sorts lines by width, cuts them into batches of
similar width (at most `max_batch` lines per model call, which bounds the memory of a page's call) and hands
the backend each line's true width, so the model masks and packs past it: a line reads the same alone or in
any batch. A backend whose model has no width input (files exported before it existed) only ever sees
lines of one exact width together, which keeps that promise at some cost in speed.

This module imports neither PyTorch nor ONNX Runtime: backends come from `crnn.onnx_model` (ONNX Runtime)
and `crnn.inference` (PyTorch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from crnn.charset import Charset
from crnn.ctc import DECODERS, Decoded, decode, path_confidence
from crnn.data.preprocess import InputSpec, pad_batch, preprocess, smooth_line
from crnn.formats import Format, formats_by_name, held_reading, writable
from crnn.lm import CharLM
from crnn.models.geometry import output_length


class Backend(Protocol):
    """A model that maps a right-padded batch and its lines' true widths to (N, T, C) logits."""

    charset: Charset
    spec: InputSpec
    hstride: int
    takes_widths: bool  # False: the model reads its padding, so only equal widths may share a call

    def logits(self, batch: np.ndarray, widths: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SecondLook:
    """A line read with a confidence under `below` is read again blurred by a Gaussian of `sigma` pixels at
    the model's height (crnn.data.preprocess.smooth_line), and the more confident reading is kept.

    Why: dot-matrix print (a till's receipt) is rows of separate dots, which the recognizer reads far
    better once they run together, and it reads such lines with low confidence; a blur costs solid print
    a little, so only doubtful lines get it, and only when it makes the reading surer. Chosen on synthetic
    lines (scripts/second_look.py, v2 INT8 + LM): receipt lines printed in a till's draft dots 17.6 ->
    11.4 % CER, in round dots 11.5 -> 10.5 %, plain 0.84 -> 0.80 %; 3,600 validation lines of every scene
    1.43 % either way, one line in eight of them read twice."""

    sigma: float = 0.8
    below: float = 0.9


@dataclass
class Predictor:
    backend: Backend
    decoder: str = "greedy"  # greedy | beam (CTC prefix beam search) | lm (beam search + `lm`)
    beam_width: int = 10
    lm: CharLM | None = None  # the character LM of decoder "lm", with its fusion weights
    bucket_px: int = 64  # lines whose widths differ by at most this share a model call
    max_batch: int = 64  # lines per model call
    max_logits_mb: float = 32.0  # and at most this much float32 output per call (N x T x classes)
    second_look: SecondLook | None = None  # doubtful lines read again blurred (serving's default: on)
    # readings that look like one of these formats decoded again held to it (crnn.formats; serving's
    # default: crnn.formats.SERVED_FORMATS)
    formats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._formats = tuple(f for f in formats_by_name(self.formats) if writable(f.grammar, self.charset))
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.decoder == "lm" and self.lm is None:
            raise ValueError("decoder 'lm' needs a character LM (lm=crnn.lm.load_lm(path))")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")

    @property
    def charset(self) -> Charset:
        return self.backend.charset

    @property
    def applied_formats(self) -> list[str]:
        """The formats readings are held to: those asked for that this model's alphabet can write."""
        return [f.name for f in self._formats]

    @property
    def format_ids(self) -> dict[str, str]:
        """The applied formats' fingerprints by name: which version of each a reading was held to."""
        return {f.name: f.fingerprint for f in self._formats}

    @property
    def spec(self) -> InputSpec:
        return self.backend.spec

    def __call__(self, images: list[np.ndarray]) -> list[Decoded]:
        """Decoded text of each uint8 line image (grayscale, BGR or BGRA), in input order."""
        return self.read_inputs([preprocess(img, self.spec) for img in images])

    def read_inputs(self, inputs: list[np.ndarray]) -> list[Decoded]:
        """Decoded text of each preprocessed (1, H, W) input, in input order; with a second look, each line
        read with a confidence under its threshold is read again blurred and the surer reading kept (never
        an empty one)."""
        out = self._read_all(inputs)
        look = self.second_look
        if look is not None:
            doubtful = [i for i, d in enumerate(out) if d.confidence < look.below]
            if doubtful:
                again = self._read_all([smooth_line(inputs[i], look.sigma) for i in doubtful])
                for i, d in zip(doubtful, again):
                    # an empty reading's confidence is 1 (nothing kept): blurred away is not surer
                    if d.text.strip() and d.confidence > out[i].confidence:
                        out[i] = d
        return out

    def _read_all(self, inputs: list[np.ndarray]) -> list[Decoded]:
        out: list[Decoded | None] = [None] * len(inputs)
        for idx in self.batches([x.shape[-1] for x in inputs]):
            for i, d in zip(idx, self.read_batch([inputs[i] for i in idx])):
                out[i] = d
        return out  # type: ignore[return-value]

    def read_batch(self, inputs: list[np.ndarray]) -> list[Decoded]:
        """One model call over `inputs`, as they come (the caller chose the batch)."""
        batch, widths = pad_batch(inputs)
        logits = self.backend.logits(batch, widths)
        lengths = np.array([output_length(int(w), self.backend.hstride) for w in widths])
        out = decode(logits, self.charset, lengths, self.decoder, self.beam_width, self.lm)
        for i, d in enumerate(out):
            fmt = next((f for f in self._formats if f.looks_like(d.text)), None)
            if fmt is not None:
                out[i] = self._held_to(fmt, logits[i, : int(lengths[i])], d)
        return out

    def _held_to(self, fmt: Format, frames: np.ndarray, read: Decoded) -> Decoded:
        """`read`, or the reading `fmt` holds the line's frames to (crnn.formats.held_reading)."""
        frames = np.asarray(frames, np.float32)
        ids = held_reading(frames, fmt, self.charset)
        if ids is None:
            return read
        return Decoded(self.charset.decode(ids), path_confidence(frames, ids), ids)

    def batches(self, widths: list[int]) -> list[list[int]]:
        """Indices grouped by width: sorted, within `bucket_px` (exact for width-blind models), at most
        `max_batch` per group."""
        tolerance = self.bucket_px if self.backend.takes_widths else 0
        # a call's logits are N x frames(widest) x classes floats: on a 3,873-class model 32 lines of
        # 800 px are 99 MB, which ONNX Runtime's arena then keeps for the life of the process
        frame_budget = self.max_logits_mb * 2**20 / (4 * self.charset.num_classes)
        order = sorted(range(len(widths)), key=lambda i: widths[i])
        groups: list[list[int]] = []
        for i in order:
            g = groups[-1] if groups else None
            frames = output_length(widths[i], self.backend.hstride) * (len(g) + 1) if g else 0
            if (
                g is None
                or len(g) >= self.max_batch
                or widths[i] - widths[g[0]] > tolerance
                or frames > frame_budget
            ):
                groups.append([i])
            else:
                g.append(i)
        return groups


def batch_invariance_gap(backend: Backend, inputs: list[np.ndarray], extra_px: int = 64) -> float:
    """Max |logit difference| over each line's own frames between reading it alone and reading it in one
    padded batch with all of `inputs` and a line `extra_px` wider than the widest (random pixels).

    0 up to float rounding for a model that sees true widths; a model that reads its padding, or INT8
    whose activation scale is computed per call (dynamic quantization), differ."""
    h = inputs[0].shape[-2]
    wide = np.random.default_rng(0).uniform(-0.5, 0.5, (1, h, max(x.shape[-1] for x in inputs) + extra_px))
    batch, widths = pad_batch([*inputs, wide.astype(np.float32)])
    together = backend.logits(batch, widths)
    worst = 0.0
    for i, x in enumerate(inputs):
        alone = backend.logits(x[None], np.array([x.shape[-1]], dtype=np.int64))[0]
        t = output_length(x.shape[-1], backend.hstride)
        worst = max(worst, float(np.abs(alone[:t] - together[i, :t]).max()))
    return worst
