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
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import editdistance
import hydra
import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from crnn.cli import StageError, stage_errors
from crnn.data.folder import FolderFormatError, FolderLineDataset, is_folder_set
from crnn.data.lines import LmdbLineDataset
from crnn.data.lmdb_io import LmdbFormatError
from crnn.lineage import sha256_file
from crnn.metrics import SceneScores
from crnn.models.checkpoint import git_commit, load_checkpoint
from crnn.models.complexity import count_macs, count_params
from crnn.models.crnn import CRNN, ModelConfig
from crnn.peers import PEERS, PeerError, make_peer
from crnn.scoring import score_dataset
from crnn.settings import EvalConfig, RunConfig, load_run_config
from crnn.textnorm import Normalizer
from crnn.timing import measure
from crnn.tracking import Tracker, param_name

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


LM_JOIN = "+"  # an artifact "model.onnx+lm.npz" is the recognizer read with that character LM (decoder lm)


def split_artifact(path: str | Path) -> tuple[Path, Path | None]:
    """(recognizer, its character LM or None) of an artifact path: `model.onnx+lm.npz` pairs the two, so one
    run can read the same recognizer with and without the LM (a replacement gate pairs their lines)."""
    s = str(path)
    if LM_JOIN in s and s.endswith(".npz"):
        model, lm = s.rsplit(LM_JOIN, 1)
        return Path(model), Path(lm)
    return Path(s), None


def experiment_artifacts(cfg: RunConfig) -> list[tuple[str, Path]]:
    run = Path(cfg.runs_dir) / cfg.name
    if cfg.eval.artifacts:  # "path" (named by its stem) or "name=path"; path may be "model+lm.npz"
        named = [a.split("=", 1) if "=" in a else (Path(a).stem, a) for a in cfg.eval.artifacts]
        return [(name, Path(path)) for name, path in named]
    found = [(name, run / rel) for name, rel in STANDARD_ARTIFACTS if (run / rel).is_file()]
    if not found:
        raise EvalError(
            f"no artifact under {run} (looked for {[r for _, r in STANDARD_ARTIFACTS]}); "
            "run make train first or set eval.artifacts"
        )
    return found


TestSet = LmdbLineDataset | FolderLineDataset


def open_test_set(path: str, charset, spec) -> TestSet:
    """An LMDB, or a folder of labelled images (categories = subfolders with labels.tsv)."""
    p = Path(path)
    if is_folder_set(p) or (p.is_dir() and not (p / "data.mdb").is_file()):
        return FolderLineDataset(p, charset, spec)  # says what either layout needs when it is neither
    return LmdbLineDataset([path], charset, spec, oov_policy="keep", default_scene=Path(path).name)


def open_test_sets(paths: list[str], charset, spec) -> tuple[list[tuple[str, TestSet]], list[dict]]:
    """The readable test sets with the path as given (the report's key for them), and a record of every
    one (its size, label stats, or its error)."""
    sets, records = [], []
    for p in paths:
        try:
            ds = open_test_set(p, charset, spec)
        except (LmdbFormatError, FolderFormatError, OSError) as e:
            records.append({"path": p, "error": str(e), "n": 0})
            continue
        records.append(
            {
                "path": p,
                "kind": ds.kind,
                "n": len(ds),
                "scenes": sorted({s or "unknown" for s in ds.scenes()}),
                "labels": ds.label_stats.as_dict(),
                "missing_labels": ds.missing_labels,
                **(ds.summary() if isinstance(ds, FolderLineDataset) else {}),
                **({"error": "empty test set"} if len(ds) == 0 else {}),
            }
        )
        if len(ds):
            sets.append((p, ds))
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


