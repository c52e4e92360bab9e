"""ONNX models without PyTorch: the file's metadata, an ONNX Runtime backend, and line recognition.

The serving path imports only this (plus preprocessing and the CTC decoder), so a server process never
loads PyTorch; the export, quantize and eval stages use the same pieces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from crnn.charset import Charset
from crnn.cli import StageError
from crnn.ctc import Decoded, decode
from crnn.data.preprocess import InputSpec, pad_batch
from crnn.models.geometry import output_length

FORMAT = "crnn-toolkit/onnx/v1"
REQUIRED_KEYS = ("format", "charset", "input_spec", "model_config", "lineage")


class ExportError(StageError):
    """An ONNX file that is missing, unreadable, foreign, or failed its checks."""


def read_metadata(path: str | Path) -> dict[str, str]:
    """The toolkit's metadata of an ONNX file; a clear error for a missing, truncated or foreign file."""
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"ONNX file {p} does not exist")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise ExportError(f"{p} is not a readable ONNX file ({type(e).__name__})") from None
    meta = {m.key: m.value for m in model.metadata_props}
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


class Backend(Protocol):
    charset: Charset
    spec: InputSpec
    hstride: int

    def logits(self, batch: np.ndarray) -> np.ndarray: ...


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
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


def recognize(backend: Backend, inputs: list[np.ndarray], method: str = "greedy") -> list[Decoded]:
    """Preprocessed (1, H, W) inputs -> decoded lines, in one padded batch."""
    batch, widths = pad_batch(inputs)
    lengths = np.array([output_length(int(w), backend.hstride) for w in widths])
    return decode(backend.logits(batch), backend.charset, lengths, method)
