"""Quantize the detector: `python -m crnn.detect.quantize experiment=det_zh_en`.

Static QDQ INT8 (per-channel weights, 7-bit where `reduce_range`, calibrated on synthetic training pages as
the detector's input sees them), measured against the FP32 file on the synthetic validation pages:
detection F1 and the detector's own latency per page. The INT8 file is kept
(runs/<name>/detect/quantize/detector.int8.onnx) only when it is faster and its F1 is within
`f1_budget_points`; the report says which and why either way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from crnn.cli import stage_errors
from crnn.detect.boxes import BoxConfig, det_input
from crnn.detect.data import page_synth, validation_pages
from crnn.detect.detector import Detector, saved_boxes
from crnn.detect.score import Counts, PageTruth, score_page
from crnn.lineage import git_commit, sha256_file
from crnn.onnx_model import ExportError, set_metadata
from crnn.settings import RunConfig, load_run_config
from crnn.tracking import Tracker


class PageCalibration:
    """One synthetic training page at a time, as the detector's input (pages differ in size)."""

    def __init__(self, images: list[np.ndarray], boxes: BoxConfig, input_name: str = "image") -> None:
        # `boxes` must be the file's own settings: they decide the scale each page is served at
        self.items = [{input_name: det_input(img, boxes)[0]} for img in images]
        self._it = iter(self.items)

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.items)


def build_int8(src: Path, dest: Path, calib: PageCalibration, reduce_range: bool) -> None:
    """After onnxruntime's `quant_pre_process` (shape inference, graph clean-up), as the recognizer's."""
    import tempfile

    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from crnn.quantize import static_qdq

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        static_qdq(pre, dest, calib, CalibrationMethod.MinMax, reduce_range)
        # the metadata (box settings, lineage) travels with the INT8 file too
        import onnx

        m, src_meta = onnx.load(str(dest)), onnx.load(str(src), load_external_data=False).metadata_props
        set_metadata(m, {p.key: p.value for p in src_meta})
        onnx.save(m, str(dest))


def measure(path: Path, pages, threads: int, reps: int = 3) -> dict:
    """F1 over the pages, and the detector's median time per page (best of `reps` passes)."""
    det = Detector(path, threads=threads)
    total = Counts()
    for p in pages:
        quads = [b.quad for b in det.detect(p.image)]
        truth = PageTruth(
            [ln.quad for ln in p.lines if not ln.ignore],
            [ln.text for ln in p.lines if not ln.ignore],
            [ln.quad for ln in p.lines if ln.ignore],
        )
        total.add(score_page(truth, quads, None, None))
    times = []
    for _ in range(reps):
        t = []
        for p in pages:
            t0 = time.perf_counter()
            det.detect(p.image)
            t.append(time.perf_counter() - t0)
        times.append(float(np.median(t)) * 1000)
    return {
        **{k: total.as_dict()[k] for k in ("precision", "recall", "f1")},
        "ms_p50": min(times),
        "size_bytes": path.stat().st_size,
    }


def calibration(cfg: RunConfig, src: Path) -> PageCalibration:
    """Training-stream pages (never validation's) at the scale the file serves them: its saved box settings
    (after `make detect-calibrate`, or a file from another config), not this run's config."""
    synth = page_synth(cfg, seed=cfg.seed * 7919 + 17)
    pages = [synth.page(i).image for i in range(cfg.detect.quantize.calibration_pages)]
    return PageCalibration(pages, saved_boxes(src))


def decide(fp32: dict, int8: dict, f1_budget_points: float) -> tuple[bool, str]:
    """Whether the INT8 detector replaces FP32 (`measure`'s figures of each), and why: only when it is
    faster per page and its F1 is within the budget; a slower INT8 file gains nothing to pay for."""
    faster = int8["ms_p50"] < fp32["ms_p50"]
    accurate = int8["f1"] >= fp32["f1"] - f1_budget_points / 100
    if faster and accurate:
        return True, "kept: faster and as accurate"
    lost = [w for w, bad in (("slower", not faster), ("less accurate", not accurate)) if bad]
    return False, " and ".join(lost) + " than FP32: not kept"


def run(cfg: RunConfig) -> dict:
    q = cfg.detect.quantize
    src = cfg.stage_dir("detect") / "export" / "detector.onnx"
    if not src.is_file():
        raise ExportError(f"{src} does not exist: run python -m crnn.detect.export first")
    out = cfg.stage_dir("detect") / "quantize"
    out.mkdir(parents=True, exist_ok=True)
    dest = out / "detector.int8.onnx"
    calib = calibration(cfg, src)
    val = validation_pages(cfg)
    tracker = Tracker(cfg.mlflow)
    with tracker.run("detect.quantize", {"stage": "detect.quantize", "input_sha256": sha256_file(src)}):
        build_int8(src, dest, calib, q.reduce_range)
        fp32, int8 = measure(src, val, q.threads), measure(dest, val, q.threads)
        kept, why = decide(fp32, int8, q.f1_budget_points)
        if not kept:
            dest.unlink()
        report = {
            "source": str(src),
            "fp32": fp32,
            "int8": int8,
            "kept": kept,
            "decision": why,
            "threads": q.threads,
            "calibration_pages": q.calibration_pages,
            "val_pages": len(val),
            "git_commit": git_commit(),
            "int8_path": str(dest) if kept else "",
        }
        tracker.log_metrics(
            {
                "fp32_f1": fp32["f1"],
                "int8_f1": int8["f1"],
                "fp32_ms": fp32["ms_p50"],
                "int8_ms": int8["ms_p50"],
            }
        )
        (out / "quantize_report.json").write_text(json.dumps(report, indent=2))
    return report


@hydra.main(config_path="../../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        report = run(load_run_config(dcfg))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