def _check_lms(artifacts: list[tuple[str, Path]], e: EvalConfig) -> None:
    """Every LM an artifact is read with loads and was built for that artifact's alphabet: said here, not
    as a traceback from the evaluation's worker process."""
    from crnn.charset import Charset
    from crnn.lm import LMFormatError, load_lm_for
    from crnn.onnx_model import read_metadata

    for name, path in artifacts:
        model, lm = split_artifact(path)
        lm = lm or (Path(e.lm) if e.lm and e.decoder == "lm" else None)
        if lm is None:
            continue
        if model.suffix == ".onnx":
            charset = Charset.from_string(read_metadata(model)["charset"])
        else:
            charset = load_checkpoint(model).charset
        try:
            load_lm_for(lm, charset.fingerprint(), str(model))
        except LMFormatError as err:
            raise EvalError(f"eval.artifacts {name}: {err}") from None


def _model_config(path: Path) -> ModelConfig:
    if path.suffix == ".onnx":
        from crnn.onnx_model import read_metadata

        return ModelConfig(**json.loads(read_metadata(path)["model_config"]))
    return load_checkpoint(path).model_config


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def _line_records(ds: TestSet, preds: dict[int, str], norm: Normalizer) -> list[dict]:
    """Every line with the text it was scored on (label and prediction normalised alike) and its edits,
    which a paired comparison of two models on the same lines counts (crnn/paired.py), and the reading as
    it was answered (`read`: normalising drops what a change in reading may change, a plate's dot or case)."""
    out = []
    for i, (_, _, label, scene, _) in enumerate(ds.entries):
        lab, pred = norm(label, scene), norm(preds.get(i, ""), scene)
        out.append(
            {
                **ds.source(i),
                "label": lab,
                "scene": scene or "unknown",
                "pred": pred,
                "read": preds.get(i, ""),
                "edits": editdistance.eval(lab, pred),
            }
        )
    return out


def _scene_latencies(ds: TestSet, read_one: Callable[[np.ndarray], object], n: int, color: bool) -> dict:
    """Batch-1 milliseconds from the decoded image to text for up to `n` seeded lines per scene."""
    by_scene: dict[str, list[int]] = {}
    for i, entry in enumerate(ds.entries):
        by_scene.setdefault(entry[3] or "unknown", []).append(i)
    out: dict[str, list[float]] = {}
    for scene, idxs in by_scene.items():
        chosen = np.random.default_rng(0).choice(idxs, min(n, len(idxs)), replace=False)
        times = []
        for i in chosen:
            img = ds.image(int(i), color=color)
            if img is not None:
                times.append(measure(lambda img=img: read_one(img), reps=3, warmup=1)["p50"])
        out[scene] = times
    return out


def _scene_dicts(scores: SceneScores, lat: dict[str, list[float]]) -> dict:
    return {
        s: {
            **sc.as_dict(),
            "latency_ms": {"p50": _pct(lat.get(s, []), 50), "p95": _pct(lat.get(s, []), 95)},
        }
        for s, sc in sorted(scores.by_scene.items())
    }


def _set_summary(path: str, ds: TestSet, scores: SceneScores, lat: dict[str, list[float]]) -> dict:
    """One test set's figures on their own: two sets may share a category name."""
    cers = [v.cer for v in scores.by_scene.values()]
    return {
        "path": path,
        "kind": ds.kind,
        **scores.overall.as_dict(),
        "macro_cer": sum(cers) / len(cers) if cers else 0.0,  # categories differ a lot in size
        "scenes": _scene_dicts(scores, lat),
    }


