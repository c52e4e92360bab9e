"""From the detector's probability map to lines to read: boxes, upright crops, reading order.

Every reader of pages (the ONNX detector, the training loop's validation, the page scorer) goes through
these functions, so what training measures is what serving returns.

- `det_input`: the page scaled so its long side is at most `max_side` and at least `upscale_to`
  (`read_scale`), each side a multiple of 32, as the network's (1, 1, H, W) input (x/255 - 0.5, the
  recognizer's normalisation), and the scale factors;
- `find_boxes`: DB's postprocess: threshold, contours, minimum-area rectangles, a score per box (mean
  probability inside), and each kernel grown back by the distance the targets shrank its line by
  (`unclip_distance`: DB's fixed A * 1.5 / L gives back only 60 % of a thin line's box), then pieces of
  one line that grew back into each other joined (`join_overlapping`);
- `zoom_region`: where a page read scaled down holds its text, when reading that part again would give back
  resolution the first reading threw away (a small receipt on a large scan);
- `crop_line`: a box warped upright from the full-resolution page; a box much taller than wide is a
  vertical line and is turned to read left to right;
- `fit_to_ink`: the box reported for a line narrowed to the rows (and end columns) its ink covers, as real
  datasets (SROIE, ICDAR) draw line boxes; the recognizer still reads the detector's box, whose margins it
  was trained on;
- `split_rows`: a box that holds several printed rows with paper between them (rows the probability map
  bridged) cut into one box per row;
- `page_lines`: a page's boxes as lines to read and report, in reading order, with the lone glyphs in
  table columns that the detector missed (crnn.detect.glyphs);
- `reading_order`: rows top to bottom (a line starts a new row when its centre is more than half a line
  below the row's first line), left to right within a row, and columns read one after another when a
  gutter runs between blocks of text or between lines that do not pair up across it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from crnn.detect.glyphs import glyph_crop, lone_glyphs
from crnn.detect.polygons import order_quad, quad_size


@dataclass
class BoxConfig:
    max_side: int = 960  # the page's long side at the detector's input, px: larger pages are scaled down
    upscale_to: int = 640  # ... and smaller ones up to this (0: never): see read_scale
    bin_thresh: float = 0.3  # probability above which a pixel is text
    box_thresh: float = 0.6  # a box's mean probability must reach this
    shrink_ratio: float = 0.4  # the targets' (crnn.detect.targets): kernels grow back by what they lost
    unclip_scale: float = 1.0  # times that distance (above 1: looser boxes)
    min_size: float = 3.0  # boxes thinner than this (input px) are noise
    max_boxes: int = 1000
    join_overlaps: bool = True  # same-row boxes that overlap along the row are one line (join_overlapping)
    # a page read scaled down is read again over the region its boxes lie in when that region can be read
    # at least this many times larger (zoom_region; 0: never)
    zoom_gain: float = 1.5
    fit_ink: bool = True  # boxes reported narrowed to their ink's rows (fit_to_ink); crops keep the box
    split_rows: bool = True  # a box over several printed rows with paper between them is cut (split_rows)
    lone_glyphs: bool = True  # lone glyphs in table columns that no box covers are read too (detect.glyphs)
    # the crop read runs on past each end of its box by this part of the box's height (lengthened; the box
    # reported does not): chosen on synthetic pages (scripts/crop_ends.py)
    crop_ends: float = 0.2


@dataclass
class Box:
    quad: np.ndarray  # (4, 2) float32 in page pixels, clockwise from the text's top-left
    score: float


# An image whose short side is under this is a text line (or a strip of lines) that fills its height:
# scaled up, its text grows past anything the network saw at an image's edge, and auto mode splits it.
LINE_SHORT_SIDE = 128


def read_scale(h: int, w: int, boxes: BoxConfig) -> float:
    """The factor the detector reads an h x w page at: down to a long side of `max_side`, or up to one of
    `upscale_to` when the page is smaller. Training draws pages at this scale (times a random factor), so a
    web image of a few hundred pixels, whose lines the network would otherwise see smaller than it was
    taught, is read as a page of trained size. Measured with the bundled detector on 150 synthetic pages of
    each kind (scripts/small_pages.py): pages saved at a long side of 250 to 640 px, F1 0.859 at their own
    scale against 0.946 at 640; pages drawn at 300 to 450 px (larger text for their size), 0.907 against
    0.916. 640 is best over both kinds (560 to 800 are within 0.003 on the first; above 640 loses the
    second). An image under `LINE_SHORT_SIDE` across keeps its scale: of 180 rendered single lines, auto
    mode read 157 whole at their own scale, 148 scaled up to 640, 157 with this rule, and the pages'
    figures above are the same with it."""
    long_side = max(h, w)
    if long_side > boxes.max_side:
        return boxes.max_side / long_side
    if long_side < boxes.upscale_to and min(h, w) >= LINE_SHORT_SIDE:
        return min(boxes.upscale_to, boxes.max_side) / long_side
    return 1.0


def input_size(h: int, w: int, boxes: BoxConfig) -> tuple[int, int]:
    """(H, W) at the detector's input: the page at `read_scale`, each side rounded to a multiple of 32 (at
    least 32)."""
    s = read_scale(h, w, boxes)
    return max(32, int(round(h * s / 32)) * 32), max(32, int(round(w * s / 32)) * 32)


def det_normalize(gray: np.ndarray) -> np.ndarray:
    """uint8 pixels -> the detector's float input (x/255 - 0.5, the recognizer's normalisation); training
    crops and served pages both go through here."""
    return gray.astype(np.float32) / 255.0 - 0.5


def det_input(gray: np.ndarray, boxes: BoxConfig) -> tuple[np.ndarray, tuple[float, float]]:
    """(1, 1, H, W) float32 input and the (x, y) factors from page to input pixels."""
    h, w = gray.shape[:2]
    ih, iw = input_size(h, w, boxes)
    interp = cv2.INTER_AREA if ih < h or iw < w else cv2.INTER_LINEAR
    x = det_normalize(cv2.resize(gray, (iw, ih), interpolation=interp))
    return x[None, None], (iw / w, ih / h)


def zoom_region(
    boxes: list[Box], page_hw: tuple[int, int], cfg: BoxConfig
) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) in page pixels: the region around a first pass's boxes, grown by two median line
    heights, when reading it alone would give its text at least `zoom_gain` times the pixels the first pass
    gave, never more than the page's own; else None. One stray box far from the text (a stamp, a scanner's
    shadow) widens the region and can cancel the zoom. Training validation reads synthetic pages of at most
    `max_side` and never zooms.

    Why: a page is read at a long side of at most `max_side`. A receipt scanned on a large sheet (SROIE's
    4961 x 7016 scans hold receipts a third as wide) then reaches the network with lines 8 to 10 px tall,
    where a pixel of its map is 7 page pixels: boxes come out loose and thick, and a long line turned by a
    degree or two grows taller than the gap to the next row. Read again over the receipt alone, its lines
    have the sizes the detector was trained on. A page whose text fills it, or one read at its own scale,
    gains nothing and is read once."""
    if cfg.zoom_gain <= 0 or not boxes:
        return None
    h, w = page_hw
    first = read_scale(h, w, cfg)
    if first >= 1:
        return None  # read at its own scale or larger: nothing was thrown away
    pts = np.concatenate([b.quad for b in boxes])
    margin = 2 * float(np.median([quad_size(b.quad)[1] for b in boxes]))
    x0, y0 = np.floor(np.maximum(pts.min(axis=0) - margin, 0)).astype(int)
    x1 = int(np.ceil(min(float(pts[:, 0].max()) + margin, w)))
    y1 = int(np.ceil(min(float(pts[:, 1].max()) + margin, h)))
    if x1 - x0 < 32 or y1 - y0 < 32:
        return None
    gain = min(1.0, read_scale(y1 - y0, x1 - x0, cfg)) / first
    return (int(x0), int(y0), x1, y1) if gain >= cfg.zoom_gain else None


