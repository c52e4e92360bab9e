"""Degradations applied to rendered grayscale lines: geometry, ink, backgrounds and camera faults.

Each function takes a uint8 or float32 image and a NumPy Generator and returns a new image; all are cheap on
a 32-64 px line (tens of microseconds), which is what lets the renderer reach its rate on two cores.
"""

from __future__ import annotations

import cv2
import numpy as np


def background(kind: str, h: int, w: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """A float32 background around gray `level`."""
    if kind == "paper":
        bg = np.full((h, w), level, np.float32)
        bg += _low_freq(h, w, rng, 6.0)
    elif kind == "gradient":
        a, b = level + rng.uniform(-40, 40), level + rng.uniform(-40, 40)
        ramp = np.linspace(a, b, w if rng.random() < 0.7 else h, dtype=np.float32)
        bg = np.broadcast_to(ramp[None, :] if ramp.size == w else ramp[:, None], (h, w)).copy()
    elif kind == "texture":
        bg = np.full((h, w), level, np.float32) + _low_freq(h, w, rng, rng.uniform(15, 40), scale=rng.uniform(2, 8))
        bg += _noise_patch(h, w, rng) * rng.uniform(2, 8)
    elif kind == "ruled":
        bg = np.full((h, w), level, np.float32) + _low_freq(h, w, rng, 5.0)
        y = int(h * rng.uniform(0.82, 0.95))
        ink = level - rng.uniform(30, 80)
        bg[y : y + 1, :] = ink
        if rng.random() < 0.4:
            x = int(rng.uniform(0, w))
            bg[:, x : x + 1] = ink  # a margin line
    elif kind == "bubble":
        bg = bubble(h, w, level, rng)
    else:  # flat
        bg = np.full((h, w), level, np.float32)
    return bg


def _low_freq(h: int, w: int, rng: np.random.Generator, amp: float, scale: float = 4.0) -> np.ndarray:
    gh, gw = max(2, int(scale)), max(2, int(scale * w / max(h, 1)))
    coarse = rng.normal(0, amp, (gh, gw)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)


def compose(bg: np.ndarray, mask: np.ndarray, fg_level: float) -> np.ndarray:
    """Ink of gray `fg_level` laid over `bg` with coverage `mask` (uint8 0-255)."""
    a = mask.astype(np.float32) * (1.0 / 255.0)
    return bg * (1.0 - a) + fg_level * a


def stroke_jitter(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thicker or thinner pen: dilate or erode the ink coverage."""
    k = np.ones((2, 2), np.uint8)
    return cv2.dilate(mask, k) if rng.random() < 0.5 else cv2.erode(mask, k)


def elastic(img: np.ndarray, rng: np.random.Generator, alpha: float, border: float) -> np.ndarray:
    """Smooth random displacement, as a hand wobbles; the field is drawn coarse and upsampled (cheap)."""
    h, w = img.shape
    gh, gw = 4, max(4, w // 12)
    dx = cv2.resize(rng.normal(0, alpha, (gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(rng.normal(0, alpha * 0.6, (gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def perspective(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Corners moved by up to `amount` of the height, as a sign seen at an angle."""
    h, w = img.shape
    d = amount * h
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + rng.uniform(-d, d, (4, 2)).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def rotate(img: np.ndarray, rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A small tilt, capped so that the line's ends move at most 10% of its height (a long line tilted by
    two degrees would otherwise lose the tops of its end characters, and the label would lie)."""
    h, w = img.shape
    cap = np.degrees(np.arctan(0.1 * h / max(w / 2, 1)))
    deg = min(max_deg, cap)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-deg, deg), 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def motion_blur(img: np.ndarray, rng: np.random.Generator, max_len: int) -> np.ndarray:
    n = int(rng.integers(3, max(4, max_len + 1)))
    k = np.zeros((n, n), np.float32)
    k[n // 2, :] = 1.0
    m = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), rng.uniform(0, 180), 1.0)
    k = cv2.warpAffine(k, m, (n, n))
    k /= max(k.sum(), 1e-6)
    return cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REPLICATE)


def defocus(img: np.ndarray, rng: np.random.Generator, max_sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, max_sigma))


def low_resolution(img: np.ndarray, rng: np.random.Generator, min_scale: float) -> np.ndarray:
    h, w = img.shape
    s = rng.uniform(min_scale, 0.85)
    small = cv2.resize(img, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def uneven_light(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    h, w = img.shape
    cx, cy = rng.uniform(0, w), rng.uniform(-h, 2 * h)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    dist = np.sqrt((xs - cx) ** 2 + ((ys - cy) * 2) ** 2) / max(w, 1)
    gain = 1.0 - strength * np.clip(dist, 0, 1) * rng.uniform(0.5, 1.0)
    return img * gain + rng.uniform(-20, 20)


def gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return img + _noise_patch(*img.shape, rng) * rng.uniform(0, sigma)


_NOISE: np.ndarray | None = None


def _noise_patch(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Unit Gaussian noise: a random window of one fixed field (drawing fresh noise per line cost more than
    all the other degradations together); tiled when the line is larger than the field."""
    global _NOISE
    if _NOISE is None:
        _NOISE = np.random.default_rng(12345).standard_normal((256, 4096), dtype=np.float32)
    nh, nw = _NOISE.shape
    if h > nh or w > nw:
        reps = (-(-h // nh), -(-w // nw))
        return np.tile(_NOISE, reps)[:h, :w]
    y, x = int(rng.integers(0, nh - h + 1)), int(rng.integers(0, nw - w + 1))
    return _NOISE[y : y + h, x : x + w]


def jpeg(img: np.ndarray, rng: np.random.Generator, min_q: int, max_q: int) -> np.ndarray:
    u8 = np.clip(img, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(min_q, max_q + 1))])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) if ok else img


# -- looks of cameras, printers and scanners (the real-image recipes, configs/render/real.yaml) --
# Mask functions take the ink coverage (uint8 0-255) and return a new one; image functions take the float32
# or uint8 line and return a float32 one. None of them is called by the four original scene types.


def squeeze(mask: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Glyphs condensed (or extended) horizontally by a factor in [lo, hi], as plate and receipt faces are."""
    h, w = mask.shape
    f = rng.uniform(lo, hi)
    return cv2.resize(mask, (max(4, int(round(w * f))), h), interpolation=cv2.INTER_AREA)


def curve(mask: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """The baseline bent into an arc (or an S) of up to `amount` of the height; the canvas grows by the bend,
    so no ink leaves it."""
    h, w = mask.shape
    amp = rng.uniform(0.3, 1.0) * amount * h
    pad = int(np.ceil(amp)) + 1
    mask = cv2.copyMakeBorder(mask, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=0)
    t = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    if rng.random() < 0.7:
        dy = amp * (t**2 - 0.5) * 2.0 * rng.choice([-1.0, 1.0])  # an arc, as on a round sign or a bottle
    else:
        dy = amp * np.sin(np.pi * t * rng.uniform(0.5, 1.0) + rng.uniform(0, np.pi))
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h + 2 * pad, dtype=np.float32))
    ys = ys + np.clip(dy, -pad + 1, pad - 1).astype(np.float32)[None, :]
    return cv2.remap(mask, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def dot_matrix(mask: np.ndarray, rng: np.random.Generator, pitch: float, draft: bool = False) -> np.ndarray:
    """The strokes as an impact printer's needles leave them: round dots on a grid of `pitch` pixels where
    the glyph has ink, dots slightly larger than half the pitch so that strokes read as dotted lines.

    `draft`: a till's draft mode (the look of SROIE's faint dot-matrix receipts). The head fires its column
    of needles more often than they are apart, so dots run together along the line into dashes while rows
    of needles stay apart: horizontal strokes are dashed, vertical ones dotted. A glyph on the canvas (a
    font size of about 30 px) has a pitch of 2 to 4 px, so the pitch is rounded to whole pixels and every
    needle row leaves its last canvas row as paper; the dots are drawn at a scale where a pitch spans at
    least DRAFT_MIN_PITCH pixels, so that their ends are round, and scaled back."""
    if draft:
        return _draft_dots(mask, rng, pitch)
    h, w = mask.shape
    p = max(2, int(round(pitch)))
    oy, ox = int(rng.integers(0, p)), int(rng.integers(0, p))
    # a needle fires where the glyph covers its cell: the cell's mean coverage, not a single sample
    cells = cv2.resize(mask, (max(1, w // p), max(1, h // p)), interpolation=cv2.INTER_AREA)
    on = cells > rng.uniform(40, 90)
    dots = np.zeros_like(mask)
    ys, xs = np.nonzero(on)
    ys, xs = ys * p + oy, xs * p + ox
    keep = (ys < h) & (xs < w)
    dots[ys[keep], xs[keep]] = 255
    r = max(1, int(round(p * rng.uniform(0.4, 0.6))))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.GaussianBlur(cv2.dilate(dots, disk), (0, 0), max(0.5, p * 0.15))


DRAFT_MIN_PITCH = 8  # px per needle row where draft dots are drawn (then scaled back to the canvas)


def _draft_dots(mask: np.ndarray, rng: np.random.Generator, pitch: float) -> np.ndarray:
    h, w = mask.shape
    p = max(2, int(round(pitch)))  # needle rows, whole canvas pixels apart: a row's last pixel stays paper
    px = p * rng.uniform(0.5, 1.0)  # firings along the line: as far apart as the needles, or closer
    rows, cols = -(-h // p), max(1, int(round(w / px)))
    tall = np.zeros((rows * p, w), np.uint8)
    tall[:h] = mask
    cells = cv2.resize(tall, (cols, rows), interpolation=cv2.INTER_AREA)
    on = cells > rng.uniform(40, 90)
    k = int(np.ceil(DRAFT_MIN_PITCH / p))  # drawing scale
    fx = w * k / cols
    ink = (p - 1) * k  # a dot's rows at the drawing scale: all of its needle row but the last canvas pixel
    ry = max(1, (ink - 1) // 2 - int(rng.integers(0, k // 2 + 1)))
    rx = max(ry, int(round(fx * rng.uniform(0.5, 0.75))))  # over half a firing: dots join into dashes
    dots = np.zeros((rows * p * k, w * k), np.uint8)
    ys, xs = np.nonzero(on)
    dots[ys * p * k + (ink - 1) // 2, ((xs + 0.5) * fx).astype(int)] = 255
    needle = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rx + 1, 2 * ry + 1))
    drawn = cv2.dilate(dots, needle)[: h * k]
    return _full_ink(cv2.resize(drawn, (w, h), interpolation=cv2.INTER_AREA))


def _full_ink(dots: np.ndarray) -> np.ndarray:
    """Dots drawn large and scaled down, brought back to full ink: the fullest canvas pixels, which a dot
    covers, carry the glyph's full coverage (the 95th percentile of the inked pixels becomes 255)."""
    out = dots.astype(np.float32)
    top = float(np.percentile(out[out > 0], 95)) if (out > 0).any() else 255.0
    return np.clip(out * (255.0 / max(top, 1.0)), 0, 255).astype(np.uint8)


def needle_dots(
    bits: np.ndarray, pitch: float, rng: np.random.Generator, draft: bool = False, stretch: float = 1.0
) -> np.ndarray:
    """A bitmap face's pixels (`bits`, bool, one row per needle) printed as a needle printer prints them:
    one dot per pixel, `pitch` canvas pixels apart down the column and `pitch * stretch` along the line
    (tills print narrower or wider than square), with a pitch of paper round the edge so that no dot is
    cut. Round dots overlap a little, so strokes read as dotted lines, and the head's aim wanders a little.
    In `draft` mode (the look of SROIE's faint dot-matrix receipts) the needle rows stay apart, as in
    dot_matrix's draft mode: rows whole canvas pixels apart, the last canvas row of each left as paper,
    each needle at its fixed height; a row's firings run together into dashes. Drawn at a scale where a
    pitch spans at least DRAFT_MIN_PITCH pixels, so that the dots are round, and scaled back."""
    if draft:
        pitch = float(max(2, int(round(pitch))))  # needle rows whole canvas pixels apart
    rows, cols = bits.shape
    px = pitch * stretch
    pad = int(np.ceil(max(pitch, px)))
    h, w = int(rows * pitch) + 2 * pad, int(np.ceil(cols * px)) + 2 * pad
    k = max(1, int(np.ceil(DRAFT_MIN_PITCH / min(pitch, px))))
    ys, xs = np.nonzero(bits)
    along = rng.normal(0.0, 0.04 * px * k, size=ys.size)  # firing times wander along the line
    if draft:
        ink = (int(pitch) - 1) * k  # a dash's rows: all of its needle row but the last canvas pixel
        ry = max(1, (ink - 1) // 2 - int(rng.integers(0, k // 2 + 1)))
        rx = max(ry, int(px * k * rng.uniform(0.65, 0.85)))  # over half a firing: a row's dots join
        cy = (ys * pitch + pad) * k + (ink - 1) // 2
    else:
        ry = max(1, int(pitch * k * rng.uniform(0.4, 0.6)))
        rx = max(1, int(px * k * rng.uniform(0.4, 0.6)))
        cy = ((ys + 0.5) * pitch + pad) * k + rng.normal(0.0, 0.06 * pitch * k, size=ys.size)
    cx = ((xs + 0.5) * px + pad) * k + along
    dots = np.zeros((h * k, w * k), np.uint8)
    dots[np.clip(cy.astype(int), 0, h * k - 1), np.clip(cx.astype(int), 0, w * k - 1)] = 255
    drawn = cv2.dilate(dots, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rx + 1, 2 * ry + 1)))
    return _full_ink(cv2.resize(drawn, (w, h), interpolation=cv2.INTER_AREA))


