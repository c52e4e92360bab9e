"""Rebuild a PyTorch checkpoint from an FP32 ONNX file exported by this toolkit.

    .venv/bin/python scripts/checkpoint_from_onnx.py models/crnn_zh_en.onnx models/snapshots/crnn_zh_en.pt

Why: a model whose training checkpoint is gone (the v1 bundled model's run lived on a machine that is no
longer here) can still be re-exported by today's `make export`, resumed or fine-tuned. The ONNX file holds
every weight: convolutions come out with BatchNorm already folded in (the checkpoint gets an identity
BatchNorm carrying the folded bias, which fine-tuning may move again), the BiLSTM's gates are reordered
from ONNX's (i, o, f, c) to PyTorch's (i, f, c, o), and the classifier's MatMul is transposed back. The
result is checked against the ONNX file on rendered inputs before it is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from crnn.charset import Charset
from crnn.data.preprocess import InputSpec
from crnn.lineage import git_commit, sha256_file
from crnn.models.checkpoint import Checkpoint, save_checkpoint
from crnn.models.crnn import CRNN, ConvBNReLU, ModelConfig
from crnn.onnx_model import OnnxBackend, read_metadata

ONNX_TO_TORCH_GATES = [0, 2, 3, 1]  # ONNX (i, o, f, c) blocks -> PyTorch (i, f, g=c, o)


def _gates(w: np.ndarray, hidden: int) -> np.ndarray:
    blocks = [w[k * hidden : (k + 1) * hidden] for k in range(4)]
    return np.concatenate([blocks[k] for k in ONNX_TO_TORCH_GATES])


def _load_lstm(model: CRNN, nodes: list, init: dict) -> None:
    h = model.cfg.lstm_hidden
    for layer, node in enumerate(nodes):
        w, r, b = (init[n] for n in node.input[1:4])
        for d, suffix in enumerate(("", "_reverse")):
            sd = {
                f"weight_ih_l{layer}{suffix}": _gates(w[d], h),
                f"weight_hh_l{layer}{suffix}": _gates(r[d], h),
                f"bias_ih_l{layer}{suffix}": _gates(b[d][: 4 * h], h),
                f"bias_hh_l{layer}{suffix}": _gates(b[d][4 * h :], h),
            }
            for name, value in sd.items():
                getattr(model.rnn, name).data.copy_(torch.from_numpy(value.copy()))


@torch.no_grad()
def model_from_onnx(path: Path) -> tuple[CRNN, dict[str, str]]:
    meta = read_metadata(path)
    cfg = ModelConfig(**json.loads(meta["model_config"]))
    model = CRNN(cfg).eval()
    graph = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    blocks = [m for m in model.features.modules() if isinstance(m, ConvBNReLU)]  # in graph order
    if len(convs) != len(blocks):
        raise ValueError(f"{path}: {len(convs)} Conv nodes for {len(blocks)} conv blocks")
    for block, node in zip(blocks, convs):
        conv, bn = block[0], block[1]
        conv.weight.copy_(torch.from_numpy(init[node.input[1]]))
        bn.weight.fill_(1.0)
        bn.bias.copy_(torch.from_numpy(init[node.input[2]]))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # sqrt(var + eps) == 1: the identity
    _load_lstm(model, [n for n in graph.node if n.op_type == "LSTM"], init)
    matmul = next(n for n in graph.node if n.op_type == "MatMul" and n.input[1] in init)
    model.classifier.weight.copy_(torch.from_numpy(init[matmul.input[1]].T.copy()))
    model.classifier.bias.copy_(torch.from_numpy(init["classifier.bias"]))
    return model, meta


def check_against_onnx(model: CRNN, path: Path, spec: InputSpec) -> float:
    """Max |logit difference| against the ONNX file on random lines at several widths, batch 1."""
    backend = OnnxBackend(path)
    rng = np.random.default_rng(0)
    worst = 0.0
    for w in (16, 97, 320, 800):
        x = rng.uniform(-0.5, 0.5, (1, 1, spec.height, w)).astype(np.float32)
        ref = backend.logits(x, np.array([w]))
        with torch.no_grad():
            got = model(torch.from_numpy(x), torch.tensor([w])).numpy()
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path, help="an FP32 ONNX file exported by crnn.export")
    ap.add_argument("out", type=Path, help="the checkpoint to write (.pt)")
    ap.add_argument("--atol", type=float, default=1e-3, help="largest logit difference accepted")
    args = ap.parse_args()
    model, meta = model_from_onnx(args.onnx)
    spec = InputSpec(**json.loads(meta["input_spec"]))
    gap = check_against_onnx(model, args.onnx, spec)
    if gap > args.atol:
        raise SystemExit(f"error: rebuilt model differs from {args.onnx} by {gap:.2e} (> {args.atol})")
    source = json.loads(meta["lineage"])
    lineage = {
        "stage": "checkpoint_from_onnx",
        "source": str(args.onnx),
        "source_sha256": sha256_file(args.onnx),
        "data_fingerprint": source.get("data_fingerprint", ""),
        "mlflow_run_id": source.get("mlflow_run_id", ""),
        "onnx_lineage": source,
        "git_commit": git_commit(),
    }
    ck = Checkpoint(model.cfg, model.state_dict(), Charset.from_string(meta["charset"]), spec, lineage)
    save_checkpoint(ck, args.out)
    print(f"{args.out}: rebuilt from {args.onnx}; max |logit diff| vs the ONNX file {gap:.1e}")


if __name__ == "__main__":
    main()
