"""CTC decoding over NumPy logits, shared by Torch evaluation and ONNX serving.

Input layout is the model's output: (N, T, C) logits with class 0 the blank. `lengths` gives each line's
valid frames (lines of a padded batch are shorter than the batch's T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from crnn.charset import Charset
from crnn.lm import EOS, CharLM

DECODERS = ("greedy", "beam", "lm")  # lm: beam search with the character LM (crnn.lm)


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
        out.append(Decoded(charset.decode(ids), _kept_confidence(frames[keep]), ids))
    return out


def _kept_confidence(kept: np.ndarray) -> float:
    """Geometric mean of the best class's probability on each character's first frame (1.0 for none)."""
    if not len(kept):
        return 1.0
    # the best class is the max: its log-softmax is -log(sum(exp(x - max)))
    best_logp = -np.log(np.exp(kept - kept.max(axis=-1, keepdims=True)).sum(axis=-1))
    return float(math.exp(best_logp.mean()))


def path_confidence(
    frames: np.ndarray, ids: list[int], best: tuple[np.ndarray, np.ndarray] | None = None
) -> float:
    """The greedy decoder's confidence, for any text a decoder chose: the geometric mean of each character's
    probability on the first frame of its run, along the text's most probable CTC alignment (Viterbi).
    When the text is the best path's, that alignment is the best path and this is greedy's figure; so a
    line's confidence means the same whichever decoder (beam, LM) read it, and a threshold set on one
    holds for the others. (A beam's own score, the text's probability summed over alignments and spread
    per character, runs lower: it also carries every blank frame's doubt.) `best`: each frame's best class
    and its log-probability, when the caller has them (`frame_candidates` does: an argmax and a
    log-softmax over every class cost as much as greedy decoding; its log-probabilities are within 5e-4
    nats of the exact ones)."""
    if not ids:
        return 1.0
    finite = np.isfinite(frames).all(axis=-1)
    if not finite.all():  # a NaN frame is skipped, as the decoders skip it (it has no candidates)
        frames = frames[finite]
        best = None if best is None else (best[0][finite], best[1][finite])
    t = len(frames)
    path = frames.argmax(axis=-1) if best is None else best[0]
    if t:
        keep = np.ones(t, dtype=bool)
        keep[1:] = path[1:] != path[:-1]
        keep &= path != 0
        if path[keep].tolist() == list(ids):
            return _kept_confidence(frames[keep]) if best is None else float(math.exp(best[1][keep].mean()))
    ext = np.zeros(2 * len(ids) + 1, dtype=np.int64)
    ext[1::2] = ids
    s = len(ext)
    if t < len(ids):
        return 0.0
    if best is None:
        m = frames.max(axis=-1, keepdims=True)
        lse = m + np.log(np.exp(frames - m).sum(axis=-1, keepdims=True))
    else:  # the best class's logit less its log-probability
        lse = (frames[np.arange(t), path] - best[1])[:, None]
    lp = frames[:, ext] - lse  # (T, S)
    skip = np.zeros(s, dtype=bool)  # a character may follow the one before it directly unless they repeat
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    moves = np.full((3, s), -np.inf)  # row k: arriving from state s - k (stay, next, skip a blank)
    dp = moves[0]
    dp[:2] = lp[0, :2]
    back = np.zeros((t, s), dtype=np.int64)
    no_skip, states = ~skip, np.arange(s)
    for i in range(1, t):
        moves[1, 1:] = dp[:-1]
        moves[2, 2:] = dp[:-2]
        moves[2, no_skip] = -np.inf
        k = moves.argmax(axis=0)
        back[i] = k
        dp = moves[k, states] + lp[i]
        moves[0] = dp
    state = s - 1 if s == 1 or dp[s - 1] >= dp[s - 2] else s - 2
    if not np.isfinite(dp[state]):
        return 0.0
    firsts = {}
    for i in range(t - 1, -1, -1):
        if state % 2:
            firsts[state] = i  # overwritten down to the run's first frame
        state -= int(back[i, state])
    return float(math.exp(np.mean([lp[i, st] for st, i in firsts.items()])))


NEG = -1e30
BEAM_NATS = 8.0  # a prefix this far below the best one (3e-4 of its probability, LM included) is dropped
TAIL_NATS = 16.0  # classes further below a frame's best are left out of its log-softmax denominator
PRUNE_NATS = 7.0  # a candidate this far below its frame's best class (1e-3 of its probability) is skipped


def _lse(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b <= NEG else a + math.log1p(math.exp(b - a))


def beam_decode(
    logits: np.ndarray,
    charset: Charset,
    lengths: np.ndarray | None = None,
    beam_width: int = 10,
    lm: CharLM | None = None,
) -> list[Decoded]:
    """CTC prefix beam search; better than greedy when frames are ambiguous. With `lm` each prefix also
    carries alpha log P_lm(its characters, its end) + beta per character (crnn.lm: shallow fusion), which
    ranks the beams; the confidence is the recognizer's own, as greedy gives it (`path_confidence`)."""
    if logits.ndim != 3:
        raise ValueError(f"expected (N, T, C) logits, got shape {logits.shape}")
    n, t, _ = logits.shape
    out = []
    for i in range(n):
        ti = t if lengths is None else int(min(t, lengths[i]))
        frames = logits[i, :ti].astype(np.float32, copy=False)
        top, vals = frame_candidates(frames, beam_width)
        ids, _ = beam_search(top, vals, charset, beam_width, lm)
        j = vals.argmax(axis=1)  # each frame's best class is among its candidates
        best = (top[np.arange(len(top)), j], vals[np.arange(len(top)), j])
        out.append(Decoded(charset.decode(ids), path_confidence(frames, ids, best), ids))
    return out


def frame_candidates(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's classes within PRUNE_NATS of its best, at most k (at least 2), and their
    log-probabilities: (T, k) arrays padded with class -1 at -inf. All a beam of width k extends a prefix
    with (`crnn.lm_build` keeps only these to tune the LM's weights).

    A full log-softmax and a sort of 3,873 classes per frame cost more than the search itself, so one
    comparison finds the classes within TAIL_NATS of each frame's best, and the log-softmax denominator is
    summed over those alone: the rest add at most 3,873 e^-16, under 5e-4 nats per frame."""
    t, c = logits.shape
    k = min(max(k, 2), c)
    best = logits.max(axis=1)
    near = np.flatnonzero(logits > (best - TAIL_NATS)[:, None])
    rows, cols = near // c, near % c
    x = logits.ravel()[near] - best[rows]
    with np.errstate(divide="ignore"):  # a frame with no finite class has no candidates either
        norm = np.log(np.bincount(rows, np.exp(x), minlength=t))
    close = x > -PRUNE_NATS
    rows, cols, x = rows[close], cols[close], x[close] - norm[rows[close]]
    counts = np.bincount(rows, minlength=t)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    for f in np.flatnonzero(counts > k):  # rare: more than k close candidates, the k best kept
        seg = slice(starts[f], starts[f] + counts[f])
        order = np.argsort(-x[seg])
        cols[seg], x[seg] = cols[seg][order], x[seg][order]
    slot = np.arange(len(rows)) - starts[rows]
    ok = slot < k
    top = np.full((t, k), -1, np.int64)
    vals = np.full((t, k), -np.inf, np.float32)
    top[rows[ok], slot[ok]] = cols[ok]
    vals[rows[ok], slot[ok]] = x[ok]
    return top, vals


def beam_search(
    top: np.ndarray, vals: np.ndarray, charset: Charset, beam_width: int, lm: CharLM | None = None
) -> tuple[list[int], float]:
    """The best prefix of one line, from its frames' candidate classes (`frame_candidates`), and the
    prefix's CTC log-probability."""
    alpha, beta = (lm.fusion.alpha, lm.fusion.beta) if lm else (0.0, 0.0)
    chars = charset.chars
    # prefix -> [log p ending in blank, log p ending in non-blank, LM score, text]
    beams: dict[tuple[int, ...], list] = {(): [0.0, NEG, 0.0, ""]}
    for ids, lps in zip(top.tolist(), vals.tolist()):
        cand = [(j, p) for j, p in zip(ids, lps) if j >= 0]  # frame_candidates pruned them already
        if not cand:  # no finite class (a NaN frame): it says nothing, the beams go on as they were
            continue
        if len(cand) == 1 and cand[0][0] == 0:  # only a blank can be here: every beam ends in it, same order
            p = cand[0][1]
            beams = {k: [_lse(pb, pnb) + p, NEG, s, text] for k, (pb, pnb, s, text) in beams.items()}
            continue
        nxt: dict[tuple[int, ...], list] = {}
        for prefix, (pb, pnb, s, text) in beams.items():
            total = _lse(pb, pnb)
            for j, p in cand:
                if j == 0:
                    e = nxt.setdefault(prefix, [NEG, NEG, s, text])
                    e[0] = _lse(e[0], total + p)
                    continue
                if prefix and prefix[-1] == j:
                    same = nxt.setdefault(prefix, [NEG, NEG, s, text])
                    same[1] = _lse(same[1], pnb + p)
                    base = pb + p  # a repeat needs a blank in between
                else:
                    base = total + p
                new = prefix + (j,)
                e = nxt.get(new)
                if e is None:
                    ch = chars[j - 1]
                    gain = alpha * lm.logp(ch, text) + beta if lm else 0.0
                    e = nxt[new] = [NEG, NEG, s + gain, text + ch]
                e[1] = _lse(e[1], base)
        scored = sorted(((_lse(v[0], v[1]) + v[2], k, v) for k, v in nxt.items()), reverse=True)[:beam_width]
        floor = scored[0][0] - BEAM_NATS
        beams = {k: v for sc, k, v in scored if sc >= floor}

    def final(kv: tuple[tuple[int, ...], list]) -> float:
        pb, pnb, s, text = kv[1]
        return _lse(pb, pnb) + s + (alpha * lm.logp(EOS, text) if lm else 0.0)

    best, (pb, pnb, _, _) = max(beams.items(), key=final)
    return list(best), _lse(pb, pnb)


def decode(
    logits: np.ndarray,
    charset: Charset,
    lengths: np.ndarray | None = None,
    method: str = "greedy",
    beam_width: int = 10,
    lm: CharLM | None = None,
) -> list[Decoded]:
    if method == "greedy":
        return greedy_decode(logits, charset, lengths)
    if method == "beam":
        return beam_decode(logits, charset, lengths, beam_width)
    if method == "lm":
        if lm is None:
            raise ValueError("decoder 'lm' needs a character LM (crnn.lm.load_lm)")
        return beam_decode(logits, charset, lengths, lm.fusion.beam_width, lm)
    raise ValueError(f"decoder must be one of {DECODERS}, got {method!r}")
