"""Export stage: fused FP32 ONNX with everything a server needs in its metadata, checked against PyTorch.

    python -m crnn.export experiment=demo            # runs/demo/export/model.onnx + report.json

Opset 17, dynamic batch and width, `metadata_props` holding the charset, input spec, model config and
lineage (DESIGN.md), `onnx.checker` on the result, and a parity check on validation lines resized to every
width in `export.parity_widths` (16 to 2000 px): max |logit difference| below `export.parity_atol` and
identical greedy decodes (save where two classes tie within that tolerance). The file is written under a
temporary name and renamed only after every check passed, so a failed export leaves nothing behind.

We use the TorchScript-based exporter (`dynamo=False`): it maps nn.LSTM to the ONNX LSTM op, which ONNX
Runtime runs as one fused kernel and which its dynamic quantizer knows (DynamicQuantizeLSTM).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import cv2
import hydra
import numpy as np
import onnx
import torch
from omegaconf import DictConfig

from crnn.charset import Charset
from crnn.cli import stage_errors
from crnn.ctc import decode
from crnn.data.lmdb_io import LmdbReader
from crnn.data.preprocess import InputSpec, pad_batch, preprocess
from crnn.inference import TorchBackend
from crnn.models.checkpoint import Checkpoint, git_commit, load_checkpoint, sha256_file
from crnn.models.crnn import CRNN
from crnn.models.fuse import fuse_model
from crnn.models.geometry import output_length
from crnn.onnx_model import FORMAT, WIDTHS_INPUT, ExportError, OnnxBackend, read_metadata, set_metadata  # noqa: F401
from crnn.predictor import Predictor, batch_invariance_gap
from crnn.settings import ExportConfig, RunConfig, load_run_config
from crnn.timing import measure
from crnn.tracking import Tracker

INVARIANCE_ATOL = 1e-4  # a line read alone vs padded in a batch: float rounding only


def metadata_for(ck: Checkpoint, lineage: dict) -> dict[str, str]:
    return {
        "format": FORMAT,
        "charset": ck.charset.as_string(),
        "input_spec": json.dumps(ck.input_spec.as_dict()),
        "model_config": json.dumps(ck.model_config.as_dict()),
        "lineage": json.dumps(lineage),
        "decoder": "ctc-greedy, blank=0, logits (N, T, C)",
    }


def export_onnx(model: CRNN, dest: Path, opset: int, meta: dict[str, str]) -> None:
    """Two inputs, `image` (N, 1, H, W) right-padded and `widths` (N,) int64, the lines' true widths in
    pixels: the conv columns past a line are masked and its LSTM gets `sequence_lens`, so a line decodes
    the same alone or in any batch (crnn.predictor)."""
    x = torch.zeros(2, 1, model.cfg.height, 128)
    widths = torch.tensor([128, 96], dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (x, widths),
            str(dest),
            dynamo=False,
            opset_version=opset,
            input_names=["image", WIDTHS_INPUT],
            output_names=["logits"],
            dynamic_axes={
                "image": {0: "batch", 3: "width"},
                WIDTHS_INPUT: {0: "batch"},
                "logits": {0: "batch", 1: "frames"},
            },
            do_constant_folding=True,
        )
    m = onnx.load(str(dest))
    set_metadata(m, meta)
    onnx.checker.check_model(m)
    onnx.save(m, str(dest))


def parity_inputs(val_paths: list[str], spec: InputSpec, n: int) -> list[tuple[np.ndarray, str]]:
    """Up to `n` validation line images (grayscale) with labels, taken evenly through the set."""
    out = []
    for path in val_paths:
        r = LmdbReader(path)
        step = max(1, len(r) // n)
        for i in range(1, len(r) + 1, step):
            rec = r.read(i)
            if rec.image is not None:
                out.append((rec.image, rec.label))
            if len(out) >= n:
                return out
    return out


def at_width(img: np.ndarray, spec: InputSpec, width: int) -> np.ndarray:
    """The model input of `img` stretched to exactly `width` px (the widths a parity check must cover)."""
    h = spec.height
    resized = cv2.resize(
        img, (width, h), interpolation=cv2.INTER_AREA if img.shape[1] > width else cv2.INTER_LINEAR
    )
    x = preprocess(resized, InputSpec(**{**spec.as_dict(), "min_width": 1, "max_width": max(width, 1)}))
    assert x.shape[-1] == width
    return x


@torch.no_grad()
def parity(
    reference: CRNN,
    onnx_path: Path,
    images: list[np.ndarray],
    spec: InputSpec,
    charset: Charset,
    widths: list[int],
    batch_size: int = 16,
    tie: float = 1e-3,
) -> dict:
    """Max |logit diff| and decode agreement of ONNX Runtime against PyTorch at each width, both read
    through the predictor's own batch call (same padding, widths and decoder); then the lines at their own
    widths in one padded batch ("mixed"), where masking and `sequence_lens` must do their work."""
    torch_reader = Predictor(TorchBackend(reference, charset, spec))
    onnx_reader = Predictor(OnnxBackend(onnx_path))
    per_width: dict = {}
    for w in widths:
        per_width[w] = compare_batches(
            torch_reader, onnx_reader, [at_width(im, spec, w) for im in images], batch_size, tie
        )
    mixed = [preprocess(im, spec) for im in images]
    per_width["mixed"] = compare_batches(torch_reader, onnx_reader, mixed, len(mixed), tie)
    per_width["mixed"]["batch_invariance_max_abs_diff"] = batch_invariance_gap(onnx_reader.backend, mixed)
    return per_width


def compare_batches(
    a: Predictor, b: Predictor, xs: list[np.ndarray], batch_size: int, tie: float = 1e-3
) -> dict:
    """Worst |logit diff| over each line's own frames, how many lines decode alike, and how many decode
    differently only through ties: every frame whose best class differs has two classes within `tie` of
    each other in `a`'s logits, so a difference far below the tolerance picks either. A model with
    look-alike classes meets such ties on validation lines squeezed to 64 px (v3 on GB2312: 1 line of 64,
    its logits 3.7e-5 apart); any other disagreement still fails the export."""
    worst, same, ties = 0.0, 0, 0
    for k in range(0, len(xs), batch_size):
        chunk = xs[k : k + batch_size]
        batch, widths = pad_batch(chunk)
        la, lb = a.backend.logits(batch, widths), b.backend.logits(batch, widths)
        lengths = np.array([output_length(int(w), a.backend.hstride) for w in widths])
        for i, t in enumerate(lengths):
            worst = max(worst, float(np.abs(la[i, :t] - lb[i, :t]).max()))
        da, db = decode(la, a.charset, lengths), decode(lb, b.charset, lengths)
        for i, (x, y) in enumerate(zip(da, db)):
            if x.text == y.text:
                same += 1
            else:
                ties += only_ties(la[i, : lengths[i]], lb[i, : lengths[i]], tie)
    return {"max_abs_diff": worst, "same_decodes": same, "tie_flips": ties, "lines": len(xs)}


def only_ties(la: np.ndarray, lb: np.ndarray, tie: float) -> bool:
    """True when every frame whose best class differs between the two (T, C) logits is a tie in `la`."""
    ia, ib = la.argmax(-1), lb.argmax(-1)
    frames = np.nonzero(ia != ib)[0]
    margins = la[frames, ia[frames]] - la[frames, ib[frames]]
    return bool(len(frames)) and bool((margins <= tie).all())


@torch.no_grad()
def fusion_gap(model: CRNN, fused: CRNN, images: list[np.ndarray], spec: InputSpec) -> float:
    batch, widths = pad_batch([preprocess(img, spec) for img in images])
    x, w = torch.from_numpy(batch), torch.from_numpy(widths)
    return float((model(x, w) - fused(x, w)).abs().max())


def default_source(cfg: RunConfig) -> Path:
    """The pruned model when it was pruned from the current trained checkpoint, else the trained one.

    Picked by lineage, not by which file exists: after a retrain, an old pruned.pt would otherwise ship
    a model that no longer matches the experiment. A pruned file from another checkpoint is refused."""
    trained = cfg.stage_dir("train") / "best.pt"
    pruned = cfg.stage_dir("prune") / "pruned.pt"
    if not pruned.is_file():
        return trained
    if not trained.is_file():
        return pruned
    came_from = load_checkpoint(pruned).lineage.get("source_sha256", "")
    current = sha256_file(trained)
    if came_from != current:
        raise ExportError(
            f"{pruned} was pruned from a checkpoint with sha256 {came_from[:12] or '(unrecorded)'}..., but "
            f"{trained} is now {current[:12]}...: run `make prune` again, or export the trained model with "
            f"export.source={trained}"
        )
    return pruned


def run(cfg: RunConfig, e: ExportConfig) -> dict:
    """Export the checkpoint to runs/<name>/export/model.onnx after fusion, checks and parity."""
    if e.opset < 17:
        raise ExportError(f"export.opset must be 17 or newer, got {e.opset}")
    source = Path(e.source) if e.source else default_source(cfg)
    ck = load_checkpoint(source)
    model = ck.build_model().eval()
    out_dir = cfg.stage_dir("export")
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / "model.onnx"
    images_labels = parity_inputs(cfg.data.val_paths(), ck.input_spec, e.parity_lines)
    if not images_labels:
        raise ExportError(f"no readable validation line in {cfg.data.val_paths()} for the parity check")
    images = [im for im, _ in images_labels]
    fused = fuse_model(model) if e.fuse else model
    gap = fusion_gap(model, fused, images, ck.input_spec) if e.fuse else 0.0
    # Folding BN into the conv is exact in algebra; in float32 its rounding grows with the logits'
    # magnitude (2.7e-4 on the zh_en model), while a wrong fold differs by whole units: the ONNX parity
    # tolerance separates the two.
    if gap > e.parity_atol:
        raise ExportError(
            f"fused model differs from the unfused one by {gap:.2e} (> export.parity_atol "
            f"{e.parity_atol}) on validation lines"
        )
    tracker = Tracker(cfg.mlflow)
    input_sha = sha256_file(source)
    parent = ck.lineage.get("mlflow_run_id", "")
    with tracker.run(
        "export",
        tags={
            "stage": "export",
            "parent_run_id": parent,
            "input_sha256": input_sha,
            "input_artifact": str(source),
            "git_commit": git_commit(),
        },
    ):
        lineage = {
            "stage": "export",
            "source": str(source),
            "source_sha256": input_sha,
            "data_fingerprint": ck.lineage.get("data_fingerprint", ""),
            "git_commit": git_commit(),
            "mlflow_run_id": tracker.run_id or "",
            "parent_run_id": parent,
            "fused": e.fuse,
            "opset": e.opset,
        }
        fd, tmp_name = tempfile.mkstemp(prefix=".model.", suffix=".onnx", dir=out_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            export_onnx(fused, tmp, e.opset, metadata_for(ck, lineage))
            par = parity(model, tmp, images, ck.input_spec, ck.charset, e.parity_widths, tie=e.parity_atol)
            bad = {
                w: v
                for w, v in par.items()
                if v["max_abs_diff"] > e.parity_atol
                or v["same_decodes"] + v["tie_flips"] != v["lines"]
                or v.get("batch_invariance_max_abs_diff", 0.0) > INVARIANCE_ATOL
            }
            if bad:
                raise ExportError(f"ONNX parity failed at widths {sorted(bad)}: {bad}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        speed = eager_vs_onnx(model, dest, ck.input_spec)
        report = {
            "source": str(source),
            "source_sha256": input_sha,
            "onnx": str(dest),
            "size_bytes": dest.stat().st_size,
            "opset": e.opset,
            "fused": e.fuse,
            "fusion_max_abs_diff": gap,
            "parity": par,
            "latency_ms_batch1_w320": speed,
            "onnx_vs_eager_speedup": speed["eager"]["p50"] / speed["onnx"]["p50"],
            "sha256": sha256_file(dest),
        }
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
        tracker.log_params({"export": {"opset": e.opset, "fuse": e.fuse, "source": str(source)}})
        tracker.log_metrics(
            {
                "size_bytes": report["size_bytes"],
                "fusion_max_abs_diff": gap,
                "parity_max_abs_diff": max(v["max_abs_diff"] for v in par.values()),
                "eager_ms_p50": speed["eager"]["p50"],
                "onnx_ms_p50": speed["onnx"]["p50"],
            }
        )
        tracker.log_artifact(dest, "model")
        tracker.log_artifact(out_dir / "report.json")
    worst = max(v["max_abs_diff"] for v in par.values())
    print(
        f"[export] {dest} ({report['size_bytes'] / 1e6:.2f} MB, opset {e.opset}, fused={e.fuse}); fusion gap "
        f"{gap:.1e}; parity max |diff| {worst:.1e} over widths {list(par)}, decodes identical; a line alone "
        f"vs in a batch: max |diff| {par['mixed']['batch_invariance_max_abs_diff']:.1e}"
    )
    print(
        f"[export] batch 1, width 320: PyTorch eager {speed['eager']['p50']:.2f} ms, ONNX Runtime "
        f"{speed['onnx']['p50']:.2f} ms ({report['onnx_vs_eager_speedup']:.2f}x)"
    )
    return report


@torch.no_grad()
def eager_vs_onnx(model: CRNN, onnx_path: Path, spec: InputSpec, width: int = 320, reps: int = 50) -> dict:
    """Unfused PyTorch eager (what training produced) against the exported file, same input, one run."""
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 1, spec.height, width)).astype(np.float32)
    w = np.array([width], dtype=np.int64)
    backend = OnnxBackend(onnx_path)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    return {
        "eager": measure(lambda: model(xt, wt), reps),
        "onnx": measure(lambda: backend.logits(x, w), reps),
    }


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        cfg = load_run_config(dcfg)
        run(cfg, cfg.export)


if __name__ == "__main__":
    main()