def find_boxes(
    prob: np.ndarray, scale: tuple[float, float], page_hw: tuple[int, int], cfg: BoxConfig
) -> list[Box]:
    """Boxes (in page pixels) of the text kernels in one (H, W) probability map."""
    bitmap = (prob > cfg.bin_thresh).astype(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    kernels = []  # (contour, minimum-area rectangle, score) of the kernels that are text
    for contour in contours[: cfg.max_boxes]:
        if len(contour) < 3:
            continue
        rect = cv2.minAreaRect(contour)
        if min(rect[1]) < cfg.min_size - 1:
            continue
        score = _mean_inside(prob, contour)
        if score >= cfg.box_thresh:
            kernels.append((contour, rect, score))
    turn = page_turn([rect for _, rect, _ in kernels])
    boxes = []
    sx, sy = scale
    ph, pw = page_hw
    for contour, rect, score in kernels:
        rect = _undirected(contour, rect, turn)
        (cx, cy), (rw, rh), angle = rect
        d = unclip_distance(rw, rh, cfg.shrink_ratio) * cfg.unclip_scale
        rect = ((cx, cy), (rw + 2 * d, rh + 2 * d), angle)
        if min(rect[1]) < cfg.min_size + 2:
            continue
        quad = cv2.boxPoints(rect).astype(np.float32)
        quad[:, 0] = np.clip(quad[:, 0] / sx, 0, pw)
        quad[:, 1] = np.clip(quad[:, 1] / sy, 0, ph)
        boxes.append(Box(_text_quad(quad), score))
    if not cfg.join_overlaps:
        return boxes
    return join_overlapping(boxes, join_slack(cfg))


def join_slack(cfg: BoxConfig) -> float:
    """How much two boxes of one row must overlap (in heights) to be joined: boxes grown past the targets'
    distance overlap by the extra, (scale - 1) (1 - r^2) of a line's height."""
    return max(0.0, cfg.unclip_scale - 1.0) * (1 - cfg.shrink_ratio**2)


# A kernel less than this many times longer than wide, and boxed about as tightly at the page's turn as at its
# own angle (within SQUARE_AREA), has no direction of its own: a lone digit or colon, whose minimum-area
# rectangle can come out turned by any angle (a diamond around a `0`), so the crop reads it on its corner.
# Such a kernel is boxed at the page's turn (page_turn) instead. A short word turned on its own (a sign in a
# photo) is boxed much tighter at its own angle and keeps it.
SQUARE_ASPECT = 1.5
SQUARE_AREA = 1.2


def page_turn(rects: list) -> float:
    """The page's turn in degrees, in (-45, 45]: the direction of its text kernels that are at least twice as
    long as wide, averaged on the circle of quarter turns (a vertical line counts as an upright page; lines
    at 44.8 and -44.8 degrees agree) and weighted by length; 0 without any."""
    s = c = 0.0
    for _, (w, h), a in rects:
        if max(w, h) >= 2 * max(min(w, h), 1e-6):
            t = np.radians(4 * a)  # a quarter turn is a full turn of 4a: no fold, no w/h swap needed
            s, c = s + max(w, h) * np.sin(t), c + max(w, h) * np.cos(t)
    return float(np.degrees(np.arctan2(s, c)) / 4) if s or c else 0.0


def _undirected(contour: np.ndarray, rect: tuple, turn: float) -> tuple:
    """The kernel's rectangle: at the page's turn when it has no direction of its own, else its own."""
    (w, h) = rect[1]
    if max(w, h) >= SQUARE_ASPECT * min(w, h):
        return rect
    at_turn = _rect_at(contour, turn)
    return at_turn if at_turn[1][0] * at_turn[1][1] <= SQUARE_AREA * max(w * h, 1e-6) else rect


def _rect_at(contour: np.ndarray, turn: float) -> tuple:
    """The rectangle around a contour with its sides at `turn` degrees, as cv2.minAreaRect gives one."""
    t = np.radians(turn)
    u = np.float32([np.cos(t), np.sin(t)])
    v = np.float32([-u[1], u[0]])
    pts = contour.reshape(-1, 2).astype(np.float32)
    a, b = pts @ u, pts @ v
    ca, cb = (a.min() + a.max()) / 2, (b.min() + b.max()) / 2
    centre = ca * u + cb * v
    return (float(centre[0]), float(centre[1])), (float(np.ptp(a)), float(np.ptp(b))), float(turn)


def join_overlapping(boxes: list[Box], slack: float = 0.0, gap: float = 0.0) -> list[Box]:
    """Boxes that overlap one another along one text row, joined into one box around them.

    The targets never cut a line: a kernel that breaks inside one (at a wide word space of monospace
    receipt print, where the probability dips below `bin_thresh`) is a miss, and the two pieces, each grown
    back by its own unclip distance, reach into each other's glyphs, so each crop reads a stray character
    of its neighbour. Two different lines do not overlap once grown back, because the targets keep
    neighbouring kernels apart by at least the distance they grow by; boxes grown further than that
    (`unclip_scale` above 1) must overlap by more than the extra, `slack` times the smaller height.
    Joined: turned alike (within 5 degrees), the smaller sharing at least 70 % of its height across the row
    with the other, centred within a quarter of the taller's height of each other and at most 2.5 times
    shorter (so a tall box beside two stacked lines does not chain them into one), and overlapping along
    the row; chains join whole. Boxes with a gap between them (a receipt's columns, separate segments) stay
    apart, unless the gap is under `gap` times the smaller height (page mode passes none; scripts/join_gaps.py
    measured it)."""
    if len(boxes) < 2:
        return list(boxes)
    quads = np.stack([b.quad for b in boxes])
    reach = gap * np.float32([quad_size(q)[1] for q in quads])[:, None]  # how far a box reaches over paper
    lo, hi = quads.min(axis=1) - reach, quads.max(axis=1) + reach  # only pairs that touch so are checked
    touch = (lo[:, None] <= hi[None, :]).all(-1) & (lo[None, :] <= hi[:, None]).all(-1)
    np.fill_diagonal(touch, False)
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(touch)):
        if i < j and _one_row(quads[i], quads[j], slack - gap):
            parent[root(int(j))] = root(int(i))
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return [boxes[m[0]] if len(m) == 1 else _joined([boxes[i] for i in m]) for m in groups.values()]


