"""Build an LMDB from a folder of images and a `path<TAB>label` list (PaddleOCR's format).

Bad lines (no tab, empty path or label, a path that leaves the folder), missing files and images that do
not decode are skipped and counted; the summary says how many of each and names the first few. Images
are checked and measured as training reads them (`lmdb_io.decode_image`, i.e. `crnn.data.image_io`,
the decoder serving uses too), so the stored width follows the EXIF orientation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crnn.data.lmdb_io import WIDTH_KEY_HEIGHT, LmdbWriter, decode_image


@dataclass
class ImportSummary:
    lines: int = 0
    written: int = 0
    bad_line: int = 0
    missing_file: int = 0
    unreadable_image: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, kind: str, what: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 10:
            self.examples.append(f"{kind}: {what}")

    def as_dict(self) -> dict:
        return {
            "lines": self.lines,
            "written": self.written,
            "bad_line": self.bad_line,
            "missing_file": self.missing_file,
            "unreadable_image": self.unreadable_image,
            "examples": self.examples,
        }


def import_list(
    root: str | Path, list_file: str | Path, out: str | Path, scene: str | None = None
) -> ImportSummary:
    root = Path(root).resolve()
    summary = ImportSummary()
    text = Path(list_file).read_text(encoding="utf-8", errors="replace")
    with LmdbWriter(out) as writer:
        for n, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            summary.lines += 1
            if "\t" not in raw:
                summary.note("bad_line", f"line {n}: no tab between path and label")
                continue
            rel, label = raw.split("\t", 1)
            label = label.rstrip("\r")
            if not rel.strip() or not label:
                summary.note("bad_line", f"line {n}: empty path or label")
                continue
            path = (root / rel.strip()).resolve()
            if root not in path.parents:
                summary.note("bad_line", f"line {n}: {rel!r} points outside {root}")
                continue
            if not path.is_file():
                summary.note("missing_file", f"line {n}: {rel}")
                continue
            data = path.read_bytes()
            img = decode_image(data)  # None when unreadable
            if img is None or min(img.shape) < 2:
                summary.note("unreadable_image", f"line {n}: {rel}")
                continue
            writer.add(data, label, scene=scene, width=_width_at(img, WIDTH_KEY_HEIGHT))
            summary.written += 1
    return summary


def _width_at(img: np.ndarray, height: int) -> int:
    """Width of the image scaled to the stored-height convention (the loader rescales by it)."""
    h, w = img.shape[:2]
    return max(1, round(w * height / max(h, 1)))
