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