def _evaluate_sets(
    sets: list[tuple[str, TestSet]],
    score: Callable[[TestSet, dict[int, str]], SceneScores],
    read_one: Callable[[np.ndarray], object],
    color: bool,
    e: EvalConfig,
    norm: Normalizer,
) -> dict:
    """Scores (`score(ds, predictions)`), timed, then batch-1 latencies per scene, per set and overall:
    the same loop for our models and for peers."""
    scores, lines, lat, per_set = SceneScores(), [], {}, []
    t_total, n_total = 0.0, 0
    for path, ds in tqdm(sets, desc="eval", unit="set", leave=False):
        preds: dict[int, str] = {}
        t0 = time.perf_counter()
        s = score(ds, preds)
        t_total += time.perf_counter() - t0
        n_total += s.overall.n
        scores.merge(s)
        set_lat = _scene_latencies(ds, read_one, e.latency_lines, color)
        per_set.append(_set_summary(path, ds, s, set_lat))
        lines.extend(_line_records(ds, preds, norm))
        for scene, ts in set_lat.items():
            lat.setdefault(scene, []).extend(ts)
    return {"scores": scores, "lat": lat, "n": n_total, "seconds": t_total, "sets": per_set, "lines": lines}


def _result(run: dict, **info) -> dict:
    """One model's (or peer's) entry of the report."""
    lat = run["lat"]
    all_lat = [t for ts in lat.values() for t in ts]
    return {
        **info,
        "latency_ms": {"p50": _pct(all_lat, 50), "p95": _pct(all_lat, 95), "p99": _pct(all_lat, 99)},
        "throughput_lps": run["n"] / run["seconds"] if run["seconds"] else 0.0,
        "scenes": _scene_dicts(run["scores"], lat),
        "overall": run["scores"].overall.as_dict(),
        "sets": run["sets"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "_latencies": all_lat,
        "_lines": run["lines"],
    }


def evaluate_artifact(name: str, path: str, test_paths: list[str], e_dict: dict, threads: int) -> dict:
    """Runs in a fresh process: scores, latencies, throughput and peak memory of one artifact."""
    from crnn.config import from_dict
    from crnn.lm import load_lm_for
    from crnn.predictor import Predictor, SecondLook

    e = from_dict(EvalConfig, e_dict)
    norm = Normalizer(e.normalize)
    p, lm_path = split_artifact(path)
    lm_path = lm_path or (Path(e.lm) if e.lm and e.decoder == "lm" else None)
    decoder = "lm" if lm_path else e.decoder
    backend = _backend(p, threads)
    lm = load_lm_for(lm_path, backend.charset.fingerprint(), str(p)) if lm_path else None
    look = SecondLook() if e.second_look else None
    predictor = Predictor(
        backend, decoder=decoder, beam_width=e.beam_width, lm=lm, second_look=look, formats=tuple(e.formats)
    )
    sets, _ = open_test_sets(test_paths, backend.charset, backend.spec)

    def score(ds: TestSet, preds: dict[int, str]) -> SceneScores:
        return score_dataset(predictor, ds, e.batch_size, predictions=preds, normalize=norm)[0]

    run = _evaluate_sets(sets, score, lambda img: predictor([img]), False, e, norm)
    mc = _model_config(p)
    return _result(
        run,
        name=name,
        path=str(p),
        sha256=sha256_file(p),  # the replacement gate finds the bundled model's lines by its bytes
        format="onnx" if p.suffix == ".onnx" else "torch",
        int8="int8" in p.name or "quantize" in str(p.parent),
        size_bytes=p.stat().st_size,
        params=count_params(CRNN(mc)),
        macs=count_macs(mc),
        throughput_batch=e.batch_size,
        decoder=decoder,
        second_look=asdict(look) if look else None,
        formats=predictor.applied_formats,
        format_ids=predictor.format_ids,
        **(
            {"lm": str(lm_path), "lm_sha256": sha256_file(lm_path), "lm_fusion": asdict(lm.fusion)}
            if lm
            else {}
        ),
    )


def evaluate_peer(name: str, test_paths: list[str], e_dict: dict, threads: int, charset, spec) -> dict:
    """Runs in a fresh process: another recogniser on the same sets, scored and timed by the same rules
    (same normalisation, batch-1 latency from the decoded image, seeded lines per scene). Peers read the
    colour image where the set has one, as they were trained to."""
    from crnn.config import from_dict

    e = from_dict(EvalConfig, e_dict)
    norm = Normalizer(e.normalize)
    try:
        peer = make_peer(name, charset, threads=threads)
    except PeerError as err:
        return {"name": name, "error": str(err)}
    sets, _ = open_test_sets(test_paths, charset, spec)
    failed = {"n": 0}

    def read(img: np.ndarray | None) -> str:
        """A line the peer cannot read (no image, or it raises) scores as empty, counted."""
        if img is None:
            return ""
        try:
            return peer.read(img)
        except Exception:  # noqa: BLE001  (a peer's own failure on one line must not end the run)
            failed["n"] += 1
            return ""

    def score(ds: TestSet, preds: dict[int, str]) -> SceneScores:
        s = SceneScores(norm)
        for i, (_, _, label, scene, _) in enumerate(tqdm(ds.entries, desc=f"eval {name}", leave=False)):
            preds[i] = read(ds.image(i, color=True))
            s.add(label, preds[i], scene)
        return s

    run = _evaluate_sets(sets, score, peer.read, True, e, norm)
    return _result(
        run,
        name=name,
        int8=False,
        params=0,
        macs=0,
        throughput_batch=1,
        decoder="own",
        failed_lines=failed["n"],
        **peer.info(),
    )


def run_peer(name: str, test_paths: list[str], e_dict: dict, threads: int, charset, spec) -> dict:
    """`evaluate_peer` in a fresh process whose OpenMP thread limit is `threads` from its start: Tesseract
    reads OMP_THREAD_LIMIT when libgomp loads, and PyTorch loads libgomp on import."""
    old = os.environ.get("OMP_THREAD_LIMIT")
    os.environ["OMP_THREAD_LIMIT"] = str(threads)
    try:
        with mp.get_context("spawn").Pool(1) as pool:
            return pool.apply(evaluate_peer, (name, test_paths, e_dict, threads, charset, spec))
    finally:
        if old is None:
            os.environ.pop("OMP_THREAD_LIMIT", None)
        else:
            os.environ["OMP_THREAD_LIMIT"] = old


def run(cfg: RunConfig) -> dict:
    e = cfg.eval
    artifacts = experiment_artifacts(cfg)
    files = [f for _, p in artifacts for f in split_artifact(p) if f is not None]
    files += [Path(e.lm)] if e.lm and e.decoder == "lm" else []
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise EvalError(f"artifact(s) not found: {missing}")
    if e.decoder == "lm" and not e.lm and not all(split_artifact(p)[1] for _, p in artifacts):
        raise EvalError("eval.decoder=lm needs eval.lm=<file> (make lm) or artifacts given as model+lm.npz")
    test_paths = list(e.test_sets) or [str(cfg.data.split_path("test"))]
    threads = e.threads or os.cpu_count() or 1
    try:
        Normalizer(e.normalize)
    except ValueError as err:
        raise EvalError(f"eval.normalize: {err}") from None
    first = _backend(split_artifact(artifacts[0][1])[0], threads)
    _check_lms(artifacts, e)
    _, records = open_test_sets(test_paths, first.charset, first.spec)
    if not any(r.get("n") for r in records):
        raise EvalError(f"no readable, non-empty test set among {test_paths}: {records}")
    out_dir = cfg.stage_dir(e.out_dir)
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
            res = run_peer(peer, test_paths, asdict(e), threads, first.charset, first.spec)
            if "error" in res:
                raise EvalError(res["error"])
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
            "normalize": e.normalize,  # the gate refuses to compare figures scored by other rules
            "models": models,
        }
        from crnn.report import write_reports

        write_reports(report, lines, out_dir, e.worst, latencies)
        for m in models:
            tracker.log_metrics(
                {
                    f"{m['name']}_cer": m["overall"]["cer"],
                    f"{m['name']}_p50_ms": m["latency_ms"]["p50"],
                    **{param_name(f"{m['name']}_cer_{s}"): v["cer"] for s, v in m["scenes"].items()},
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
