"""Input smoothing for a trained model's files: `python -m crnn.smooth experiment=zh_en_v2` (make smooth).

The preprocessing (crnn.data.preprocess) can blur each resized line with a Gaussian of `InputSpec.smooth`
pixels at the model's height. Measured on v2: a sigma of 0.5 read v2's own validation lines with fewer
errors than none (scanned and receipt lines most), although v2 trained without it; a lighter blur did not,
a heavier one made handwriting and blurry lines worse. So the value is chosen per file after training, as
the LM's fusion weights are (crnn.lm_build), and travels inside the file's input spec, so every reader of the
file (serving, `crnn predict`, page mode, `make eval`, `make lm`) preprocesses alike.

For each file (`smooth.models`, default the run's export/model.onnx and quantize/model.int8.onnx):
1. renders `smooth.lines` validation lines from the run's own recipes, scenes in turn, with the val
   split's corpus seed and font exclusions (lines no training step drew; never real lines; the first
   `data.splits.val.size` of them are the val LMDB's when the recipes are the data stage's, which chose the
   checkpoint and tunes the LM: the sweep is not independent of those);
2. reads them greedily (the file alone: an LM is tuned on top of the chosen value afterwards, `make lm
   ARGS=lm.model=<the new file>`) at every sigma of `smooth.grid`, normalised as `make eval` normalises;
3. keeps the lowest CER (the smaller sigma on a tie: trust the pixels) and writes a copy of the file with
   that sigma in its input spec and the sweep in its lineage to runs/<name>/smooth/<file name>, beside
   report.json and report.md. The original file is left as it was. MLflow logs the sweep.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import hydra
from omegaconf import DictConfig
from tqdm import tqdm

from crnn.charset import load_charset
from crnn.cli import StageError, stage_errors
from crnn.data.preprocess import InputSpec, preprocess
from crnn.data.source import SynthSource
from crnn.lineage import git_commit, sha256_file
from crnn.metrics import SceneScores
from crnn.settings import RunConfig, load_run_config
from crnn.textnorm import Normalizer
from crnn.tracking import Tracker


def model_files(cfg: RunConfig) -> list[Path]:
    if cfg.smooth.models:
        files = [Path(m) for m in cfg.smooth.models]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise StageError(f"smooth.models: {', '.join(missing)} do not exist")
        names = [f.name for f in files]
        if len(set(names)) < len(names):
            raise StageError(f"smooth.models: two files named alike ({names}); their copies would collide")
        return files
    run = Path(cfg.runs_dir) / cfg.name
    files = [run / rel for rel in ("export/model.onnx", "quantize/model.int8.onnx") if (run / rel).is_file()]
    if not files:
        raise StageError(
            f"no model under {run} (export/model.onnx, quantize/model.int8.onnx): set smooth.models"
        )
    return files


def validation_lines(cfg: RunConfig) -> list:
    """`smooth.lines` lines of the run's recipes, scenes in turn, from the val split's seed and fonts."""
    split = cfg.data.splits.get("val")
    if split is None:
        raise StageError("the config has no data.splits.val: its seed and fonts are what smoothing reads")
    src = SynthSource(
        cfg.corpus, cfg.render, load_charset(cfg.charset), seed=split.seed, exclude_fonts=split.exclude_fonts
    )
    return [
        src.sample(i, balanced=True) for i in tqdm(range(cfg.smooth.lines), desc="rendering", unit="line")
    ]


def sweep(model: Path, lines: list, cfg: RunConfig) -> list[dict]:
    """Each sigma's scores on the lines, read greedily by the file."""
    from crnn.onnx_model import OnnxBackend
    from crnn.predictor import Predictor

    backend = OnnxBackend(model, threads=cfg.smooth.threads)
    if backend.charset.fingerprint() != load_charset(cfg.charset).fingerprint():
        raise StageError(f"{model} reads another alphabet than charset={cfg.charset}")
    predictor = Predictor(backend, max_batch=32)
    normalize = Normalizer(cfg.eval.normalize)
    rows = []
    for sigma in tqdm(cfg.smooth.grid, desc=f"sigmas ({model.name})", unit="sigma"):
        spec = replace(backend.spec, smooth=float(sigma))
        decoded = predictor.read_inputs([preprocess(s.image, spec) for s in lines])
        scores = SceneScores(normalize)
        for s, d in zip(lines, decoded):
            scores.add(s.label, d.text, s.scene)
        got = scores.as_dict()
        rows.append(
            {
                "sigma": float(sigma),
                "cer": got["overall"]["cer"],
                "edits": got["overall"]["edits"],
                "chars": got["overall"]["chars"],
                "scenes": {k: v["cer"] for k, v in got["scenes"].items()},
            }
        )
    return rows


