"""The PyTorch backend of `crnn.predictor`.

Both backends (this one and `crnn.onnx_model.OnnxBackend`) take the same padded batch and true widths and
return NumPy logits to the same decoder; only the forward pass differs.
"""

from __future__ import annotations

import numpy as np
import torch

from crnn.charset import Charset
from crnn.data.preprocess import InputSpec
from crnn.onnx_model import OnnxBackend  # noqa: F401  (re-exported: stages pick a backend here)
from crnn.scoring import score_dataset  # noqa: F401  (re-exported)


class TorchBackend:
    takes_widths = True

    def __init__(
        self, model: torch.nn.Module, charset: Charset, spec: InputSpec, device: torch.device | str = "cpu"
    ) -> None:
        self.model = model.eval()
        self.charset, self.spec = charset, spec
        self.hstride = model.cfg.hstride
        self.device = torch.device(device)

    @torch.no_grad()
    def logits(self, batch: np.ndarray, widths: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        w = torch.as_tensor(np.asarray(widths, dtype=np.int64), device=self.device)
        return self.model(x, w).float().cpu().numpy()
