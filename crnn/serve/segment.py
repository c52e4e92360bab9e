"""Page mode: split a page or multi-line image into text lines, in reading order.

Two splitters (SPLITTERS). `detector`: the learned text-line detector (crnn.detect: DB on synthetic pages),
rotated boxes warped upright, rows and columns in reading order; the default wherever a detector model is
loaded. `projection`: the original splitter below, kept as an option and as the baseline it is measured
against (crnn.detect.evaluate).

The projection splitter: binarise (Otsu, with the ink polarity detected), straighten a small rotation
(up to 10 degrees, from the ink's minimum-area rectangle), find text rows by horizontal projection, merge
rows split by accents or gaps, and cut each line's horizontal extent from its column projection. Good for
documents and screenshots with lines that do not overlap; it is not a general text detector.

The article's clean-up is a page option (PAGE_CLEANUPS, the server's form field `cleanup=`): the line
clean-ups (`crnn.data.preprocess.LINE_CLEANUPS`: `equalize`, `binarize`) apply `clean_line` to each line
crop; `rectify` finds the page's outline in a photo and warps it flat (perspective correction from the page
contour); `article` does all three. `scripts/page_cleanup.py` measures what each does to line finding and
CER.
"""

from __future__ import annotations

import cv2
import numpy as np

from crnn.data.preprocess import LINE_CLEANUPS, clean_line

MODES = ("line", "page", "auto")
SPLITTERS = ("detector", "projection")
# page option -> (rectify the page first?, clean-up of each line): the line clean-ups plus the page steps
PAGE_STEPS: dict[str, tuple[bool, str]] = {
    **{mode: (False, mode) for mode in LINE_CLEANUPS},
    "rectify": (True, "none"),
    "article": (True, "binarize"),
}
PAGE_CLEANUPS = tuple(PAGE_STEPS)
CLEANUPS = PAGE_CLEANUPS  # old name, still imported by scripts/page_cleanup.py


