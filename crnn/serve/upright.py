"""A page turned upside down (a receipt fed into the scanner the wrong way round, a photo with no EXIF
orientation) is read the right way up.

The detector finds most of a page's lines upside down too (detection F1 0.922 against 0.947 upright on 40
synthetic pages), but each line is warped "upright" along its box, so it reaches the recognizer turned
half round and reads as garbage (page CER about 0.9). PaddleOCR's pipeline answers this with a small angle
classifier per line; here the recognizer answers it: a line read upside down reads with low confidence,
and the same line turned half round reads surely. `upside_down` reads a doubtful page's longest lines
again turned; the page is turned when most of them read surer that way, and surely, and kept turned when
its lines then read surer than they did (`upright`). A page whose lines read surely is upright and costs
nothing more; a doubtful upright page costs one batch of at most UPRIGHT_SAMPLE lines; a page that reads
unsure both ways (a blurry scene) is left as it is. Pages turned a quarter (90 or 270 degrees) are not
handled: the detector does not find their lines (F1 0.04), so there is nothing to read both ways.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from crnn.serve.segment import PAGE_STEPS

Crops = list[tuple[np.ndarray, list[int]]]  # (line crop, box x, y, w, h), as crnn.serve.segment.split
# (or another box, with `back` to turn it: the detector's 4-point quads in crnn.detect.evaluate)

UPRIGHT_CONFIDENCE = 0.9  # a page whose lines' median confidence reaches this is upright: not checked
UPRIGHT_SAMPLE = 8  # the longest lines are read again turned
UPRIGHT_LINES = 2  # a page of fewer lines is not checked: one line (a word on a blurry scene) is no vote
UPRIGHT_VOTE = 2 / 3  # more than this share of them must read surer turned
# and their mean confidence must rise by at least this (synthetic pages: upright at most +0.02, turned at
# least +0.11; set nearer the turned side, as most pages are upright and one turned wrongly reads as garbage)
UPRIGHT_MARGIN = 0.1
UPRIGHT_SURE = 0.7  # to at least this: a page that reads unsure both ways (a blurry scene) is left as it is


def turnable(mode: str, page_cleanup: str = "none") -> bool:
    """Whether a request's page is checked: in page and auto modes (line mode reads the image as given),
    and not with a clean-up that rectifies the page (its boxes are in the rectified page, which a turned
    upload rectifies differently)."""
    return mode != "line" and not PAGE_STEPS[page_cleanup][0]


class Reading(Protocol):
    text: str
    confidence: float


Read = Callable[[list[np.ndarray]], Sequence[Reading]]


def sureness(readings: Sequence[Reading]) -> np.ndarray:
    """Each reading's confidence; an empty reading's is 0 (CTC's all-blank path is sure of nothing, and
    a crop read as nothing either way is no vote)."""
    return np.array([r.confidence if r.text.strip() else 0.0 for r in readings], dtype=np.float64)


def upside_down(crops: list[np.ndarray], readings: Sequence[Reading], read: Read) -> bool:
    """Whether a page's lines (its crops as split, and their readings) read surer turned half round.
    `read` reads crops (text and confidence of each)."""
    if len(crops) < UPRIGHT_LINES or float(np.median(sureness(readings))) >= UPRIGHT_CONFIDENCE:
        return False
    longest = sorted(range(len(crops)), key=lambda i: -crops[i].shape[1])[:UPRIGHT_SAMPLE]
    turned = sureness(read([np.ascontiguousarray(crops[i][::-1, ::-1]) for i in longest]))
    as_read = sureness([readings[i] for i in longest])
    gain = turned.mean() - as_read.mean()
    return bool(
        (turned > as_read).mean() > UPRIGHT_VOTE and gain >= UPRIGHT_MARGIN and turned.mean() >= UPRIGHT_SURE
    )


def turned_box(box: list[int], shape: tuple[int, int]) -> list[int]:
    """A box (x, y, w, h) of a page of `shape` (h, w) turned half round, in the page's own coordinates."""
    x, y, bw, bh = box
    return [shape[1] - x - bw, shape[0] - y - bh, bw, bh]


def upright(
    gray: np.ndarray,
    crops: Crops,
    readings: Sequence[Reading],
    read: Read,
    split: Callable[[np.ndarray], Crops],
    back: Callable = turned_box,
) -> tuple[Crops, Sequence[Reading], bool]:
    """The page's crops and readings as split and read, or, when they read surer turned (upside_down),
    those of the page turned half round: `split` again (its reading order is the turned page's), each box
    taken back to the page's own coordinates by `back` (box, page shape), read; kept only when the turned
    page's lines read surer (median) than the page as it came. Returns (crops, readings, turned)."""
    if not upside_down([c for c, _ in crops], readings, read):
        return crops, readings, False
    turned = split(np.ascontiguousarray(gray[::-1, ::-1]))
    again = read([c for c, _ in turned]) if turned else []
    if not surer(again, readings):
        return crops, readings, False
    return [(c, back(b, gray.shape[:2])) for c, b in turned], again, True


def surer(turned: Sequence[Reading], readings: Sequence[Reading]) -> bool:
    """Whether the turned page's lines read surer (median) than the page's as it came: the turn is kept."""
    return bool(turned) and float(np.median(sureness(turned))) > float(np.median(sureness(readings)))
