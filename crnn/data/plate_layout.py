"""A licence plate's fixed-cell layout: every character stretched to the full height of its own cell.

Chinese plates (GA 36) print each character 45 x 90 mm at 12 mm gaps (43 mm wide at 9 mm on the
eight-character green plates), with a wider 34 mm gap holding the separator dot after the province and
office letter. Glyphs drawn with a text font at a font size are short and unevenly spaced next to that: on
94x24 plate crops the model read the office letter `A` as `N` or `M` and the dot as `:` or `-`. Here each
glyph's ink is scaled to the cell's height, as narrow as it is drawn or squeezed into the cell's width (a
`1` stays a stroke, a hanzi or `M` fills the cell), the dot is drawn in the wide gap only when the label
holds it, and an `A` often gets the plate face's flat top.
"""

from __future__ import annotations

import random

import cv2
import numpy as np
from PIL import Image, ImageDraw

from crnn.data.fonts import FontBank, FontSpec, load_font

SEPARATORS = "· "  # the separator dot or a bare gap between the office letter and the serial


def glyph_ink(ch: str, spec: FontSpec, size: int) -> np.ndarray | None:
    """One character's ink (uint8), cropped to its box; None for a glyph with no ink."""
    font = load_font(spec.path, spec.index, size)
    x0, y0, x1, y1 = font.getbbox(ch, anchor="ls")
    pad = 2
    img = Image.new("L", (max(1, x1 - x0) + 2 * pad, max(1, y1 - y0) + 2 * pad), 0)
    ImageDraw.Draw(img).text((pad - x0, pad - y0), ch, font=font, fill=255, anchor="ls")
    mask = np.asarray(img)
    rows, cols = np.flatnonzero(mask.max(axis=1) > 64), np.flatnonzero(mask.max(axis=0) > 64)
    if not rows.size or not cols.size:
        return None
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def fits_cells(text: str) -> bool:
    """Whether `text` reads as a plate in cells: no separator, or one strictly between two characters."""
    seps = [i for i, c in enumerate(text) if c in SEPARATORS or c.isspace()]
    return len(seps) == 0 or (len(seps) == 1 and 0 < seps[0] < len(text) - 1 and text[seps[0]] in SEPARATORS)


def draw_plate(
    text: str,
    spec: FontSpec,
    size: int,
    nrng: np.random.Generator,
    serial_fonts: list[FontSpec] | None = None,
) -> np.ndarray:
    """Ink coverage (uint8) of `text` laid out in plate cells `size` pixels tall, with margins around them.

    `serial_fonts`: faces for the letters and digits (plates use a condensed engineering face beside a hei
    hanzi); one that covers them all is drawn at random, else the line's own font. No extra bold: a stroke
    on a condensed face stretched to the cell's height closes the counters (B reads as 8, D as 0)."""
    if not fits_cells(text):
        raise ValueError(f"{text!r} has a separator at its ends or more than one: not a plate in cells")
    chars = [c for c in text if c not in SEPARATORS]
    sep = next((c for c in text if c in SEPARATORS), "")
    split = text.find(sep) if sep else -1  # cells before the wide gap
    eight = len(chars) >= 8
    cell_w = size * nrng.uniform(0.42, 0.5) if eight else size * nrng.uniform(0.44, 0.56)
    gap = size * (nrng.uniform(0.07, 0.12) if eight else nrng.uniform(0.1, 0.16))
    wide = size * nrng.uniform(0.3, 0.42)
    condense = nrng.uniform(0.75, 1.0)  # the plate face is narrower than text faces drawn as tall
    # plate crops are often resized to a fixed box (94x24 for LPRNet: 1.25x wider than a plate's 440x140),
    # which widens cells, gaps and glyphs alike
    stretch = nrng.uniform(0.9, 1.35)
    cell_w, gap, wide = cell_w * stretch, gap * stretch, wide * stretch
    # FontBank.pick on a generator seeded from nrng: the plate stays a function of nrng alone
    serial_text = "".join(c for c in chars if ord(c) <= 0x2E7F)
    pick_rng = random.Random(int(nrng.integers(2**31)))
    serial = FontBank.pick(serial_fonts or [], serial_text, pick_rng) or spec
    m_top = int(nrng.uniform(0.15, 0.3) * size) + 1  # room above the glyphs for the plate's bolts
    m_bot = int(nrng.uniform(0.08, 0.3) * size) + 1
    pad_l, pad_r = (int(nrng.uniform(0.05, 0.4) * size) + 1 for _ in range(2))
    gaps = [wide if i == split - 1 else gap for i in range(len(chars) - 1)]
    width = int(pad_l + pad_r + cell_w * len(chars) + sum(gaps)) + 2
    canvas = np.zeros((size + m_top + m_bot, width), np.uint8)
    x = float(pad_l)
    for i, ch in enumerate(chars):
        face = spec if ord(ch) > 0x2E7F else serial  # hanzi from the line's font, the serial from its own
        ink = glyph_ink(ch, face, size)
        if ink is None and face is not spec:
            ink = glyph_ink(ch, spec, size)
        if ink is None:
            raise ValueError(f"{ch!r} draws no ink in {face.name} or {spec.name}")
        h = int(round(size * nrng.uniform(0.9, 1.0)))
        w = int(round(min(cell_w, ink.shape[1] * h / ink.shape[0] * condense * stretch)))
        glyph = cv2.resize(ink, (max(1, w), max(1, h)), interpolation=cv2.INTER_AREA)
        if ch == "A" and nrng.random() < 0.6:
            glyph = flat_apex(glyph, nrng.uniform(0.15, 0.28))
        gx = int(round(x + (cell_w - w) / 2))
        gy = m_top + (size - h) // 2
        np.maximum(canvas[gy : gy + h, gx : gx + w], glyph, out=canvas[gy : gy + h, gx : gx + w])
        x += cell_w
        if i < len(gaps):
            if i == split - 1 and sep == "·":
                r = max(1, int(round(size * nrng.uniform(0.04, 0.07))))
                cv2.circle(canvas, (int(round(x + gaps[i] / 2)), m_top + size // 2), r, 255, -1)
            x += gaps[i]
    return canvas


def flat_apex(glyph: np.ndarray, depth: float) -> np.ndarray:
    """An `A` with the plate face's flat top: the apex filled across, down to `depth` of the glyph's height,
    as wide as the strokes are there. Text faces draw it pointed, and the model read a plate's `A` as `N`
    or `M`."""
    out = glyph.copy()
    k = max(1, int(round(glyph.shape[0] * depth)))
    cols = np.flatnonzero(glyph[min(k, glyph.shape[0] - 1)] > 64)
    if cols.size:
        out[:k, cols[0] : cols[-1] + 1] = 255
    return out
