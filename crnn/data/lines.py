"""Labelled line images read from LMDBs, without PyTorch: evaluation, quantization and training all open
their line sets here (training wraps them in its loaders, `crnn.data.dataset`).

Labels outside the alphabet follow the OOV policy and are counted when the set opens; an unreadable image
comes back as an item with `x=None` for the caller to count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crnn.charset import Charset, LabelFilter, LabelStats
from crnn.data.lmdb_io import WIDTH_KEY_HEIGHT, LmdbReader
from crnn.data.preprocess import InputSpec, preprocess, resized_width


@dataclass
class Item:
    x: np.ndarray | None  # (1, H, W) model input, None if the image was unreadable
    label: str
    scene: str | None


class LineEntries:
    """What every line set shares: `entries` of (source, key, label, scene, width at model height) and the
    label filter's counts; the LMDB and the labelled-folder sets differ only in where pixels come from."""

    entries: list[tuple[int, int, str, str | None, int]]
    label_filter: LabelFilter

    @property
    def label_stats(self) -> LabelStats:
        return self.label_filter.stats

    def widths(self) -> list[int]:
        return [e[4] for e in self.entries]

    def scenes(self) -> list[str | None]:
        return [e[3] for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)


def guessed_width(label: str, spec: InputSpec) -> int:
    """A line's width at model height when its image size is unknown: about one height per character."""
    return max(spec.min_width, spec.height * max(len(label), 1))


class LmdbLineDataset(LineEntries):
    """One or more LMDBs as one dataset of (input, label, scene); a map-style dataset for DataLoader
    without being a torch class, so ONNX-only stages read lines without importing PyTorch."""

    kind = "lmdb"

    def __init__(
        self,
        paths: list[str],
        charset: Charset,
        spec: InputSpec,
        oov_policy: str = "skip",
        default_scene: str | None = None,
    ) -> None:
        """`default_scene` names the scene of lines whose LMDB has no `scene-` key (one LMDB per scene)."""
        if not paths:
            raise ValueError("no LMDB paths given")
        self.readers = [LmdbReader(p) for p in paths]
        self.spec = spec
        self.label_filter = LabelFilter(charset, oov_policy)
        self.missing_labels = 0
        # (reader, index, label, scene, width-at-model-height)
        self.entries: list[tuple[int, int, str, str | None, int]] = []
        for r_i, reader in enumerate(self.readers):
            labels, scenes, widths = reader.labels(), reader.scenes(), reader.widths()
            for k, (label, scene, width) in enumerate(zip(labels, scenes, widths)):
                if label is None:
                    self.missing_labels += 1
                    continue
                kept = self.label_filter(label)
                if kept is None:
                    continue
                w = (
                    resized_width(WIDTH_KEY_HEIGHT, width, spec)
                    if width is not None
                    else guessed_width(kept, spec)
                )
                self.entries.append((r_i, k + 1, kept, scene or default_scene, w))

    @property
    def path(self) -> str:
        return ", ".join(str(r.path) for r in self.readers)

    def image(self, i: int, color: bool = False) -> np.ndarray | None:
        """The stored image as decoded (grayscale: LMDBs hold what training reads), None if unreadable."""
        r_i, idx = self.entries[i][:2]
        return self.readers[r_i].read(idx).image

    def source(self, i: int) -> dict:
        """Where line `i` came from, for the report's worst lines."""
        r_i, idx = self.entries[i][:2]
        return {"set": str(self.readers[r_i].path), "index": idx}

    def __getitem__(self, i: int) -> Item:
        r_i, idx, label, scene, _ = self.entries[i]
        rec = self.readers[r_i].read(idx)
        if rec.image is None:
            return Item(None, label, scene)
        return Item(preprocess(rec.image, self.spec), label, scene)
