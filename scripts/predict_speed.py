"""`crnn predict` on a folder of rendered lines against the engine's own batched throughput, in one run.

    python scripts/predict_speed.py [--lines 1000] [--model M.onnx]      (make bench-runtime)

The engine: the shared `Predictor` over the same images already decoded in memory (preprocess, width-
bucketed model calls of up to 32 lines, CTC decoding). `crnn predict`: the installed command on the folder
of PNG files, which also lists, reads and decodes the files, looks for several lines in each (`--mode auto`)
and writes TSV. Its own figure (lines/s from the first file to the last result, model loading excluded)
and the wall time of the whole process are both reported. Saves runs/bench/predict_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from crnn.charset import load_charset
from crnn.command import default_model
from crnn.data.source import SynthSource
from crnn.formats import SERVED_FORMATS
from crnn.onnx_model import OnnxBackend
from crnn.predictor import Predictor, SecondLook
from crnn.settings import compose_run_config

ROOT = Path(__file__).resolve().parents[1]


def render_folder(folder: Path, n: int, seed: int) -> None:
    cfg = compose_run_config(["experiment=zh_en"])[0]
    src = SynthSource(cfg.corpus, cfg.render, load_charset(cfg.charset), seed=seed)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:05d}.png"), src.sample(i, balanced=True).image)


def engine_rate(model: str, folder: Path, threads: int) -> float:
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(folder.glob("*.png"))]
    backend = OnnxBackend(model, threads=threads)
    pred = Predictor(backend, max_batch=32, second_look=SecondLook(), formats=SERVED_FORMATS)  # as served
    pred(images[:32])  # warm-up
    t = time.perf_counter()
    pred(images)
    return len(images) / (time.perf_counter() - t)


def command_rate(model: str, folder: Path, mode: str, threads: int) -> dict:
    crnn = shutil.which("crnn", path=str(Path(sys.executable).parent)) or "crnn"
    cmd = [
        crnn,
        "predict",
        str(folder),
        "--model",
        model,
        "--mode",
        mode,
        "--format",
        "tsv",
        "--out",
        "/dev/null",
        "--threads",
        str(threads),
        "--no-progress",
    ]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    m = re.search(r"(\d+) lines in ([\d.]+) s \((\d+) lines/s\)", r.stderr)
    if not m:
        raise RuntimeError(f"no rate in crnn predict's output: {r.stderr[-500:]}")
    lines = int(m.group(1))
    return {
        "lines": lines,
        "lines_per_s": lines / float(m.group(2)),
        "wall_s": wall,
        "wall_lines_per_s": lines / wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1000)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all cores)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "predict_speed"))
    a = ap.parse_args()
    model = a.model or default_model()
    folder = Path(tempfile.mkdtemp()) / "lines"
    folder.mkdir()
    render_folder(folder, a.lines, seed=11)
    rows = []
    for repeat in range(a.repeats):
        engine = engine_rate(model, folder, a.threads)
        for mode in ("auto", "line"):
            c = command_rate(model, folder, mode, a.threads)
            row = {
                "repeat": repeat,
                "mode": mode,
                "engine_lines_per_s": engine,
                **c,
                "share_of_engine": c["lines_per_s"] / engine,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    md = [
        f"`crnn predict` on {a.lines} rendered zh_en lines (PNG files) against the engine on the same images "
        f"in memory, model {Path(model).name}, threads {a.threads or 'all'}:",
        "",
        "| repeat | mode | engine lines/s | crnn predict lines/s | share of engine | "
        "whole process (wall) lines/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['repeat']} | {r['mode']} | {r['engine_lines_per_s']:.0f} | {r['lines_per_s']:.0f} | "
            f"{r['share_of_engine']:.0%} | {r['wall_lines_per_s']:.0f} |"
        )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"model": model, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    shutil.rmtree(folder.parent)


if __name__ == "__main__":
    main()
