"""Recognise lines with any artifact (PyTorch checkpoint or ONNX file) through one code path.

Both backends take the same preprocessed inputs (crnn.data.preprocess) and hand NumPy logits to the same
decoder (crnn.ctc); only the forward pass differs. Training's validation, pruning, export parity,
quantization and evaluation all score models with `score_dataset`, so their CERs are comparable.
"""

from __future__ import annotations

import numpy as np
import torch

from crnn.charset import Charset
from crnn.data.dataset import LmdbLineDataset, eval_batches
from crnn.data.preprocess import InputSpec
from crnn.metrics import SceneScores
from crnn.onnx_model import Backend, OnnxBackend, recognize  # noqa: F401  (one home, re-exported)


class TorchBackend:
    def __init__(
        self, model: torch.nn.Module, charset: Charset, spec: InputSpec, device: torch.device | str = "cpu"
    ) -> None:
        self.model = model.eval()
        self.charset, self.spec = charset, spec
        self.hstride = model.cfg.hstride
        self.device = torch.device(device)

    @torch.no_grad()
    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()


def score_dataset(
    backend: Backend,
    dataset: LmdbLineDataset,
    batch_size: int = 64,
    max_lines: int = 0,
    predictions: dict[int, str] | None = None,
) -> tuple[SceneScores, dict]:
    """CER per scene type; an unreadable line scores as an empty prediction (never a smaller denominator).
    Pass a dict as `predictions` to receive each line's text by dataset index."""
    scores = SceneScores()
    skipped = {"corrupt": 0}
    widths = dataset.widths()
    keep = None
    if max_lines and max_lines < len(widths):  # a seeded random subset: every scene keeps its share
        keep = set(np.random.default_rng(0).choice(len(widths), max_lines, replace=False).tolist())
    for idx in eval_batches(widths, batch_size):
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
            for (i, it), d in zip(good, recognize(backend, [it.x for _, it in good])):
                scores.add(it.label, d.text, it.scene)
                if predictions is not None:
                    predictions[i] = d.text
    return scores, skipped
