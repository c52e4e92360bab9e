"""DB's training targets for one image: the shrunk text kernels, and the threshold map around each border.

- `prob`: 1 inside each line's polygon shrunk by D = A (1 - r^2) / L (r = `shrink_ratio`), so lines that
  nearly touch stay apart; `prob_mask` is 0 over lines marked ignore (and lines too small to shrink), where
  the loss says nothing. `prob_weight`: what each pixel's probability loss counts, 1 but inside a small
  kernel (`small_weight`, below).
- `thresh`: around each line's border, within D on either side, 1 - distance / D scaled into
  [thresh_min, thresh_max]; `thresh_mask` marks that band (the polygon grown by D).

Postprocessing (crnn.detect.boxes) grows a found kernel back by the same rule, so the boxes it returns are
the boxes these targets were made from.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from crnn.detect.polygons import offset, shrink_distance


@dataclass
class TargetConfig:
    shrink_ratio: float = 0.4
    thresh_min: float = 0.3
    thresh_max: float = 0.7
    min_side: float = 3.0  # lines shorter than this (px, at the training size) are ignored
    # A kernel of area a < small_area (px^2 at the training size) counts sqrt(small_area / a) times in the
    # probability loss, at most small_weight times (1: every pixel alike). Why: a lone ':' or quantity on a
    # receipt is a kernel of 15-25 px^2 against a word's 500, so its pixels hardly move the loss and the
    # shipped detector found 24 % of the 1-2 character boxes on synthetic receipts (98 % of the others).
    # Measured: 5,500 steps at small_weight=4 from the bundled weights did not change that (docs/page_mode.md,
    # "Short boxes, measured"), so the default stays 1.
    small_weight: float = 1.0
    small_area: float = 200.0


def make_targets(
    quads: np.ndarray, ignore: np.ndarray, h: int, w: int, cfg: TargetConfig
) -> dict[str, np.ndarray]:
    prob = np.zeros((h, w), np.float32)
    prob_mask = np.ones((h, w), np.float32)
    thresh = np.zeros((h, w), np.float32)
    thresh_mask = np.zeros((h, w), np.float32)
    prob_weight = np.ones((h, w), np.float32)
    for quad, ign in zip(quads, ignore):
        poly = quad.astype(np.float32)
        side = min(np.linalg.norm(poly - np.roll(poly, -1, axis=0), axis=1))
        if ign or side < cfg.min_side:
            cv2.fillPoly(prob_mask, [np.round(poly).astype(np.int32)], 0.0)
            continue
        d = shrink_distance(poly, cfg.shrink_ratio)
        kernel = offset(poly, -d)
        if kernel is None:
            cv2.fillPoly(prob_mask, [np.round(poly).astype(np.int32)], 0.0)
            continue
        cv2.fillPoly(prob, [np.round(kernel).astype(np.int32)], 1.0)
        if cfg.small_weight > 1.0:
            cv2.fillPoly(prob_weight, [np.round(kernel).astype(np.int32)], small_weight(kernel, cfg))
        _border(poly, d, thresh, thresh_mask)
    thresh = thresh * (cfg.thresh_max - cfg.thresh_min) + cfg.thresh_min
    return {
        "prob": prob,
        "prob_mask": prob_mask,
        "thresh": thresh,
        "thresh_mask": thresh_mask,
        "prob_weight": prob_weight,
    }


def small_weight(kernel: np.ndarray, cfg: TargetConfig) -> float:
    area = max(float(cv2.contourArea(kernel.astype(np.float32))), 1.0)
    return float(np.clip(np.sqrt(cfg.small_area / area), 1.0, cfg.small_weight))


def _border(poly: np.ndarray, d: float, thresh: np.ndarray, thresh_mask: np.ndarray) -> None:
    """Write 1 - dist/D (clipped to [0, 1]) within the polygon grown by D, keeping the larger value where
    two lines' bands overlap."""
    grown = offset(poly, d)
    if grown is None:
        return
    h, w = thresh.shape
    cv2.fillPoly(thresh_mask, [np.round(grown).astype(np.int32)], 1.0)
    x0, y0 = np.floor(grown.min(axis=0)).astype(int)
    x1, y1 = np.ceil(grown.max(axis=0)).astype(int)
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w - 1, x1), min(h - 1, y1)
    if cx1 < cx0 or cy1 < cy0:
        return
    xs = np.arange(cx0, cx1 + 1, dtype=np.float32)[None, :]
    ys = np.arange(cy0, cy1 + 1, dtype=np.float32)[:, None]
    dist = np.full((cy1 - cy0 + 1, cx1 - cx0 + 1), np.inf, np.float32)
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        dist = np.minimum(dist, _segment_distance(xs, ys, a, b))
    value = 1 - np.clip(dist / max(d, 1e-6), 0, 1)
    region = thresh[cy0 : cy1 + 1, cx0 : cx1 + 1]
    np.maximum(region, value, out=region)


def _segment_distance(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    denom = float(ab @ ab) or 1e-6
    t = np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / denom, 0, 1)
    px, py = a[0] + t * ab[0], a[1] + t * ab[1]
    return np.sqrt((xs - px) ** 2 + (ys - py) ** 2)
