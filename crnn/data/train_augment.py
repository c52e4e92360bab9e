"""On-the-fly augmentation of training lines, from any LMDB (ours or a user's) or the synthetic stream.

PaddleOCR's RecAug/TIA, redone for grayscale lines with NumPy/OpenCV: geometric changes (TIA-style
stretch and distortion, perspective, a small rotation, crop jitter) and degradations (contrast, brightness,
ink fading, uneven light, blur, motion blur, low resolution, noise, JPEG, inversion), each with its own
probability and range (`AugmentConfig`, `train.augment` in configs/config.yaml).

- It runs on the decoded image, before `crnn.data.preprocess.preprocess`, so the model's input path stays
  the one evaluation and serving use. Only the training loaders call it; validation and evaluation read
  the stored pixels.
- It is a pure function of (seed, key): the training loader passes (epoch, dataset index), the synthetic
  stream (0, sample index), so a line looks the same whatever the number of loader workers, and a resumed
  run sees what an uninterrupted one saw.
- Labels stay true: geometric changes keep the whole ink. The line is warped on a canvas large enough to
  hold it, then framed again around its ink box (estimated against the border's gray level) with margins
  of 0 (touching the ink) or more; nothing inside the ink box is ever cut.

Pixel sizes (blur sigma, motion length) are given at the model's height; a taller image is first shrunk to
twice that height, so a setting means the same on a user's 100-px scans as on our 32-px lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from crnn.data import augment
from crnn.data.preprocess import to_gray

# op -> (probability, range) by default; the range's meaning is the op's (see OP_RANGES)
DEFAULT_OPS: dict[str, tuple[float, list[float]]] = {
    "crop": (0.5, [0.0, 0.3]),
    "stretch": (0.3, [0.8, 1.25]),
    "distort": (0.2, [0.03, 0.12]),
    "perspective": (0.2, [0.05, 0.2]),
    "rotate": (0.2, [-2.0, 2.0]),
    "contrast": (0.3, [0.45, 1.2]),
    "brightness": (0.3, [-40.0, 40.0]),
    "fade": (0.15, [0.2, 0.6]),
    "shade": (0.15, [0.2, 0.5]),
    "blur": (0.15, [0.4, 1.0]),
    "motion_blur": (0.1, [2.0, 4.0]),
    "low_res": (0.15, [0.5, 0.85]),
    "noise": (0.25, [3.0, 12.0]),
    "jpeg": (0.2, [25.0, 75.0]),
    "invert": (0.05, []),
}

OP_RANGES = {
    "crop": "new margin on each side, in ink heights (0: the frame touches the ink; never cuts it)",
    "stretch": "horizontal scale of each of the line's segments (TIA stretch)",
    "distort": "shift of each control point on the top and bottom edges, in line heights (TIA distort)",
    "perspective": "inward shift of each corner, in line heights",
    "rotate": "degrees; capped so that the line's ends move at most a quarter of its height",
    "contrast": "gain around the line's mean gray",
    "brightness": "gray levels added",
    "fade": "share of the ink's contrast lost in low-frequency patches",
    "shade": "strength of uneven light (crnn.data.augment.uneven_light)",
    "blur": "Gaussian sigma in pixels at the model's height",
    "motion_blur": "blur length in pixels at the model's height",
    "low_res": "scale the line is shrunk to and blown back up from",
    "noise": "largest Gaussian noise sigma, in gray levels (crnn.data.augment.gaussian_noise)",
    "jpeg": "JPEG quality",
    "invert": "(no range) light text on dark",
}


@dataclass
class AugOp:
    p: float = 0.0
    range: list[float] = field(default_factory=list)


def default_ops() -> dict[str, AugOp]:
    return {k: AugOp(p, list(r)) for k, (p, r) in DEFAULT_OPS.items()}


@dataclass
class AugmentConfig:
    """`train.augment`: off unless `enabled`; a line is augmented with probability `p`, and then each op
    with its own `p`, its parameter drawn uniformly from its `range` (OP_RANGES says what it means)."""

    enabled: bool = False
    p: float = 0.8
    ops: dict[str, AugOp] = field(default_factory=default_ops)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ops) - set(DEFAULT_OPS))
        if unknown:
            raise ValueError(f"train.augment.ops: unknown op(s) {unknown}; known: {sorted(DEFAULT_OPS)}")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"train.augment.p must be in [0, 1], got {self.p}")
        for name, op in self.ops.items():
            if not 0.0 <= op.p <= 1.0:
                raise ValueError(f"train.augment.ops.{name}.p must be in [0, 1], got {op.p}")
            if name != "invert" and (len(op.range) != 2 or op.range[0] > op.range[1]):
                raise ValueError(
                    f"train.augment.ops.{name}.range must be [low, high] with low <= high "
                    f"({OP_RANGES[name]}), got {op.range}"
                )


SALT = 0x5EED  # keeps these streams apart from the renderer's, which also key NumPy generators by index


class LineAugmenter:
    """Augments one decoded line image (gray, BGR or BGRA uint8) as a pure function of (seed, key)."""

    def __init__(self, cfg: AugmentConfig, height: int, seed: int) -> None:
        self.cfg = cfg
        self.height = height
        self.seed = seed
        self.ops = [(name, op) for name, op in cfg.ops.items() if op.p > 0]

    def rng(self, key: tuple[int, ...]) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, (self.seed >> 32) & 0xFFFFFFFF, *key, SALT])

    def __call__(self, img: np.ndarray, key: tuple[int, ...]) -> np.ndarray:
        rng = self.rng(key)
        if rng.random() >= self.cfg.p:
            return img
        chosen = {name: op.range for name, op in self.ops if rng.random() < op.p}
        if not chosen:
            return img
        gray = to_gray(img)
        h, w = gray.shape
        if h < 2 or w < 2:
            return img
        if h > 2 * self.height:
            nw = max(2, round(w * 2 * self.height / h))
            gray = cv2.resize(gray, (nw, 2 * self.height), interpolation=cv2.INTER_AREA)
        out = apply_ops(gray.astype(np.float32), chosen, rng, gray.shape[0] / self.height)
        return np.clip(out, 0, 255).astype(np.uint8)


GEOMETRIC = ("stretch", "distort", "perspective", "rotate", "crop")


def apply_ops(
    f: np.ndarray, chosen: dict[str, list[float]], rng: np.random.Generator, px: float
) -> np.ndarray:
    """The chosen ops in a fixed order (geometry first) on a float32 gray line; `px` is pixels per pixel of
    the model's height."""
    if any(k in chosen for k in GEOMETRIC):
        f = reframe(f, chosen, rng)

    def u(name: str) -> float:
        lo, hi = chosen[name]
        return float(rng.uniform(lo, hi))

    if "contrast" in chosen:
        m = float(f.mean())
        f = (f - m) * u("contrast") + m
    if "brightness" in chosen:
        f = f + u("brightness")
    if "fade" in chosen:
        f = fade(f, rng, u("fade"))
    if "shade" in chosen:
        f = augment.uneven_light(f, rng, u("shade"))
    if "blur" in chosen:
        f = cv2.GaussianBlur(f, (0, 0), u("blur") * px)
    if "motion_blur" in chosen:
        f = motion_blur(f, rng, u("motion_blur") * px)
    if "low_res" in chosen:
        f = low_resolution(f, u("low_res"))
    if "noise" in chosen:
        f = augment.gaussian_noise(f, rng, u("noise"))
    if "jpeg" in chosen:
        lo, hi = chosen["jpeg"]
        f = augment.jpeg(f, rng, int(lo), int(hi))
    if "invert" in chosen:
        f = 255.0 - f
    return f


