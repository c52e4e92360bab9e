"""Ship an experiment's models into models/ with a model card written from the stage reports.

    python scripts/ship_model.py experiment=zh_en +notes=configs/experiment/zh_en.notes.md

Copies runs/<name>/quantize/model.int8.onnx and runs/<name>/export/model.onnx to
models/crnn_<name>.int8.onnx and models/crnn_<name>.onnx (refusing if together they pass +max_mb, 15 by
default; +out=DIR writes elsewhere), the evaluation report to models/crnn_<name>.eval.{json,md}, and
writes models/README.md: data, alphabet, steps, hardware, training time, figures per scene type beside
the targets, the learning curve, and the known weaknesses from the notes file. Every number comes from a
report or from MLflow; the training time is summed from the training run's metric timestamps, leaving out
gaps over 10 minutes (between sessions), because a run resumed across sessions has no single wall time.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from crnn.charset import load_charset
from crnn.cli import StageError, stage_errors
from crnn.settings import compose_run_config

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"printed": 0.01, "signboard": 0.03, "handwritten": 0.05, "blurry": 0.05}
SCENES = ["printed", "signboard", "handwritten", "blurry"]


def _json(path: Path) -> dict:
    if not path.is_file():
        raise StageError(f"{path} does not exist: run the stage that writes it first")
    return json.loads(path.read_text())


def training_history(tracking_uri: str, run_id: str) -> tuple[float, list[tuple[int, float]], dict]:
    """Active training seconds, the val CER by step, and the per-scene val CER at the last validation."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    stamps = sorted(m.timestamp for m in client.get_metric_history(run_id, "loss"))
    seconds = sum(b - a for a, b in zip(stamps, stamps[1:]) if b - a < 600_000) / 1000
    curve = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_cer"))
    return seconds, curve, {}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def main(argv: list[str]) -> int:
    cfg, own = compose_run_config(argv, extras=("notes", "max_mb", "out"))
    run = ROOT / cfg.runs_dir / cfg.name
    train = _json(run / "train" / "summary.json")
    prune = _json(run / "prune" / "report.json") if (run / "prune" / "report.json").is_file() else None
    quant = _json(run / "quantize" / "report.json")
    ev = _json(run / "eval" / "report.json")
    export = _json(run / "export" / "report.json")
    shipped_pruned = Path(export["source"]).name == "pruned.pt"
    int8, fp32 = run / "quantize" / "model.int8.onnx", run / "export" / "model.onnx"
    if not fp32.is_file():
        raise StageError(f"{fp32} does not exist: run make export EXP={cfg.name}")
    if not int8.is_file() and quant.get("chosen"):
        raise StageError(f"{int8} does not exist: run make quantize EXP={cfg.name}")
    has_int8 = int8.is_file()  # no INT8 when no recipe qualified: FP32 alone is shipped and served
    shipped = [int8, fp32] if has_int8 else [fp32]
    max_mb = float(own.get("max_mb", 15))
    total_mb = sum(p.stat().st_size for p in shipped) / 1e6
    if total_mb > max_mb:
        raise StageError(
            f"the two models take {total_mb:.1f} MB together; at most {max_mb} MB may be shipped"
        )
    notes = Path(own["notes"]).read_text().strip() if own.get("notes") else "(none recorded)"
    uri = cfg.mlflow.tracking_uri
    seconds, curve, _ = (
        training_history(uri, train["mlflow_run_id"]) if train.get("mlflow_run_id") else (0, [], {})
    )

    dest = ROOT / own.get("out", "models")
    dest.mkdir(exist_ok=True)
    out_int8, out_fp32 = dest / f"crnn_{cfg.name}.int8.onnx", dest / f"crnn_{cfg.name}.onnx"
    if has_int8:
        shutil.copyfile(int8, out_int8)
    else:
        out_int8.unlink(missing_ok=True)  # an older INT8 file would be served instead of this model
    shutil.copyfile(fp32, out_fp32)
    shutil.copyfile(run / "eval" / "report.json", dest / f"crnn_{cfg.name}.eval.json")
    shutil.copyfile(run / "eval" / "report.md", dest / f"crnn_{cfg.name}.eval.md")

    shipped_out = [out_int8, out_fp32] if has_int8 else [out_fp32]
    models = {m["name"]: m for m in ev["models"]}
    chosen = models.get("int8_onnx" if has_int8 else "fp32_onnx") or ev["models"][-1]
    served = "INT8" if has_int8 else "FP32"
    charset = load_charset(cfg.charset)
    splits = cfg.data.splits
    heldout = (
        sorted(set(splits["test"].exclude_fonts) ^ set(splits["train"].exclude_fonts))
        if "train" in splits
        else []
    )
    lines_seen = train["steps"] * cfg.train.batch_size
    md = [
        f"# crnn_{cfg.name}: the bundled model",
        "",
        f"A CRNN ({train['model']['name']} preset: {train['params'] / 1e6:.2f} M parameters before pruning) "
        + ("trained, pruned, exported" if shipped_pruned else "trained, exported")
        + " and quantized by this toolkit's own stages "
        f"(`experiment={cfg.name}`; exported from `{export['source']}`). "
        f"`make serve` uses the {served} file by default"
        + ("." if has_int8 else f" (no INT8 recipe qualified: {quant.get('decision', '')})."),
        "",
        "| file | size | sha256 |",
        "|---|---|---|",
        *[f"| `{p.name}` | {p.stat().st_size / 1e6:.2f} MB | `{sha256(p)[:16]}…` |" for p in shipped_out],
        "",
        "Everything a server needs (alphabet, input spec, stride, lineage) is in each file's ONNX metadata.",
        "",
        "## Alphabet and data",
        "",
        f"- Alphabet `{cfg.charset}`: {len(charset.chars)} characters (configs/charsets/) and the CTC blank.",
        f"- Training: {lines_seen:,} lines seen ({train['steps']:,} steps of {cfg.train.batch_size}), "
        + (
            "rendered on the fly by the synthetic renderer (`data.train=synth`), never repeated"
            if cfg.data.train == "synth"
            else f"read from LMDB ({splits['train'].size:,} lines rendered once)"
            if "train" in splits
            else "read from LMDB"
        )
        + f"; corpus seed {splits['train'].seed if 'train' in splits else '?'}; the four scene types alike.",
        f"- Test set: {ev['test_sets'][0]['n']} lines (`{ev['test_sets'][0]['path']}`), corpus seed "
        f"{splits['test'].seed}, 1/4 per scene; fonts never seen in training or validation: "
        f"{', '.join(heldout) or 'none'}.",
        "",
        "## Training",
        "",
        f"- Steps: {train['steps']:,} (best validation at step {train['best_step']:,}); schedule "
        f"{cfg.train.schedule} over {cfg.train.max_steps:,} steps, lr {cfg.train.lr}, AdamW, batch "
        f"{cfg.train.batch_size}; resumable (`train.resume=true`).",
        f"- Hardware: {ev['machine'].get('cpu', '?')}, {ev['machine'].get('cores', '?')} CPU cores, no GPU; "
        f"torch {ev['machine'].get('torch', '?')}.",
        f"- Training time: {seconds / 3600:.2f} h of active training (MLflow metric timestamps).",
    ]
    if prune:
        p = cfg.prune
        ft = p.finetune_steps * len(prune["steps"]) + p.final_finetune_steps
        delta = ", ".join(f"{k} {v:+.2f}" for k, v in sorted(prune["cer_delta_points"].items()))
        md.append(
            f"- Pruning: {prune['criterion']}, {prune['macs_removed'] * 100:.0f}% of MACs removed in "
            f"{len(prune['steps'])} rounds, {ft} fine-tuning steps; validation CER change (points): {delta}."
            + (
                ""
                if shipped_pruned
                else " Not shipped: that CER is worth more than the MACs on a model that already reads "
                "a line in about a millisecond (the `pruned` row below)."
            )
        )
    md.append(
        f"- Quantization: `{quant['chosen']}` chosen among {', '.join(m['name'] for m in quant['models'])}."
    )
    md += [
        "",
        "## Figures on the held-out test set",
        "",
        "| model | size MB | p50 ms / line | " + " | ".join(f"CER {s}" for s in SCENES) + " | CER all |",
        "|---|---|---|" + "---|" * 5,
    ]
    for m in ev["models"]:
        row = [m["name"], f"{m['size_bytes'] / 1e6:.2f}", f"{m['latency_ms']['p50']:.2f}"]
        row += [pct(m["scenes"][s]["cer"]) if s in m["scenes"] else "–" for s in SCENES]
        row.append(pct(m["overall"]["cer"]))
        md.append("| " + " | ".join(row) + " |")
    md.append(
        f"| **target ({served})** | ≤ 15 (shipped) | ≤ 10 (p95, served) | "
        + " | ".join(f"≤ {TARGETS[s] * 100:.0f}%" for s in SCENES)
        + " | |"
    )
    met = [s for s in SCENES if s in chosen["scenes"] and chosen["scenes"][s]["cer"] <= TARGETS[s]]
    md += [
        "",
        f"Targets met by the {served} model: {', '.join(met) if met else 'none yet'} "
        f"(of {', '.join(SCENES)}). Latency: batch 1, decoded image to text, "
        f"{ev['machine'].get('threads', '?')} threads.",
        "",
    ]
    if curve:
        md += ["## Learning curve (validation CER, all scenes)", "", "| step | val CER |", "|---|---|"]
        md += [f"| {s:,} | {pct(v)} |" for s, v in curve]
        md.append("")
    md += ["## Known weaknesses", "", notes, ""]
    (dest / "README.md").write_text("\n".join(md))
    print(f"[ship] {' + '.join(map(str, shipped_out))} ({total_mb:.1f} MB), model card {dest / 'README.md'}")
    return 0


if __name__ == "__main__":
    with stage_errors():
        sys.exit(main(sys.argv[1:]))
