"""The one function that turns an image into the model's input; training, evaluation and serving call it.

Grayscale, resize to the model's height keeping the aspect ratio, clamp the width, smooth (a Gaussian of
`InputSpec.smooth` pixels at the model's height, 0: none; chosen after training, `make smooth`), normalise to
(x/255 - mean)/std (the article's [-0.5, 0.5] by default). The article's document clean-up of a line
(`clean_line`: histogram equalisation, adaptive threshold) is an optional step here, switched by
`InputSpec.cleanup`, so that a model trained with it is served with it: the spec travels inside every
checkpoint and ONNX file (so that field keeps its name). Page-level clean-up (perspective correction) is the
server's, in `crnn.serve.segment`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

LINE_CLEANUPS = ("none", "equalize", "binarize")  # the modes of `clean_line`, and of InputSpec.cleanup


@dataclass(frozen=True)
class InputSpec:
    height: int = 32
    channels: int = 1
    mean: float = 0.5
    std: float = 1.0
    min_width: int = 16
    max_width: int = 2048
    cleanup: str = "none"
    smooth: float = 0.0  # Gaussian sigma, px at `height`, over the resized line (crnn.smooth chooses it)

    def __post_init__(self) -> None:
        if not 0.0 <= self.smooth <= 4.0:
            raise ValueError(f"input.smooth is a Gaussian sigma in pixels (0 to 4), got {self.smooth!r}")
        if self.cleanup not in LINE_CLEANUPS:
            raise ValueError(f"input.cleanup must be one of {LINE_CLEANUPS}, got {self.cleanup!r}")
        if self.channels != 1:
            raise ValueError("only grayscale models (input.channels=1) are supported")

    def as_dict(self) -> dict:
        """The spec as files store it. `smooth` only when set, so that a file without smoothing stays
        readable by a toolkit from before the field (whose InputSpec would refuse the key)."""
        d = asdict(self)
        if not d["smooth"]:
            del d["smooth"]
        return d


def to_gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected a grayscale, BGR or BGRA image, got shape {img.shape}")


def clean_line(gray: np.ndarray, mode: str) -> np.ndarray:
    """The article's document clean-up of a grayscale line (one of LINE_CLEANUPS); measured per scene type
    before anyone turns it on by default."""
    if mode == "none":
        return gray
    eq = cv2.equalizeHist(gray)
    if mode == "equalize":
        return eq
    block = max(3, (gray.shape[0] // 2) | 1)
    return cv2.adaptiveThreshold(eq, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, block, 10)


def resized_width(h: int, w: int, spec: InputSpec) -> int:
    return int(min(spec.max_width, max(spec.min_width, round(w * spec.height / max(h, 1)))))


def preprocess(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """float32 array (1, height, W) ready for the model; W keeps the aspect ratio within the spec's limits."""
    if img is None or img.size == 0:
        raise ValueError("empty image")
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    gray = clean_line(to_gray(img), spec.cleanup)
    h, w = gray.shape
    new_w = resized_width(h, w, spec)
    interp = cv2.INTER_AREA if h > spec.height else cv2.INTER_LINEAR
    out = smooth_line(cv2.resize(gray, (new_w, spec.height), interpolation=interp).astype(np.float32), spec.smooth)
    out *= 1.0 / 255.0
    out -= spec.mean
    if spec.std != 1.0:
        out /= spec.std
    return out[None]


def smooth_line(x: np.ndarray, sigma: float) -> np.ndarray:
    """A float line at the model's height, (H, W) or a preprocessed (1, H, W), blurred by a Gaussian of
    `sigma` pixels (itself when sigma is 0). The normalisation is affine and the kernel sums to 1, so a
    preprocessed line blurred here equals one preprocessed with that smoothing (the predictor's second look,
    crnn.predictor.SecondLook, blurs what it already has)."""
    if sigma <= 0:
        return x
    if x.ndim == 3:
        return cv2.GaussianBlur(x[0], (0, 0), sigma)[None]
    return cv2.GaussianBlur(x, (0, 0), sigma)


def pad_batch(items: list[np.ndarray], multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Stack (1, H, W_i) inputs into (N, 1, H, W_max), padding each on the right with its own last column
    (as deep-text-recognition-benchmark does: no artificial edge), and return the true widths."""
    widths = np.array([x.shape[-1] for x in items], dtype=np.int64)
    wmax = int(widths.max())
    if multiple > 1:
        wmax = -(-wmax // multiple) * multiple
    h = items[0].shape[-2]
    batch = np.empty((len(items), 1, h, wmax), dtype=np.float32)
    for i, x in enumerate(items):
        w = x.shape[-1]
        batch[i, :, :, :w] = x
        if w < wmax:
            batch[i, :, :, w:] = x[:, :, w - 1 : w]
    return batch, widths
