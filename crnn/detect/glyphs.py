"""Lone glyphs the detector missed: single digits and colons stacked in a table's or a form's columns.

A receipt's item table holds columns of lone quantities and tax codes (`1`, `3`, `X`), each its own box in
SROIE. The detector finds a third of the real boxes of one or two characters (41 of 125 on realdev's pages)
against PP-OCRv4's two-thirds, and four fine-tunes aimed at them moved synthetic figures and not real ones
(docs/page_mode.md, "Item tables on synthetic receipts"). Page mode therefore looks for them in the ink
itself, where a missed glyph is easy to tell from noise: it sits on the row of a line the detector did
find, as tall as that line's ink, shaped like a character, and another such glyph stands in the same
column on another row.

A form's empty fields leave a column of lone colons (`Address :` with nothing after it, then rows of
colons alone: 13 of realdev's receipt boxes), which the detector never boxes: a colon is two dots with
paper around them. The recognizer reads such a colon, cropped alone, as a colon.

`lone_glyphs(gray, boxes, inks)` returns each glyph's character cell (glyph_crop: the quad the recognizer
reads; crnn.detect.boxes.page_lines reads them with the detector's lines and reports the cells): the page's
ink (an adaptive threshold over the region the detector's lines cover) outside every detected box, in
connected components, kept when
- its centre lies within GLYPH_ROW of a detected line's ink height from that line's centre, and its height is
  within GLYPH_HEIGHT of that line's ink height (a character of that row, not a speck, a stamp or a rule);
- its width is within GLYPH_WIDTH of its height and ink fills GLYPH_FILL of its box: a digit or a letter,
  not a bullet, a bar or a blot (a bullet is as wide as tall: the synthetic pages' list bullets were the
  only components kept on 100 of them before the width was bounded at 0.85);
- or it is a colon (_colons): two dots of similar size, one over the other, each as dark (its darkest pixel
  against the paper around it) as the boxed lines' print is against the page's paper (the paper's grain,
  or a photo's, makes dots too, but faint ones), with paper on both sides and above and below; a colon
  need not sit on a detected line's row;
- another kept component on another row has its centre within GLYPH_COLUMN of a height across (a column).

A glyph's cell is at least GLYPH_CELL_WIDTH of its height wide (a `1`'s cell, not its stroke) and a colon's
is as tall as the page's letters (the median line's ink), standing on its baseline: the box a label or a
detector gives a lone character, which its ink alone (a colon: two dots) is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from crnn.detect.polygons import offset

GLYPH_ROW = 0.3
GLYPH_HEIGHT = (0.75, 1.15)
GLYPH_WIDTH = (0.2, 0.85)
GLYPH_FILL = (0.15, 0.75)
GLYPH_COLUMN = 0.5
GLYPH_THRESHOLD = 15  # grey levels below the local mean that are ink (cv2.adaptiveThreshold's C)
GLYPH_MARGIN = 0.3  # the crop around a glyph, in its heights: as much paper as a detector box leaves
# a glyph's box is at least this part of its height wide (a `1`: its cell, not its stroke)
GLYPH_CELL_WIDTH = 0.5
GLYPH_READ_HEIGHT = 24.0  # px: a line's ink height at the scale the components are found at (at most 1)
# A colon is two pieces of ink: dots of COLON_DOT of a line's ink height either way, ink filling COLON_FILL
# of each one's box and as dark as print (COLON_DARK), one over the other, together COLON_SPAN of the ink
# height tall, with paper for COLON_CLEAR of the ink height on both sides and COLON_CAP above and below
# (dot-matrix letters and dotted rules are dots too, but among other dots). Heights: the page's median
# line ink height.
COLON_DOT = (0.08, 0.4)
COLON_FILL = 0.45
COLON_SPAN = (0.4, 1.0)
COLON_CLEAR = 0.5
COLON_CAP = 0.25  # ... and above and below it (a vertical dotted rule is dots over dots)
COLON_DARK = 0.6  # each dot's darkest pixel (0: the paper around it, 1: the boxed lines' print)
COLON_MIN_DOT_PX = 2.0  # a dot is at least this many pixels across where the components are found
COLON_MAX_DOTS = 1000  # more dots than this outside every box: undetected dot-matrix print, not colons


def _rows(inks: list[np.ndarray]) -> np.ndarray:
    """(centre y, ink height) of each detected line."""
    return np.array([(float(q[:, 1].mean()), float(np.ptp(q[:, 1]))) for q in inks], np.float32).reshape(
        -1, 2
    )


def _region(boxes: list[np.ndarray], shape: tuple[int, int], pad: float) -> tuple[int, int, int, int]:
    pts = np.concatenate(boxes)
    h, w = shape
    x0, y0 = np.maximum(np.floor(pts.min(axis=0) - pad), 0).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0) + pad).astype(int)
    return int(x0), int(y0), int(min(x1, w)), int(min(y1, h))


@dataclass
class PageInk:
    """The ink outside every box, in the region the boxes cover, as connected components."""

    stats: np.ndarray  # (x, y, w, h, area) per component, page pixels
    part: np.ndarray  # the region's grey levels at the read scale
    labels: np.ndarray  # ... and each pixel's component (0: paper), at the read scale
    origin: tuple[int, int]  # the region's top-left, page pixels
    scale: float  # read-scale pixels per page pixel
    paper: float  # the region's paper grey (median of what is not ink)
    print_level: float  # the boxed lines' ink grey (median of their ink pixels)

    def darkness(self, i: int) -> float:
        """How dark component i's darkest pixel is against the paper just around it, on the scale from the
        paper (0) to the boxed lines' print (1): print is about 1 or more, the paper's grain (or a photo's
        behind a receipt, darker than the paper) far less. 0 where the page has no contrast to measure."""
        span = self.paper - self.print_level
        if span <= 1:
            return 0.0
        x, y, w, h = (self.stats[i, :4] - [*self.origin, 0, 0]) * self.scale
        r = max(2, int(round(max(w, h))))
        y0, x0 = max(0, int(y) - r), max(0, int(x) - r)
        y1, x1 = int(np.ceil(y + h)) + r, int(np.ceil(x + w)) + r
        labels, grey = self.labels[y0:y1, x0:x1], self.part[y0:y1, x0:x1]
        own, paper = grey[labels == i + 1], grey[labels == 0]
        if own.size == 0 or paper.size == 0:
            return 0.0
        return float((np.median(paper) - own.min()) / span)


def _components(gray: np.ndarray, boxes: list[np.ndarray], line_h: float) -> PageInk:
    """The ink components outside every box, in the region the boxes cover, read at a scale where a line's
    ink is at most GLYPH_READ_HEIGHT pixels (a large scan's region is tens of megapixels otherwise)."""
    x0, y0, x1, y1 = _region(boxes, gray.shape, 2 * line_h)
    part = gray[y0:y1, x0:x1]
    s = min(1.0, GLYPH_READ_HEIGHT / line_h)
    if part.size == 0:
        empty = np.zeros((0, 5), np.float32)
        return PageInk(empty, part, np.zeros(part.shape, np.int32), (x0, y0), s, 255.0, 0.0)
    if s < 1.0:
        part = cv2.resize(part, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    block = max(15, int(2 * line_h * s) | 1)
    ink = cv2.adaptiveThreshold(
        part, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, GLYPH_THRESHOLD
    )
    boxed = np.zeros_like(ink)
    for q in boxes:
        cv2.fillPoly(boxed, [np.int32(np.round((q - np.float32([x0, y0])) * s))], 1)
    text = part[(ink > 0) & (boxed > 0)]
    paper = float(np.median(part[ink == 0])) if (ink == 0).any() else 255.0
    level = float(np.median(text)) if text.size else paper
    ink[boxed > 0] = 0
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    stats = stats[1:n].astype(np.float32)
    stats[:, :4] /= s
    stats[:, 4] /= s * s
    stats[:, 0] += x0
    stats[:, 1] += y0
    return PageInk(stats, part, labels, (x0, y0), s, paper, level)


def _colons(ink: PageInk, line_h: float) -> np.ndarray:
    """(x, y, w, h) of each lone colon among the page's ink components: two dots, one over the other, with
    paper around them (see COLON_*)."""
    x, y, w, h, area = ink.stats.T
    lo = max(COLON_DOT[0] * line_h, COLON_MIN_DOT_PX / ink.scale)  # at least 2 px where they are found
    hi = COLON_DOT[1] * line_h
    dot = (w >= lo) & (w <= hi) & (h >= lo) & (h <= hi) & (w <= 2 * h) & (h <= 2 * w)
    dots = np.flatnonzero(dot & (area >= COLON_FILL * w * h))
    if len(dots) < 2 or len(dots) > COLON_MAX_DOTS:
        return np.zeros((0, 4), np.float32)
    dx, dy, dw, dh = x[dots], y[dots], w[dots], h[dots]
    cx = dx + dw / 2
    # i over j: centred alike, j below i with paper between, alike in size, spanning a colon's height
    above = (dy + dh)[:, None] < dy[None, :]
    centred = np.abs(cx[:, None] - cx[None, :]) <= 0.5 * np.maximum(dw[:, None], dw[None, :])
    alike = np.maximum(dw[:, None], dw[None, :]) <= 2 * np.minimum(dw[:, None], dw[None, :])
    span = (dy + dh)[None, :] - dy[:, None]
    tall = (span >= COLON_SPAN[0] * line_h) & (span <= COLON_SPAN[1] * line_h)
    pairs = np.argwhere(above & centred & alike & tall)
    # what counts as ink around a colon: anything a speck or more, not the paper's finest grain
    big = (w >= COLON_DOT[0] * line_h) | (h >= COLON_DOT[0] * line_h)
    ix, iy, iw, ih = (v[big] for v in (x, y, w, h))
    side, cap = COLON_CLEAR * line_h, COLON_CAP * line_h
    out, used = [], set()
    for i, j in pairs:
        if i in used or j in used:
            continue
        x0, x1 = min(dx[i], dx[j]), max(dx[i] + dw[i], dx[j] + dw[j])
        y0, y1 = dy[i], dy[j] + dh[j]
        beside = (ix < x1 + side) & (ix + iw > x0 - side) & (iy < y1) & (iy + ih > y0)
        over = (ix < x1) & (ix + iw > x0) & (iy < y1 + cap) & (iy + ih > y0 - cap)  # a dotted rule's next dot
        if np.count_nonzero(beside | over) > 2:  # the two dots themselves, and nothing else
            continue
        if min(ink.darkness(dots[i]), ink.darkness(dots[j])) < COLON_DARK:
            continue
        used.update((i, j))
        out.append((x0, y0, x1 - x0, y1 - y0))
    return np.float32(out).reshape(-1, 4)


def lone_glyphs(gray: np.ndarray, boxes: list[np.ndarray], inks: list[np.ndarray]) -> list[np.ndarray]:
    """The character cells (_cell; glyph_crop: what the recognizer reads) of lone glyphs in table columns
    that none of the detector's `boxes` covers; `inks` are the same lines' boxes narrowed to their ink
    (fit_to_ink)."""
    if len(boxes) < 2:
        return []
    rows = _rows(inks)
    line_h = float(np.median(rows[:, 1]))
    if line_h < 4:
        return []
    ink = _components(gray, boxes, line_h)
    comps = ink.stats
    x, y, w, h, area = comps.T  # shape first, at once: a speckled scan has hundreds of thousands
    shaped = (
        (h >= GLYPH_HEIGHT[0] * rows[:, 1].min())
        & (h <= GLYPH_HEIGHT[1] * rows[:, 1].max())
        & (w >= GLYPH_WIDTH[0] * h)
        & (w <= GLYPH_WIDTH[1] * h)
        & (area >= GLYPH_FILL[0] * w * h)
        & (area <= GLYPH_FILL[1] * w * h)
    )
    found = []
    for x, y, w, h, _ in comps[shaped]:
        cy = y + h / 2
        near = np.abs(rows[:, 0] - cy) < GLYPH_ROW * rows[:, 1]
        ratio = h / np.maximum(rows[:, 1], 1.0)
        if not np.any(near & (ratio >= GLYPH_HEIGHT[0]) & (ratio <= GLYPH_HEIGHT[1])):
            continue
        found.append((float(x), float(y), float(w), float(h), 0.0))
    # a colon on a row of its own (a form's empty fields) is a glyph too: it is told by its shape
    found += [(*map(float, c), line_h) for c in _colons(ink, line_h)]
    centres = np.array([(x + w / 2, y + h / 2) for x, y, w, h, _ in found], np.float32).reshape(-1, 2)
    out = []
    for i, (x, y, w, h, tall) in enumerate(found):
        dx, dy = np.abs(centres - centres[i]).T
        if np.any((dx < GLYPH_COLUMN * h) & (dy > 0.8 * h)):  # another glyph above or below it, in its column
            out.append(_cell(x, y, w, h, gray.shape, tall))
    return out


def _cell(x: float, y: float, w: float, h: float, shape: tuple, tall: float = 0.0) -> np.ndarray:
    """A glyph's character cell, within the page: at least GLYPH_CELL_WIDTH of its height wide and, for a
    glyph shorter than the page's letters (a colon), `tall` high, standing on its baseline."""
    if tall > h:
        y, h = y + h - tall, tall
    grow = max(0.0, GLYPH_CELL_WIDTH * h - w)
    x, w = x - grow / 2, w + grow
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(shape[1]), x + w), min(float(shape[0]), y + h)
    return np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def glyph_crop(cell: np.ndarray) -> np.ndarray:
    """The quad the recognizer reads a glyph's cell in: grown by GLYPH_MARGIN of its height all round."""
    grown = offset(cell, GLYPH_MARGIN * float(np.ptp(cell[:, 1])))
    return cell if grown is None else grown
