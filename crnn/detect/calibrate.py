"""Choose the detector's box settings by measurement: `python -m crnn.detect.calibrate experiment=det_zh_en`.

The thresholds that turn a probability map into boxes (`detect.boxes`: how far a kernel grows back, the
mean probability a box needs) were set by hand before any detector was trained, and the export writes
them into the file. The network's kernels end where its probability crosses `bin_thresh`, not where the
training targets drew them, so what grows them back right is a property of the trained network: the
shipped detector's boxes come out 14 % taller than the synthetic lines they find (median).

So after `detect-export`, this stage reads `detect.calibrate.pages` synthetic pages (their own seed:
neither the training stream, nor validation, nor the contact sheet; never the real pages, which only
evaluate) once through the exported file, turns each probability map into boxes under every grid
point (unclip scale x box threshold x binarization threshold), and writes the best into the file's
metadata (`boxes`), with the whole table in its lineage. Best: the highest F1 to three decimals (80
pages do not separate finer), then the boxes whose median height is nearest the truth's. Run it after
each `detect-export` (which writes the config's settings again) and before `detect-quantize`, which copies
the metadata into the INT8 file: an INT8 file quantized before is stale and is removed. Files under
`models/` are refused: a shipped file changes only through `make ship-detector`.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from crnn.cli import stage_errors
from crnn.command import models_dir
from crnn.detect.boxes import BoxConfig, find_boxes
from crnn.detect.config import DetCalibrateConfig
from crnn.detect.data import page_synth
from crnn.detect.detector import Detector, read_detector_metadata
from crnn.detect.score import Counts, PageTruth, match, score_page
from crnn.detect.train import page_truth
from crnn.lineage import git_commit, sha256_file
from crnn.onnx_model import ExportError, set_metadata
from crnn.settings import RunConfig, load_run_config
from crnn.tracking import Tracker


@dataclass
class PageMap:
    """One page's probability map, read once, and what every grid point is scored against."""

    truth: PageTruth
    prob: np.ndarray
    scale: tuple[float, float]
    hw: tuple[int, int]


def read_maps(det: Detector, cfg: RunConfig) -> list[PageMap]:
    c = cfg.detect.calibrate
    synth = page_synth(cfg, seed=cfg.detect.val_seed + c.seed_offset)
    maps = []
    for i in tqdm(range(c.pages), desc="calibration pages", unit="page"):
        page = synth.page(i)
        prob, scale = det.probability(page.image)
        maps.append(PageMap(page_truth(page), prob, scale, page.image.shape[:2]))
    return maps


def score_boxes(maps: list[PageMap], boxes: BoxConfig) -> dict:
    """F1 over the pages under one box setting, and the matched boxes' median height over the truth's."""
    total, ratios = Counts(), []
    for m in maps:
        quads = [b.quad for b in find_boxes(m.prob, m.scale, m.hw, boxes)]
        total.add(score_page(m.truth, quads, None, None))
        for g, p in match(m.truth.quads, quads):
            t, q = m.truth.quads[g], quads[p]
            ratios.append(float(np.ptp(q[:, 1]) / max(np.ptp(t[:, 1]), 1e-6)))
    d = total.as_dict()
    return {
        **{k: d[k] for k in ("precision", "recall", "f1")},
        "height_ratio": float(np.median(ratios)) if ratios else 0.0,
    }


def grid(base: BoxConfig, c: DetCalibrateConfig) -> list[BoxConfig]:
    return [
        replace(base, unclip_scale=u, box_thresh=b, bin_thresh=t)
        for u, b, t in itertools.product(c.unclip_scale, c.box_thresh, c.bin_thresh)
    ]


def best(rows: list[dict]) -> dict:
    """Highest F1 to three decimals, then the median height ratio nearest 1; the first in grid order
    after that."""
    return max(rows, key=lambda r: (round(r["f1"], 3), -abs(r["height_ratio"] - 1.0)))


