"""ONNX models without PyTorch: the file's metadata and an ONNX Runtime backend for `crnn.predictor`.

The serving path imports only this (plus the predictor, preprocessing and the CTC decoder), so a server
process never loads PyTorch; the export, quantize and eval stages use the same pieces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crnn.charset import Charset
from crnn.cli import StageError
from crnn.data.preprocess import InputSpec

if TYPE_CHECKING:
    import onnx

FORMAT = "crnn-toolkit/onnx/v1"
WIDTHS_INPUT = "widths"  # (N,) int64: each line's true width in pixels inside the padded batch
REQUIRED_KEYS = ("format", "charset", "input_spec", "model_config", "lineage")


class ExportError(StageError):
    """An ONNX file that is missing, unreadable, foreign, or failed its checks."""


def onnx_metadata(path: str | Path, what: str = "ONNX file") -> dict[str, str]:
    """Any ONNX file's metadata_props; a clear error for a missing or unreadable file (the recognizer's and
    the detector's readers check their own format on top)."""
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"{what} {p} does not exist")
    import onnx  # here, not at the top: training imports this module and runs where onnx is not installed

    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise ExportError(f"{p} is not a readable ONNX file ({type(e).__name__})") from None
    return {m.key: m.value for m in model.metadata_props}


def read_metadata(path: str | Path) -> dict[str, str]:
    """The toolkit's metadata of an ONNX file; a clear error for a missing, truncated or foreign file."""
    p = Path(path)
    meta = onnx_metadata(p)
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing or meta.get("format") != FORMAT:
        raise ExportError(
            f"{p} is not a crnn-toolkit model (metadata lacks {missing or ['format=' + FORMAT]})"
        )
    return meta


def set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)


class OnnxBackend:
    """An ONNX Runtime session over a file whose metadata holds charset, input spec and stride."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

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
        names = [i.name for i in self.session.get_inputs()]
        self.input_name = names[0]
        # Files exported before the width input existed read their padding; the predictor batches them
        # by exact width only.
        self.takes_widths = WIDTHS_INPUT in names

    def logits(self, batch: np.ndarray, widths: np.ndarray) -> np.ndarray:
        feed = {self.input_name: batch}
        if self.takes_widths:
            feed[WIDTHS_INPUT] = np.asarray(widths, dtype=np.int64)
        return self.session.run(None, feed)[0]