def chosen(rows: list[dict]) -> dict:
    """The lowest CER; the smaller sigma on a tie."""
    return min(rows, key=lambda r: (r["edits"], r["sigma"]))


def write_smoothed(model: Path, dest: Path, sigma: float, record: dict) -> None:
    """A copy of `model` whose input spec smooths by `sigma`, its lineage naming the sweep."""
    import onnx

    from crnn.onnx_model import read_metadata, set_metadata

    meta = read_metadata(model)
    spec = InputSpec(**{**json.loads(meta["input_spec"]), "smooth": sigma})
    lineage = {**json.loads(meta["lineage"]), "smooth": record}
    proto = onnx.load(str(model))
    set_metadata(proto, {**meta, "input_spec": json.dumps(spec.as_dict()), "lineage": json.dumps(lineage)})
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(dest)


def run(cfg: RunConfig) -> dict:
    files = model_files(cfg)
    out = cfg.stage_dir("smooth")
    tracker = Tracker(cfg.mlflow)
    with tracker.run("smooth", {"stage": "smooth"}):
        tracker.log_params({"smooth": asdict(cfg.smooth)})
        lines = validation_lines(cfg)
        report = {"lines": len(lines), "seed": cfg.data.splits["val"].seed, "files": []}
        for model in files:
            rows = sweep(model, lines, cfg)
            best = chosen(rows)
            record = {
                "sigma": best["sigma"],
                "lines": len(lines),
                "val_seed": report["seed"],
                "grid": [{k: r[k] for k in ("sigma", "cer")} for r in rows],
                "source": str(model),
                "source_sha256": sha256_file(model),
                "git_commit": git_commit(),
                "mlflow_run_id": tracker.run_id,
            }
            dest = out / model.name
            write_smoothed(model, dest, best["sigma"], record)
            report["files"].append({"model": str(model), "out": str(dest), "chosen": best, "grid": rows})
            tag = model.stem.replace(".", "_")
            for k, r in enumerate(rows):  # step: the grid point; its sigma is logged beside its CER
                tracker.log_metrics({f"{tag}_cer": r["cer"], f"{tag}_grid_sigma": r["sigma"]}, step=k)
            tracker.log_metrics({f"{tag}_sigma": best["sigma"], f"{tag}_chosen_cer": best["cer"]})
        (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        (out / "report.md").write_text(table(report) + "\n")
        tracker.log_artifact(out / "report.json")
    return report


def table(report: dict) -> str:
    """One row per sigma: each file's CER overall and per scene."""
    md = [
        f"Greedy CER on {report['lines']} validation lines (val seed {report['seed']}) per input smoothing",
        "",
    ]
    for f in report["files"]:
        scenes = sorted(f["grid"][0]["scenes"])
        md += [
            f"`{f['model']}` -> `{f['out']}` (sigma {f['chosen']['sigma']:g})",
            "",
            "| sigma | all | " + " | ".join(scenes) + " |",
            "|---|---|" + "---|" * len(scenes),
        ]
        for r in f["grid"]:
            mark = "**" if r["sigma"] == f["chosen"]["sigma"] else ""
            cells = " | ".join(f"{r['scenes'][s] * 100:.2f} %" for s in scenes)
            md.append(f"| {mark}{r['sigma']:g}{mark} | {r['cer'] * 100:.2f} % ({r['edits']}) | {cells} |")
        md.append("")
    return "\n".join(md)


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        report = run(load_run_config(dcfg))
    print(table(report))


if __name__ == "__main__":
    main()