# ------------------------------------------------------------------------------------------ geometry


def border_level(f: np.ndarray) -> float:
    """The background's gray: the median of the outermost rows and columns."""
    edge = np.concatenate([f[0], f[-1], f[:, 0], f[:, -1]])
    k = edge.size // 2
    return float(np.partition(edge, k)[k])  # np.median costs 8x more on a line's border


def ink_box(f: np.ndarray, bg: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), bottom/right exclusive, of the pixels that differ from the background by
    more than a third of the strongest difference (and at least 16 levels). Texture or noise can only
    make the box larger, which makes cropping more careful, never less."""
    d = np.abs(f - bg)
    thr = max(16.0, float(d.max()) / 3.0)
    ink = d > thr
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return 0, f.shape[0], 0, f.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def reframe(f: np.ndarray, chosen: dict[str, list[float]], rng: np.random.Generator) -> np.ndarray:
    """Warp the line on a canvas that holds all of it, then frame it around its ink again: with the
    line's own margins (in ink heights), or new ones when `crop` was drawn."""
    bg = border_level(f)
    t, b, left, r = ink_box(f, bg)
    h, w = f.shape
    ink_h = max(1, b - t)
    margins = [t / ink_h, (h - b) / ink_h, left / ink_h, (w - r) / ink_h]
    if "stretch" in chosen:
        f = stretch(f, rng, *chosen["stretch"])
    if "distort" in chosen:
        f = distort(f, rng, float(rng.uniform(*chosen["distort"])), bg)
    if "perspective" in chosen:
        f = perspective_inward(f, rng, float(rng.uniform(*chosen["perspective"])), bg)
    if "rotate" in chosen:
        f = rotate_whole(f, float(rng.uniform(*chosen["rotate"])), bg, ink_h)
    if "crop" in chosen:
        margins = [float(m) for m in rng.uniform(*chosen["crop"], size=4)]
    t, b, left, r = ink_box(f, bg)
    ink_h = max(1, b - t)
    mt, mb, ml, mr = (int(round(m * ink_h)) for m in margins)
    return frame(f, (t - mt, b + mb, left - ml, r + mr), bg)


def frame(f: np.ndarray, box: tuple[int, int, int, int], bg: float) -> np.ndarray:
    """f[y0:y1, x0:x1], the parts outside f filled with `bg`."""
    y0, y1, x0, x1 = box
    h, w = f.shape
    pads = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
    if any(pads):
        f = cv2.copyMakeBorder(f, *pads, cv2.BORDER_CONSTANT, value=bg)
        y0, y1, x0, x1 = y0 + pads[0], y1 + pads[0], x0 + pads[2], x1 + pads[2]
    return f[y0:y1, x0:x1]