def fade_ink(mask: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Faint, uneven ink: coverage lowered by a smooth random field (a worn ribbon, a cool thermal head,
    fading paper), sometimes with thin vertical streaks where a thermal head's dot has died."""
    h, w = mask.shape
    field = 1.0 - strength * np.clip(0.5 + _low_freq(h, w, rng, 0.5, scale=rng.uniform(2, 6)), 0.0, 1.0)
    if rng.random() < 0.3:
        for x in rng.integers(0, w, int(rng.integers(1, 4))):
            field[:, x : x + int(rng.integers(1, 3))] *= rng.uniform(0.0, 0.5)
    return np.clip(mask.astype(np.float32) * field, 0, 255).astype(np.uint8)


def photo_patch(photo: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A float32 (h, w) cut of a grayscale photograph at a random place and zoom (at most the photo's own
    size), stretched if the line is wider than the photo."""
    ph, pw = photo.shape
    zoom = rng.uniform(0.3, 1.5)
    ch = int(np.clip(h * zoom, 4, ph))
    cw = int(np.clip(w * ch / max(h, 1), 4, pw))
    y, x = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = photo[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def plate_furniture(
    img: np.ndarray, rng: np.random.Generator, frame_level: float, bolt_level: float
) -> np.ndarray:
    """A licence plate's rim (a thin frame just inside the edge, the car's body outside it) and two bolts
    near the top edge; drawn on the ground before the text."""
    img = np.array(img, dtype=np.float32, copy=True)
    h, w = img.shape
    inset = max(1, int(h * rng.uniform(0.0, 0.03)))
    thick = max(1, int(round(h * rng.uniform(0.015, 0.04))))
    if inset > 1:  # the car around the plate: a band of another level outside the frame
        outside = rng.uniform(0, 255)
        img[:inset, :], img[-inset:, :], img[:, :inset], img[:, -inset:] = outside, outside, outside, outside
    cv2.rectangle(img, (inset, inset), (w - 1 - inset, h - 1 - inset), float(frame_level), thick)
    r = max(1, int(h * rng.uniform(0.025, 0.045)))
    cy = inset + thick + r + 1
    for fx in (rng.uniform(0.18, 0.3), rng.uniform(0.7, 0.82)):
        cv2.circle(img, (int(w * fx), cy), r, float(bolt_level), -1)
    return img


def binarize(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bilevel scan: every pixel black or white, at a threshold drawn between the ground and the ink
    (low thresholds thin the strokes and break them, high ones thicken them)."""
    lo, hi = np.percentile(img, (2, 98))
    t = lo + (hi - lo) * rng.uniform(0.4, 0.6)
    return np.where(img > t, 255.0, 0.0).astype(np.float32)


def speckle(img: np.ndarray, rng: np.random.Generator, density: float) -> np.ndarray:
    """Dust and toner specks: small dark (and a few light) dots over the line, `density` of its pixels."""
    h, w = img.shape
    out = np.array(img, dtype=np.float32, copy=True)
    n = int(rng.poisson(max(density, 0.0) * h * w))
    if n == 0:
        return out
    lo, hi = float(np.percentile(out, 1)), float(np.percentile(out, 99))
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    dark = rng.random(n) < 0.8
    out[ys[dark], xs[dark]] = lo
    out[ys[~dark], xs[~dark]] = hi
    return out


def resample_height(img: np.ndarray, rng: np.random.Generator, lo: int, hi: int) -> np.ndarray:
    """The line as a small source image (`lo`-`hi` pixels tall, as a 94x24 plate crop or a small screen
    font) scaled back up to its size: the blockiness and blur of upscaling."""
    h, w = img.shape
    th = int(rng.integers(lo, hi + 1))
    if th >= h:
        return img
    tw = max(2, int(round(w * th / h)))
    small = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
    interp = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST)[int(rng.choice(3, p=[0.6, 0.3, 0.1]))]
    return cv2.resize(small, (w, h), interpolation=interp)


def bubble(h: int, w: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """A chat bubble or UI panel of gray `level` with rounded corners, on a page of another level."""
    page = level + rng.choice([-1.0, 1.0]) * rng.uniform(20, 90)
    bg = np.full((h, w), np.clip(page, 0, 255), np.float32)
    inset = max(1, int(h * rng.uniform(0.0, 0.06)))
    r = max(2, int(h * rng.uniform(0.15, 0.45)))
    x0, y0, x1, y1 = inset, inset, w - 1 - inset, h - 1 - inset
    r = min(r, (y1 - y0) // 2, (x1 - x0) // 2)
    cv2.rectangle(bg, (x0 + r, y0), (x1 - r, y1), float(level), -1)
    cv2.rectangle(bg, (x0, y0 + r), (x1, y1 - r), float(level), -1)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        cv2.circle(bg, (cx, cy), r, float(level), -1)
    return bg
