"""Multi-line pages made from rendered lines, and photographs of them, for page mode's tests and the
measurement of the article's clean-up (equalise, adaptive threshold, perspective correction).

A page is lines of ink on white, one under the other, each line's own rendering normalised to dark ink so
the page reads as one document. A photograph puts the page on a darker table at a perspective, with uneven
light and sensor noise: the case the article's perspective correction is for.
"""

from __future__ import annotations

import cv2
import numpy as np


def compose_page(lines: list[np.ndarray], margin: int = 20, gap: int = 16) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A white page with the grey line images stacked top to bottom, and each line's (top, bottom) row."""
    if not lines:
        raise ValueError("a page needs at least one line")
    width = max(img.shape[1] for img in lines) + 2 * margin
    parts, bands, y = [np.full((margin, width), 255, np.uint8)], [], margin
    for img in lines:
        norm = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)
        if norm.mean() < 127:  # light ink on a dark background: make it dark on light like the rest
            norm = 255 - norm
        row = np.full((img.shape[0], width), 255, np.uint8)
        row[:, margin : margin + img.shape[1]] = norm
        parts += [row, np.full((gap, width), 255, np.uint8)]
        bands.append((y, y + img.shape[0]))
        y += img.shape[0] + gap
    parts.append(np.full((margin - gap, width), 255, np.uint8) if margin > gap else np.zeros((0, width), np.uint8))
    return np.vstack(parts), bands


def photograph(
    page: np.ndarray, rng: np.random.Generator, tilt: float = 0.06, border: float = 0.12, light: float = 0.35
) -> tuple[np.ndarray, np.ndarray]:
    """The page on a darker table, seen at a perspective: the photo and the page's four corners in it."""
    h, w = page.shape
    bw, bh = int(w * border) + 8, int(h * border) + 8
    out_w, out_h = w + 2 * bw, h + 2 * bh
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(-tilt, tilt, size=(4, 2)) * np.float32([w, h])
    dst = (src + np.float32([bw, bh]) + jitter).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    table = int(rng.integers(30, 110))
    photo = cv2.warpPerspective(page, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=table)
    if light > 0:  # a lamp on one side: brightness falls off across the photo
        gx = np.linspace(-1, 1, out_w)[None, :] * rng.uniform(-1, 1)
        gy = np.linspace(-1, 1, out_h)[:, None] * rng.uniform(-1, 1)
        gain = 1 - light * (0.5 + 0.5 * np.clip(gx + gy, -1, 1))
        photo = photo.astype(np.float32) * gain
    photo = photo + rng.normal(0, 3, photo.shape)
    return np.clip(photo, 0, 255).astype(np.uint8), dst