def _segments(w: int, h: int) -> int:
    return int(np.clip(round(w / max(h, 1)), 2, 64))


def stretch(f: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """TIA stretch: the line cut into segments about a line-height wide, each scaled horizontally by its
    own factor. A monotonic map of the whole width: nothing is lost."""
    h, w = f.shape
    n = _segments(w, h)
    src = np.linspace(0, w, n + 1)
    scale = rng.uniform(lo, hi, n)
    dst = np.concatenate([[0.0], np.cumsum(np.diff(src) * scale)])
    out_w = max(2, int(round(dst[-1])))
    map_x = np.interp(np.arange(out_w, dtype=np.float64) + 0.5, dst * out_w / dst[-1], src) - 0.5
    map_x = np.repeat(map_x.astype(np.float32)[None, :], h, axis=0)
    map_y = np.repeat(np.arange(h, dtype=np.float32)[:, None], out_w, axis=1)
    return cv2.remap(f, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def distort(f: np.ndarray, rng: np.random.Generator, amount: float, bg: float) -> np.ndarray:
    """TIA distort: control points on the top and bottom edges, one per segment boundary, each moved by up
    to `amount` line heights; the displacement is interpolated between them. The line is first padded by
    more than the largest move, so no ink leaves the canvas."""
    h, w = f.shape
    d = amount * h
    m = int(math.ceil(d)) + 1
    f = cv2.copyMakeBorder(f, m, m, m, m, cv2.BORDER_CONSTANT, value=bg)
    hh, ww = f.shape
    n = _segments(w, h)
    knots = np.linspace(0, ww - 1, n + 1)
    xs = np.arange(ww, dtype=np.float32)
    field_top = rng.uniform(-d, d, (2, n + 1))
    field_bot = rng.uniform(-d, d, (2, n + 1))
    top = [np.interp(xs, knots, v).astype(np.float32) for v in field_top]
    bot = [np.interp(xs, knots, v).astype(np.float32) for v in field_bot]
    a = (np.arange(hh, dtype=np.float32) / max(hh - 1, 1))[:, None]
    map_x = xs[None, :] + (1 - a) * top[0][None, :] + a * bot[0][None, :]
    map_y = np.arange(hh, dtype=np.float32)[:, None] + (1 - a) * top[1][None, :] + a * bot[1][None, :]
    return cv2.remap(f, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=bg)


def perspective_inward(f: np.ndarray, rng: np.random.Generator, amount: float, bg: float) -> np.ndarray:
    """A sign seen at an angle: each corner pulled inward by up to `amount` line heights (never out, so
    the whole line stays on the canvas)."""
    h, w = f.shape
    d = amount * h
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    inward = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    dst = src + inward * rng.uniform(0, d, (4, 2)).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(
        f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=bg
    )


def rotate_whole(f: np.ndarray, deg: float, bg: float, ink_h: int) -> np.ndarray:
    """Rotated on a canvas grown to hold all of it; the angle is capped so that a long line's ends move at
    most a quarter of its ink height (more would shrink its glyphs at the model's height)."""
    h, w = f.shape
    cap = math.degrees(math.atan(0.25 * ink_h / max(w / 2, 1)))
    deg = float(np.clip(deg, -cap, cap))
    c, s = abs(math.cos(math.radians(deg))), abs(math.sin(math.radians(deg)))
    nw, nh = int(math.ceil(w * c + h * s)), int(math.ceil(h * c + w * s))
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    m[0, 2] += (nw - w) / 2
    m[1, 2] += (nh - h) / 2
    return cv2.warpAffine(
        f, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=bg
    )


# ----------------------------------------------------------------------------------------- degradations


def fade(f: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Worn or dry ink: in low-frequency patches the ink loses up to `strength` of its contrast."""
    h, w = f.shape
    bg = border_level(f)
    coarse = rng.uniform(0, strength, (2, max(2, w // max(h, 1)))).astype(np.float32)
    a = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    return f + (bg - f) * a


def motion_blur(f: np.ndarray, rng: np.random.Generator, length: float) -> np.ndarray:
    """A straight blur of `length` pixels at a random angle."""
    n = max(3, int(round(length)) | 1)
    k = np.zeros((n, n), np.float32)
    k[n // 2, :] = 1.0
    m = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    k = cv2.warpAffine(k, m, (n, n))
    k /= max(float(k.sum()), 1e-6)
    return cv2.filter2D(f, -1, k, borderType=cv2.BORDER_REPLICATE)


def low_resolution(f: np.ndarray, scale: float) -> np.ndarray:
    h, w = f.shape
    small = cv2.resize(f, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def line_augmenter(cfg: AugmentConfig, height: int, seed: int) -> LineAugmenter | None:
    """The training loaders' augmenter, or None when `train.augment.enabled` is off."""
    return LineAugmenter(cfg, height, seed) if cfg.enabled else None
