"""Serving benchmark on loopback: start the server, load it, measure, stop it (make bench-serve).

    python scripts/load_test.py --model runs/demo/quantize/model.int8.onnx [--requests 10000]

Measures start-up time (process start to first healthy answer), single-line latency p50/p95/p99 and
throughput at concurrency 1, 4 and 16, 10-line pages, the cache-hit speed-up, and the server's resident
memory at start and after all requests. Unique images are sent (a counter is drawn into each) so the cache
does not flatter the figures, except in the cache test. Bounded in requests and time; 127.0.0.1 only.
Writes runs/bench/serve.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of the server process and its children (uvicorn workers)."""
    total = 0
    pids = [pid] + [
        int(p)
        for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    ]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def line_image(i: int, digits: bool = True) -> bytes:
    """A printed line with a unique number in it (so no two requests share a cache key)."""
    text = f"{i:07d}-{(i * 7919) % 100000:05d}"
    img = np.full((32, 16 * len(text) + 16), 255, np.uint8)
    cv2.putText(img, text, (6, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2, cv2.LINE_AA)
    return cv2.imencode(".png", img)[1].tobytes()


def page_image(i: int) -> bytes:
    rows = []
    for k in range(10):
        text = f"{i:05d} {k:02d} {(i * 31 + k * 977) % 100000:05d}"
        row = np.full((40, 360), 255, np.uint8)
        cv2.putText(row, text, (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2, cv2.LINE_AA)
        rows.append(row)
    return cv2.imencode(".png", np.vstack(rows))[1].tobytes()


def post(session: requests.Session, url: str, data: bytes, mode: str) -> tuple[float, int]:
    t = time.perf_counter()
    r = session.post(url, files={"file": ("x.png", data, "image/png")}, data={"mode": mode}, timeout=60)
    return (time.perf_counter() - t) * 1000, r.status_code


def load(url: str, payloads: list[bytes], concurrency: int, mode: str, keep_ms: bool = False) -> dict:
    local = threading.local()

    def one(data: bytes) -> tuple[float, int]:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return post(local.s, url, data, mode)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        res = list(ex.map(one, payloads))
    wall = time.perf_counter() - t0
    ms = np.array([r[0] for r in res])
    ok = sum(1 for r in res if r[1] == 200)
    out = {
        "concurrency": concurrency,
        "requests": len(res),
        "ok": ok,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "throughput_rps": len(res) / wall,
        "wall_s": wall,
    }
    if keep_ms:
        out["_ms"] = ms
    return out


def start_server(model: str, workers: int, extra: list[str]) -> tuple[subprocess.Popen, str, float]:
    """crnn.serve on a free loopback port: process, base URL, seconds to the first healthy answer."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    cmd = [
        sys.executable,
        "-m",
        "crnn.serve",
        "--model",
        model,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    proc = subprocess.Popen(cmd + extra, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if requests.get(base + "/health", timeout=1).ok:
                return proc, base, time.perf_counter() - t0
        except requests.ConnectionError:
            pass
        if time.perf_counter() - t0 > 60 or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"server did not start: {' '.join(cmd + extra)}")
        time.sleep(0.02)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=20)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/demo/quantize/model.int8.onnx")
    ap.add_argument("--requests", type=int, default=10000, help="single-line requests in all (bounded)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--lm", default="", help="the character LM the server reads with (decoder lm)")
    ap.add_argument("--batch-max", type=int, default=16, help="micro-batching setting compared at the end")
    ap.add_argument("--batch-wait-ms", type=float, nargs="+", default=[0.0, 2.0], help="each compared")
    ap.add_argument(
        "--second-look",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the server reads doubtful lines again blurred (its default; --no-second-look: once)",
    )
    a = ap.parse_args(argv)
    lm = ["--lm", a.lm] if a.lm else []
    lm += [] if a.second_look else ["--no-second-look"]
    try:
        proc, base, startup = start_server(a.model, a.workers, lm)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    url = base + "/ocr"
    counter = 0
    rss_trace: list[tuple[int, float]] = []
    try:
        rss_trace.append((0, rss_mb(proc.pid)))
        n = a.requests
        shares = {1: n // 5, 4: n * 2 // 5, 16: n - n // 5 - n * 2 // 5}
        out = {
            "model": a.model,
            "decoder": "lm" if a.lm else "greedy",
            "lm": a.lm or None,
            "second_look": a.second_look,
            "workers": a.workers,
            "cores": os.cpu_count(),
            "startup_s": startup,
            "rss_start_mb": rss_trace[0][1],
            "single_line": [],
        }
        for conc, k in shares.items():
            load(url, [line_image(10**8 + counter + i) for i in range(min(50, k))], conc, "line")  # warm-up
            counter += min(50, k)
            parts = []
            for lo in range(0, k, 1000):  # resident memory after every 1,000 requests
                chunk = [line_image(counter + i) for i in range(min(1000, k - lo))]
                parts.append(load(url, chunk, conc, "line", keep_ms=True))
                counter += len(chunk)
                rss_trace.append((counter, rss_mb(proc.pid)))
            out["single_line"].append(merge_loads(parts))
            print(f"[serve-bench] single line, concurrency {conc}: {out['single_line'][-1]}")
        out["pages_10_lines"] = load(url, [page_image(i) for i in range(200)], 4, "page")
        counter += 200
        rss_trace.append((counter, rss_mb(proc.pid)))
        print(f"[serve-bench] 10-line pages: {out['pages_10_lines']}")
        same = line_image(10**7)
        s = requests.Session()
        miss = post(s, url, same, "line")[0]
        hits = [post(s, url, same, "line")[0] for _ in range(200)]
        fresh = [post(s, url, line_image(2 * 10**7 + i), "line")[0] for i in range(200)]
        counter += 401
        out["cache"] = {
            "first_ms": miss,
            "hit_p50_ms": float(np.median(hits)),
            "miss_p50_ms": float(np.median(fresh)),
            "speedup": float(np.median(fresh) / np.median(hits)),
        }
        out["rss_end_mb"] = rss_mb(proc.pid)
        rss_trace.append((counter, out["rss_end_mb"]))
        out["total_requests"] = counter
        out["rss_trace"] = rss_trace
    finally:
        stop(proc)
    # the same single-line loads on servers with micro-batching, in the same run so the ratios are fair
    out["micro_batching"] = {"batch_max": a.batch_max, "loads": []}
    for wait in a.batch_wait_ms:
        proc, base, _ = start_server(
            a.model, a.workers, lm + ["--batch-max", str(a.batch_max), "--batch-wait-ms", str(wait)]
        )
        try:
            for conc in (1, 16):
                load(base + "/ocr", [line_image(3 * 10**7 + i) for i in range(50)], conc, "line")
                payloads = [line_image(4 * 10**7 + conc * 10**5 + i) for i in range(2000)]
                r = load(base + "/ocr", payloads, conc, "line")
                off = next(x for x in out["single_line"] if x["concurrency"] == conc)
                r["throughput_ratio_vs_off"] = r["throughput_rps"] / off["throughput_rps"]
                r["batch_wait_ms"] = wait
                out["micro_batching"]["loads"].append(r)
                print(f"[serve-bench] micro-batching, wait {wait} ms, concurrency {conc}: {r}")
        finally:
            stop(proc)
    dest = ROOT / "runs" / "bench"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "serve.json").write_text(json.dumps(out, indent=2))
    text = to_markdown(out)
    (dest / "serve.md").write_text(text)
    print(text)
    return 0


def merge_loads(parts: list[dict]) -> dict:
    """One load's figures from its chunks: percentiles over all latencies, throughput over the summed wall."""
    ms = np.concatenate([p.pop("_ms") for p in parts])
    wall = sum(p["wall_s"] for p in parts)
    return {
        "concurrency": parts[0]["concurrency"],
        "requests": int(ms.size),
        "ok": sum(p["ok"] for p in parts),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "throughput_rps": ms.size / wall,
        "wall_s": wall,
    }


def to_markdown(out: dict) -> str:
    md = [
        "| what | value |",
        "|---|---|",
        f"| decoder | {out.get('decoder', 'greedy')}{' (' + out['lm'] + ')' if out.get('lm') else ''} |",
        f"| start-up (process start to healthy) | {out['startup_s']:.2f} s |",
    ]
    for r in out["single_line"]:
        md.append(
            f"| single line, concurrency {r['concurrency']} ({r['requests']} req) | p50 {r['p50_ms']:.2f} / "
            f"p95 {r['p95_ms']:.2f} / p99 {r['p99_ms']:.2f} ms, {r['throughput_rps']:.0f} lines/s |"
        )
    p = out["pages_10_lines"]
    md.append(
        f"| 10-line page, concurrency 4 ({p['requests']} req) | p50 {p['p50_ms']:.2f} / "
        f"p95 {p['p95_ms']:.2f} ms, {p['throughput_rps']:.0f} pages/s |"
    )
    c = out["cache"]
    md.append(
        f"| cache hit vs miss | {c['hit_p50_ms']:.2f} vs {c['miss_p50_ms']:.2f} ms ({c['speedup']:.1f}x) |"
    )
    md.append(
        f"| resident memory, start → after {out['total_requests']} requests | {out['rss_start_mb']:.0f} → "
        f"{out['rss_end_mb']:.0f} MB |"
    )
    trace = ", ".join(f"{n}: {mb:.0f}" for n, mb in out["rss_trace"])
    md.append(f"| resident memory by requests served (MB) | {trace} |")
    mb = out["micro_batching"]
    for r in mb["loads"]:
        md.append(
            f"| micro-batching (max {mb['batch_max']} lines, wait {r['batch_wait_ms']:g} ms), concurrency "
            f"{r['concurrency']} | p50 {r['p50_ms']:.2f} / p95 {r['p95_ms']:.2f} ms, "
            f"{r['throughput_rps']:.0f} lines/s ({r['throughput_ratio_vs_off']:.2f}x of off) |"
        )
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    sys.exit(main())