def order_corners(pts: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left."""
    pts = pts.reshape(4, 2).astype(np.float32)
    s, d = pts.sum(axis=1), np.diff(pts, axis=1).ravel()
    return np.float32([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]])


def find_page(gray: np.ndarray, min_area: float = 0.2, max_area: float = 0.97) -> np.ndarray | None:
    """Corners of a page photographed on a darker surface: the largest bright quadrilateral, or None.

    None also when the 'page' is the whole frame (a scan or a screenshot has no outline to correct).
    """
    h, w = gray.shape
    scale = min(1.0, 1000 / max(h, w))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    blur = cv2.GaussianBlur(small, (5, 5), 0)
    _, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    area = float(small.shape[0] * small.shape[1])
    for c in sorted(contours, key=cv2.contourArea, reverse=True)[:3]:
        a = cv2.contourArea(c)
        if not min_area * area <= a <= max_area * area:
            continue
        quad = cv2.approxPolyDP(cv2.convexHull(c), 0.02 * cv2.arcLength(c, True), True)
        if len(quad) == 4:
            return order_corners(quad) / scale
    return None


def rectify(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """The page warped flat when its outline is found; the image unchanged otherwise."""
    corners = find_page(gray)
    if corners is None:
        return gray, False
    tl, tr, br, bl = corners
    w = int(round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))))
    h = int(round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))))
    if w < 16 or h < 16:
        return gray, False
    dst = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    m = cv2.getPerspectiveTransform(corners, dst)
    return cv2.warpPerspective(gray, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), True


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """1 where there is ink, whichever of dark-on-light or light-on-dark the image is."""
    _, th = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = th == 0 if (th == 255).mean() > 0.5 else th == 255
    return ink.astype(np.uint8)


def rect_tilt(rect_angle: float) -> float:
    """The tilt in (-45, 45] degrees of a `cv2.minAreaRect` angle, in any OpenCV's convention.

    OpenCV before 4.5.1 reports [-90, 0), later ones (0, 90]: a page tilted by -5 degrees comes back as 85
    or -95 depending on the version and on which side it calls the width. A rectangle's sides lie every 90
    degrees, so the side nearest horizontal is the angle modulo 90, whichever side is longer.
    """
    tilt = rect_angle % 90.0
    return tilt - 90.0 if tilt > 45.0 else tilt


def deskew(gray: np.ndarray, max_deg: float = 10.0) -> tuple[np.ndarray, float]:
    """The image rotated so its ink's minimum-area rectangle is level, and the rotation applied (degrees,
    counter-clockwise); unchanged when the tilt is under 0.3 degrees or over `max_deg` (not a tilt)."""
    ink = ink_mask(gray)
    pts = cv2.findNonZero(ink)
    if pts is None or len(pts) < 50:
        return gray, 0.0
    angle = rect_tilt(cv2.minAreaRect(pts)[2])
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


def split(
    gray: np.ndarray, mode: str, page_cleanup: str = "none", detector=None, splitter: str = ""
) -> list[tuple[np.ndarray, list[int]]]:
    """The crops to recognise and their boxes (x, y, w, h): the whole image (line), its lines (page), or
    its lines when it has several (auto).

    `detector` (a crnn.detect.detector.Detector) finds the lines unless `splitter` is "projection"; without
    one, the projection splitter does; a detected line's box bounds its ink (crnn.detect.boxes.fit_to_ink),
    not its crop. With a `page_cleanup` that rectifies, boxes are in the rectified page when the page outline
    was found.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if page_cleanup not in PAGE_STEPS:
        raise ValueError(f"cleanup must be one of {PAGE_CLEANUPS}, got {page_cleanup!r}")
    if splitter and splitter not in SPLITTERS:
        raise ValueError(f"splitter must be one of {SPLITTERS}, got {splitter!r}")
    if splitter == "detector" and detector is None and mode != "line":  # line mode splits nothing
        raise ValueError("splitter 'detector' asked for, but no detector model is loaded")
    flatten, per_line = PAGE_STEPS[page_cleanup]
    if flatten and mode != "line":
        gray, _ = rectify(gray)
    whole = [(gray, [0, 0, gray.shape[1], gray.shape[0]])]
    if mode == "line":
        crops = whole
    else:
        use_detector = detector is not None and splitter != "projection"
        lines = detected_lines(gray, detector) if use_detector else segment_lines(gray)
        # auto: one line or none found is the whole image's line, unless the image holds no ink at all
        several = mode == "page" or len(lines) >= 2
        crops = lines if several else whole if holds_ink(gray) else []
    if per_line != "none":
        crops = [(clean_line(c, per_line), b) for c, b in crops]
    return crops


# A pixel this many grey levels from the image's median is ink; an image with fewer such pixels than
# INK_PIXELS (and INK_SHARE of its pixels) holds none. Paper grain and JPEG noise (sigma 2 to 4) stay
# within it; the faintest real lines of ../shared/realdev stand at least twice as far off their paper.
INK_LEVELS = 16
INK_PIXELS, INK_SHARE = 16, 0.0005


def holds_ink(gray: np.ndarray) -> bool:
    """Whether the image has any ink on its paper: pixels INK_LEVELS or more grey levels from its median,
    counted on the whole image's histogram (no scaling or blur, which took a long thin line's strokes
    away). A blank image read whole as a line gave the recognizer's guess at paper grain (`一`); auto mode
    returns no lines for it, as page mode does."""
    hist = np.bincount(np.asarray(gray, np.uint8).ravel(), minlength=256)
    median = int(np.searchsorted(np.cumsum(hist), (hist.sum() + 1) // 2))
    levels = np.abs(np.arange(256) - median)
    return int(hist[levels >= INK_LEVELS].sum()) >= max(INK_PIXELS, INK_SHARE * gray.size)


def detected_lines(gray: np.ndarray, detector) -> list[tuple[np.ndarray, list[int]]]:
    """The detector's lines in reading order: each rotated box warped upright, with the bounding box of the
    box reported (crnn.detect.boxes.page_lines)."""
    out = []
    for line in detector.lines(gray):
        x0, y0 = np.floor(line.quad.min(axis=0)).astype(int)
        x1, y1 = np.ceil(line.quad.max(axis=0)).astype(int)
        out.append((line.crop, [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]))
    return out
