"""A character n-gram language model that the CTC beam search adds to the recognizer's own scores.

The recognizer reads each frame on its own evidence; which characters follow which is left to its small
BiLSTM. A blurred `e` in `th?ir` or an `O` between lower-case letters is ambiguous to the pixels and not
to the spelling, and a model of the text the recognizer was trained on knows the spelling. So the beam
search (crnn.ctc) scores each prefix as log P_ctc + alpha * log P_lm + beta * length ("shallow fusion",
as in Hannun et al.'s deep speech decoders and PaddleOCR's / pyctcdecode's LM-weighted CTC beams).

- The counts come from the corpus the model trains on (crnn.data.corpus, the run's scenes and weights),
  never from evaluation lines, so the LM knows the same text distribution: words by frequency, receipts,
  plates, prose, codes.
- Interpolated absolute discounting: P(c | h) = max(C(hc) - D, 0) / C(h.) + bow(h) P(c | h minus its first
  character), with bow(h) what the kept continuations leave, so pruning rare n-grams keeps it normalised;
  unigrams add one.
- The file (`.lm.npz`) holds the probabilities, its lineage and the fusion weights that
  `python -m crnn.lm_build` (make lm) chose on the synthetic validation lines, so the weights travel with
  the model they were chosen for.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

BOS, EOS = "\x02", "\x03"  # line start (context padding) and end (scored once a line is complete)
FORMAT = "crnn-toolkit/char-lm/v1"
CACHE_ENTRIES = 1 << 18  # log-probabilities kept per LM (about 40 MB at most)


@dataclass
class Fusion:
    """How the beam search weighs the LM: score = log P_ctc + alpha log P_lm + beta per character."""

    alpha: float = 0.3
    beta: float = 1.5
    beam_width: int = 8


@dataclass
class CharLM:
    order: int
    unigram: dict[str, float]  # P(c), every character of the alphabet and EOS
    discounted: dict[str, float]  # h + c -> max(C(hc) - D, 0) / C(h.), for kept n-grams (len 2..order)
    backoff: dict[str, float]  # h -> the mass its kept continuations leave to P(c | shorter h)
    fusion: Fusion = field(default_factory=Fusion)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.floor = min(self.unigram.values()) if self.unigram else 1e-9
        self._cache: dict[tuple[str, str], float] = {}  # (c, context) -> log P: a beam asks again and again

    def context(self, history: str) -> str:
        """The last order-1 characters of `history`, BOS-padded at a line's start: all P(c | .) reads."""
        if self.order < 2:
            return ""
        return (BOS * (self.order - 1) + history)[-(self.order - 1) :]

    def prob(self, c: str, history: str) -> float:
        """P(c | history): the discounted estimate of each longer context on top of the shorter one's."""
        h = self.context(history)
        p = self.unigram.get(c, self.floor)
        for k in range(1, len(h) + 1):  # from the shortest context; a longer one is unseen if this is
            ctx = h[len(h) - k :]
            b = self.backoff.get(ctx)
            if b is None:
                break
            p = self.discounted.get(ctx + c, 0.0) + b * p
        return p

    def logp(self, c: str, history: str) -> float:
        key = (c, self.context(history))
        v = self._cache.get(key)
        if v is None:
            if len(self._cache) >= CACHE_ENTRIES:  # a long-running server: bounded, refilled by use
                self._cache.clear()
            v = self._cache[key] = math.log(self.prob(c, key[1]))
        return v

    def check_alphabet(self, charset_fingerprint: str, what: str) -> None:
        """Raises LMFormatError unless this LM was built for the alphabet of `what` (a recognizer)."""
        mine = self.meta.get("charset_fingerprint")
        if mine is not None and mine != charset_fingerprint:
            raise LMFormatError(f"the character LM was built for another alphabet than {what}'s")

    def save(self, path: str | Path) -> None:
        """One .npz, written atomically: each table as NUL-joined keys + float32 values, and a JSON header."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for name in ("unigram", "discounted", "backoff"):
            table = getattr(self, name)
            keys = sorted(table)
            arrays[f"{name}_keys"] = np.frombuffer("\0".join(keys).encode("utf-8"), np.uint8)
            arrays[f"{name}_values"] = np.array([table[k] for k in keys], np.float32)
        header = {"format": FORMAT, "order": self.order, "fusion": asdict(self.fusion), "meta": self.meta}
        arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8)
        fd, tmp = tempfile.mkstemp(prefix=".lm.", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def with_fusion(self, fusion: Fusion) -> CharLM:
        return CharLM(self.order, self.unigram, self.discounted, self.backoff, fusion, dict(self.meta))


class LMFormatError(ValueError):
    pass


def load_lm(path: str | Path) -> CharLM:
    """The LM in `path`; LMFormatError (with the reason) for a missing, truncated or foreign file."""
    p = Path(path)
    if not p.is_file():
        raise LMFormatError(f"{p} does not exist: make lm EXP=<preset> (python -m crnn.lm_build) builds one")
    try:
        z = np.load(p, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise LMFormatError(f"{p} is not a crnn-toolkit character LM (not an .npz archive)")
        with z:
            header = json.loads(bytes(z["header"]).decode("utf-8"))
            if header.get("format") != FORMAT:
                raise LMFormatError(
                    f"{p} is not a crnn-toolkit character LM (format {header.get('format')!r})"
                )
            tables = {}
            for name in ("unigram", "discounted", "backoff"):
                raw = bytes(z[f"{name}_keys"]).decode("utf-8")
                keys = raw.split("\0") if raw else []
                tables[name] = dict(zip(keys, z[f"{name}_values"].astype(float).tolist()))
        f = header.get("fusion", {})
        fusion = Fusion(float(f["alpha"]), float(f["beta"]), int(f["beam_width"]))
        return CharLM(
            int(header["order"]),
            tables["unigram"],
            tables["discounted"],
            tables["backoff"],
            fusion,
            dict(header.get("meta", {})),
        )
    except LMFormatError:
        raise
    except Exception as e:  # noqa: BLE001  (zip, JSON, key and type errors of a damaged file alike)
        raise LMFormatError(f"{p} is not a readable character LM file: {type(e).__name__}: {e}") from e


def load_lm_for(path: str | Path, charset_fingerprint: str, what: str) -> CharLM:
    """`load_lm`, refused unless the LM was built for that alphabet: every reader that pairs an LM with a
    recognizer (eval, crnn predict, the server, page mode) checks this the same way."""
    lm = load_lm(path)
    lm.check_alphabet(charset_fingerprint, what)
    return lm


def count_ngrams(lines: Iterable[str], order: int) -> list[Counter]:
    """counts[k][g]: occurrences of each k-gram (k = 1..order) in the lines, each padded with order-1
    BOS in front and one EOS behind."""
    counts = [Counter() for _ in range(order + 1)]
    pad = BOS * (order - 1)
    for text in lines:
        s = pad + text + EOS
        for k in range(1, order + 1):
            c = counts[k]
            for j in range(len(s) - k + 1):
                c[s[j : j + k]] += 1
    return counts


def estimate(
    counts: list[Counter], alphabet: Iterable[str], discount: float = 0.75, min_count: int = 2
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(unigram, discounted, backoff) from n-gram counts: n-grams seen fewer than `min_count` times are
    dropped (their mass goes to the shorter context), which bounds the file."""
    order = len(counts) - 1
    vocab = sorted((set(alphabet) | {EOS}) - {BOS})
    n1 = sum(counts[1][c] for c in vocab)
    unigram = {c: (counts[1][c] + 1) / (n1 + len(vocab)) for c in vocab}
    discounted: dict[str, float] = {}
    backoff: dict[str, float] = {}
    for k in range(2, order + 1):
        totals: Counter = Counter()
        for g, n in counts[k].items():
            totals[g[:-1]] += n
        kept_mass: Counter = Counter()
        for g, n in counts[k].items():
            if g[-1] == BOS or n < min_count:
                continue
            p = max(n - discount, 0.0) / totals[g[:-1]]
            discounted[g] = p
            kept_mass[g[:-1]] += p
        for h, mass in kept_mass.items():  # a context with nothing kept reads as its shorter one
            backoff[h] = 1.0 - mass
    return unigram, discounted, backoff


def build(
    lines: Iterable[str],
    alphabet: Iterable[str],
    order: int = 4,
    discount: float = 0.75,
    min_count: int = 2,
    meta: dict | None = None,
) -> CharLM:
    counts = count_ngrams(lines, order)
    unigram, discounted, backoff = estimate(counts, alphabet, discount, min_count)
    return CharLM(order, unigram, discounted, backoff, Fusion(), dict(meta or {}))
