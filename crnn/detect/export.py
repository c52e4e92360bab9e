"""Export the detector: `python -m crnn.detect.export experiment=det_zh_en` writes
runs/<name>/detect/export/detector.onnx (opset 17, dynamic height and width, the probability head only)
with its box settings, model config and lineage in the metadata, after a parity check against PyTorch on
synthetic validation pages: the probability maps within `parity_atol`, and the same boxes.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from crnn.cli import stage_errors
from crnn.detect.boxes import BoxConfig, det_input, find_boxes
from crnn.detect.data import validation_pages
from crnn.detect.detector import FORMAT, Detector
from crnn.detect.model import DBNet, count_macs
from crnn.detect.train import load_detector
from crnn.detect.train import out_dir as train_dir
from crnn.lineage import git_commit, sha256_file
from crnn.onnx_model import ExportError, set_metadata
from crnn.settings import RunConfig, load_run_config
from crnn.tracking import Tracker


def export_onnx(model: DBNet, dest: Path, opset: int, meta: dict[str, str]) -> None:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, 1, 128, 160),),
            str(dest),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["prob"],
            dynamic_axes={
                "image": {0: "batch", 2: "height", 3: "width"},
                "prob": {0: "batch", 2: "height", 3: "width"},
            },
            do_constant_folding=True,
        )
    m = onnx.load(str(dest))
    set_metadata(m, meta)
    onnx.checker.check_model(m)
    onnx.save(m, str(dest))


def parity(model: DBNet, path: Path, pages: list[np.ndarray], boxes: BoxConfig) -> dict:
    """Largest probability difference, and how many boxes the two runtimes share (IoU > 0.95, matched one
    to one): parity holds when they find the same boxes, no more and no fewer."""
    from crnn.detect.score import match

    det = Detector(path, threads=1, boxes=boxes)
    worst, torch_boxes, onnx_boxes, same = 0.0, 0, 0, 0
    for gray in pages:
        x, scale = det_input(gray, boxes)
        with torch.no_grad():
            ref = model(torch.from_numpy(x))[0, 0].numpy()
        got, _ = det.probability(gray)
        worst = max(worst, float(np.abs(ref - got).max()))
        a = [b.quad for b in find_boxes(ref, scale, gray.shape, boxes)]
        b = [b.quad for b in find_boxes(got, scale, gray.shape, boxes)]
        torch_boxes, onnx_boxes = torch_boxes + len(a), onnx_boxes + len(b)
        same += len(match(a, b, iou=0.95))
    return {
        "pages": len(pages),
        "max_abs_diff": worst,
        "boxes": torch_boxes,
        "onnx_boxes": onnx_boxes,
        "same_boxes": same,
    }


def run(cfg: RunConfig, source: str = "") -> dict:
    e = cfg.detect.export
    src = Path(source) if source else train_dir(cfg) / "best.pt"
    model, ck = load_detector(src)
    boxes = cfg.detect.boxes  # thresholds are the config's (tunable after training); they travel in the file
    if boxes.shrink_ratio != cfg.detect.targets.shrink_ratio:
        raise ExportError(
            f"detect.boxes.shrink_ratio {boxes.shrink_ratio} differs from the training targets' "
            f"{cfg.detect.targets.shrink_ratio}: boxes would not grow back to the lines' size"
        )
    dest_dir = cfg.stage_dir("detect") / "export"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "detector.onnx"
    pages = [p.image for p in validation_pages(cfg)[: e.parity_pages]]
    tracker = Tracker(cfg.mlflow)
    parent = ck["lineage"].get("mlflow_run_id", "")
    with tracker.run("detect.export", {"stage": "detect.export", "parent_run_id": parent}):
        lineage = {
            "stage": "detect.export",
            "source": str(src),
            "source_sha256": sha256_file(src),
            "step": ck["lineage"].get("step"),
            "init_from": ck["lineage"].get("init_from"),  # a branch of another run: where it started
            "git_commit": git_commit(),
            "parent_run_id": parent,
            "mlflow_run_id": tracker.run_id or "",
            "opset": e.opset,
        }
        meta = {
            "format": FORMAT,
            "boxes": json.dumps(asdict(boxes)),
            "model_config": json.dumps(ck["model_config"]),
            "lineage": json.dumps(lineage),
        }
        fd, tmp_name = tempfile.mkstemp(prefix=".detector.", suffix=".onnx", dir=dest_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            export_onnx(model, tmp, e.opset, meta)
            par = parity(model, tmp, pages, boxes)
            if (
                par["max_abs_diff"] > e.parity_atol
                or not par["same_boxes"] == par["boxes"] == par["onnx_boxes"]
            ):
                raise ExportError(f"detector ONNX parity failed: {par}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        report = {
            "source": str(src),
            "onnx": str(dest),
            "size_bytes": dest.stat().st_size,
            "parity": par,
            "model": ck["model_config"],
            "params": sum(p.numel() for p in model.parameters()),
            "macs_640": count_macs(model, 640, 640),
            "step": ck["lineage"].get("step"),
            "init_from": ck["lineage"].get("init_from"),
        }
        tracker.log_metrics({"parity_max_abs_diff": par["max_abs_diff"]})
        (dest_dir / "export_report.json").write_text(json.dumps(report, indent=2))
        tracker.log_artifact(dest_dir / "export_report.json")
    return report


@hydra.main(config_path="../../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        report = run(load_run_config(dcfg))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
