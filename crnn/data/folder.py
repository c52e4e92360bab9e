"""Labelled line images in a folder: a test set that needs no conversion to LMDB.

    <root>/<category>/labels.tsv      filename<TAB>text, UTF-8, one line per image
    <root>/<category>/<filename>      the images (any format Pillow reads)

Each subfolder with a `labels.tsv` is one category, scored as its own scene; a root that has a
`labels.tsv` itself is one category named after the root. This is the layout of real labelled sets such
as ../shared/realdev, which are for evaluation and must not be converted into training data.

Nothing is dropped silently: a listed file that is missing or unreadable stays in the set and scores as
an empty prediction (the model read nothing), and is counted; a label outside the alphabet is kept (the
model cannot emit it, so it is an error it makes) and counted; images without a label are counted.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from crnn.charset import Charset, LabelFilter
from crnn.data.image_io import ImageDecodeError, decode_image, open_image
from crnn.data.lines import Item, LineEntries, guessed_width
from crnn.data.preprocess import InputSpec, preprocess, resized_width

LABELS = "labels.tsv"
PROBLEMS = ("missing_file", "unreadable", "bad_label_row", "duplicate_row", "unlabelled_image")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


class FolderFormatError(ValueError):
    pass


def is_folder_set(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / LABELS).is_file() or any(p.glob(f"*/{LABELS}")))


def category_dirs(root: Path) -> list[Path]:
    if (root / LABELS).is_file():
        return [root]
    return sorted(
        d for d in root.iterdir() if not d.name.startswith(".") and (d / LABELS).is_file()
    )  # hidden folders (.ipynb_checkpoints) are not categories


def read_labels(path: Path) -> tuple[list[tuple[str, str]], Counter]:
    """(filename, text) rows of a labels.tsv, first row per filename, and what was wrong with the others.

    UTF-8 with or without a BOM; CRLF or LF. Lines split on newlines only: `str.splitlines` would also
    split a label at U+2028 or a form feed. A filename must name a file inside the category folder."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise FolderFormatError(f"{path}: not UTF-8 ({e})") from None
    rows, seen, problems = [], set(), Counter()
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        name, sep, label = line.partition("\t")
        name = name.strip()
        if not sep or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            problems["bad_label_row"] += 1
        elif name in seen:
            problems["duplicate_row"] += 1
        else:
            seen.add(name)
            rows.append((name, label))
    return rows, problems


class FolderLineDataset(LineEntries):
    """The same reading interface as `LmdbLineDataset` (entries, widths, items by index), so scoring,
    the report and peers treat both alike."""

    kind = "folder"

    def __init__(self, root: str | Path, charset: Charset, spec: InputSpec) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FolderFormatError(f"{self.root}: not a folder")
        cats = category_dirs(self.root)
        if not cats:
            raise FolderFormatError(
                f"{self.root}: no {LABELS} in it or in any subfolder (a labelled folder is "
                f"<category>/{LABELS} + images; an LMDB folder holds data.mdb)"
            )
        self.spec = spec
        self.label_filter = LabelFilter(charset, "keep")
        # missing_file, unreadable, bad_label_row, duplicate_row, unlabelled_image
        self.problems: Counter = Counter({k: 0 for k in PROBLEMS})
        self.empty_categories: list[str] = []
        self.missing_labels = 0
        self.files: list[Path] = []
        # (file index, file index, label, category, width at model height): the LMDB set's entry shape
        self.entries: list[tuple[int, int, str, str | None, int]] = []
        for cat in cats:
            self._add_category(cat)

    def _add_category(self, cat: Path) -> None:
        rows, problems = read_labels(cat / LABELS)
        self.problems.update(problems)
        self.missing_labels += problems["bad_label_row"]
        if not rows:
            self.empty_categories.append(cat.name)
        listed = {(cat / name).resolve() for name, _ in rows}
        self.problems["unlabelled_image"] += sum(
            1 for f in cat.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.resolve() not in listed
        )
        for name, text in rows:
            label = self.label_filter(text)
            f = cat / name
            w = self._width(f, label)
            k = len(self.files)
            self.files.append(f)
            self.entries.append((k, k, label, cat.name, w))

    def _width(self, f: Path, label: str) -> int:
        """The line's width at model height from the header alone; a guess from the label if unreadable
        (the line scores as empty anyway, the width only places it in a batch)."""
        try:
            w, h = open_image(f.read_bytes()).size
            return resized_width(h, w, self.spec)
        except (OSError, ImageDecodeError):
            self.problems["missing_file" if not f.is_file() else "unreadable"] += 1
            return guessed_width(label, self.spec)

    @property
    def path(self) -> Path:
        return self.root

    def image(self, i: int, color: bool = False) -> np.ndarray | None:
        """The decoded image (BGR with `color`, as peers that read colour want it), None if unreadable."""
        try:
            return decode_image(self.files[i].read_bytes(), color=color)
        except (OSError, ImageDecodeError):
            return None

    def source(self, i: int) -> dict:
        """Where line `i` came from, for the report's worst lines."""
        return {"set": str(self.root), "file": str(self.files[i])}

    def __getitem__(self, i: int) -> Item:
        _, _, label, scene, _ = self.entries[i]
        img = self.image(i)
        return Item(None if img is None else preprocess(img, self.spec), label, scene)

    def summary(self) -> dict:
        return {
            "categories": sorted({e[3] for e in self.entries}),
            "empty_categories": self.empty_categories,
            **{k: self.problems[k] for k in PROBLEMS},
        }
