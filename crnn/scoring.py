"""Scoring a line set with any predictor: CER per scene type, shared by training's validation, pruning,
export, quantization and evaluation, so their CERs are comparable. Imports no PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from crnn.data.folder import FolderLineDataset
from crnn.data.lines import LmdbLineDataset
from crnn.metrics import SceneScores
from crnn.predictor import Backend, Predictor


def score_dataset(
    predictor: Predictor | Backend,
    dataset: LmdbLineDataset | FolderLineDataset,
    batch_size: int = 64,
    max_lines: int = 0,
    predictions: dict[int, str] | None = None,
    normalize: Callable[[str, str | None], str] | None = None,
) -> tuple[SceneScores, dict]:
    """CER per scene type; an unreadable line scores as an empty prediction (never a smaller denominator).
    Pass a dict as `predictions` to receive each line's text by dataset index; `normalize(text, scene)`
    is applied to label and prediction before scoring (crnn.textnorm)."""
    if not isinstance(predictor, Predictor):
        predictor = Predictor(predictor)
    # the predictor's own grouping (width buckets, exact widths for width-blind models, the logits
    # budget): over the widths the set records to read lines in order, then over the true input widths
    predictor = replace(predictor, max_batch=batch_size)
    scores = SceneScores(normalize)
    skipped = {"corrupt": 0}
    widths = dataset.widths()
    keep = None
    if max_lines and max_lines < len(widths):  # a seeded random subset: every scene keeps its share
        keep = set(np.random.default_rng(0).choice(len(widths), max_lines, replace=False).tolist())
    for idx in predictor.batches(widths):
        if keep is not None:
            idx = [i for i in idx if i in keep]
        items = [(i, dataset[i]) for i in idx]
        good = []
        for i, it in items:
            if it.x is None:
                skipped["corrupt"] += 1
                scores.add(it.label, "", it.scene)
            else:
                good.append((i, it))
        if good:
            for (i, it), d in zip(good, predictor.read_inputs([it.x for _, it in good])):
                scores.add(it.label, d.text, it.scene)
                if predictions is not None:
                    predictions[i] = d.text
    return scores, skipped
