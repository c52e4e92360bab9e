"""The alphabet: characters <-> class ids, and what happens to characters outside it.

Class 0 is the CTC blank; character i of the alphabet is class i + 1. Characters outside the alphabet are
never dropped silently: `LabelFilter` applies the configured policy and counts every sample and character
it touched, and those counts end up in the stage's summary and MLflow run.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

CHARSET_DIR = Path(__file__).resolve().parents[1] / "configs" / "charsets"
OOV_POLICIES = ("skip", "drop", "keep")


class CharsetError(ValueError):
    """An alphabet file or a label that the alphabet cannot represent."""


@dataclass(frozen=True)
class Charset:
    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.chars:
            raise CharsetError("an alphabet needs at least one character")
        if len(set(self.chars)) != len(self.chars):
            dup = [c for c, n in Counter(self.chars).items() if n > 1]
            raise CharsetError(f"alphabet has duplicate characters: {dup[:10]!r}")
        bad = [c for c in self.chars if len(c) != 1]
        if bad:
            raise CharsetError(f"alphabet entries must be single characters, got {bad[:5]!r}")
        object.__setattr__(self, "_index", {c: i + 1 for i, c in enumerate(self.chars)})

    @property
    def num_classes(self) -> int:
        """Characters plus the CTC blank."""
        return len(self.chars) + 1

    def __contains__(self, ch: str) -> bool:
        return ch in self._index  # type: ignore[attr-defined]

    def oov(self, text: str) -> list[str]:
        """Characters of `text` that the alphabet lacks, in order of appearance."""
        return [c for c in text if c not in self._index]  # type: ignore[attr-defined]

    def encode(self, text: str) -> list[int]:
        """Class ids of `text`; raises if any character is outside the alphabet (apply a policy first)."""
        index = self._index  # type: ignore[attr-defined]
        try:
            return [index[c] for c in text]
        except KeyError as e:
            raise CharsetError(f"character {e.args[0]!r} of label {text!r} is not in the alphabet") from None

    def decode(self, ids: list[int]) -> str:
        """Text of already-collapsed class ids (blanks are ignored)."""
        return "".join(self.chars[i - 1] for i in ids if 0 < i <= len(self.chars))

    def fingerprint(self) -> str:
        return hashlib.sha256("".join(self.chars).encode("utf-8")).hexdigest()[:16]

    def as_string(self) -> str:
        return "".join(self.chars)

    @classmethod
    def from_string(cls, s: str) -> Charset:
        return cls(tuple(s))

    @classmethod
    def from_file(cls, path: str | Path) -> Charset:
        """One character per line; only the newline is stripped, so a line holding a space is the space."""
        p = Path(path)
        if not p.is_file():
            raise CharsetError(f"alphabet file {p} does not exist")
        lines = p.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        chars = [line.rstrip("\r") for line in lines]
        empty = [i + 1 for i, c in enumerate(chars) if c == ""]
        if empty:
            raise CharsetError(f"{p}: empty line(s) {empty[:5]}; put one character on each line")
        try:
            return cls(tuple(chars))
        except CharsetError as e:
            raise CharsetError(f"{p}: {e}") from None


def load_charset(name_or_path: str) -> Charset:
    """A committed alphabet by name (`zh_en`, `digits`) or any alphabet file by path."""
    p = Path(name_or_path)
    if p.suffix or p.is_file() or "/" in name_or_path:
        return Charset.from_file(p)
    named = CHARSET_DIR / f"{name_or_path}.txt"
    if not named.is_file():
        known = sorted(f.stem for f in CHARSET_DIR.glob("*.txt"))
        raise CharsetError(f"unknown alphabet {name_or_path!r}; known: {known}, or give a file path")
    return Charset.from_file(named)


@dataclass
class LabelStats:
    """What the out-of-alphabet policy did, for the summary and MLflow."""

    seen: int = 0
    kept: int = 0
    skipped_oov: int = 0
    dropped_chars: int = 0
    emptied: int = 0
    oov_chars: Counter = field(default_factory=Counter)

    def merge(self, other: LabelStats) -> None:
        self.seen += other.seen
        self.kept += other.kept
        self.skipped_oov += other.skipped_oov
        self.dropped_chars += other.dropped_chars
        self.emptied += other.emptied
        self.oov_chars.update(other.oov_chars)

    def as_dict(self) -> dict:
        return {
            "seen": self.seen,
            "kept": self.kept,
            "skipped_oov": self.skipped_oov,
            "dropped_chars": self.dropped_chars,
            "emptied": self.emptied,
            "top_oov_chars": "".join(c for c, _ in self.oov_chars.most_common(20)),
        }


class LabelFilter:
    """Applies the out-of-alphabet policy: `skip` the sample, or `drop` the unknown characters (training);
    `keep` the label as it is (evaluation: a character the model cannot emit is an error it makes, and
    leaving it out would shrink the denominator)."""

    def __init__(self, charset: Charset, policy: str = "skip") -> None:
        if policy not in OOV_POLICIES:
            raise CharsetError(f"oov policy must be one of {OOV_POLICIES}, got {policy!r}")
        self.charset = charset
        self.policy = policy
        self.stats = LabelStats()

    def __call__(self, label: str) -> str | None:
        """The label to train on, or None when the sample must be skipped."""
        self.stats.seen += 1
        bad = self.charset.oov(label)
        if not bad:
            self.stats.kept += 1
            return label
        self.stats.oov_chars.update(bad)
        if self.policy == "keep":
            self.stats.kept += 1
            return label
        if self.policy == "skip":
            self.stats.skipped_oov += 1
            return None
        cleaned = "".join(c for c in label if c in self.charset)
        self.stats.dropped_chars += len(bad)
        if not cleaned:
            self.stats.emptied += 1
            return None
        self.stats.kept += 1
        return cleaned
