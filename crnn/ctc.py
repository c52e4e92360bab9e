"""CTC decoding over NumPy logits, shared by Torch evaluation and ONNX serving.

Input layout is the model's output: (N, T, C) logits with class 0 the blank. `lengths` gives each line's
valid frames (lines of a padded batch are shorter than the batch's T).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from crnn.charset import Charset

DECODERS = ("greedy", "beam")


@dataclass
class Decoded:
    text: str
    confidence: float  # geometric mean of the kept characters' probabilities (1.0 for an empty line)
    ids: list[int]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    z = logits - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def greedy_decode(logits: np.ndarray, charset: Charset, lengths: np.ndarray | None = None) -> list[Decoded]:
    """Best path: argmax per frame, merge repeats, remove blanks.

    Line by line, over the line's own frames: a full (N, T, C) log-softmax makes several temporaries the
    size of the logits (14 MB each for a 10-line page on a 3,873-class model), which a server's allocator
    then keeps; only the best class's log-probability per frame is needed."""
    if logits.ndim != 3:
        raise ValueError(f"expected (N, T, C) logits, got shape {logits.shape}")
    n, t, _ = logits.shape
    out = []
    for i in range(n):
        ti = t if lengths is None else int(min(t, lengths[i]))
        frames = logits[i, :ti].astype(np.float32, copy=False)
        path = frames.argmax(axis=-1)
        keep = np.ones(ti, dtype=bool)
        if ti:
            keep[1:] = path[1:] != path[:-1]
        keep &= path != 0
        ids = path[keep].tolist()
        conf = 1.0
        if ids:
            kept = frames[keep]
            # the best class is the max: its log-softmax is -log(sum(exp(x - max)))
            best_logp = -np.log(np.exp(kept - kept.max(axis=-1, keepdims=True)).sum(axis=-1))
            conf = float(math.exp(best_logp.mean()))
        out.append(Decoded(charset.decode(ids), conf, ids))
    return out


def beam_decode(
    logits: np.ndarray, charset: Charset, lengths: np.ndarray | None = None, beam_width: int = 10
) -> list[Decoded]:
    """CTC prefix beam search (no language model); better than greedy when frames are ambiguous."""
    logp_all = log_softmax(logits.astype(np.float32, copy=False))
    n, t, c = logp_all.shape
    out = []
    for i in range(n):
        ti = t if lengths is None else int(min(t, lengths[i]))
        # prefix -> (log p ending in blank, log p ending in non-blank)
        beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}
        for f in range(ti):
            lp = logp_all[i, f]
            cand = np.argsort(lp)[::-1][: max(beam_width, 2)]
            nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
            for prefix, (pb, pnb) in beams.items():
                total = np.logaddexp(pb, pnb)
                for k in cand:
                    p = float(lp[k])
                    if k == 0:
                        e = nxt[prefix]
                        e[0] = np.logaddexp(e[0], total + p)
                        continue
                    new = prefix + (int(k),)
                    e = nxt[new]
                    if prefix and prefix[-1] == k:
                        e[1] = np.logaddexp(e[1], pb + p)  # repeat needs a blank in between
                        same = nxt[prefix]
                        same[1] = np.logaddexp(same[1], pnb + p)
                    else:
                        e[1] = np.logaddexp(e[1], total + p)
            ranked = sorted(nxt.items(), key=lambda kv: np.logaddexp(*kv[1]), reverse=True)[:beam_width]
            beams = {k: (v[0], v[1]) for k, v in ranked}
        best, (pb, pnb) = max(beams.items(), key=lambda kv: np.logaddexp(*kv[1]))
        score = float(np.logaddexp(pb, pnb))
        conf = float(math.exp(score / max(len(best), 1))) if best else 1.0
        out.append(Decoded(charset.decode(list(best)), min(conf, 1.0), list(best)))
    return out


def decode(
    logits: np.ndarray,
    charset: Charset,
    lengths: np.ndarray | None = None,
    method: str = "greedy",
    beam_width: int = 10,
) -> list[Decoded]:
    if method == "greedy":
        return greedy_decode(logits, charset, lengths)
    if method == "beam":
        return beam_decode(logits, charset, lengths, beam_width)
    raise ValueError(f"decoder must be one of {DECODERS}, got {method!r}")
