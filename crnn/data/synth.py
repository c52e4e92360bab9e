"""Data stage: render the synthetic train/val/test LMDBs of an experiment.

    python -m crnn.data.synth experiment=demo [data.splits.train.size=50000] [+force=true]

Splits are rendered in parallel worker processes (data.workers) with a tqdm bar. A split whose LMDB
already holds exactly what the config asks for (same fingerprint in its meta.json) is kept as it is, so
`make demo` twice renders once. val and test hold every scene type in turn.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import shutil
import sys
import time
from dataclasses import asdict

import hydra
from omegaconf import DictConfig
from tqdm import tqdm

from crnn.charset import load_charset
from crnn.data.corpus import corpus_identity
from crnn.data.lmdb_io import WIDTH_KEY_HEIGHT, LmdbWriter, encode_image
from crnn.data.render import render_identity
from crnn.data.source import SynthSource
from crnn.models.checkpoint import git_commit
from crnn.settings import RunConfig, SplitConfig, load_run_config
from crnn.tracking import Tracker

_worker_source: SynthSource | None = None
_worker_fmt = "png"


def _init_worker(cfg: RunConfig, split: SplitConfig, fmt: str) -> None:
    global _worker_source, _worker_fmt
    _worker_source = SynthSource(cfg.corpus, cfg.render, load_charset(cfg.charset), seed=split.seed,
                                 exclude_fonts=split.exclude_fonts, recrop_p=split.recrop_p)
    _worker_fmt = fmt


def _render_chunk(args: tuple[int, int, bool]) -> tuple[list[tuple[bytes, str, str, int]], dict]:
    start, stop, balanced = args
    src = _worker_source
    assert src is not None
    before_no_font = src.stats.no_font
    out = []
    for i in range(start, stop):
        s = src.sample(i, balanced=balanced)
        h, w = s.image.shape
        out.append((encode_image(s.image, _worker_fmt), s.label, s.scene, round(w * WIDTH_KEY_HEIGHT / h)))
    return out, {"no_font": src.stats.no_font - before_no_font}


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def split_fingerprint(cfg: RunConfig, split: SplitConfig) -> str:
    """What decides a rendered split's lines: the split (size, seed, balance, excluded fonts, re-crop share),
    the alphabet, the corpus and render recipes, and the stored image format."""
    return _digest({"split": asdict(split), "charset": load_charset(cfg.charset).fingerprint(),
                    "corpus": corpus_identity(cfg.corpus), "render": render_identity(cfg.render),
                    "format": cfg.data.image_format})


def stream_fingerprint(cfg: RunConfig) -> str:
    """What decides the lines of the on-the-fly training stream (data.train=synth, built by
    crnn.data.source.train_stream_source): the train split's seed, excluded fonts and re-crop share, the run
    seed, the alphabet, and the corpus and render recipes. The split's size does not matter (the stream is
    endless)."""
    split = cfg.data.splits.get("train") or SplitConfig(seed=0)
    return _digest({"stream": {"seed": split.seed, "exclude_fonts": list(split.exclude_fonts),
                               "recrop_p": split.recrop_p, "run_seed": cfg.seed},
                    "charset": load_charset(cfg.charset).fingerprint(),
                    "corpus": corpus_identity(cfg.corpus), "render": render_identity(cfg.render)})


def write_split(cfg: RunConfig, name: str, split: SplitConfig, force: bool = False) -> dict:
    out = cfg.data.split_path(name)
    meta_path = out / "meta.json"
    fp = split_fingerprint(cfg, split)
    if not force and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fp and meta.get("complete"):
            print(f"[data] {out}: up to date ({meta['num_samples']} lines), kept")
            return meta | {"reused": True}
    if out.exists():
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    chunk = 64
    jobs = [(a, min(a + chunk, split.size), split.balanced) for a in range(0, split.size, chunk)]
    t0 = time.perf_counter()
    scenes: dict[str, int] = {}
    no_font = 0
    workers = max(1, cfg.data.workers)
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with LmdbWriter(tmp) as writer, ctx.Pool(workers, _init_worker, (cfg, split, cfg.data.image_format)) as pool:
        bar = tqdm(total=split.size, desc=f"render {name}", unit="line", smoothing=0.05)
        for rows, stats in pool.imap(_render_chunk, jobs):
            for data, label, scene, width in rows:
                writer.add(data, label, scene=scene, width=width)
                scenes[scene] = scenes.get(scene, 0) + 1
            no_font += stats["no_font"]
            bar.update(len(rows))
        bar.close()
    elapsed = time.perf_counter() - t0
    tmp.rename(out)
    meta = {
        "split": name, "num_samples": split.size, "fingerprint": fp, "complete": True, "scenes": scenes,
        "no_font_redraws": no_font, "seconds": round(elapsed, 2), "lines_per_s": round(split.size / elapsed, 1),
        "workers": workers, "git_commit": git_commit(), "config": asdict(split),
    }
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    print(f"[data] {out}: {split.size} lines in {elapsed:.1f}s ({meta['lines_per_s']} lines/s), scenes {scenes}")
    return meta


def run(cfg: RunConfig, force: bool = False) -> dict[str, dict]:
    if not cfg.data.splits:
        raise ValueError("data.splits is empty: nothing to render")
    tracker = Tracker(cfg.mlflow)
    metas = {}
    with tracker.run(run_name="data", tags={"stage": "data", "git_commit": git_commit()}):
        tracker.log_params({"charset": cfg.charset, "corpus": asdict(cfg.corpus), "data": asdict(cfg.data)})
        for name, split in cfg.data.splits.items():
            if name == "train" and cfg.data.train == "synth":
                # rendered on the fly by the loader workers; the split only names its seed and fonts
                print("[data] train: data.train=synth, rendered on the fly while training, nothing written")
                continue
            metas[name] = write_split(cfg, name, split, force)
            if not metas[name].get("reused"):
                tracker.log_metrics({f"{name}_lines_per_s": metas[name]["lines_per_s"],
                                     f"{name}_lines": metas[name]["num_samples"]})
    return metas


@hydra.main(config_path="../../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    force = bool(dcfg.get("force", False))
    if "force" in dcfg:
        from omegaconf import open_dict

        with open_dict(dcfg):
            del dcfg["force"]
    run(load_run_config(dcfg), force=force)


if __name__ == "__main__":
    main()
