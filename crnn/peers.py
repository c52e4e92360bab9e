"""Other recognisers evaluated beside ours on the same test sets, in the same run (`eval.peers`).

tesseract: Debian's Tesseract 5 with chi_sim+eng, single-line mode (--psm 7), restricted to our alphabet
(`tessedit_char_whitelist`) so it is scored on the same task, when that alphabet is small: given the 3,800
characters of `zh_en`, Tesseract 5.3 returns an empty string for every line (measured), so a large alphabet
is passed as no whitelist at all. It runs as one process per line, as the
`tesseract` command does; its latency includes that process start, which is how people call it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from crnn.charset import Charset
from crnn.data.dataset import LmdbLineDataset
from crnn.metrics import SceneScores

PEERS = ("tesseract",)


# Whitelists up to this size are honoured (the demo's digits and marks); a 3,800-character one empties
# Tesseract's output, so beyond it none is set.
WHITELIST_MAX = 256


class PeerError(RuntimeError):
    pass


def _tesseract_one(args: tuple[bytes, str, str]) -> tuple[str, float]:
    png, langs, whitelist = args
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        f.write(png)
        f.flush()
        t = time.perf_counter()
        out = subprocess.run(
            [
                "tesseract",
                f.name,
                "stdout",
                "-l",
                langs,
                "--psm",
                "7",
                *(["-c", f"tessedit_char_whitelist={whitelist}"] if whitelist else []),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        dt = (time.perf_counter() - t) * 1000
    return " ".join(out.stdout.split()), dt


def tesseract_langs() -> str:
    if shutil.which("tesseract") is None:
        raise PeerError(
            "eval.peers has tesseract but the command is missing: make eval PEERS=tesseract installs it"
        )
    listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True).stdout.split()
    langs = [lang for lang in ("chi_sim", "eng") if lang in listed]
    if not langs:
        raise PeerError(
            "tesseract has neither chi_sim nor eng traineddata (apt-get install tesseract-ocr-chi-sim)"
        )
    return "+".join(langs)


def evaluate_tesseract(test_paths: list[str], charset: Charset, spec, workers: int = 0) -> dict:
    """Scores and latencies of Tesseract on the test sets, shaped like one model of the eval report."""
    langs = tesseract_langs()
    whitelist = "".join(c for c in charset.chars if c != " ")
    if len(whitelist) > WHITELIST_MAX:
        whitelist = ""
    scores = SceneScores()
    lat_all: list[float] = []
    lat_scene: dict[str, list[float]] = {}
    lines = []
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(workers or os.cpu_count() or 1) as pool:
        for path in test_paths:
            try:
                ds = LmdbLineDataset([path], charset, spec, oov_policy="keep", default_scene=Path(path).name)
            except Exception:
                continue
            jobs, meta = [], []
            for r_i, idx, label, scene, _ in ds.entries:
                img = ds.readers[r_i].read(idx).image
                if img is None:
                    scores.add(label, "", scene)
                    continue
                jobs.append((cv2.imencode(".png", img)[1].tobytes(), langs, whitelist))
                meta.append((idx, label, scene or "unknown"))
            for (idx, label, scene), (pred, ms) in zip(meta, pool.imap(_tesseract_one, jobs, chunksize=4)):
                scores.add(label, pred, scene)
                lat_all.append(ms)
                lat_scene.setdefault(scene, []).append(ms)
                lines.append({"set": path, "index": idx, "label": label, "scene": scene, "pred": pred})
    wall = time.perf_counter() - t0
    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    pct = lambda xs, q: float(np.percentile(xs, q)) if xs else float("nan")  # noqa: E731
    return {
        "name": "tesseract",
        "path": shutil.which("tesseract") or "",
        "format": f"peer ({version}, {langs}, psm 7)",
        "int8": False,
        "size_bytes": _traineddata_size(langs),
        "params": 0,
        "macs": 0,
        "latency_ms": {"p50": pct(lat_all, 50), "p95": pct(lat_all, 95), "p99": pct(lat_all, 99)},
        "throughput_lps": scores.overall.n / wall if wall else 0.0,
        "throughput_batch": 1,
        "scenes": {
            s: {
                **sc.as_dict(),
                "latency_ms": {"p50": pct(lat_scene.get(s, []), 50), "p95": pct(lat_scene.get(s, []), 95)},
            }
            for s, sc in sorted(scores.by_scene.items())
        },
        "overall": scores.overall.as_dict(),
        "peak_rss_mb": None,  # a separate process per line: no single figure
        "_lines": lines,
        "_latencies": lat_all,
    }


def _traineddata_size(langs: str) -> int:
    total = 0
    for d in (Path("/usr/share/tesseract-ocr/5/tessdata"), Path("/usr/share/tesseract-ocr/4.00/tessdata")):
        for lang in langs.split("+"):
            f = d / f"{lang}.traineddata"
            if f.is_file():
                total += f.stat().st_size
    return total
