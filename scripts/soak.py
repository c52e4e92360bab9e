"""Memory soak of the server: many requests, single lines and pages mixed, resident memory traced.

    python scripts/soak.py [--model models/crnn_zh_en.onnx] [--requests 100000] [--concurrency 4]

Unique images (a counter drawn in each) so the cache stores every answer and never answers for the model:
the cache's byte bound, ONNX Runtime's arena and the allocator are what the trace shows. One page
(10 lines) per `--page-every` requests. Resident memory of the server (and its workers) is sampled every
`--sample-every` requests. The verdict: growth over the second half (last sample minus the sample at the
half-way mark) and the peak, against `--limit-mb`. Writes runs/bench/soak.{json,md}. 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import line_image, page_image, post, rss_mb, start_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def soak(url: str, pid: int, n: int, concurrency: int, page_every: int, sample_every: int) -> list[dict]:
    local = threading.local()
    trace: list[dict] = [{"requests": 0, "rss_mb": rss_mb(pid)}]
    lock = threading.Lock()
    done = {"n": 0, "errors": 0}
    bar = tqdm(total=n, desc="soak", unit="req", smoothing=0.05)

    def one(i: int) -> None:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        page = page_every > 0 and i % page_every == 0
        _, status = post(local.s, url, page_image(i) if page else line_image(i), "page" if page else "line")
        with lock:
            done["n"] += 1
            done["errors"] += status != 200
            bar.update(1)
            if done["n"] % sample_every == 0:
                trace.append({"requests": done["n"], "rss_mb": rss_mb(pid), "t": time.time()})

    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(one, range(n)))
    bar.close()
    trace.append({"requests": n, "rss_mb": rss_mb(pid), "errors": done["errors"]})
    return trace


def verdict(trace: list[dict], limit_mb: float) -> dict:
    half = trace[len(trace) // 2]
    second = [t["rss_mb"] for t in trace[len(trace) // 2 :]]
    return {
        "start_mb": trace[0]["rss_mb"],
        "middle_mb": half["rss_mb"],
        "end_mb": trace[-1]["rss_mb"],
        "peak_mb": max(t["rss_mb"] for t in trace),
        "second_half_growth_mb": trace[-1]["rss_mb"] - half["rss_mb"],
        "second_half_range_mb": max(second) - min(second),
        "limit_mb": limit_mb,
        "under_limit": max(t["rss_mb"] for t in trace) <= limit_mb,
        "errors": trace[-1].get("errors", 0),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    served = [ROOT / "models" / f for f in ("crnn_zh_en.int8.onnx", "crnn_zh_en.onnx")]
    ap.add_argument("--model", default=str(next((p for p in served if p.is_file()), served[-1])))
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--page-every", type=int, default=10, help="one 10-line page per this many requests")
    ap.add_argument("--sample-every", type=int, default=2000)
    ap.add_argument("--limit-mb", type=float, default=200.0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench"))
    ap.add_argument("--server-args", default="", help="passed to crnn.serve, e.g. '--batch-max 16'")
    a = ap.parse_args()
    proc, base, startup = start_server(a.model, 1, a.server_args.split())
    try:
        t0 = time.perf_counter()
        trace = soak(base + "/ocr", proc.pid, a.requests, a.concurrency, a.page_every, a.sample_every)
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    v = verdict(trace, a.limit_mb)
    report = {
        "model": a.model,
        "requests": a.requests,
        "concurrency": a.concurrency,
        "page_every": a.page_every,
        "wall_s": round(wall, 1),
        "startup_s": startup,
        **v,
        "trace": trace,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(report, indent=2))
    rows = "\n".join(f"| {t['requests']} | {t['rss_mb']:.1f} |" for t in trace)
    md = (
        f"# Soak: {a.requests} requests (1 page of 10 lines per {a.page_every}), concurrency "
        f"{a.concurrency}, {Path(a.model).name} {a.server_args}\n\n"
        f"RSS start {v['start_mb']:.1f} MB, middle {v['middle_mb']:.1f} MB, end {v['end_mb']:.1f} MB, peak "
        f"{v['peak_mb']:.1f} MB (limit {a.limit_mb:.0f}); second half: growth "
        f"{v['second_half_growth_mb']:+.1f} MB, range {v['second_half_range_mb']:.1f} MB; "
        f"{v['errors']} errors; {wall:.0f} s\n\n"
        "| requests | RSS MB |\n|---|---|\n" + rows + "\n"
    )
    (out / "soak.md").write_text(md)
    print(md)
    return 0 if v["under_limit"] and v["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
