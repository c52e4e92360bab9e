"""Synthetic pages for the detector: text of every render recipe laid out as a real page would hold it, with
each line's box (4 points, clockwise from the text's top-left) and text.

A page is a pure function of (seed, index). Its layout is drawn by weight (`PageConfig.layouts`):

- document: paragraphs in one or two columns, headings, indents, on paper or a scan;
- receipt: a narrow strip of monospace rows; item and price are separate boxes (as SROIE labels a row),
  so are a lone quantity (`1`) and the colon column of `key : value` rows,
  rules of dashes are ink without a box;
- ad: a few large lines of mixed sizes on a photo or gradient, light or dark, outlined, on colour bands;
- banner: an e-commerce banner: a headline, captions on tight pills, rows of short selling points with
  bullet icons beside them, prices with a small suffix in the same box (`5.8起`) and small captions;
- scene: short signs on a photograph, each turned by up to 25 degrees;
- screen: list rows, chat bubbles and icons on a flat light or dark ground;
- table: ruled cells, one box per cell text.

Text comes from the corpus view of the recipe the layout borrows (receipt lines from `receipt`, signs from
`signboard`/`scene`, UI strings from `screen`, ...) and its fonts from that recipe, so the detector sees the
recognizer's fonts and texts. Then the whole page may turn, warp in perspective, blur, fade, get noise and
JPEG artefacts. A line whose box leaves the frame or ends up under 4 pixels tall is marked `ignore` (the
loss neither rewards nor punishes it). Boxes hug the line: the ink's horizontal extent and the font's line
height (ascender to descender), like the realdev pages' boxes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageDraw

from crnn.data import augment
from crnn.data.fonts import FontSpec, covers, load_font
from crnn.data.source import SynthSource

LAYOUTS = ("document", "receipt", "ad", "banner", "scene", "screen", "table")
LABEL_ROWS = ("font", "ink")
INK_LEVEL = 64  # a mask row with a pixel above this (of 255) holds ink (label_rows=ink)


@dataclass
class PageConfig:
    long_side: list[int] = field(default_factory=lambda: [512, 960])  # rendered page, px
    layouts: dict[str, float] = field(
        default_factory=lambda: {
            "document": 2,
            "receipt": 2,
            "ad": 2,
            "banner": 1.5,
            "scene": 1.5,
            "screen": 1,
            "table": 1,
        }
    )
    rotate_p: float = 0.35
    rotate_deg: float = 6.0
    perspective_p: float = 0.3
    perspective: float = 0.06  # corner jitter, share of the side
    blur_p: float = 0.2
    noise_p: float = 0.5
    jpeg_p: float = 0.3
    light_p: float = 0.3
    distractor_p: float = 0.7  # rules, boxes, dots, bars: ink that is not text
    receipt_header_p: float = 0.6  # a receipt opens with its shop's name and address set tight
    # weight of an item table among a receipt's row kinds (pair 4, left 3, ...; _receipt_items): columns of
    # lone digits stacked row over row, each its own box
    receipt_items: float = 0.0
    # a line's labelled rows: "font" (a tall glyph's top to a descender's bottom, whatever the line holds)
    # or "ink" (the rows its own ink covers, as SROIE and ICDAR label lines: an upper-case receipt row is
    # its cap height). Layouts place lines by the font's rows either way.
    label_rows: str = "font"
    # the share of ads, banners and scenes with a short line turned a quarter at a side edge (side_line): no
    # layout draws one otherwise, and real product ads print `ODM OEM` up their side
    side_line_p: float = 0.0


@dataclass
class PageLine:
    quad: np.ndarray  # (4, 2) float32, clockwise from the text's top-left, page pixels
    text: str
    ignore: bool = False
    ink: np.ndarray | None = None  # the same columns over the rows the line's ink covers (label_rows=ink)


@dataclass
class Page:
    image: np.ndarray  # uint8 grayscale
    lines: list[PageLine]
    layout: str

    def quads(self) -> np.ndarray:
        return np.stack([ln.quad for ln in self.lines]) if self.lines else np.zeros((0, 4, 2), np.float32)


# layout -> recipes it borrows text and fonts from (the first that the render config has wins)
RECIPES = {
    "document": ("scan", "printed"),
    "receipt": ("receipt", "printed"),
    "ad": ("signboard", "scene", "printed"),
    "banner": ("signboard", "scene", "printed"),
    "scene": ("scene", "signboard", "printed"),
    "screen": ("screen", "printed"),
    "table": ("scan", "printed"),
}


class PageSynth:
    """Draws pages; one per (seed, index), the same in any process."""

    def __init__(self, source: SynthSource, cfg: PageConfig, seed: int = 0) -> None:
        unknown = sorted(set(cfg.layouts) - set(LAYOUTS))
        if unknown:
            raise ValueError(f"detect.pages.layouts has unknown layout(s) {unknown}; known: {list(LAYOUTS)}")
        self.source = source
        self.cfg = cfg
        self.seed = seed
        self.layouts = [k for k, w in cfg.layouts.items() if w > 0]
        self.weights = [cfg.layouts[k] for k in self.layouts]
        if not self.layouts:
            raise ValueError("detect.pages.layouts gives every layout weight 0")
        if cfg.label_rows not in LABEL_ROWS:
            raise ValueError(f"detect.pages.label_rows must be one of {LABEL_ROWS}, got {cfg.label_rows!r}")
        scenes = set(source.renderer.scene_names)
        self.recipe = {}
        for layout, names in RECIPES.items():
            have = [n for n in names if n in scenes] or [source.renderer.scene_names[0]]
            self.recipe[layout] = have[0]
        self.photos = source.renderer.photos

    def page(self, index: int, layout: str | None = None) -> Page:
        rng = random.Random(f"page:{self.seed}:{index}")
        nrng = np.random.default_rng([self.seed & 0xFFFFFFFF, index, 11])
        layout = layout or rng.choices(self.layouts, weights=self.weights)[0]
        canvas = Canvas(self, rng, nrng, index, layout)
        DRAW[layout](canvas)
        if layout in SIDE_LAYOUTS and self.cfg.side_line_p > 0 and nrng.random() < self.cfg.side_line_p:
            side_line(canvas)  # no draw from the streams at 0: the pages stay those of earlier runs
        if nrng.random() < self.cfg.distractor_p:
            canvas.distractors()
        return finish(canvas, self.cfg)


class Canvas:
    """A page being drawn: float gray pixels, its lines, the random streams and where to get text."""

    def __init__(
        self, synth: PageSynth, rng: random.Random, nrng: np.random.Generator, index: int, layout: str
    ) -> None:
        self.synth, self.rng, self.nrng, self.index, self.layout = synth, rng, nrng, index, layout
        self.scene = synth.recipe[layout]
        long_side = int(nrng.integers(synth.cfg.long_side[0], synth.cfg.long_side[1] + 1))
        aspect = {"receipt": (1.4, 2.6), "screen": (1.3, 2.1), "ad": (0.5, 1.4), "banner": (0.6, 1.6)}
        aspect = aspect.get(layout, (0.7, 1.5))
        a = nrng.uniform(*aspect)  # height / width
        self.h = long_side if a >= 1 else max(128, int(long_side * a))
        self.w = max(128, int(long_side / a)) if a >= 1 else long_side
        self.img = np.zeros((self.h, self.w), np.float32)
        self.lines: list[PageLine] = []
        self.count = 0

    # -- text --
    def text(self, target_len: int, scene: str | None = None) -> str:
        corpus = self.synth.source.corpora[scene or self.scene]
        self.count += 1
        return corpus.line(self.index * 1000 + self.count, target_len=max(1, target_len))

    def font(self, text: str, scene: str | None = None) -> FontSpec | None:
        return self.synth.source.renderer.pick_font(scene or self.scene, text, self.rng)

    def background(self, kind: str, lo: float = 200, hi: float = 255) -> None:
        level = float(self.nrng.uniform(lo, hi))
        if kind == "photo" and self.synth.photos:
            photo = self.synth.photos[int(self.nrng.integers(len(self.synth.photos)))]
            self.img[:] = augment.photo_patch(photo, self.h, self.w, self.nrng)
        elif kind == "gradient":
            a, b = self.nrng.uniform(0, 255, size=2)
            t = np.linspace(0, 1, self.w if self.nrng.random() < 0.5 else self.h, dtype=np.float32)
            g = a + (b - a) * t
            self.img[:] = g[None, :] if g.size == self.w else g[:, None]
        else:
            self.img[:] = augment.background(
                "paper" if kind == "paper" else "flat", self.h, self.w, level, self.nrng
            )

    # -- drawing --
    def draw(
        self,
        text: str,
        spec: FontSpec,
        size: int,
        x: float,
        y: float,
        ink: float | None = None,
        angle: float = 0.0,
        stroke: int = 0,
        outline: float | None = None,
        stretch: float = 1.0,
    ) -> PageLine | None:
        """`text` with its line box's top-left at (x, y), turned by `angle` degrees about that corner; the
        ink level contrasts with what lies under it unless given; glyphs `stretch` times their height (a
        receipt's double-height heading, a condensed display face). None when it does not fit the page."""
        mask, box, omask = text_mask(text, spec, size, stroke, outline is not None)
        if stretch != 1.0:
            mask, box, omask = _stretch(mask, box, omask, stretch)
        bx0, by0, bx1, by1 = box
        seen = mask if omask is None else np.maximum(mask, omask)  # an outline is ink one sees
        rows = np.nonzero(seen[:, bx0:bx1].max(axis=1) > INK_LEVEL)[0] if bx1 > bx0 else []
        iy0, iy1 = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (by0, by1)
        quad = np.float32([[bx0, by0], [bx1, by0], [bx1, by1], [bx0, by1]])
        # the ink's rows ride along as four more points, so a turn moves both boxes alike
        quad = np.concatenate([quad, np.float32([[bx0, iy0], [bx1, iy0], [bx1, iy1], [bx0, iy1]])])
        if angle:
            mask, quad, omask = _rotate(mask, quad, angle, omask)
        mh, mw = mask.shape
        ox, oy = int(round(x - quad[0, 0])), int(round(y - quad[0, 1]))
        quad = quad + np.float32([ox, oy])
        if ox < 0 or oy < 0 or ox + mw > self.w or oy + mh > self.h:
            return None
        region = self.img[oy : oy + mh, ox : ox + mw]
        if ink is None:
            ink = self.contrast_ink(float(region.mean()))
        if omask is not None:
            a = omask.astype(np.float32) / 255
            region[:] = region * (1 - a) + outline * a
        a = mask.astype(np.float32) / 255
        region[:] = region * (1 - a) + ink * a
        line = PageLine(quad[:4], text, ink=quad[4:])
        self.lines.append(line)
        return line

    def contrast_ink(self, under: float) -> float:
        c = float(self.nrng.uniform(70, 200))
        return max(0.0, under - c) if under > 110 else min(255.0, under + c)

    def fill(self, x0: int, y0: int, x1: int, y1: int, level: float, radius: int = 0) -> None:
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(self.w, x1), min(self.h, y1)
        if x1 <= x0 or y1 <= y0:
            return
        if radius <= 0:
            self.img[y0:y1, x0:x1] = level
            return
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        r = min(radius, (x1 - x0) // 2, (y1 - y0) // 2)
        cv2.rectangle(m, (r, 0), (x1 - x0 - 1 - r, y1 - y0 - 1), 255, -1)
        cv2.rectangle(m, (0, r), (x1 - x0 - 1, y1 - y0 - 1 - r), 255, -1)
        for cx, cy in (
            (r, r),
            (x1 - x0 - 1 - r, r),
            (r, y1 - y0 - 1 - r),
            (x1 - x0 - 1 - r, y1 - y0 - 1 - r),
        ):
            cv2.circle(m, (cx, cy), r, 255, -1)
        region = self.img[y0:y1, x0:x1]
        region[m > 0] = level

    def distractors(self) -> None:
        """Ink that is not text: rules, frames, dots, bar codes, blobs (the detector must leave them)."""
        for _ in range(int(self.nrng.integers(1, 5))):
            kind = self.rng.choice(["rule", "frame", "dots", "bars", "blob"])
            x0, y0 = int(self.nrng.integers(0, self.w)), int(self.nrng.integers(0, self.h))
            level = float(self.nrng.uniform(0, 255))
            if kind == "rule":
                x1 = int(self.nrng.integers(0, self.w))
                cv2.line(
                    self.img,
                    (x0, y0),
                    (x1, y0 + int(self.nrng.integers(-3, 4))),
                    level,
                    int(self.nrng.integers(1, 4)),
                )
            elif kind == "frame":
                x1, y1 = x0 + int(self.nrng.integers(20, 200)), y0 + int(self.nrng.integers(20, 200))
                cv2.rectangle(self.img, (x0, y0), (x1, y1), level, int(self.nrng.integers(1, 3)))
            elif kind == "dots":
                for k in range(int(self.nrng.integers(3, 20))):
                    cv2.circle(self.img, (x0 + 8 * k, y0), int(self.nrng.integers(1, 3)), level, -1)
            elif kind == "bars":
                hh = int(self.nrng.integers(15, 60))
                x = x0
                for _k in range(int(self.nrng.integers(10, 40))):
                    bw = int(self.nrng.integers(1, 4))
                    self.img[y0 : y0 + hh, x : x + bw] = level
                    x += bw + int(self.nrng.integers(1, 4))
            else:
                r = int(self.nrng.integers(6, 40))
                cv2.circle(self.img, (x0, y0), r, level, -1)


def text_mask(
    text: str, spec: FontSpec, size: int, stroke: int = 0, outlined: bool = False
) -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray | None]:
    """Ink coverage of `text` and its line box (x0, y0, x1, y1): the ink's columns, the font's rows from a
    tall glyph's top to a descender's bottom; with `outlined`, also the mask of a contrasting outline."""
    font = load_font(spec.path, spec.index, size)
    ink = font.getbbox(text, anchor="ls", stroke_width=stroke)
    ref = "".join(c for c in "国Ày" if covers(spec, c)) or "x"
    rb = font.getbbox(ref, anchor="ls")
    top, bottom = min(ink[1], rb[1]), max(ink[3], rb[3])
    pad = 2 + stroke + (max(2, size // 12) if outlined else 0)
    w = int(ink[2] - min(ink[0], 0)) + 2 * pad + 2
    h = int(bottom - top) + 2 * pad + 2
    x0, base = pad - min(ink[0], 0), pad - top
    img = Image.new("L", (max(w, 4), max(h, 4)), 0)
    ImageDraw.Draw(img).text(
        (x0, base), text, font=font, fill=255, anchor="ls", stroke_width=stroke, stroke_fill=255
    )
    mask = np.asarray(img)
    omask = None
    if outlined:
        k = max(2, size // 12)
        omask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    box = (int(x0 + ink[0]), int(base + top), int(np.ceil(x0 + ink[2])), int(np.ceil(base + bottom)))
    return mask, box, omask


def _stretch(
    mask: np.ndarray, box: tuple[int, int, int, int], omask: np.ndarray | None, k: float
) -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray | None]:
    """The mask and its line box `k` times taller, as wide."""
    h, w = mask.shape
    nh = max(4, int(round(h * k)))
    out = cv2.resize(mask, (w, nh), interpolation=cv2.INTER_LINEAR)
    o = cv2.resize(omask, (w, nh), interpolation=cv2.INTER_LINEAR) if omask is not None else None
    x0, y0, x1, y1 = box
    return out, (x0, int(y0 * nh / h), x1, min(nh, int(np.ceil(y1 * nh / h)))), o


def _rotate(
    mask: np.ndarray, quad: np.ndarray, angle: float, omask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The mask turned by `angle` degrees (counter-clockwise) on a canvas that holds it whole."""
    h, w = mask.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos) + 2, int(h * cos + w * sin) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    out = cv2.warpAffine(mask, m, (nw, nh), flags=cv2.INTER_LINEAR)
    q = cv2.transform(quad[None], m)[0].astype(np.float32)
    o = cv2.warpAffine(omask, m, (nw, nh), flags=cv2.INTER_LINEAR) if omask is not None else None
    return out, q, o


# -- layouts --


def _around(*quads: np.ndarray | None) -> np.ndarray | None:
    """The upright box around upright quads (None when one of them is)."""
    if any(q is None for q in quads):
        return None
    pts = np.concatenate(quads)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    return np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _chars_for(width: float, size: float, scene_is_zh: bool) -> int:
    return max(1, int(width / (size * (0.95 if scene_is_zh else 0.55))))


def _fit_line(
    c: Canvas, width: float, size: int, scene: str | None = None, fill: float = 1.0, max_tries: int = 4
) -> tuple[str, FontSpec] | None:
    """A corpus line and a font for it no wider than `width` at `size` px."""
    target = max(1, int(_chars_for(width, size, False) * fill))
    for _ in range(max_tries):
        text = c.text(target, scene).strip()
        if not text:
            continue
        spec = c.font(text, scene)
        if spec is None:
            continue
        font = load_font(spec.path, spec.index, size)
        tw = font.getlength(text)
        while tw > width and len(text) > 1:
            text = text[: max(1, int(len(text) * width / tw) - 1)].rstrip()
            tw = font.getlength(text)
        if text and tw <= width:
            return text, spec
        target = max(1, target // 2)
    return None


def draw_document(c: Canvas) -> None:
    c.background("paper" if c.nrng.random() < 0.8 else "flat", 190, 255)
    cols = 2 if c.nrng.random() < 0.3 else 1
    margin = int(c.w * c.nrng.uniform(0.03, 0.1))
    gutter = int(c.w * c.nrng.uniform(0.04, 0.08))
    col_w = (c.w - 2 * margin - gutter * (cols - 1)) / cols
    size = int(np.clip(c.h / c.nrng.uniform(22, 55), 10, 60))
    lead = c.nrng.uniform(1.3, 2.0)
    for k in range(cols):
        x0 = margin + k * (col_w + gutter)
        y = margin + c.nrng.uniform(0, 2) * size
        while y + size * 1.5 < c.h - margin:
            s = size
            heading = c.nrng.random() < 0.08
            if heading:
                s = int(size * c.nrng.uniform(1.3, 2.0))
            indent = size * 2 if c.nrng.random() < 0.15 else 0
            fill = c.nrng.uniform(0.6, 1.1) if c.nrng.random() < 0.8 else c.nrng.uniform(0.1, 0.6)
            got = _fit_line(c, col_w - indent, s, fill=fill)
            if got:
                c.draw(got[0], got[1], s, x0 + indent, y, stroke=1 if heading and s > 20 else 0)
            y += s * lead + (size * c.nrng.uniform(0.5, 1.5) if c.nrng.random() < 0.12 else 0)


def draw_receipt(c: Canvas) -> None:
    c.background("flat" if c.nrng.random() < 0.5 else "photo", 20, 255)
    sw = int(c.w * c.nrng.uniform(0.55, 0.95))
    sx = int((c.w - sw) * c.nrng.uniform(0, 1))
    paper = float(c.nrng.uniform(200, 255))
    c.fill(sx, 0, sx + sw, c.h, paper)
    margin = int(sw * c.nrng.uniform(0.04, 0.1))
    size = int(np.clip(sw / c.nrng.uniform(22, 40), 9, 40))
    ink = float(c.nrng.uniform(0, 110))
    y = size * c.nrng.uniform(0.5, 3)
    left, right = sx + margin, sx + sw - margin
    if c.nrng.random() < c.synth.cfg.receipt_header_p:
        y = _receipt_header(c, left, right, y, size, ink)
    items_w = c.synth.cfg.receipt_items
    while y + size * 1.4 < c.h:
        kinds = ["pair", "left", "center", "rule", "triple", "keyval", "heading", "items"]
        kind = c.rng.choices(kinds, weights=[4, 3, 1.5, 1, 1.5, 1.5, 0.4, items_w])[0]
        if kind == "heading":
            y = _receipt_heading(c, left, right, y, size, ink)
            continue
        if kind == "items":
            y = _receipt_items(c, left, right, y, size, ink)
            continue
        if kind == "keyval":
            _receipt_keyval(c, left, right, y, size, ink)
        elif kind == "rule":
            ch = c.rng.choice("-=*.")
            mask, _, _ = text_mask(ch * 40, c.font("-") or c.font("a"), size)  # dashes: ink, not a line
            mw = min(mask.shape[1], right - left)
            region = c.img[int(y) : int(y) + mask.shape[0], left : left + mw]
            a = mask[: region.shape[0], : region.shape[1]].astype(np.float32) / 255
            region[:] = region * (1 - a) + ink * a
        elif kind == "center":
            got = _fit_line(c, (right - left) * 0.8, size, fill=c.nrng.uniform(0.3, 0.8))
            if got:
                w = load_font(got[1].path, got[1].index, size).getlength(got[0])
                c.draw(got[0], got[1], size, (left + right - w) / 2, y, ink=ink)
        else:
            parts = {"pair": 2, "left": 1, "triple": 3}[kind]
            widths = [(right - left) * (0.55 if parts > 1 else 0.95)]
            if parts == 3:  # a quantity, then the item after a gap of 3 to 7 monospace cells
                widths = [(right - left) * 0.1, (right - left) * 0.45]
            x = left
            for k, width in enumerate(widths):
                room = min(width, left + (right - left) * 0.7 - x)  # the price takes at most the last 0.3
                got = _fit_line(c, room, size, fill=c.nrng.uniform(0.3, 1.0)) if room > size else None
                if k == 0 and parts == 3 and c.nrng.random() < 0.6:  # a quantity: often one digit alone
                    qty = str(int(c.nrng.choice([1, 1, 2, 3, 4, 6, 10, 12])))
                    got = (qty, c.font(qty)) if c.font(qty) is not None else got
                if got and c.draw(got[0], got[1], size, x, y, ink=ink):
                    # a segment ends where a wide gap begins (SROIE's boxes): a single space, which
                    # punctuation beside it can widen to two cells, never separates two boxes
                    x = float(c.lines[-1].quad[1, 0]) + size * c.nrng.uniform(1.8, 4.0)
            if parts > 1:
                money = f"{c.nrng.uniform(0.1, 999):.2f}"
                if c.nrng.random() < 0.3:
                    money = c.rng.choice(["RM ", "$", "¥", ""]) + money
                spec = c.font(money)
                if spec is not None:
                    w = load_font(spec.path, spec.index, size).getlength(money)
                    c.draw(money, spec, size, right - w, y, ink=ink)
        y += size * c.nrng.uniform(1.25, 1.9)


def _receipt_heading(c: Canvas, left: int, right: int, y: float, size: int, ink: float) -> float:
    """`TAX INVOICE`, a shop's name: centred, larger, bold or printed double height (glyphs 1.5 to 2.6 times
    their face's height at the same width, which no book face has); returns the y below it."""
    tall = c.nrng.random() < 0.5
    s = int(size * (c.nrng.uniform(1.0, 1.5) if tall else c.nrng.uniform(1.2, 2.0)))
    k = float(c.nrng.uniform(1.5, 2.6)) if tall else 1.0
    stroke = 1 if not tall and s > 14 and c.nrng.random() < 0.5 else 0
    got = _fit_line(c, (right - left) * 0.9, s, fill=c.nrng.uniform(0.2, 0.6))
    if got:
        w = load_font(got[1].path, got[1].index, s).getlength(got[0])
        line = c.draw(got[0], got[1], s, (left + right - w) / 2, y, ink=ink, stroke=stroke, stretch=k)
        if line is not None:
            return float(line.quad[2, 1]) + size * c.nrng.uniform(0.3, 0.9)
    return y + size * 1.5


def _receipt_header(c: Canvas, left: int, right: int, y: float, size: int, ink: float) -> float:
    """The shop's name, then its registration, address and phone centred at tight leading: on real
    receipts these lines nearly touch (one line's descenders above the next one's capitals), where the
    body's rows stand apart; returns the y below them."""
    y = _receipt_heading(c, left, right, y, size, ink)
    lead = c.nrng.uniform(0.92, 1.15)  # times the line box (ascender to descender): boxes may
    # overlap by up to 8 % of their height (their shrunk kernels stay ~0.3 h apart, and join_overlapping wants
    # 70 % shared height, so two lines are never joined)
    for _ in range(int(c.nrng.integers(2, 6))):
        got = _fit_line(c, (right - left) * 0.9, size, fill=c.nrng.uniform(0.4, 0.9))
        if not got:
            continue
        w = load_font(got[1].path, got[1].index, size).getlength(got[0])
        line = c.draw(got[0], got[1], size, (left + right - w) / 2, y, ink=ink)
        if line is None:
            break
        y += float(line.quad[2, 1] - line.quad[0, 1]) * lead
    return y + size * c.nrng.uniform(0.3, 1.0)


def _item_number(c: Canvas, kind: str) -> str:
    if kind == "digit":  # a quantity, a tax code's digit, a discount count: mostly 0 to 3
        return str(c.rng.choice("0000111112223345689"))
    if kind == "count":
        return str(int(c.nrng.choice([1, 2, 3, 5, 10, 12, 20, 24])))
    return f"{c.nrng.uniform(0.1, 99):.2f}"  # a unit price


def _receipt_items(c: Canvas, left: int, right: int, y: float, size: int, ink: float) -> float:
    """An item table: rows of an item's name, columns of short numbers (unit price, quantity, ...) at the
    same place on every row, and the amount at the right edge; each number its own box, as SROIE labels
    them. Returns the y below it.

    Why: on real receipts a column of lone digits stacks row over row at the receipt's leading, which the
    detector read as one vertical line of digits and boxed no digit (a lone quantity drawn on a row of its
    own, as `triple` rows draw it, never stacks)."""
    w = right - left
    spec = c.font("0123456789.")
    if spec is None:
        return y + size * 1.5
    font = load_font(spec.path, spec.index, size)
    name_w = w * float(c.nrng.uniform(0.25, 0.45))
    # the numbers' columns lie between the name and the widest amount, a price's width and a cell apart
    lo, hi = left + name_w + size * 1.5, right - font.getlength("999.99") - size
    step = max(size * float(c.nrng.uniform(2.0, 4.0)), font.getlength("99.99") + size)
    ncols = min(int(c.nrng.integers(1, 5)), int((hi - lo) // step))
    if ncols < 1:
        return y + size * 1.5
    xs = lo + step * (np.arange(ncols) + 0.5) + float(c.nrng.uniform(0, hi - lo - step * ncols + 1e-6))
    kinds = c.rng.choices(["digit", "count", "price"], weights=[5, 1.5, 1.5], k=ncols)
    lead = float(c.nrng.uniform(0.95, 1.4))  # times the line box: rows nearly touch on many receipts
    for _ in range(int(c.nrng.integers(2, 7))):
        if y + size * 1.4 >= c.h:
            break
        got = _fit_line(c, name_w, size, fill=c.nrng.uniform(0.4, 1.0))
        if got and c.nrng.random() < 0.9:
            c.draw(got[0], got[1], size, left, y, ink=ink)
        for x, kind in zip(xs, kinds):
            if c.nrng.random() < 0.1:
                continue
            text = _item_number(c, kind)
            c.draw(text, spec, size, x - font.getlength(text) / 2, y, ink=ink)  # centred in its column
        money = f"{c.nrng.uniform(0.1, 999):.2f}"
        line = c.draw(money, spec, size, right - font.getlength(money), y, ink=ink)
        y += (float(line.quad[2, 1] - line.quad[0, 1]) if line else size * 1.2) * lead
    return y + size * float(c.nrng.uniform(0.2, 0.6))


def _receipt_keyval(c: Canvas, left: int, right: int, y: float, size: int, ink: float) -> None:
    """`Cashier : JOHN`: a key, a colon in a column of its own and a value, three boxes (as SROIE labels
    them) a few cells apart; boxes of one or two characters are what real receipts hold most of."""
    w = right - left
    key = _fit_line(c, w * 0.3, size, fill=c.nrng.uniform(0.3, 1.0))
    colon = c.rng.choice([":", ":", "：", "="])
    spec = c.font(colon)
    if not key or spec is None or not c.draw(key[0], key[1], size, left, y, ink=ink):
        return
    x = max(left + w * 0.35, float(c.lines[-1].quad[1, 0]) + size * 1.8)
    if x > left + w * 0.6 or not c.draw(colon, spec, size, x, y, ink=ink):
        return
    x = float(c.lines[-1].quad[1, 0]) + size * c.nrng.uniform(1.8, 3.0)
    value = _fit_line(c, right - x, size, fill=c.nrng.uniform(0.2, 0.9)) if right - x > size else None
    if value:
        c.draw(value[0], value[1], size, x, y, ink=ink)


def draw_ad(c: Canvas) -> None:
    c.background(c.rng.choice(["photo", "gradient", "flat"]), 0, 255)
    n = int(c.nrng.integers(2, 9))
    y = c.h * c.nrng.uniform(0.02, 0.1)
    for _ in range(n):
        size = int(np.clip(c.h / c.nrng.uniform(5, 25), 12, 160))
        if y + size * 1.3 > c.h:
            break
        scene = c.rng.choice([c.scene, "printed"] if "printed" in c.synth.source.corpora else [c.scene])
        got = _fit_line(c, c.w * 0.9, size, scene=scene, fill=c.nrng.uniform(0.15, 0.7))
        if got:
            text, spec = got
            w = load_font(spec.path, spec.index, size).getlength(text)
            align = c.rng.choice(["center", "left", "right"])
            x = {"center": (c.w - w) / 2, "left": c.w * 0.05, "right": c.w * 0.95 - w}[align]
            x = max(1.0, x + c.nrng.uniform(-0.05, 0.05) * c.w)
            if c.nrng.random() < 0.3:  # a band of colour behind the line
                pad = int(size * 0.3)
                c.fill(
                    int(x) - pad,
                    int(y) - pad,
                    int(x + w) + pad,
                    int(y + size * 1.3) + pad,
                    float(c.nrng.uniform(0, 255)),
                    radius=pad if c.nrng.random() < 0.5 else 0,
                )
            outline = float(c.nrng.uniform(0, 255)) if c.nrng.random() < 0.2 else None
            stroke = max(1, size // 30) if c.nrng.random() < 0.3 else 0
            c.draw(text, spec, size, x, y, stroke=stroke, outline=outline)
        y += size * c.nrng.uniform(1.3, 2.2)


def _centred_x(c: Canvas, w: float) -> float:
    return max(1.0, (c.w - w) / 2 + c.nrng.uniform(-0.04, 0.04) * c.w)


def _text_width(text: str, spec: FontSpec, size: int) -> float:
    return load_font(spec.path, spec.index, size).getlength(text)


def banner_headline(c: Canvas, y: float) -> float | None:
    size = int(np.clip(c.h / c.nrng.uniform(5, 12), 14, 160))
    got = _fit_line(c, c.w * 0.92, size, fill=c.nrng.uniform(0.2, 0.6))
    if y + size * 1.4 > c.h or not got:
        return None
    outline = float(c.nrng.uniform(0, 255)) if c.nrng.random() < 0.3 else None
    stroke = max(1, size // 30) if c.nrng.random() < 0.4 else 0
    w = _text_width(got[0], got[1], size)
    c.draw(got[0], got[1], size, _centred_x(c, w), y, stroke=stroke, outline=outline)
    return y + size * 1.4


def banner_pill(c: Canvas, y: float) -> float | None:
    """Small text on a rounded band that hugs it: light on dark or dark on light."""
    size = int(np.clip(c.h / c.nrng.uniform(18, 45), 9, 48))
    got = _fit_line(c, c.w * 0.7, size, fill=c.nrng.uniform(0.2, 0.8))
    if y + size * 1.8 > c.h or not got:
        return None
    w = _text_width(got[0], got[1], size)
    x = _centred_x(c, w) if c.nrng.random() < 0.7 else c.w * c.nrng.uniform(0.04, 0.1)
    px, py = int(size * c.nrng.uniform(0.4, 1.0)), int(size * c.nrng.uniform(0.1, 0.3))
    y0, y1 = int(y) - py, int(y + size * 1.3) + py
    c.fill(int(x) - px, y0, int(x + w) + px, y1, float(c.nrng.uniform(0, 255)), radius=(y1 - y0) // 2)
    c.draw(got[0], got[1], size, x, y)
    return y + size * 1.3 + py


def _bullet(c: Canvas, x: float, y: float, size: int) -> None:
    """An icon before a selling point: ink that is not text (not in the line's box)."""
    r = max(2, int(size * c.nrng.uniform(0.3, 0.45)))
    cx, cy = int(x + r), int(y + size * 0.65)
    under = float(c.img[max(0, cy - r) : cy + r + 1, max(0, cx - r) : cx + r + 1].mean())
    ink = c.contrast_ink(under)
    kind = c.rng.choice(["dot", "ring", "target", "check", "square"])
    if kind in ("dot", "target"):
        cv2.circle(c.img, (cx, cy), r, ink, -1)
        if kind == "target":
            cv2.circle(c.img, (cx, cy), max(1, r * 2 // 3), under, max(1, r // 4))
    elif kind == "ring":
        cv2.circle(c.img, (cx, cy), r, ink, max(1, r // 3))
    elif kind == "square":
        cv2.rectangle(c.img, (cx - r, cy - r), (cx + r, cy + r), ink, max(1, r // 3))
    else:
        pts = np.int32([[cx - r, cy], [cx - r // 3, cy + r * 2 // 3], [cx + r, cy - r * 2 // 3]])
        cv2.polylines(c.img, [pts], False, ink, max(1, r // 3))


def banner_items(c: Canvas, y: float) -> float | None:
    """One or two rows of 2-4 short selling points side by side, most with a bullet icon before them."""
    n, rows = int(c.nrng.integers(2, 5)), int(c.nrng.integers(1, 3))
    size = int(np.clip(c.h / c.nrng.uniform(14, 35), 9, 64))
    step = size * c.nrng.uniform(1.5, 2.1)
    if y + rows * step > c.h:
        return None
    margin = c.w * c.nrng.uniform(0.03, 0.08)
    cell = (c.w - 2 * margin) / n
    bullets = c.nrng.random() < 0.7
    for r in range(rows):
        for k in range(n):
            x = margin + k * cell
            room = cell - size * (1.6 if bullets else 0.6)
            got = _fit_line(c, room, size, fill=c.nrng.uniform(0.4, 1.0))
            if not got:
                continue
            if bullets:
                _bullet(c, x, y + r * step, size)
                x += size * 1.2
            c.draw(got[0], got[1], size, x, y + r * step)
    return y + rows * step


def _price_text(c: Canvas) -> tuple[str, str]:
    value = c.nrng.uniform(0.5, 999)
    number = c.rng.choice(["{:.0f}", "{:.1f}", "{:.2f}"]).format(value)
    number = c.rng.choice(["", "", "¥", "$", "￥"]) + number
    return number, c.rng.choice(["起", "元", "/件", "折", "%", "+", "元/斤", "万", "/月", "包邮"])


def banner_price(c: Canvas, y: float) -> float | None:
    """A large price and its small suffix, one box (as a reader would label `5.8起`), sometimes with a
    small caption of its own before it (`券后价¥`)."""
    size = int(np.clip(c.h / c.nrng.uniform(5, 10), 16, 180))
    small = max(9, int(size * c.nrng.uniform(0.25, 0.5)))
    number, suffix = _price_text(c)
    spec_n, spec_s = c.font(number), c.font(suffix)
    if y + size * 1.4 > c.h or spec_n is None or spec_s is None:
        return None
    wn, ws = _text_width(number, spec_n, size), _text_width(suffix, spec_s, small)
    x = _centred_x(c, wn + ws)
    caption = _fit_line(c, max(x - small, 1), small, fill=c.nrng.uniform(0.3, 0.8)) if x > small * 3 else None
    first = len(c.lines)
    c.draw(number, spec_n, size, x, y)
    if len(c.lines) == first:
        return None
    big = c.lines[-1].quad
    c.draw(suffix, spec_s, small, big[1, 0] + 1, big[2, 1] - small * 1.25)  # bottom-aligned, right after
    if len(c.lines) == first + 2:
        a, b = c.lines[-2], c.lines[-1]
        del c.lines[first:]
        c.lines.append(PageLine(_around(a.quad, b.quad), number + suffix, ink=_around(a.ink, b.ink)))
    if caption is not None and c.nrng.random() < 0.6:
        cw = _text_width(caption[0], caption[1], small)
        c.draw(caption[0], caption[1], small, x - cw - small * 0.5, big[2, 1] - small * 1.25)
    return y + size * 1.3


def banner_caption(c: Canvas, y: float) -> float | None:
    size = int(np.clip(c.h / c.nrng.uniform(30, 60), 9, 32))
    got = _fit_line(c, c.w * 0.8, size, fill=c.nrng.uniform(0.3, 1.0))
    if y + size * 1.4 > c.h or not got:
        return None
    w = _text_width(got[0], got[1], size)
    x = _centred_x(c, w) if c.nrng.random() < 0.6 else c.w * c.nrng.uniform(0.03, 0.1)
    c.draw(got[0], got[1], size, x, y)
    return y + size * 1.3


BANNER_ROWS = {
    "headline": (banner_headline, 2.0),
    "pill": (banner_pill, 2.0),
    "items": (banner_items, 2.0),
    "price": (banner_price, 1.5),
    "caption": (banner_caption, 1.5),
}


def draw_banner(c: Canvas) -> None:
    """Rows of an e-commerce banner top to bottom, drawn by kind (BANNER_ROWS), on a photo, a gradient or
    a flat colour, sometimes inside a light card that covers most of the page."""
    c.background(c.rng.choice(["photo", "gradient", "flat"]), 0, 255)
    if c.nrng.random() < 0.4:
        m = int(min(c.w, c.h) * c.nrng.uniform(0.03, 0.08))
        c.fill(m, int(c.h * c.nrng.uniform(0.2, 0.4)), c.w - m, c.h - m, float(c.nrng.uniform(200, 255)), m)
    kinds = list(BANNER_ROWS)
    weights = [BANNER_ROWS[k][1] for k in kinds]
    y = c.h * c.nrng.uniform(0.02, 0.06)
    for _ in range(12):
        kind = c.rng.choices(kinds, weights=weights)[0]
        nxt = BANNER_ROWS[kind][0](c, y)
        if nxt is None:
            if y > c.h * 0.7:
                break
            continue
        y = nxt + c.h * c.nrng.uniform(0.01, 0.05)


def draw_scene(c: Canvas) -> None:
    c.background("photo" if c.synth.photos else "gradient")
    for _ in range(int(c.nrng.integers(1, 7))):
        size = int(np.clip(c.h / c.nrng.uniform(6, 30), 12, 120))
        got = _fit_line(c, c.w * 0.7, size, fill=c.nrng.uniform(0.1, 0.5))
        if not got:
            continue
        text, spec = got
        w = load_font(spec.path, spec.index, size).getlength(text)
        angle = float(c.nrng.uniform(-25, 25)) if c.nrng.random() < 0.5 else float(c.nrng.uniform(-4, 4))
        x = c.nrng.uniform(0, max(1.0, c.w - w - size))
        y = c.nrng.uniform(0, max(1.0, c.h - size * 2))
        if c.nrng.random() < 0.5 and abs(angle) < 5:  # a sign: a plate behind the text
            pad = int(size * c.nrng.uniform(0.2, 0.6))
            c.fill(
                int(x) - pad,
                int(y) - pad,
                int(x + w) + pad,
                int(y + size * 1.3) + pad,
                float(c.nrng.uniform(0, 255)),
                radius=int(pad * c.nrng.uniform(0, 1)),
            )
        if _overlaps(c, x, y, w, size * 1.3):
            continue
        c.draw(text, spec, size, x, y, angle=angle, stroke=max(1, size // 25) if c.nrng.random() < 0.3 else 0)


SIDE_LAYOUTS = ("ad", "banner", "scene")


def side_line(c: Canvas) -> PageLine | None:
    """A short line turned a quarter (give or take 3 degrees) near the left or right edge, read bottom to top
    or top to bottom, where no other line lies. Its box starts at the text's own top-left corner, so the crop
    warped upright reads it the right way round."""
    size = int(np.clip(min(c.w, c.h) / c.nrng.uniform(12, 30), 10, 64))
    got = _fit_line(c, c.h * c.nrng.uniform(0.2, 0.6), size, fill=c.nrng.uniform(0.4, 1.0))
    if not got:
        return None
    text, spec = got
    w, t = _text_width(text, spec, size), size * 1.3
    up = c.nrng.random() < 0.5
    angle = (90.0 if up else -90.0) + float(c.nrng.uniform(-3, 3))
    left = c.nrng.random() < 0.5
    x0 = c.w * c.nrng.uniform(0.02, 0.06) if left else c.w * c.nrng.uniform(0.94, 0.98) - t
    y0 = c.nrng.uniform(c.h * 0.03, max(c.h * 0.03 + 1, c.h * 0.97 - w))
    if _overlaps(c, x0, y0, t, w):
        return None
    # the text's top-left corner: the footprint's bottom-left when it reads upward, its top-right downward
    x, y = (x0, y0 + w) if up else (x0 + t, y0)
    return c.draw(text, spec, size, x, y, angle=angle)


def _overlaps(c: Canvas, x: float, y: float, w: float, h: float) -> bool:
    box = np.float32([[x, y], [x + w, y + h]])
    for ln in c.lines:
        q = ln.quad
        if (box[0] < q.max(axis=0) + 4).all() and (box[1] > q.min(axis=0) - 4).all():
            return True
    return False


def draw_screen(c: Canvas) -> None:
    dark = c.nrng.random() < 0.3
    c.background("flat", 10, 60) if dark else c.background("flat", 225, 255)
    size = int(np.clip(c.w / c.nrng.uniform(18, 32), 10, 40))
    y = size * c.nrng.uniform(0.5, 2)
    chat = c.nrng.random() < 0.5
    while y + size * 2.5 < c.h:
        if chat:
            mine = c.nrng.random() < 0.5
            bw = c.w * c.nrng.uniform(0.3, 0.7)
            got = _fit_line(c, bw, size, fill=c.nrng.uniform(0.3, 1.0))
            if got:
                w = load_font(got[1].path, got[1].index, size).getlength(got[0])
                pad = int(size * 0.5)
                x = c.w - w - 2 * pad - size if mine else size * 2.5
                level = float(c.nrng.uniform(0, 255))
                c.fill(
                    int(x) - pad, int(y) - pad, int(x + w) + pad, int(y + size * 1.3) + pad, level, radius=pad
                )
                if not mine:
                    cv2.circle(
                        c.img,
                        (int(size * 1.1), int(y + size * 0.5)),
                        int(size * 0.8),
                        float(c.nrng.uniform(0, 255)),
                        -1,
                    )  # an avatar
                c.draw(got[0], got[1], size, x, y)
            y += size * c.nrng.uniform(2.5, 3.5)
        else:
            icon = c.nrng.random() < 0.5
            x = size * (2.5 if icon else 1)
            if icon:
                c.fill(
                    int(size * 0.5),
                    int(y),
                    int(size * 1.8),
                    int(y + size * 1.3),
                    float(c.nrng.uniform(0, 255)),
                    radius=int(size * 0.3),
                )
            got = _fit_line(c, c.w * 0.6, size, fill=c.nrng.uniform(0.2, 0.8))
            if got:
                c.draw(got[0], got[1], size, x, y)
            if c.nrng.random() < 0.4:
                got = _fit_line(c, c.w * 0.25, int(size * 0.8), fill=c.nrng.uniform(0.3, 1.0))
                if got:
                    s2 = int(size * 0.8)
                    w = load_font(got[1].path, got[1].index, s2).getlength(got[0])
                    c.draw(got[0], got[1], s2, c.w - w - size, y + size * 0.2)
            y += size * c.nrng.uniform(1.8, 2.6)
            if c.nrng.random() < 0.5:
                cv2.line(
                    c.img,
                    (0, int(y - size * 0.4)),
                    (c.w, int(y - size * 0.4)),
                    float(c.img[int(y - size * 0.4), 0]) + (30 if dark else -30),
                    1,
                )


def draw_table(c: Canvas) -> None:
    c.background("paper" if c.nrng.random() < 0.7 else "flat", 200, 255)
    cols, rows = int(c.nrng.integers(2, 6)), int(c.nrng.integers(3, 14))
    margin = int(c.w * 0.05)
    cw = (c.w - 2 * margin) / cols
    size = int(np.clip(min(cw / c.nrng.uniform(4, 10), c.h / (rows * c.nrng.uniform(1.8, 3.0))), 9, 48))
    rh = size * c.nrng.uniform(1.8, 2.6)
    top = margin
    line_level = float(c.nrng.uniform(0, 160))
    ruled = c.nrng.random() < 0.8
    for r in range(rows):
        y = top + r * rh
        if y + rh > c.h - margin:
            break
        for k in range(cols):
            if c.nrng.random() < 0.15:
                continue
            got = _fit_line(c, cw - size, size, fill=c.nrng.uniform(0.2, 1.0))
            if got:
                c.draw(
                    got[0],
                    got[1],
                    size,
                    margin + k * cw + size * 0.4,
                    y + (rh - size * 1.3) / 2,
                    stroke=1 if r == 0 and c.nrng.random() < 0.5 else 0,
                )
    if ruled:
        bottom = min(c.h - margin, top + rows * rh)
        for r in range(rows + 1):
            yy = int(top + r * rh)
            if yy <= bottom:
                cv2.line(c.img, (margin, yy), (c.w - margin, yy), line_level, 1)
        for k in range(cols + 1):
            xx = int(margin + k * cw)
            cv2.line(c.img, (xx, top), (xx, int(bottom)), line_level, 1)


DRAW = {
    "document": draw_document,
    "receipt": draw_receipt,
    "ad": draw_ad,
    "banner": draw_banner,
    "scene": draw_scene,
    "screen": draw_screen,
    "table": draw_table,
}


# -- the whole page: geometry and degradations --


def finish(c: Canvas, cfg: PageConfig) -> Page:
    ink = cfg.label_rows == "ink"
    img, quads = c.img, [ln.ink if ink and ln.ink is not None else ln.quad for ln in c.lines]
    nrng = c.nrng
    m = np.eye(3, dtype=np.float64)
    if nrng.random() < cfg.rotate_p:
        m = np.vstack(
            [
                cv2.getRotationMatrix2D((c.w / 2, c.h / 2), float(nrng.uniform(-1, 1) * cfg.rotate_deg), 1.0),
                [0, 0, 1],
            ]
        )
    if nrng.random() < cfg.perspective_p:
        src = np.float32([[0, 0], [c.w, 0], [c.w, c.h], [0, c.h]])
        dst = src + (nrng.uniform(-1, 1, size=(4, 2)) * cfg.perspective * np.float32([c.w, c.h])).astype(
            np.float32
        )
        m = cv2.getPerspectiveTransform(src, dst).astype(np.float64) @ m
    if not np.allclose(m, np.eye(3)):
        border = float(np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])))
        img = cv2.warpPerspective(
            img, m, (c.w, c.h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border
        )
        quads = [cv2.perspectiveTransform(q[None].astype(np.float64), m)[0].astype(np.float32) for q in quads]
    if nrng.random() < cfg.light_p:
        img = augment.uneven_light(img, nrng, 0.5)
    if nrng.random() < cfg.blur_p:
        img = augment.defocus(img, nrng, 1.5)
    if nrng.random() < cfg.noise_p:
        img = augment.gaussian_noise(img, nrng, float(nrng.uniform(2, 10)))
    if nrng.random() < cfg.jpeg_p:
        img = augment.jpeg(img, nrng, 25, 85)
    img = np.clip(img, 0, 255).astype(np.uint8)
    lines = []
    for ln, q in zip(c.lines, quads):
        inside = (
            (q[:, 0] >= 0).all()
            and (q[:, 1] >= 0).all()
            and (q[:, 0] <= c.w).all()
            and (q[:, 1] <= c.h).all()
        )
        h = min(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1]))  # ink rows: a dash, 一 is ignored
        lines.append(PageLine(q, ln.text, ignore=not inside or h < 4))
    return Page(img, lines, c.layout)