def rewrite_boxes(path: Path, boxes: BoxConfig, calibration: dict) -> None:
    """The file's `boxes` replaced and the calibration added to its lineage, written atomically."""
    import onnx

    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    lineage = json.loads(meta.get("lineage", "{}"))
    lineage["calibration"] = calibration
    meta["boxes"] = json.dumps(asdict(boxes))
    meta["lineage"] = json.dumps(lineage)
    set_metadata(model, meta)
    fd, tmp = tempfile.mkstemp(prefix=".calibrate.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def calibration_of(path: Path) -> dict | None:
    return json.loads(read_detector_metadata(path)["lineage"]).get("calibration")


def drop_stale_int8(cfg: RunConfig, path: Path) -> None:
    """The run's INT8 file quantized before this calibration carries the old box settings: removed."""
    int8 = cfg.stage_dir("detect") / "quantize" / "detector.int8.onnx"
    if int8.is_file() and calibration_of(int8) != calibration_of(path):
        int8.unlink()
        print(f"[calibrate] removed {int8}: quantized with the old box settings; run detect-quantize again")


def export_file(cfg: RunConfig) -> Path:
    return cfg.stage_dir("detect") / "export" / "detector.onnx"


def run(cfg: RunConfig) -> dict:
    c = cfg.detect.calibrate
    path = Path(c.detector) if c.detector else export_file(cfg)
    if not path.is_file():
        raise ExportError(f"{path} does not exist: run python -m crnn.detect.export first")
    if models_dir() in path.resolve().parents:
        raise ExportError(
            f"{path} is a shipped file: calibrate a copy (detect.calibrate.detector=<copy>), then ship it"
        )
    det = Detector(path, threads=c.threads)
    before = det.boxes
    tracker = Tracker(cfg.mlflow)
    with tracker.run("detect.calibrate", {"stage": "detect.calibrate", "input_sha256": sha256_file(path)}):
        maps = read_maps(det, cfg)
        rows = [{"boxes": asdict(b), **score_boxes(maps, b)} for b in grid(before, c)]
        chosen = best(rows)
        was = next((r for r in rows if r["boxes"] == asdict(before)), None)  # scored once if on the grid
        was = was or {"boxes": asdict(before), **score_boxes(maps, before)}
        report = {
            "detector": str(path),
            "pages": c.pages,
            "seed": cfg.detect.val_seed + c.seed_offset,
            "before": was,
            "chosen": chosen,
            "grid": rows,
            "git_commit": git_commit(),
        }
        rewrite_boxes(
            path, BoxConfig(**chosen["boxes"]), {k: report[k] for k in ("pages", "seed", "before", "chosen")}
        )
        report["sha256"] = sha256_file(path)
        tracker.log_params({f"boxes.{k}": v for k, v in chosen["boxes"].items()})
        tracker.log_metrics(
            {"f1_before": was["f1"], "f1_after": chosen["f1"], "height_ratio": chosen["height_ratio"]}
        )
        out = cfg.stage_dir("detect") / "calibrate"
        out.mkdir(parents=True, exist_ok=True)
        (out / "calibrate_report.json").write_text(json.dumps(report, indent=2))
        tracker.log_artifact(out / "calibrate_report.json")
    if path == export_file(cfg):
        drop_stale_int8(cfg, path)
    return report


def table(report: dict) -> str:
    lines = [
        "| unclip | box thresh | bin thresh | F1 | P | R | height / truth |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["grid"]:
        b = r["boxes"]
        mark = "**" if r == report["chosen"] else ""
        lines.append(
            f"| {mark}{b['unclip_scale']}{mark} | {b['box_thresh']} | {b['bin_thresh']} | {r['f1']:.4f} | "
            f"{r['precision']:.3f} | {r['recall']:.3f} | {r['height_ratio']:.3f} |"
        )
    return "\n".join(lines)


@hydra.main(config_path="../../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        report = run(load_run_config(dcfg))
    print(table(report))
    b, c = report["before"], report["chosen"]
    print(
        f"\n{report['detector']}: F1 {b['f1']:.4f} -> {c['f1']:.4f}, boxes' height / truth's "
        f"{b['height_ratio']:.3f} -> {c['height_ratio']:.3f} on {report['pages']} synthetic pages "
        f"(seed {report['seed']}); boxes now {c['boxes']}"
    )


if __name__ == "__main__":
    main()
