"""LMDB in the format of deep-text-recognition-benchmark, so LMDBs made by other tools train here too.

Keys: `num-samples`; `image-%09d` (encoded image bytes); `label-%09d` (UTF-8), indices from 1. Optional
keys this toolkit adds and others ignore: `scene-%09d` (scene type), `width-%09d` (the image's width when
scaled to a height of 32 px, so batches can be grouped by width without decoding). A corrupt or missing image is skipped
and counted, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import lmdb
import numpy as np

from crnn.data import image_io
from crnn.data.image_io import ImageDecodeError

WIDTH_KEY_HEIGHT = 32  # the `width-` key is the width at this height


class LmdbFormatError(RuntimeError):
    """The folder is not an LMDB in the expected format."""


def encode_image(img: np.ndarray, fmt: str = "png") -> bytes:
    ext = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg"}[fmt]
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if ext == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 95]
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise ValueError("could not encode image")
    return buf.tobytes()


def decode_image(data: bytes | None) -> np.ndarray | None:
    """Grayscale uint8 image, or None if the bytes are not a readable image.

    Decoded by `crnn.data.image_io`, as the server decodes uploads, so a line trains as it is served
    (EXIF orientation, 16-bit depth and transparency handled alike).
    """
    if not data:
        return None
    try:
        img = image_io.decode_image(data)
    except ImageDecodeError:
        return None
    return img if img.size else None


class LmdbWriter:
    """Appends samples; `num-samples` is written on close, so an interrupted write reads as empty."""

    def __init__(self, path: str | Path, map_size: int = 1 << 36, commit_every: int = 1000) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(self.path), map_size=map_size, subdir=True, lock=True)
        self.commit_every = commit_every
        self.count = 0
        self._txn = self.env.begin(write=True)

    def add(self, image_bytes: bytes, label: str, scene: str | None = None, width: int | None = None) -> None:
        self.count += 1
        i = self.count
        self._txn.put(b"image-%09d" % i, image_bytes)
        self._txn.put(b"label-%09d" % i, label.encode("utf-8"))
        if scene is not None:
            self._txn.put(b"scene-%09d" % i, scene.encode("utf-8"))
        if width is not None:
            self._txn.put(b"width-%09d" % i, str(int(width)).encode())
        if i % self.commit_every == 0:
            self._txn.put(b"num-samples", str(i).encode())
            self._txn.commit()
            self._txn = self.env.begin(write=True)

    def close(self) -> None:
        if self._txn is not None:
            self._txn.put(b"num-samples", str(self.count).encode())
            self._txn.commit()
            self._txn = None
            self.env.sync()
            self.env.close()

    def __enter__(self) -> LmdbWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class LmdbRecord:
    index: int
    image: np.ndarray | None  # None: unreadable
    label: str
    scene: str | None


class LmdbReader:
    """Random access to one LMDB; opens its environment lazily so it can be handed to loader workers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "data.mdb").is_file():
            raise LmdbFormatError(f"{self.path} is not an LMDB folder (no data.mdb); build one with `make data`")
        self._env = None
        with self._open().begin() as txn:
            raw = txn.get(b"num-samples")
        if raw is None:
            raise LmdbFormatError(f"{self.path} has no `num-samples` key; is it a text-recognition LMDB?")
        try:
            self.num_samples = int(raw.decode())
        except ValueError:
            raise LmdbFormatError(f"{self.path}: `num-samples` is {raw[:20]!r}, not an integer") from None

    def _open(self):
        if self._env is None:
            self._env = _shared_env(self.path)
        return self._env

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_env"] = None
        return state

    def __len__(self) -> int:
        return self.num_samples

    def labels(self) -> list[str | None]:
        """Every label (None where missing or not UTF-8), read in one pass without decoding images."""
        out: list[str | None] = []
        with self._open().begin() as txn:
            for i in range(1, self.num_samples + 1):
                raw = txn.get(b"label-%09d" % i)
                try:
                    out.append(raw.decode("utf-8") if raw is not None else None)
                except UnicodeDecodeError:
                    out.append(None)
        return out

    def scenes(self) -> list[str | None]:
        with self._open().begin() as txn:
            return [_maybe_str(txn.get(b"scene-%09d" % i)) for i in range(1, self.num_samples + 1)]

    def widths(self) -> list[int | None]:
        with self._open().begin() as txn:
            raw = [txn.get(b"width-%09d" % i) for i in range(1, self.num_samples + 1)]
        return [int(r) if r is not None and r.isdigit() else None for r in raw]

    def read(self, index: int) -> LmdbRecord:
        """Sample `index` (1-based, as in the format)."""
        if not 1 <= index <= self.num_samples:
            raise IndexError(f"{self.path}: index {index} outside 1..{self.num_samples}")
        with self._open().begin() as txn:
            img = decode_image(txn.get(b"image-%09d" % index))
            label = _maybe_str(txn.get(b"label-%09d" % index)) or ""
            scene = _maybe_str(txn.get(b"scene-%09d" % index))
        return LmdbRecord(index, img, label, scene)


_ENVS: dict[str, lmdb.Environment] = {}


def _shared_env(path: Path) -> lmdb.Environment:
    """py-lmdb allows one open environment per path and process (a forked loader worker inherits the
    parent's registry), so readers of a path share one read-only, lock-free environment."""
    key = str(path.resolve())
    env = _ENVS.get(key)
    if env is None:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False, max_readers=256)
        _ENVS[key] = env
    return env


def _maybe_str(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
