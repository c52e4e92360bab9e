"""Recognition metrics, written once for training's validation and the evaluation stage.

CER is the sum of edit distances over the sum of label lengths (not a mean of per-line rates, which would
let short lines dominate); an empty label with a non-empty prediction counts its insertions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import editdistance


@dataclass
class TextScore:
    n: int = 0
    edits: int = 0
    chars: int = 0
    correct: int = 0
    ned_sum: float = 0.0  # sum of per-line normalised edit distance

    def add(self, label: str, pred: str) -> None:
        d = editdistance.eval(label, pred)
        self.n += 1
        self.edits += d
        self.chars += len(label)
        self.correct += int(label == pred)
        self.ned_sum += d / max(len(label), len(pred), 1)

    def merge(self, other: TextScore) -> None:
        self.n += other.n
        self.edits += other.edits
        self.chars += other.chars
        self.correct += other.correct
        self.ned_sum += other.ned_sum

    @property
    def cer(self) -> float:
        if self.chars == 0:
            return 0.0 if self.edits == 0 else 1.0
        return self.edits / self.chars

    @property
    def acc(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def ned(self) -> float:
        return self.ned_sum / self.n if self.n else 0.0

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "chars": self.chars,
            "edits": self.edits,
            "cer": self.cer,
            "acc": self.acc,
            "ned": self.ned,
        }


class SceneScores:
    """Scores per scene type plus the overall one. `normalize(text, scene)` (crnn.textnorm.Normalizer)
    is applied to label and prediction alike before they are compared."""

    def __init__(self, normalize: Callable[[str, str | None], str] | None = None) -> None:
        self.by_scene: dict[str, TextScore] = defaultdict(TextScore)
        self.overall = TextScore()
        self.normalize = normalize

    def add(self, label: str, pred: str, scene: str | None) -> None:
        if self.normalize is not None:
            label, pred = self.normalize(label, scene), self.normalize(pred, scene)
        self.by_scene[scene or "unknown"].add(label, pred)
        self.overall.add(label, pred)

    def merge(self, other: SceneScores) -> None:
        """Add another test set's counts (sums of edits and characters, so the CER stays a true ratio)."""
        for scene, sc in other.by_scene.items():
            self.by_scene[scene].merge(sc)
        self.overall.merge(other.overall)

    def as_dict(self) -> dict:
        return {
            "scenes": {s: v.as_dict() for s, v in sorted(self.by_scene.items())},
            "overall": self.overall.as_dict(),
        }
