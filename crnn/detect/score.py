"""Scoring pages as ../shared/realdev/pages/README.md says: detection precision, recall and F1 at IoU >= 0.5
(axis-aligned rectangles, greedy one-to-one matching, predictions inside `###` regions dropped), and the
end-to-end page CER (both sides in reading order, joined with newlines, normalised per category).
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from dataclasses import dataclass, field, fields

import editdistance
import numpy as np

from crnn.detect.polygons import rect_inside, rect_iou

CJK = r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]"
IGNORE_TEXT = "###"


@dataclass
class Counts:
    matched: int = 0
    predicted: int = 0  # on complete pages, after dropping predictions inside ignore regions
    matched_complete: int = 0  # matches on complete pages: precision's numerator
    truth: int = 0
    edits: int = 0  # page CER: complete pages only
    chars: int = 0
    pair_edits: int = 0  # pages listing only some lines: the CER of their matched pairs, kept apart
    pair_chars: int = 0
    short_matched: int = 0  # short boxes (is_short) matched, of short_truth
    short_truth: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict:
        p = self.matched_complete / self.predicted if self.predicted else 0.0
        r = self.matched / self.truth if self.truth else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        cer = self.edits / self.chars if self.chars else 0.0
        pair_cer = self.pair_edits / self.pair_chars if self.pair_chars else 0.0
        return {
            "precision": p,
            "recall": r,
            "f1": f1,
            "cer": cer,
            "matched": self.matched,
            "predicted": self.predicted,
            "truth": self.truth,
            "edits": self.edits,
            "chars": self.chars,
            "pair_cer": pair_cer,
            "pair_edits": self.pair_edits,
            "pair_chars": self.pair_chars,
            "short_recall": self.short_matched / self.short_truth if self.short_truth else 0.0,
            "short_matched": self.short_matched,
            "short_truth": self.short_truth,
        }


@dataclass
class PageTruth:
    quads: list[np.ndarray]
    texts: list[str]
    ignore: list[np.ndarray] = field(default_factory=list)  # ### regions
    category: str = ""
    complete: bool = True


def norm(text: str, category: str) -> str:
    t = " ".join(unicodedata.normalize("NFKC", text).split())
    if category.endswith("_zh"):
        t = re.sub(rf"(?<={CJK}) | (?={CJK})", "", t)
    if category in ("scene_en", "receipt_en"):
        t = t.casefold()
    if category == "receipt_en":
        t = t.replace(" ", "")
    return t


def match(truth: list[np.ndarray], pred: list[np.ndarray], iou: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (truth index, prediction index) with IoU >= `iou`, highest first."""
    pairs = sorted(
        ((rect_iou(g, p), gi, pi) for gi, g in enumerate(truth) for pi, p in enumerate(pred)),
        reverse=True,
    )
    used_g, used_p, out = set(), set(), []
    for v, gi, pi in pairs:
        if v < iou:
            break
        if gi in used_g or pi in used_p:
            continue
        used_g.add(gi)
        used_p.add(pi)
        out.append((gi, pi))
    return out


SHORT_CHARS = 2  # a box of at most this many characters (a lone ':' or quantity) is "short"


def is_short(text: str) -> bool:
    """The detector's weakest kind of box, which a page's F1 hides (one real receipt box in eight)."""
    return len(text.replace(" ", "")) <= SHORT_CHARS


def kept_predictions(pred: list[np.ndarray], ignore: list[np.ndarray], matched: set[int]) -> list[int]:
    """Predictions that count: matched ones, and unmatched ones not lying >= 50 % inside a `###` box."""
    return [
        i for i, p in enumerate(pred) if i in matched or not any(rect_inside(p, g) >= 0.5 for g in ignore)
    ]


def score_page(truth: PageTruth, pred_quads: list[np.ndarray], pred_texts: list[str] | None, order) -> Counts:
    """Detection counts, and (with texts, on complete pages) the page's edits and characters.

    `order` puts quads in reading order (crnn.detect.boxes.row_order, the README's sweep, for both sides;
    given the texts too, as the README's sweep breaks a tie of centre x by text). A page that lists only
    some lines gives the CER of its matched pairs (`pair_edits`, `pair_chars`), which the README reports
    apart from the page CER of complete pages.
    """
    pairs = match(truth.quads, pred_quads)
    matched_p = {p for _, p in pairs}
    kept = kept_predictions(pred_quads, truth.ignore, matched_p)
    c = Counts(matched=len(pairs), truth=len(truth.quads))
    short = [i for i, t in enumerate(truth.texts) if is_short(t)]
    matched_g = {g for g, _ in pairs}
    c.short_truth, c.short_matched = len(short), sum(i in matched_g for i in short)
    if truth.complete:  # a page that lists only some lines says nothing about false detections
        c.predicted, c.matched_complete = len(kept), len(pairs)
    if pred_texts is None:
        return c
    cat = truth.category
    if truth.complete:
        gt = "\n".join(norm(truth.texts[i], cat) for i in _ordered(order, truth.quads, truth.texts))
        kq, kt = [pred_quads[i] for i in kept], [pred_texts[i] for i in kept]
        pr = "\n".join(norm(kt[i], cat) for i in _ordered(order, kq, kt))
        c.edits = editdistance.eval(gt, pr)
        c.chars = len(gt.replace("\n", ""))
    else:  # only some lines are listed: the matched pairs' CER
        for g, p in pairs:
            a, b = norm(truth.texts[g], cat), norm(pred_texts[p], cat)
            c.pair_edits += editdistance.eval(a, b)
            c.pair_chars += len(a)
    return c


def _ordered(order, quads: list[np.ndarray], texts: list[str]) -> list[int]:
    """`order(quads)`, with the texts too where it takes them: the README's sweep (row_order) breaks a tie
    of centre x by text."""
    takes_texts = "texts" in inspect.signature(order).parameters
    return order(quads, texts=texts) if takes_texts else order(quads)
