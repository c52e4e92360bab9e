"""The presets side by side for issue 12's choice: what a line costs to serve and a step costs to train.

    python scripts/preset_table.py [--presets tiny small mobile] [--runs name=runs/x/train ...]

Per preset of `configs/model/` with the zh_en alphabet: parameters, MACs per 32x320 line, CPU training
img/s (batch 64 of rendered lines, AdamW, this machine's threads), and serving ms per line (p50/p95 over
rendered lines of their own widths, batch 1) for the exported FP32 graph and its static-QDQ INT8 recipe, at
1 and 2 threads. Weights do not change these times, so each preset is measured freshly initialised.
Accuracy needs training: `--runs preset=DIR` adds the synthetic val CER by step and by hour from a
training run's metrics.jsonl. Saves runs/bench/presets.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from bench import load, preset_config, sample_batch, train_rate
from runtime_bench import build_int8, line_ms, ort_runner, rendered_lines

from crnn.charset import load_charset
from crnn.export import export_onnx
from crnn.models.complexity import count_macs, count_params
from crnn.models.crnn import CRNN

ROOT = Path(__file__).resolve().parents[1]


def run_curve(path: Path) -> list[dict]:
    """(step, hours, val CER) rows of a training run's metrics.jsonl."""
    rows, t0 = [], None
    for line in (path / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        if "val_cer" not in m["metrics"]:
            continue
        t0 = m["time"] if t0 is None else t0
        rows.append({"step": m["step"], "hours": (m["time"] - t0) / 3600, "val_cer": m["metrics"]["val_cer"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "mobile"])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--train-seconds", type=float, default=20.0)
    ap.add_argument("--runs", nargs="*", default=[], help="preset=training run folder (metrics.jsonl)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "presets"))
    a = ap.parse_args()
    zh = load(["experiment=zh_en", "render=real"])
    n = load_charset(zh.charset).num_classes
    spec = zh.input
    lines = rendered_lines(64, spec, seed=20261126)
    calib = rendered_lines(128, spec, seed=7)
    items = sample_batch(zh, 512)
    tmp = Path(tempfile.mkdtemp())
    table: dict[str, dict] = {}
    for preset in a.presets:
        mc = preset_config(preset, n)
        torch.manual_seed(0)
        model = CRNN(mc).eval()
        fp32, int8 = tmp / f"{preset}.onnx", tmp / f"{preset}.int8.onnx"
        export_onnx(model, fp32, 17, {})
        build_int8(fp32, calib, int8)
        row = {
            "block": mc.block,
            "channels": mc.channels,
            "lstm": f"{mc.lstm_layers}x{mc.lstm_hidden}",
            "params": count_params(model),
            "macs_32x320": count_macs(mc, 320),
            "size_mb": {"fp32": fp32.stat().st_size / 1e6, "int8": int8.stat().st_size / 1e6},
            "train_img_per_s": train_rate(zh, preset, items, a.train_seconds)["img_per_s"],
        }
        for prec, path in (("fp32", fp32), ("int8", int8)):
            for threads in (1, 2):
                row[f"{prec}_ms_t{threads}"] = line_ms(ort_runner(path, threads), lines, a.reps)
        table[preset] = row
        print(preset, json.dumps(row), flush=True)
    curves = {}
    for spec_run in a.runs:
        preset, folder = spec_run.split("=", 1)
        curves[preset] = run_curve(Path(folder))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"presets": table, "curves": curves}, indent=2))
    md = to_markdown(table)
    out.with_suffix(".md").write_text(md)
    print(md)


def to_markdown(table: dict) -> str:
    lines = [
        "| preset | conv | LSTM | params | MMACs 32x320 | MB fp32 / int8 | train img/s | "
        "FP32 ms p50/p95 1 thr | 2 thr | INT8 ms p50/p95 1 thr | 2 thr |",
        "|---|---|---|---:|---:|---|---:|---|---|---|---|",
    ]
    for name, r in table.items():
        ms = [
            f"{r[k]['p50']:.2f} / {r[k]['p95']:.2f}"
            for k in ("fp32_ms_t1", "fp32_ms_t2", "int8_ms_t1", "int8_ms_t2")
        ]
        lines.append(
            f"| {name} | {r['block']} {r['channels']} | {r['lstm']} | {r['params']:,} | "
            f"{r['macs_32x320'] / 1e6:.0f} | "
            f"{r['size_mb']['fp32']:.1f} / {r['size_mb']['int8']:.1f} | {r['train_img_per_s']:.1f} | "
            + " | ".join(ms)
            + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