def _long_axis(q: np.ndarray) -> tuple[np.ndarray, float]:
    """The unit vector along a quad's longer side, and how many times longer that side is than the other.
    Taken from the sides, not from the corner order, which flips by 90 or 180 degrees near 45 degrees and
    between a long vertical piece (turned) and a short one (not)."""
    e0, e1 = q[1] - q[0], q[2] - q[1]
    n0, n1 = float(np.linalg.norm(e0)), float(np.linalg.norm(e1))
    e, n, m = (e0, n0, n1) if n0 >= n1 else (e1, n1, n0)
    return e / max(n, 1e-6), n / max(m, 1e-6)


def _one_row(a: np.ndarray, b: np.ndarray, slack: float = 0.0) -> bool:
    """Whether two quads lie on one text row and overlap along it (by more than `slack` heights)."""
    (ua, ra), (ub, rb) = _long_axis(a), _long_axis(b)
    u, other, r_other = (ua, ub, rb) if ra >= rb else (ub, ua, ra)  # the row runs along the longer piece
    if r_other >= 1.5 and abs(float(u @ other)) < np.cos(np.radians(5)):
        return False  # both are clearly lines, turned differently (a near-square piece has no direction)
    v = np.array([-u[1], u[0]], np.float32)  # across the row
    ax, ay, bx, by = a @ u, a @ v, b @ u, b @ v
    ha, hb = float(np.ptp(ay)), float(np.ptp(by))
    low, tall = min(ha, hb), max(ha, hb)
    if low < 1e-6 or tall > 2.5 * low:
        return False
    if abs((ay.min() + ay.max()) - (by.min() + by.max())) / 2 > 0.25 * tall:
        return False
    if min(ay.max(), by.max()) - max(ay.min(), by.min()) < 0.7 * low:
        return False
    return min(ax.max(), bx.max()) - max(ax.min(), bx.min()) > slack * low


