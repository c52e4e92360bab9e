"""The recognizer's character LM, built and tuned: `python -m crnn.lm_build experiment=zh_en_v2` (make lm).

1. Counts `lm.lines` lines of the run's own corpus (crnn.data.corpus), each drawn from a scene chosen by the
   render recipes' weights, as training draws them, from seed `lm.seed` (not a data split's), and estimates
   a pruned character n-gram model (crnn.lm).
2. Reads the run's validation lines once with the recognizer (`lm.model`: default the run's INT8 file, else
   its FP32 ONNX), keeps each frame's candidate classes, and decodes them under every (alpha, beta) of the
   grid; the lowest CER wins (the smaller alpha on a tie: trust the pixels). The weights go into the file,
   so they travel with it. Never real lines: those only evaluate (`make eval-real ... LM=...`).

Writes runs/<name>/lm/lm.npz and report.json (the grid, greedy and plain-beam CER on the same lines, the
file's size and lineage), and logs both to MLflow.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from crnn.charset import Charset, load_charset
from crnn.cli import StageError, stage_errors
from crnn.ctc import beam_search, frame_candidates
from crnn.data.corpus import Corpus
from crnn.data.preprocess import pad_batch
from crnn.lineage import git_commit, sha256_file
from crnn.lm import CharLM, Fusion, build
from crnn.metrics import TextScore
from crnn.models.geometry import output_length
from crnn.settings import RunConfig, load_run_config
from crnn.tracking import Tracker


def corpus_lines(cfg: RunConfig, charset: Charset) -> Iterator[str]:
    """`lm.lines` lines of the run's corpus, each from a scene drawn by the render recipes' weights."""
    corpus = Corpus(cfg.corpus, charset, seed=cfg.lm.seed)
    scenes = list(cfg.render.scenes)
    views = {
        s: corpus.for_scene(r.text, r.text_lengths, r.text_max_len) for s, r in cfg.render.scenes.items()
    }
    weights = [cfg.render.scenes[s].weight for s in scenes]
    rng = random.Random(f"lm:{cfg.lm.seed}")
    for i in range(cfg.lm.lines):
        yield views[rng.choices(scenes, weights=weights)[0]].line(i)


def recognizer_file(cfg: RunConfig) -> Path:
    if cfg.lm.model:
        return Path(cfg.lm.model)
    run = Path(cfg.runs_dir) / cfg.name
    for rel in ("quantize/model.int8.onnx", "export/model.onnx"):
        if (run / rel).is_file():
            return run / rel
    raise StageError(f"no recognizer under {run} (quantize/model.int8.onnx, export/model.onnx): set lm.model")


def read_candidates(cfg: RunConfig, model: Path, k: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, candidate ids, their log-probabilities) of every validation line, read once."""
    from crnn.eval import _backend, open_test_set
    from crnn.predictor import Predictor

    backend = _backend(model, cfg.lm.threads)
    predictor = Predictor(backend, max_batch=32)
    out = []
    for path in cfg.data.val_paths():
        ds = open_test_set(path, backend.charset, backend.spec)
        n = len(ds) if not cfg.lm.val_max_lines else min(len(ds), cfg.lm.val_max_lines)
        groups = predictor.batches(ds.widths()[:n])
        for idx in tqdm(groups, desc=f"reading {Path(path).name}", unit="batch"):
            items = [it for it in (ds[i] for i in idx) if it.x is not None]
            if not items:
                continue
            batch, widths = pad_batch([it.x for it in items])
            logits = backend.logits(batch, widths).astype(np.float32)
            for it, lg, w in zip(items, logits, widths):
                top, vals = frame_candidates(lg[: output_length(int(w), backend.hstride)], k)
                out.append((it.label, top, vals))
    if not out:
        raise StageError(f"no readable validation lines in {cfg.data.val_paths()}: run make data first")
    return out


def cer(
    lines: list[tuple[str, np.ndarray, np.ndarray]], charset: Charset, lm: CharLM | None, beam_width: int
) -> float:
    score = TextScore()
    for label, top, vals in lines:
        ids, _ = beam_search(top, vals, charset, beam_width, lm)
        score.add(label, charset.decode(ids))
    return score.cer


def greedy_cer(lines: list[tuple[str, np.ndarray, np.ndarray]], charset: Charset) -> float:
    """The best path of the same candidates: each frame's best class, repeats merged, blanks dropped."""
    score = TextScore()
    for label, top, vals in lines:
        path = np.take_along_axis(top, vals.argmax(axis=1)[:, None], axis=1)[:, 0].tolist()
        ids = [c for i, c in enumerate(path) if c and (i == 0 or c != path[i - 1])]
        score.add(label, charset.decode(ids))
    return score.cer


