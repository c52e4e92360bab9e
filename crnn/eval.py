"""Evaluation stage: CER, accuracy and latency per scene type for every artifact of an experiment.

    python -m crnn.eval experiment=demo          # make eval EXP=demo
    python -m crnn.eval experiment=demo 'eval.artifacts=[runs/demo/export/model.onnx]'

Each artifact (.pt checkpoint, FP32 or INT8 .onnx) is evaluated in its own fresh process, one after the
other, so peak resident memory is its own and timings do not share a warm cache; the same test sets, the
shared preprocessing and the shared CTC decoder serve all of them. Writes runs/<name>/eval/report.json,
report.md and report.html.

Nothing is dropped silently: labels outside the alphabet are kept (the model cannot emit those characters,
so they count as its errors) and counted; unreadable images score as empty predictions; a test set that
cannot be read is listed in the report with its error.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import time
from dataclasses import asdict
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from crnn.cli import StageError, stage_errors
from crnn.data.dataset import LmdbLineDataset
from crnn.data.lmdb_io import LmdbFormatError
from crnn.models.checkpoint import git_commit, load_checkpoint
from crnn.models.complexity import count_macs, count_params
from crnn.models.crnn import CRNN, ModelConfig
from crnn.peers import PEERS, PeerError, evaluate_tesseract
from crnn.settings import EvalConfig, RunConfig, load_run_config
from crnn.tracking import Tracker

STANDARD_ARTIFACTS = (
    ("trained", "train/best.pt"),
    ("pruned", "prune/pruned.pt"),
    ("fp32_onnx", "export/model.onnx"),
    ("int8_onnx", "quantize/model.int8.onnx"),
)


class EvalError(StageError):
    pass


def machine_info(threads: int) -> dict:
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


def experiment_artifacts(cfg: RunConfig) -> list[tuple[str, Path]]:
    run = Path(cfg.runs_dir) / cfg.name
    if cfg.eval.artifacts:  # "path" (named by its stem) or "name=path"
        named = [a.split("=", 1) if "=" in a else (Path(a).stem, a) for a in cfg.eval.artifacts]
        return [(name, Path(path)) for name, path in named]
    found = [(name, run / rel) for name, rel in STANDARD_ARTIFACTS if (run / rel).is_file()]
    if not found:
        raise EvalError(
            f"no artifact under {run} (looked for {[r for _, r in STANDARD_ARTIFACTS]}); "
            "run make train first or set eval.artifacts"
        )
    return found


def open_test_sets(paths: list[str], charset, spec) -> tuple[list[LmdbLineDataset], list[dict]]:
    """The readable test sets, and a record of every one (its size, label stats, or its error)."""
    sets, records = [], []
    for p in paths:
        try:
            ds = LmdbLineDataset([p], charset, spec, oov_policy="keep", default_scene=Path(p).name)
        except (LmdbFormatError, OSError) as e:
            records.append({"path": p, "error": str(e), "n": 0})
            continue
        records.append(
            {
                "path": p,
                "n": len(ds),
                "labels": ds.label_stats.as_dict(),
                "missing_labels": ds.missing_labels,
                **({"error": "empty test set"} if len(ds) == 0 else {}),
            }
        )
        if len(ds):
            sets.append(ds)
    return sets, records


def _backend(path: Path, threads: int):
    from crnn.inference import TorchBackend
    from crnn.onnx_model import OnnxBackend

    if path.suffix == ".onnx":
        return OnnxBackend(path, threads=threads)
    import torch

    torch.set_num_threads(threads)
    ck = load_checkpoint(path)
    return TorchBackend(ck.build_model(), ck.charset, ck.input_spec)


def _model_config(path: Path) -> ModelConfig:
    if path.suffix == ".onnx":
        from crnn.onnx_model import read_metadata

        return ModelConfig(**json.loads(read_metadata(path)["model_config"]))
    return load_checkpoint(path).model_config


def evaluate_artifact(name: str, path: str, test_paths: list[str], e_dict: dict, threads: int) -> dict:
    """Runs in a fresh process: scores, latencies, throughput and peak memory of one artifact."""
    from crnn.config import from_dict
    from crnn.inference import score_dataset
    from crnn.metrics import SceneScores
    from crnn.predictor import Predictor
    from crnn.timing import measure

    e = from_dict(EvalConfig, e_dict)
    p = Path(path)
    backend = _backend(p, threads)
    predictor = Predictor(backend, decoder=e.decoder, beam_width=e.beam_width)
    sets, _ = open_test_sets(test_paths, backend.charset, backend.spec)
    scores = SceneScores()
    lines, per_scene_lat, all_lat = [], {}, []
    t_total, n_total = 0.0, 0
    for ds in sets:
        preds: dict[int, str] = {}
        t0 = time.perf_counter()
        s, _ = score_dataset(predictor, ds, e.batch_size, predictions=preds)
        t_total += time.perf_counter() - t0
        n_total += s.overall.n
        scores.merge(s)
        for i, (r_i, idx, label, scene, _) in enumerate(ds.entries):
            lines.append(
                {
                    "set": str(ds.readers[r_i].path),
                    "index": idx,
                    "label": label,
                    "scene": scene or "unknown",
                    "pred": preds.get(i, ""),
                }
            )
        # batch-1 latency from the decoded grayscale image to text (preprocessing + model + decoding)
        by_scene: dict[str, list[int]] = {}
        for i, entry in enumerate(ds.entries):
            by_scene.setdefault(entry[3] or "unknown", []).append(i)
        for scene, idxs in by_scene.items():
            rng = np.random.default_rng(0)
            chosen = rng.choice(idxs, min(e.latency_lines, len(idxs)), replace=False)
            times = []
            for i in chosen:
                r_i, idx = ds.entries[i][0], ds.entries[i][1]
                img = ds.readers[r_i].read(idx).image
                if img is None:
                    continue
                stats = measure(lambda img=img: predictor([img]), reps=3, warmup=1)
                times.append(stats["p50"])
            per_scene_lat.setdefault(scene, []).extend(times)
            all_lat.extend(times)
    mc = _model_config(p)
    pct = lambda xs, q: float(np.percentile(xs, q)) if xs else float("nan")  # noqa: E731
    return {
        "name": name,
        "path": str(p),
        "format": "onnx" if p.suffix == ".onnx" else "torch",
        "int8": "int8" in p.name or "quantize" in str(p.parent),
        "size_bytes": p.stat().st_size,
        "params": count_params(CRNN(mc)),
        "macs": count_macs(mc),
        "latency_ms": {"p50": pct(all_lat, 50), "p95": pct(all_lat, 95), "p99": pct(all_lat, 99)},
        "throughput_lps": n_total / t_total if t_total else 0.0,
        "throughput_batch": e.batch_size,
        "decoder": e.decoder,
        "scenes": {
            s: {
                **sc.as_dict(),
                "latency_ms": {
                    "p50": pct(per_scene_lat.get(s, []), 50),
                    "p95": pct(per_scene_lat.get(s, []), 95),
                },
            }
            for s, sc in sorted(scores.by_scene.items())
        },
        "overall": scores.overall.as_dict(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "_lines": lines,
        "_latencies": all_lat,
    }


def run(cfg: RunConfig) -> dict:
    e = cfg.eval
    artifacts = experiment_artifacts(cfg)
    missing = [str(p) for _, p in artifacts if not p.is_file()]
    if missing:
        raise EvalError(f"artifact(s) not found: {missing}")
    test_paths = list(e.test_sets) or [str(cfg.data.split_path("test"))]
    threads = e.threads or os.cpu_count() or 1
    first = _backend(artifacts[0][1], threads)
    _, records = open_test_sets(test_paths, first.charset, first.spec)
    if not any(r.get("n") for r in records):
        raise EvalError(f"no readable, non-empty test set among {test_paths}: {records}")
    out_dir = cfg.stage_dir("eval")
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    models, t0 = [], time.perf_counter()
    tracker = Tracker(cfg.mlflow)
    with tracker.run("eval", tags={"stage": "eval", "git_commit": git_commit()}):
        for name, path in artifacts:
            with ctx.Pool(1) as pool:
                res = pool.apply(evaluate_artifact, (name, str(path), test_paths, asdict(e), threads))
            models.append(res)
            print(
                f"[eval] {name}: CER {res['overall']['cer'] * 100:.2f}%, "
                f"p50 {res['latency_ms']['p50']:.2f} ms, "
                f"{res['throughput_lps']:.0f} lines/s, peak RSS {res['peak_rss_mb']:.0f} MB"
            )
        for peer in e.peers:
            if peer not in PEERS:
                raise EvalError(f"eval.peers: unknown peer {peer!r}; known: {list(PEERS)}")
            try:
                res = evaluate_tesseract(test_paths, first.charset, first.spec)
            except PeerError as err:
                raise EvalError(str(err)) from None
            models.append(res)
            print(
                f"[eval] {peer}: CER {res['overall']['cer'] * 100:.2f}%, "
                f"p50 {res['latency_ms']['p50']:.1f} ms"
            )
        lines = {m["name"]: m.pop("_lines") for m in models}
        latencies = {m["name"]: m.pop("_latencies", []) for m in models}
        ref = next((m for m in models if m["name"] == "fp32_onnx"), None)
        for m in models:
            m["latency_ratio_to_fp32_onnx"] = (
                (m["latency_ms"]["p50"] / ref["latency_ms"]["p50"]) if ref else None
            )
        report = {
            "experiment": cfg.name,
            "machine": machine_info(threads),
            "test_sets": records,
            "seconds": round(time.perf_counter() - t0, 1),
            "models": models,
        }
        from crnn.report import write_reports

        write_reports(report, lines, out_dir, e.worst, latencies)
        for m in models:
            tracker.log_metrics(
                {
                    f"{m['name']}_cer": m["overall"]["cer"],
                    f"{m['name']}_p50_ms": m["latency_ms"]["p50"],
                    **{f"{m['name']}_cer_{s}": v["cer"] for s, v in m["scenes"].items()},
                }
            )
        for f in ("report.json", "report.md", "report.html"):
            tracker.log_artifact(out_dir / f)
    print((out_dir / "report.md").read_text())
    print(f"[eval] {out_dir}/report.{{json,md,html}} in {report['seconds']} s")
    return report


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        run(load_run_config(dcfg))


if __name__ == "__main__":
    main()