def _joined(boxes: list[Box]) -> Box:
    """The minimum-area box around all of them; the score weighted by each box's length."""
    pts = np.concatenate([b.quad for b in boxes]).astype(np.float32)
    quad = _text_quad(cv2.boxPoints(cv2.minAreaRect(pts)).astype(np.float32))
    lengths = [quad_size(b.quad)[0] for b in boxes]
    return Box(quad, float(np.average([b.score for b in boxes], weights=lengths)))


def unclip_distance(w: float, h: float, shrink_ratio: float) -> float:
    """The D that shrinking a w+2D by h+2D rectangle by D = A (1 - r^2) / L (crnn.detect.targets) leaves
    as a w by h kernel: the positive root of (8 - 4k) D^2 + 2 (1 - k)(w + h) D - k w h = 0, k = 1 - r^2."""
    k = 1 - shrink_ratio**2
    a, b, c = 8 - 4 * k, 2 * (1 - k) * (w + h), -k * w * h
    return float((-b + np.sqrt(b * b - 4 * a * c)) / (2 * a))


def _mean_inside(prob: np.ndarray, contour: np.ndarray) -> float:
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [contour.reshape(-1, 2) - np.int32([x, y])], 1)
    return float(cv2.mean(prob[y : y + h, x : x + w], mask)[0])


def _text_quad(quad: np.ndarray) -> np.ndarray:
    """Clockwise from the text's top-left: from the top-left corner, unless the box is over 3 times taller
    than wide (a vertical line, or a line turned past 45 degrees): then from the corner that makes the long
    side the first edge. A narrow glyph alone ("1", "I": about 2.5 times taller than wide) stays upright."""
    q = order_quad(quad)
    w, h = quad_size(q)
    if h > w * 3:
        q = np.roll(q, -1, axis=0)  # start at the top-right: the long right edge becomes the text's top
    return q


