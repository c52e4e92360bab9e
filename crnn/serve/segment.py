"""Page mode: split a page or multi-line image into text lines, top to bottom.

Binarise (Otsu, with the ink polarity detected), straighten a small rotation (up to 10 degrees, from the
ink's minimum-area rectangle), find text rows by horizontal projection, merge rows split by accents or
gaps, and cut each line's horizontal extent from its column projection. Good for documents and screenshots
with lines that do not overlap; it is not a general text detector.
"""

from __future__ import annotations

import cv2
import numpy as np

MODES = ("line", "page", "auto")


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """1 where there is ink, whichever of dark-on-light or light-on-dark the image is."""
    _, th = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = th == 0 if (th == 255).mean() > 0.5 else th == 255
    return ink.astype(np.uint8)


def deskew(gray: np.ndarray, max_deg: float = 10.0) -> tuple[np.ndarray, float]:
    ink = ink_mask(gray)
    pts = cv2.findNonZero(ink)
    if pts is None or len(pts) < 50:
        return gray, 0.0
    (_, _), (w, h), angle = cv2.minAreaRect(pts)
    if w < h:
        angle -= 90.0
    if angle < -45:
        angle += 90
    if abs(angle) < 0.3 or abs(angle) > max_deg:
        return gray, 0.0
    hh, ww = gray.shape
    m = cv2.getRotationMatrix2D((ww / 2, hh / 2), angle, 1.0)
    return cv2.warpAffine(gray, m, (ww, hh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), angle


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, v in enumerate(mask):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(mask)))
    return runs


def segment_lines(gray: np.ndarray, min_height: int = 6) -> list[tuple[np.ndarray, list[int]]]:
    """Line crops and their boxes (x, y, w, h) in the straightened image, top to bottom."""
    straight, _ = deskew(gray)
    ink = ink_mask(straight)
    h, w = ink.shape
    rows = ink.sum(axis=1)
    bands = _runs(rows > max(1, 0.01 * w))
    if not bands:
        return []
    heights = sorted(b - a for a, b in bands)
    typical = heights[len(heights) // 2]
    merged: list[list[int]] = []
    for a, b in bands:  # join a thin band (dots, accents) to its neighbour when the gap is small
        if (
            merged
            and a - merged[-1][1] < max(2, typical // 4)
            and (b - a < typical // 2 or merged[-1][1] - merged[-1][0] < typical // 2)
        ):
            merged[-1][1] = b
        else:
            merged.append([a, b])
    out = []
    for a, b in merged:
        if b - a < min_height:
            continue
        cols = np.flatnonzero(ink[a:b].sum(axis=0))
        if cols.size == 0:
            continue
        pad_y = max(2, (b - a) // 6)
        pad_x = max(2, (b - a) // 3)
        y0, y1 = max(0, a - pad_y), min(h, b + pad_y)
        x0, x1 = max(0, int(cols[0]) - pad_x), min(w, int(cols[-1]) + 1 + pad_x)
        out.append((straight[y0:y1, x0:x1], [x0, y0, x1 - x0, y1 - y0]))
    return out


def split(gray: np.ndarray, mode: str) -> list[tuple[np.ndarray, list[int]]]:
    """The crops to recognise: the whole image (line), its lines (page), or page when it has several lines."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    whole = [(gray, [0, 0, gray.shape[1], gray.shape[0]])]
    if mode == "line":
        return whole
    lines = segment_lines(gray)
    if mode == "page":
        return lines
    return lines if len(lines) >= 2 else whole
