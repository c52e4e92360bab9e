"""Regression gate: compare an evaluation report against a baseline and name every figure that got worse.

    python -m crnn.regress experiment=demo eval.baseline=baselines/demo/report.json   (make regress)

CER is compared per model and per scene in points (`eval.cer_tolerance_points`, or one character of the
scene's labels when that is more); a scene scored on a different number of lines, a model of another kind
(format, INT8) or another scoring normalisation fails, since those figures are not comparable. Latency is
never compared in milliseconds (machines differ, and this one is noisy): each model's p50 is taken as a
ratio to the FP32 ONNX model measured in the same run, and that ratio may not grow by more than
`eval.latency_tolerance`. An INT8 model the baseline measured faster than FP32 that is no longer faster
fails outright. Exit code 1 when anything regressed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from crnn.cli import StageError, stage_errors
from crnn.settings import load_run_config


def scene_tolerance(base_scene: dict, cer_points: float) -> float:
    """The CER rise allowed in points: the configured tolerance, or one character of the scene's labels
    when that is more (one character of a 4-word category is 5 points; a different CPU's FP32 kernels may
    flip one argmax)."""
    chars = base_scene.get("chars") or 0
    return max(cer_points, 100.0 / chars) if chars else cer_points


def how_read(row: dict) -> dict:
    """How a report's row read its lines beyond the model and decoder: the second look and the formats its
    readings were held to, with each format's fingerprint (a report from before any of these records
    none). Figures read otherwise are not compared: a change in how lines are read ships with make
    ship-reading."""
    return {
        "second_look": row.get("second_look") or None,
        "formats": list(row.get("formats") or []),
        "format_ids": dict(row.get("format_ids") or {}),
    }


def compare(baseline: dict, current: dict, cer_points: float, latency_tolerance: float) -> list[str]:
    """Every figure of `current` that is worse than `baseline` beyond the tolerances, in words."""
    problems = []
    if "normalize" in baseline and baseline["normalize"] != current.get("normalize"):
        problems.append(
            f"scoring normalisation differs from the baseline's ({current.get('normalize')} vs "
            f"{baseline['normalize']}): figures scored by other rules are not comparable; re-baseline"
        )
    base = {m["name"]: m for m in baseline["models"]}
    cur = {m["name"]: m for m in current["models"]}
    for name in base:
        if name not in cur:
            problems.append(f"{name}: in the baseline but not evaluated now")
    for name, m in cur.items():
        b = base.get(name)
        if b is None:
            continue
        for scene, bv in list(b["scenes"].items()) + [("overall", b["overall"])]:
            cv = m["overall"] if scene == "overall" else m["scenes"].get(scene)
            if cv is None:
                problems.append(f"{name}: scene {scene} missing from the report")
                continue
            if "n" in bv and cv.get("n") != bv["n"]:
                problems.append(f"{name}: scene {scene} has {cv.get('n')} lines, the baseline {bv['n']}")
                continue
            delta = 100 * (cv["cer"] - bv["cer"])
            allowed = scene_tolerance(bv, cer_points)
            if delta > allowed:
                problems.append(
                    f"{name}: CER {scene} {bv['cer'] * 100:.2f}% -> {cv['cer'] * 100:.2f}% "
                    f"(+{delta:.2f} points > {allowed:.2f})"
                )
        if b.get("decoder", "greedy") != m.get("decoder", "greedy"):
            problems.append(
                f"{name}: decoded with {m.get('decoder', 'greedy')}, the baseline with "
                f"{b.get('decoder', 'greedy')} (the bundled LM missing, or added without make ship-lm)"
            )
        hb, hm = how_read(b), how_read(m)
        if hb["second_look"] != hm["second_look"]:
            problems.append(
                f"{name}: read with second look {hm['second_look']}, the baseline with "
                f"{hb['second_look']} (a change in how lines are read ships with make ship-reading, which "
                "rewrites the real-line baseline; re-baseline the demo)"
            )
        if hb["formats"] != hm["formats"]:
            problems.append(
                f"{name}: readings held to formats {hm['formats']}, the baseline's to "
                f"{hb['formats']} (a change in how lines are read ships with make ship-reading)"
            )
        elif hb["format_ids"] != hm["format_ids"]:
            problems.append(
                f"{name}: readings held to formats {hm['format_ids']}, the baseline's to another version of "
                f"them {hb['format_ids']} (a change in how lines are read ships with make ship-reading)"
            )
        if b.get("int8") != m.get("int8") or b.get("format") != m.get("format"):
            problems.append(
                f"{name}: a different kind of model than the baseline's ({m.get('format')}, int8 "
                f"{m.get('int8')} vs {b.get('format')}, int8 {b.get('int8')}); re-baseline"
            )
        r_now, r_base = m.get("latency_ratio_to_fp32_onnx"), b.get("latency_ratio_to_fp32_onnx")
        # Only what is served (ONNX) is timed against the gate. PyTorch eager's per-call overhead against
        # ONNX Runtime varies by CPU and by run more than any useful tolerance (the demo's trained model:
        # 4.6x FP32 ONNX on the baseline's CPU, 5.8x and 7.3x in two runs of one clone on another one).
        served = m.get("format") == "onnx"
        if served and r_now is not None and r_base is not None and r_now > r_base * (1 + latency_tolerance):
            problems.append(
                f"{name}: latency relative to FP32 ONNX {r_base:.2f} -> {r_now:.2f} "
                f"(more than +{latency_tolerance:.0%})"
            )
        # "no longer": an INT8 model the baseline measured faster than FP32 that is not faster now
        if "int8" in name and r_now is not None and r_now >= 1.0 and r_base is not None and r_base < 1.0:
            problems.append(
                f"{name}: INT8 is no longer faster than FP32 ONNX (ratio {r_base:.2f} -> {r_now:.2f})"
            )
    return problems


def run_gate(
    report_path: Path, baseline_path: Path, cer_points: float, latency_tolerance: float
) -> list[str]:
    for p, what in ((report_path, "report (run make eval first)"), (baseline_path, "baseline")):
        if not p.is_file():
            raise StageError(f"{what} {p} does not exist")
    try:
        current, baseline = json.loads(report_path.read_text()), json.loads(baseline_path.read_text())
    except json.JSONDecodeError as e:
        raise StageError(f"unreadable report JSON: {e}") from None
    return compare(baseline, current, cer_points, latency_tolerance)


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        cfg = load_run_config(dcfg)
        if not cfg.eval.baseline:
            raise StageError("set eval.baseline=<report.json> (make regress BASELINE=...)")
        report = cfg.stage_dir(cfg.eval.out_dir) / "report.json"
        problems = run_gate(
            report, Path(cfg.eval.baseline), cfg.eval.cer_tolerance_points, cfg.eval.latency_tolerance
        )
    if problems:
        print(f"[regress] {len(problems)} regression(s) against {cfg.eval.baseline}:")
        for p in problems:
            print(f"  - {p}")
        sys.exit(1)
    print(
        f"[regress] no regression against {cfg.eval.baseline} (CER tolerance {cfg.eval.cer_tolerance_points} "
        f"points per scene, latency ratio tolerance {cfg.eval.latency_tolerance:.0%})"
    )


if __name__ == "__main__":
    main()