def upright(gray: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The quad's pixels warped upright (its first edge becomes the top), and the page-to-crop transform."""
    w, h = quad_size(quad)
    w, h = max(2, int(round(w))), max(2, int(round(h)))
    dst = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    crop = cv2.warpPerspective(gray, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def crop_line(gray: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quad's pixels warped upright (its first edge becomes the top), at the page's resolution."""
    return upright(gray, quad)[0]


# fit_to_ink's settings. INK_ROW_SHARE and INK_MIN_FIT were chosen on synthetic pages labelled by their ink
# (scripts/ink_boxes.py); the others were set as their comments say, the synthetic pages being flat on them.
INK_ROW_SHARE = 0.02  # a row holds ink when its share of ink pixels reaches this part of the fullest row's
INK_BODY_SHARE = 0.3  # ... and the body of a line's letters when it reaches this part
INK_SMOOTH = 1.0  # px: pixels averaged along the line before Otsu, so paper noise is not ink; rows stay exact
INK_MIN_HEIGHT = 6  # px: a crop shorter than this keeps its box
INK_CONTRAST = 16.0  # grey levels between Otsu's two classes below which a crop holds no ink to fit
INK_MIN_FIT = 0.3  # a fit under this part of the box's height is not believed (the box is kept)


def fit_to_ink(
    crop: np.ndarray,
    m: np.ndarray,
    quad: np.ndarray,
    share: float = INK_ROW_SHARE,
    min_fit: float = INK_MIN_FIT,
) -> np.ndarray:
    """`quad` narrowed to the rows of `crop` (its upright uint8 pixels, `m` the page-to-crop transform) that
    its line's ink covers, and to the columns at its ends that hold ink. The detector's boxes run from a tall
    glyph's top to a descender's bottom, as its synthetic targets do: an upper-case receipt row's box is
    about 1.5 times its ink, and a row sweep that groups lines by box height (the realdev scorer's, our
    reading order) then puts two printed rows in one; the box grows back along its line as far as across
    it, so a one- or two-character box is far larger than its glyphs.

    Ink is the Otsu class that the crop's top and bottom rows are not. Shares of ink are taken against the
    fullest row of the box's middle half, where its own line lies, so a short line under a dense neighbour
    is not lost in it. The line spans the rows where letters' bodies lie (INK_BODY_SHARE) apart from the
    pieces that the crop's edge cuts (_line_rows: a tight neighbour's), so 三's strokes or a colon's dots
    stay one line; it is grown over the rows of any ink that touch it (`share`: descenders, accents), never
    into a cut piece. A crop without two classes of ink and paper, or a fit under `min_fit` of the box's
    height (faint text beside a dark object), keeps its box."""
    h, w = crop.shape
    ink = ink_mask(crop)
    if ink is None:
        return quad
    ink = _without_neighbours(ink)
    per_row = ink.mean(axis=1)
    peak = float(per_row[h // 4 : h - h // 4].max())  # the box's own line fills its middle, not a neighbour
    if peak <= 0:
        return quad
    body = np.flatnonzero(per_row >= max(INK_BODY_SHARE * peak, 1.0 / w))
    top, bottom, cut = _line_rows(body, h)
    grows = per_row >= max(share * peak, 1.0 / w)
    grows[cut] = False
    while top > 0 and grows[top - 1]:
        top -= 1
    while bottom < h and grows[bottom]:
        bottom += 1
    if bottom - top < min_fit * h:
        return quad
    per_col = ink[top:bottom].mean(axis=0)
    cols = np.flatnonzero(per_col >= share * per_col.max())
    left, right = (float(cols[0]), float(cols[-1] + 1)) if cols.size else (0.0, float(w))
    corners = np.float64([[[left, top], [right, top], [right, bottom], [left, bottom]]])
    return cv2.perspectiveTransform(corners, np.linalg.inv(m))[0].astype(np.float32)


def ink_mask(crop: np.ndarray) -> np.ndarray | None:
    """The ink of an upright crop (bool, True on ink): the Otsu class that its top and bottom rows are not,
    so dark print on paper and light print on a dark sign both come out as ink. None when the crop is too
    short to tell (INK_MIN_HEIGHT) or holds no two classes of ink and paper (INK_CONTRAST)."""
    if crop.shape[0] < INK_MIN_HEIGHT:
        return None
    crop = cv2.GaussianBlur(crop, (0, 0), sigmaX=INK_SMOOTH, sigmaY=1e-3) if INK_SMOOTH else crop
    t, _ = cv2.threshold(crop, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    below = crop <= t
    dark, light = crop[below], crop[~below]
    if dark.size == 0 or light.size == 0 or light.mean() - dark.mean() < INK_CONTRAST:
        return None
    paper = float(np.median(np.concatenate([crop[0], crop[-1]])))
    return below if abs(paper - light.mean()) < abs(paper - dark.mean()) else ~below


def _without_neighbours(ink: np.ndarray) -> np.ndarray:
    """`ink` less the strokes that the crop's top or bottom edge cuts and that stay in that half of the
    crop: a neighbouring line's descenders or capitals. On a tilted page they reach into the box at a slant
    and their rows fall into several pieces, which _line_rows alone would take for the line's own (a
    receipt photographed 2 degrees off: `ADVANCO COMPANY` fitted down to the capitals of the row below)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    h = ink.shape[0]
    top = stats[:, cv2.CC_STAT_TOP]
    bottom = top + stats[:, cv2.CC_STAT_HEIGHT]
    cut = ((top == 0) & (bottom <= h / 2)) | ((bottom == h) & (top >= h / 2))
    cut[0] = False  # the background
    return ink & ~cut[labels] if cut.any() else ink


def _line_rows(body: np.ndarray, h: int) -> tuple[int, int, np.ndarray]:
    """The rows [top, bottom) of the box's own line among its body rows, and the rows of the pieces (runs of
    consecutive body rows) left out. A detector box is centred on its line, so a piece that the crop's top
    or bottom edge cuts is a neighbour's when the pieces inside reach the middle half of the box; when they
    do not (nothing inside, or the box cuts its own line), every body row counts."""
    pieces = np.split(body, np.flatnonzero(np.diff(body) > 1) + 1)
    inside = [p for p in pieces if p[0] > 0 and p[-1] < h - 1]
    if inside and inside[0][0] <= 0.75 * h and inside[-1][-1] + 1 >= 0.25 * h:
        cut = [p for p in pieces if p[0] == 0 or p[-1] == h - 1]
        return int(inside[0][0]), int(inside[-1][-1]) + 1, np.concatenate(cut) if cut else body[:0]
    return int(body[0]), int(body[-1]) + 1, body[:0]


# split_rows's settings, checked on 100 synthetic pages (scripts/split_rows.py): none of their 2,133 line
# boxes is cut anywhere on a grid around these values, and 64 % of boxes drawn over two neighbouring lines
# are cut into both (the rest: lines that touch, lone glyphs, a neighbour's ink at the box's edge).
SPLIT_MIN_LINES = 1.6  # only a box this many times the page's median box height may hold several rows
SPLIT_GAP_SHARE = 0.1  # a row whose ink is under this part of the fullest row's is paper between rows
SPLIT_MIN_ROW = 0.35  # a printed row cut out spans ink over at least this part of the median box height
SPLIT_MAX_ROW = 1.5  # ... and at most this part: each is a line of the page's size, not a heading's
SPLIT_SIMILAR = 2.0  # ... and the rows' ink heights are within this factor of each other


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The [start, end) of every run of True in a 1-D mask."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    return [(int(p[0]), int(p[-1]) + 1) for p in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)]


def row_bands(
    crop: np.ndarray,
    line_h: float,
    min_lines: float = SPLIT_MIN_LINES,
    gap: float = SPLIT_GAP_SHARE,
    min_row: float = SPLIT_MIN_ROW,
    max_row: float = SPLIT_MAX_ROW,
) -> list[tuple[int, int]]:
    """The [top, bottom) rows of each printed row in an upright crop that holds several, cut halfway across
    the paper between them; [] when it holds one. `line_h` is a line's height on the page (its boxes'
    median): rows are cut only out of a box at least SPLIT_MIN_LINES times that tall, and only where each
    row's ink is a line's (SPLIT_MIN_ROW, SPLIT_MAX_ROW, SPLIT_SIMILAR), no row is cut by the crop's edge,
    nothing but paper lies between the rows, and each holds two glyphs or more (columns of paper between
    them), together wider than tall. So a lone 三, 二, 吕 or colon, whose strokes have paper between them
    too, an underline, small print between two rows, or a photo behind a line, stays whole."""
    h = crop.shape[0]
    if h < min_lines * line_h:
        return []
    ink = ink_mask(crop)
    if ink is None:
        return []
    per_row = ink.mean(axis=1)
    peak = float(per_row.max())
    if peak <= 0:
        return []
    inked = _runs(per_row >= gap * peak)
    rows = [r for r in inked if r[1] - r[0] >= min_row * line_h]
    if len(rows) < 2 or rows[0][0] == 0 or rows[-1][1] == h:  # a row the box's edge cuts: not its own
        return []
    if any(rows[0][0] < a < rows[-1][1] and (a, b) not in rows for a, b in inked):
        return []  # ink between the rows that is no line's (small print, a rule): no clean cut through it
    heights = [b - a for a, b in rows]
    if max(heights) > min(SPLIT_SIMILAR * min(heights), max_row * line_h):
        return []
    for a, b in rows:  # a printed row: two glyphs or more apart, together wider than tall
        glyphs = _runs(ink[a:b].any(axis=0))
        if len(glyphs) < 2 or glyphs[-1][1] - glyphs[0][0] < b - a:
            return []
    cuts = [0] + [(rows[i][1] + rows[i + 1][0]) // 2 for i in range(len(rows) - 1)] + [h]
    return list(zip(cuts[:-1], cuts[1:]))


def split_rows(gray: np.ndarray, boxes: list[Box], **bands) -> list[Box]:
    """`boxes` with each box that holds several printed rows cut into one box per row (row_bands). At a
    receipt's tight leading the probability map can bridge the few pixels of paper between two rows (a
    page read at 0.4 scale, `GST SR 6%` over `Amt. Excl. GST`), and the recognizer reads the two rows as one
    line of neither's text. `bands`: row_bands's settings, for a sweep (scripts/split_rows.py)."""
    if len(boxes) < 2:
        return boxes
    line_h = float(np.median([quad_size(b.quad)[1] for b in boxes]))
    out = []
    for b in boxes:
        if quad_size(b.quad)[1] < bands.get("min_lines", SPLIT_MIN_LINES) * line_h:
            out.append(b)
            continue
        crop, m = upright(gray, b.quad)
        rows = row_bands(crop, line_h, **bands)
        if not rows:
            out.append(b)
            continue
        inv, w = np.linalg.inv(m), float(crop.shape[1])
        for top, bottom in rows:
            corners = np.float64([[[0, top], [w, top], [w, bottom], [0, bottom]]])
            out.append(Box(cv2.perspectiveTransform(corners, inv)[0].astype(np.float32), b.score))
    return out


@dataclass
class Line:
    crop: np.ndarray  # the detector's box warped upright: what the recognizer reads
    quad: np.ndarray  # the box reported and ordered by: narrowed to its ink when BoxConfig.fit_ink


def page_lines(
    gray: np.ndarray,
    boxes: list[Box],
    fit_ink: bool = True,
    split: bool = True,
    glyphs: bool = True,
    ends: float = BoxConfig.crop_ends,
) -> list[Line]:
    """The boxes found on `gray` (a uint8 page) as lines in reading order (ordered by the boxes reported):
    a box over several printed rows cut into its rows first (split_rows), then lone glyphs in table columns
    that no box covers added (crnn.detect.glyphs, which needs the lines' ink boxes: with fit_ink only). Each
    line's crop runs on past its box's ends by `ends` of its height (BoxConfig.crop_ends, lengthened)."""
    if split:
        boxes = split_rows(gray, boxes)
    quads = [b.quad for b in boxes]
    lines = [_line(gray, q, fit_ink, ends) for q in quads]
    if glyphs and fit_ink:
        cells = lone_glyphs(gray, quads, [ln.quad for ln in lines])
        lines += [Line(crop_line(gray, glyph_crop(c)), c) for c in cells]
    return [lines[i] for i in reading_order([ln.quad for ln in lines])]


def _line(gray: np.ndarray, quad: np.ndarray, fit_ink: bool, ends: float = 0.0) -> Line:
    crop, m = upright(gray, quad)
    reported = fit_to_ink(crop, m, quad) if fit_ink else quad
    return Line(upright(gray, lengthened(quad, ends))[0] if ends > 0 else crop, reported)


def lengthened(quad: np.ndarray, ends: float) -> np.ndarray:
    """`quad` (clockwise from its text's top-left) run on along its text by `ends` of its height at both
    ends. The detector's boxes stop at the ink of a line's first and last glyph (its synthetic targets'
    boxes do), and the recognizer, taught on lines with paper beyond their ends, drops a glyph that touches
    the crop's edge (`Total` read `Tota`, `破损就赔` read `破损就`). Run on over the page itself, not
    padded with paper: a glyph the box cut short is read whole. On 100 synthetic pages (their own seed)
    page CER went 0.1369 -> 0.1365 / 0.1348 / 0.1349 at 0.1 / 0.2 / 0.3 of the height
    (scripts/crop_ends.py)."""
    q = quad.astype(np.float64)
    along = q[1] - q[0]
    along /= max(float(np.linalg.norm(along)), 1e-6)
    step = ends * float(np.linalg.norm(q[3] - q[0])) * along
    return np.float32([q[0] - step, q[1] + step, q[2] + step, q[3] - step])


def _center_height(quad: np.ndarray) -> tuple[float, float, float]:
    xs, ys = quad[:, 0], quad[:, 1]
    return float(xs.mean()), float(ys.mean()), float(ys.max() - ys.min())


def row_order(quads: list[np.ndarray], texts: list[str] | None = None) -> list[int]:
    """Rows top to bottom, left to right within a row (the realdev pages' sweep); with `texts`, boxes whose
    centres share an x are taken in the order of their texts, as the README's sweep sorts (x, text) pairs."""
    info = [_center_height(q) for q in quads]
    rows: list[list[int]] = []
    first: tuple[float, float] | None = None
    for i in sorted(range(len(quads)), key=lambda i: info[i][1]):
        cx, cy, h = info[i]
        if first is None or cy - first[0] > 0.5 * first[1]:
            first = (cy, h)
            rows.append([])
        rows[-1].append(i)
    tie = texts if texts is not None else [""] * len(quads)
    return [i for row in rows for i in sorted(row, key=lambda i: (info[i][0], tie[i]))]


TURN_MIN_DEG = 0.5  # a page whose lines are turned less than this is ordered as it lies
TURN_AGREE = 0.95  # ... and so is one whose lines' directions disagree (scene signs each turned its own way)


def lines_turn(quads: list[np.ndarray]) -> float:
    """The turn of a page's lines in degrees, in (-45, 45]: the direction of each box's first edge (along
    its text) for four-point boxes at least twice as long as tall, averaged on the circle of quarter turns
    and weighted by length, as `page_turn` does for the detector's kernels; 0 without any, or when they do
    not agree (the mean's length under TURN_AGREE of the weights': one sign turned 15 degrees above
    straight rows would turn them all by half that)."""
    s = c = total = 0.0
    for q in quads:
        if len(q) != 4:
            continue
        d, h = q[1] - q[0], float(np.hypot(*(q[3] - q[0])))
        w = float(np.hypot(*d))
        if w >= 2 * max(h, 1e-6):
            t = 4 * np.arctan2(float(d[1]), float(d[0]))
            s, c, total = s + w * np.sin(t), c + w * np.cos(t), total + w
    if not total or np.hypot(s, c) < TURN_AGREE * total:
        return 0.0
    return float(np.degrees(np.arctan2(s, c)) / 4)


def turned(quads: list[np.ndarray], deg: float, centre: np.ndarray | None = None) -> list[np.ndarray]:
    """`quads` turned by `deg` degrees about `centre` (the origin by default), clockwise on the page (y
    runs down)."""
    a = np.radians(deg)
    r = np.float32([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = np.zeros(2, np.float32) if centre is None else np.float32(centre)
    return [(q - c) @ r.T + c for q in quads]


def reading_order(quads: list[np.ndarray]) -> list[int]:
    """Indices of `quads` in reading order: columns left to right when the page splits into columns whose
    lines do not share rows, rows within each; on a page turned by `lines_turn` (a receipt photographed a few
    degrees off), rows as they were printed: the boxes are turned upright before they are ordered, or a
    price at a row's right end, higher by the turn, joins the row above (realdev's receipt 0011, turned
    1.4 degrees: `*S` read before the item it marks)."""
    turn = lines_turn(quads)
    if abs(turn) >= TURN_MIN_DEG:
        quads = turned(quads, -turn)
    return _columns_then_rows(quads)


def _columns_then_rows(quads: list[np.ndarray]) -> list[int]:
    if len(quads) < 6:
        return row_order(quads)
    cut = _column_gutter(quads)
    if cut is None:
        return row_order(quads)
    left = [i for i, q in enumerate(quads) if q[:, 0].max() <= cut]
    right = [i for i, q in enumerate(quads) if q[:, 0].max() > cut]
    return [left[i] for i in _columns_then_rows([quads[i] for i in left])] + [
        right[i] for i in _columns_then_rows([quads[i] for i in right])
    ]


def _column_gutter(quads: list[np.ndarray]) -> float | None:
    """An x that no box crosses, with at least 3 lines on each side, that separates columns: either most
    lines of the smaller side have no partner in the same row on the other side (columns set independently),
    or both sides are blocks of text (left-aligned lines several times longer than tall). A receipt's items
    and prices pair up row by row and its prices are short, so it is read row by row."""
    spans = sorted((float(q[:, 0].min()), float(q[:, 0].max())) for q in quads)
    reach = spans[0][1]
    for x0, x1 in spans[1:]:
        if x0 > reach:
            cut = (reach + x0) / 2
            left = [q for q in quads if q[:, 0].max() <= cut]
            right = [q for q in quads if q[:, 0].max() > cut]
            if min(len(left), len(right)) >= 3 and (
                _unpaired(left, right) or (_block(left) and _block(right))
            ):
                return cut
        reach = max(reach, x1)
    return None


def _unpaired(left: list[np.ndarray], right: list[np.ndarray]) -> bool:
    a_side, b_side = (left, right) if len(left) <= len(right) else (right, left)
    a = [_center_height(q) for q in a_side]
    b = [_center_height(q) for q in b_side]
    paired = sum(any(abs(p[1] - o[1]) < 0.25 * max(p[2], 1) for o in b) for p in a)
    return paired < 0.5 * len(a)


def _block(side: list[np.ndarray]) -> bool:
    """Lines of running text: most start where the column starts, and they are long."""
    x0 = np.array([q[:, 0].min() for q in side])
    w = np.array([q[:, 0].max() - q[:, 0].min() for q in side])
    h = float(np.median([q[:, 1].max() - q[:, 1].min() for q in side]))
    aligned = (x0 - x0.min() <= h).mean()
    return bool(aligned >= 0.6 and np.median(w) >= 3 * h)
