"""Recognise lines with any artifact (PyTorch checkpoint or ONNX file) through one code path.

Both backends take the same preprocessed inputs (crnn.data.preprocess) and hand NumPy logits to the same
decoder (crnn.ctc); only the forward pass differs. Training's validation, pruning, export parity,
quantization and evaluation all score models with `score_dataset`, so their CERs are comparable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from crnn.charset import Charset
from crnn.ctc import Decoded, decode
from crnn.data.dataset import LmdbLineDataset, eval_batches
from crnn.data.preprocess import InputSpec, pad_batch
from crnn.metrics import SceneScores
from crnn.models.crnn import output_length


class Backend(Protocol):
    charset: Charset
    spec: InputSpec
    hstride: int

    def logits(self, batch: np.ndarray) -> np.ndarray: ...


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


class OnnxBackend:
    """An ONNX Runtime session over a file whose metadata holds charset, input spec and stride."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        from crnn.export import read_metadata

        meta = read_metadata(path)
        self.path = Path(path)
        self.charset = Charset.from_string(meta["charset"])
        self.spec = InputSpec(**json.loads(meta["input_spec"]))
        self.hstride = int(json.loads(meta["model_config"])["hstride"])
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


def recognize(backend: Backend, inputs: list[np.ndarray], method: str = "greedy") -> list[Decoded]:
    """Preprocessed (1, H, W) inputs -> decoded lines, in one padded batch."""
    batch, widths = pad_batch(inputs)
    lengths = np.array([output_length(int(w), backend.hstride) for w in widths])
    return decode(backend.logits(batch), backend.charset, lengths, method)


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
