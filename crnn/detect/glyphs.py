"""Lone glyphs the detector missed: single digits stacked in a table's columns.

A receipt's item table holds columns of lone quantities and tax codes (`1`, `3`, `X`), each its own box in
SROIE. The detector finds a third of the real boxes of one or two characters (41 of 125 on realdev's pages)
against PP-OCRv4's two-thirds, and four fine-tunes aimed at them moved synthetic figures and not real ones
(docs/page_mode.md, "Item tables on synthetic receipts"). Page mode therefore looks for them in the ink
itself, where a missed glyph is easy to tell from noise: it sits on the row of a line the detector did
find, as tall as that line's ink, shaped like a character, and another such glyph stands in the same
column on another row.

`lone_glyphs(gray, boxes, inks)` returns a quad around each (crnn.detect.boxes.page_lines reads them with
the detector's lines): the page's ink (an adaptive threshold over the
region the detector's lines cover) outside every detected box, in connected components, kept when
- its centre lies within GLYPH_ROW of a detected line's ink height from that line's centre, and its height is
  within GLYPH_HEIGHT of that line's ink height (a character of that row, not a speck, a stamp or a rule);
- its width is within GLYPH_WIDTH of its height and ink fills GLYPH_FILL of its box: a digit or a letter,
  not a bullet, a bar or a blot (a bullet is as wide as tall: the synthetic pages' list bullets were the
  only components kept on 100 of them before the width was bounded at 0.85);
- another kept component on another row has its centre within GLYPH_COLUMN of a height across (a column).
"""

from __future__ import annotations

import cv2
import numpy as np

GLYPH_ROW = 0.3
GLYPH_HEIGHT = (0.75, 1.15)
GLYPH_WIDTH = (0.2, 0.85)
GLYPH_FILL = (0.15, 0.75)
GLYPH_COLUMN = 0.5
GLYPH_THRESHOLD = 15  # grey levels below the local mean that are ink (cv2.adaptiveThreshold's C)
GLYPH_MARGIN = 0.3  # the crop around a glyph, in its heights: as much paper as a detector box leaves
GLYPH_READ_HEIGHT = 24.0  # px: a line's ink height at the scale the components are found at (at most 1)


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


def _components(gray: np.ndarray, boxes: list[np.ndarray], line_h: float) -> np.ndarray:
    """(x, y, w, h, area) in page pixels of the ink components outside every box, in the region the boxes
    cover, read at a scale where a line's ink is at most GLYPH_READ_HEIGHT pixels (a large scan's region is
    tens of megapixels otherwise)."""
    x0, y0, x1, y1 = _region(boxes, gray.shape, 2 * line_h)
    part = gray[y0:y1, x0:x1]
    if part.size == 0:
        return np.zeros((0, 5), np.float32)
    s = min(1.0, GLYPH_READ_HEIGHT / line_h)
    if s < 1.0:
        part = cv2.resize(part, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    block = max(15, int(2 * line_h * s) | 1)
    ink = cv2.adaptiveThreshold(
        part, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, GLYPH_THRESHOLD
    )
    for q in boxes:
        cv2.fillPoly(ink, [np.int32(np.round((q - np.float32([x0, y0])) * s))], 0)
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    stats = stats[1:n].astype(np.float32)
    stats[:, :4] /= s
    stats[:, 4] /= s * s
    stats[:, 0] += x0
    stats[:, 1] += y0
    return stats


def lone_glyphs(gray: np.ndarray, boxes: list[np.ndarray], inks: list[np.ndarray]) -> list[np.ndarray]:
    """Quads (grown by GLYPH_MARGIN: the recognizer's crop) around lone glyphs in table columns that none of
    the detector's `boxes` covers; `inks` are the same lines' boxes narrowed to their ink (fit_to_ink)."""
    if len(boxes) < 2:
        return []
    rows = _rows(inks)
    line_h = float(np.median(rows[:, 1]))
    if line_h < 4:
        return []
    comps = _components(gray, boxes, line_h)
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
        found.append((float(x), float(y), float(w), float(h)))
    centres = np.array([(x + w / 2, y + h / 2) for x, y, w, h in found], np.float32).reshape(-1, 2)
    out = []
    for i, (x, y, w, h) in enumerate(found):
        dx, dy = np.abs(centres - centres[i]).T
        if np.any((dx < GLYPH_COLUMN * h) & (dy > 0.8 * h)):  # another glyph above or below it, in its column
            m = GLYPH_MARGIN * h
            out.append(
                np.float32([[x - m, y - m], [x + w + m, y - m], [x + w + m, y + h + m], [x - m, y + h + m]])
            )
    return out
