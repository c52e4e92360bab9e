"""Convex polygon geometry for DB's labels and boxes: area, perimeter, offsetting by a distance.

Every box here is a convex quadrilateral (a rotated, perspective-warped text line), so an offset is exact
without a clipping library: each edge moves along its normal and neighbouring edges meet again.
"""

from __future__ import annotations

import numpy as np


def area(poly: np.ndarray) -> float:
    """Signed area (shoelace): positive for clockwise points in image coordinates (y down)."""
    x, y = poly[:, 0].astype(np.float64), poly[:, 1].astype(np.float64)
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def perimeter(poly: np.ndarray) -> float:
    return float(np.linalg.norm(poly - np.roll(poly, -1, axis=0), axis=1).sum())


def offset(poly: np.ndarray, d: float) -> np.ndarray | None:
    """The convex polygon grown by `d` pixels (shrunk when d < 0), or None when shrinking collapses it.

    Each edge's line moves by d along its outward normal; vertex i becomes the meeting point of the moved
    edges i-1 and i. Parallel neighbours (a degenerate vertex) keep the moved vertex.
    """
    p = poly.astype(np.float64)
    n = len(p)
    a = area(p)
    if abs(a) < 1e-9:
        return None
    sign = 1.0 if a > 0 else -1.0  # clockwise (y down): the outward normal of edge (dx, dy) is (dy, -dx)
    edges = np.roll(p, -1, axis=0) - p
    lengths = np.linalg.norm(edges, axis=1)
    if (lengths < 1e-9).any():
        return None
    normals = sign * np.stack([edges[:, 1], -edges[:, 0]], axis=1) / lengths[:, None]
    starts = p + d * normals
    out = np.empty_like(p)
    for i in range(n):
        j = i - 1  # edge before vertex i
        p1, r = starts[j], edges[j]
        p2, s = starts[i], edges[i]
        cross = r[0] * s[1] - r[1] * s[0]
        if abs(cross) < 1e-9:
            out[i] = p2
            continue
        t = ((p2[0] - p1[0]) * s[1] - (p2[1] - p1[1]) * s[0]) / cross
        out[i] = p1 + t * r
    if d < 0 and (np.sign(area(out)) != np.sign(a) or abs(area(out)) < 1.0):
        return None
    if d < 0 and not _inside_all(out, p, sign):
        return None
    return out.astype(np.float32)


def _inside_all(points: np.ndarray, poly: np.ndarray, sign: float) -> bool:
    """Every point inside the convex polygon (a shrink so deep that edges crossed puts points outside)."""
    edges = np.roll(poly, -1, axis=0) - poly
    for q in points:
        rel = q - poly
        cross = edges[:, 0] * rel[:, 1] - edges[:, 1] * rel[:, 0]
        if (sign * cross < -1e-6).any():
            return False
    return True


def shrink_distance(poly: np.ndarray, ratio: float) -> float:
    """DB's offset D = A (1 - r^2) / L: how far a text polygon shrinks to its kernel (and how far the
    kernel grows back)."""
    return abs(area(poly)) * (1 - ratio**2) / max(perimeter(poly), 1e-6)


def order_quad(pts: np.ndarray) -> np.ndarray:
    """Four points clockwise from the top-left of a line lying within 45 degrees of horizontal."""
    pts = np.asarray(pts, np.float32).reshape(4, 2)
    c = pts.mean(axis=0)
    angles = np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0])
    pts = pts[np.argsort(angles)]  # clockwise in image coordinates (y down), starting anywhere
    start = int(np.argmin(pts.sum(axis=1)))  # the top-left corner is the one with the smallest x + y
    return np.roll(pts, -start, axis=0)


def quad_size(quad: np.ndarray) -> tuple[float, float]:
    """(width, height) of a quad clockwise from top-left: the mean of its opposite edges."""
    w = (np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3])) / 2
    h = (np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2
    return float(w), float(h)


def _rects(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Intersection area of two polygons' axis-aligned bounding rectangles, and each rectangle's area."""
    (ax0, ay0), (ax1, ay1) = a.min(axis=0), a.max(axis=0)
    (bx0, by0), (bx1, by1) = b.min(axis=0), b.max(axis=0)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    return float(iw * ih), float((ax1 - ax0) * (ay1 - ay0)), float((bx1 - bx0) * (by1 - by0))


def rect_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two polygons' axis-aligned bounding rectangles (the realdev pages' suggested scoring)."""
    inter, area_a, area_b = _rects(a, b)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def rect_inside(a: np.ndarray, b: np.ndarray) -> float:
    """Share of polygon a's bounding rectangle that lies inside b's."""
    inter, area_a, _ = _rects(a, b)
    return inter / area_a if area_a > 0 else 0.0
