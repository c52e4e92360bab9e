"""What each CPU training option does to zh_en img/s, and to the loss, in one run on this machine.

    python scripts/train_speed.py [--steps 60] [--only base,bf16] [extra hydra overrides]   (make bench-train)

Each variant is the real training CLI (python -m crnn.train) in its own process, from the shipped v1
weights (train.init_from), with the same seed, so two variants of one batch size see the same lines and
their losses at step N are comparable. img/s is the median of the loss-report windows after the first
two (worker start-up and the first steps' allocations excluded); the loss is the EMA at the last step.
Saves runs/bench/train_speed.{json,md}. Nothing here is asserted by tests: timings are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench"

# name -> (what it changes, overrides). The default of configs/ is the first row.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "base": ("config as is: fp32, 2 threads, 1 loader worker, batch 64, pool 12", []),
    "bf16": ("bf16 autocast on the CPU", ["train.cpu_amp=true"]),
    "channels_last": ("NHWC convolutions", ["train.channels_last=true"]),
    "compile": ("torch.compile(dynamic=True)", ["train.compile=true"]),
    "threads1": ("1 torch thread (the other core renders)", ["train.threads=1"]),
    "workers0": ("rendering in the training process", ["train.num_workers=0"]),
    "workers2": ("2 loader workers", ["train.num_workers=2"]),
    "batch32": ("batch 32", ["train.batch_size=32"]),
    "batch128": ("batch 128", ["train.batch_size=128"]),
    "pool1": ("no width pooling (stream_pool=1)", ["train.stream_pool=1"]),
}


def run_variant(name: str, overrides: list[str], steps: int, extra: list[str], tmp: Path) -> dict:
    log_every = max(steps // 12, 2)
    cmd = [
        sys.executable, "-m", "crnn.train", "experiment=zh_en", f"name=speed_{name}", f"runs_dir={tmp}",
        "data.root=data/zh_en",
        "train.init_from=models/snapshots/crnn_zh_en_v1.pt", f"train.max_steps={steps}",
        "train.warmup_steps=5", "train.lr=0.0005", f"train.log_every={log_every}",
        f"train.val_every={steps}", "train.save_every=100000", "train.val_max_lines=64",
        "mlflow.enabled=false", *overrides, *extra,
    ]  # fmt: skip
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else "failed"
        return {"name": name, "error": last}
    s = json.loads((tmp / f"speed_{name}" / "train" / "summary.json").read_text())
    curve = s["loss_curve"]
    windows = [ips for _, _, ips in curve[2:]] or [ips for _, _, ips in curve]
    batch = next((int(o.split("=")[1]) for o in overrides if o.startswith("train.batch_size=")), 64)
    return {
        "name": name,
        "img_s": statistics.median(windows),
        "img_s_windows": windows,
        "loss_at_end": curve[-1][1],
        "lines_seen": steps * batch,
        "val_cer_64": s["final"]["val"]["overall"]["cer"],
        "wall_s": wall,
    }


def table(rows: list[dict], base: dict | None) -> str:
    lines = [
        "| variant | what | img/s (median window) | x base | loss EMA at end | val CER (64 lines) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        what = VARIANTS[r["name"]][0]
        if "error" in r:
            lines.append(f"| {r['name']} | {what} | failed: {r['error']} | | | |")
            continue
        ratio = f"{r['img_s'] / base['img_s']:.2f}" if base and "img_s" in base else ""
        lines.append(
            f"| {r['name']} | {what} | {r['img_s']:.1f} | {ratio} | {r['loss_at_end']:.4f} | "
            f"{r['val_cer_64'] * 100:.2f} % |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--tmp", default=str(OUT / "train_speed_runs"))
    ap.add_argument("--tag", default="", help="suffix of the output files (train_speed<tag>.json/md)")
    args, extra = ap.parse_known_args()
    names = [n for n in (args.only.split(",") if args.only else VARIANTS) if n]
    tmp = Path(args.tmp)
    rows = []
    for n in names:
        print(f"[train-speed] {n}: {VARIANTS[n][0]} ...", flush=True)
        rows.append(run_variant(n, VARIANTS[n][1], args.steps, extra, tmp))
        print(f"[train-speed]   {rows[-1]}", flush=True)
    base = next((r for r in rows if r["name"] == "base"), None)
    md = table(rows, base)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch_version()}"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"train_speed{args.tag}.json").write_text(
        json.dumps({"steps": args.steps, "machine": machine, "extra": extra, "rows": rows}, indent=2)
    )
    head = f"# CPU training speed, {args.steps} steps each ({machine})"
    (OUT / f"train_speed{args.tag}.md").write_text(f"{head}\n\n{md}\n")
    print(md)


def torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
