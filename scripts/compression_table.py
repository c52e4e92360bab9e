"""One table, one run: every artifact of an experiment's compression chain measured side by side.

    python scripts/compression_table.py experiment=demo [+reps=50]

Rows: trained and pruned checkpoints (PyTorch eager), the pruned model fused (eager), the FP32 ONNX and
every INT8 candidate (ONNX Runtime). Columns: params, MACs at 32x320, file size, latency p50/p95 at batch
1 and width 320 with all cores, validation CER per scene type. Writes runs/<name>/compression.{md,json}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from crnn.data.dataset import LmdbLineDataset
from crnn.export import read_metadata
from crnn.inference import OnnxBackend, TorchBackend, score_dataset
from crnn.models.checkpoint import load_checkpoint
from crnn.models.complexity import count_macs, count_params
from crnn.models.crnn import CRNN, ModelConfig
from crnn.models.fuse import fuse_model
from crnn.settings import compose_run_config
from crnn.timing import measure

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> None:
    cfg, own = compose_run_config(argv, extras=("reps",))
    reps = int(own.get("reps", 50))
    torch.set_num_threads(os.cpu_count() or 1)
    run = cfg.stage_dir("train").parent
    trained = load_checkpoint(run / "train" / "best.pt")
    val = LmdbLineDataset(cfg.data.val_paths(), trained.charset, trained.input_spec, cfg.oov_policy)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 1, 32, 320)).astype(np.float32)
    rows = []

    def add(name: str, path: Path, backend, mc: ModelConfig, params: int) -> None:
        scores, _ = score_dataset(backend, val, 64)
        lat = measure(lambda: backend.logits(x, np.array([x.shape[-1]])), reps)
        rows.append(
            {
                "name": name,
                "path": str(path),
                "size_bytes": path.stat().st_size,
                "params": params,
                "macs_32x320": count_macs(mc),
                "latency_ms_b1_w320": lat,
                "val": scores.as_dict(),
            }
        )
        print(f"[table] {name}: {lat['p50']:.2f} ms, CER {scores.overall.cer:.4f}")

    for name, path in (
        ("trained (eager)", run / "train" / "best.pt"),
        ("pruned (eager)", run / "prune" / "pruned.pt"),
    ):
        if path.is_file():
            ck = load_checkpoint(path)
            m = ck.build_model().eval()
            add(name, path, TorchBackend(m, ck.charset, ck.input_spec), ck.model_config, count_params(m))
            if name.startswith("pruned"):
                f = fuse_model(m)
                add(
                    "pruned + fused (eager)",
                    path,
                    TorchBackend(f, ck.charset, ck.input_spec),
                    ck.model_config,
                    count_params(f),
                )
    onnx_files = [("FP32 ONNX", run / "export" / "model.onnx")]
    onnx_files += [(f"INT8 {p.stem}", p) for p in sorted((run / "quantize" / "candidates").glob("*.onnx"))]
    for name, path in onnx_files:
        if path.is_file():
            b = OnnxBackend(path, threads=os.cpu_count() or 1)
            meta_cfg = ModelConfig(**json.loads(read_metadata(path)["model_config"]))
            add(name, path, b, meta_cfg, count_params(CRNN(meta_cfg)))
    scenes = list(rows[0]["val"]["scenes"])
    head = (
        ["artifact", "params", "MACs 32x320", "size MB", "b1 p50 / p95 ms"]
        + [f"CER {s}" for s in scenes]
        + ["CER all"]
    )
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lat = r["latency_ms_b1_w320"]
        md.append(
            "| "
            + " | ".join(
                [
                    r["name"],
                    f"{r['params'] / 1e6:.3f} M",
                    f"{r['macs_32x320'] / 1e6:.1f} M",
                    f"{r['size_bytes'] / 1e6:.2f}",
                    f"{lat['p50']:.2f} / {lat['p95']:.2f}",
                ]
                + [f"{r['val']['scenes'][s]['cer'] * 100:.2f}%" for s in scenes]
                + [f"{r['val']['overall']['cer'] * 100:.2f}%"]
            )
            + " |"
        )
    text = (
        "\n".join(md)
        + f"\n\n{os.cpu_count()} cores; validation set {cfg.data.val_paths()} ({len(val)} lines).\n"
    )
    (run / "compression.md").write_text(text)
    (run / "compression.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