def tune(lm: CharLM, lines: list, charset: Charset, cfg: RunConfig) -> tuple[Fusion, list[dict]]:
    """Every grid point's validation CER; the lowest wins, the smaller alpha (then beta) on a tie."""
    rows = []
    grid = [(a, b) for a in cfg.lm.alpha for b in cfg.lm.beta]
    for a, b in tqdm(grid, desc="fusion weights", unit="point"):
        fusion = Fusion(a, b, cfg.lm.beam_width)
        rows.append({**asdict(fusion), "cer": cer(lines, charset, lm.with_fusion(fusion), fusion.beam_width)})
    best = min(rows, key=lambda r: (round(r["cer"], 6), r["alpha"], r["beta"]))
    return Fusion(best["alpha"], best["beta"], best["beam_width"]), rows


def run(cfg: RunConfig) -> dict:
    charset = load_charset(cfg.charset)
    model = recognizer_file(cfg)
    out = cfg.stage_dir("lm")
    out.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(cfg.mlflow)
    with tracker.run("lm", {"stage": "lm", "recognizer_sha256": sha256_file(model)}):
        tracker.log_params({"lm": asdict(cfg.lm)})
        t0 = time.perf_counter()
        lines = tqdm(
            corpus_lines(cfg, charset), total=cfg.lm.lines, desc="counting corpus lines", unit="line"
        )
        meta = {
            "stage": "lm",
            "config_name": cfg.name,
            "git_commit": git_commit(),
            "charset": cfg.charset,
            "charset_fingerprint": charset.fingerprint(),
            "corpus_seed": cfg.lm.seed,
            "corpus_lines": cfg.lm.lines,
            "min_count": cfg.lm.min_count,
            "discount": cfg.lm.discount,
        }
        lm = build(lines, charset.chars, cfg.lm.order, cfg.lm.discount, cfg.lm.min_count, meta)
        build_s = time.perf_counter() - t0
        val = read_candidates(cfg, model, max(cfg.lm.beam_width, 2))
        fusion, grid = tune(lm, val, charset, cfg)
        lm = lm.with_fusion(fusion)
        lm.meta["tuned_on"] = {
            "val": cfg.data.val_paths(),
            "lines": len(val),
            "recognizer": str(model),
            "recognizer_sha256": sha256_file(model),
        }
        path = out / "lm.npz"
        lm.save(path)
        report = {
            "lm": str(path),
            "sha256": sha256_file(path),
            "size_bytes": path.stat().st_size,
            "ngrams": len(lm.discounted),
            "contexts": len(lm.backoff),
            "build_seconds": round(build_s, 1),
            "recognizer": str(model),
            "val_lines": len(val),
            "greedy_cer": greedy_cer(val, charset),
            "beam_cer": cer(val, charset, None, cfg.lm.beam_width),
            "chosen": asdict(fusion),
            "chosen_cer": min(r["cer"] for r in grid),
            "grid": grid,
            "meta": lm.meta,
        }
        (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        tracker.log_metrics({k: report[k] for k in ("greedy_cer", "beam_cer", "chosen_cer", "size_bytes")})
        tracker.log_artifact(out / "report.json")
    return report


def table(report: dict) -> str:
    rows = ["| alpha | beta | validation CER |", "|---|---|---|"]
    for r in report["grid"]:
        mark = (
            "**" if (r["alpha"], r["beta"]) == (report["chosen"]["alpha"], report["chosen"]["beta"]) else ""
        )
        rows.append(f"| {mark}{r['alpha']}{mark} | {r['beta']} | {r['cer'] * 100:.2f} % |")
    return "\n".join(rows)


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        report = run(load_run_config(dcfg))
    print(table(report))
    print(
        f"\n{report['lm']}: {report['ngrams']:,} n-grams, {report['size_bytes'] / 1e6:.2f} MB; on "
        f"{report['val_lines']} validation lines CER greedy {report['greedy_cer'] * 100:.2f} %, beam "
        f"{report['beam_cer'] * 100:.2f} %, beam + LM {report['chosen_cer'] * 100:.2f} % "
        f"(alpha {report['chosen']['alpha']}, beta {report['chosen']['beta']})"
    )


if __name__ == "__main__":
    main()
