"""Which CPU runtime reads our lines fastest: ONNX Runtime (default and tuned) against OpenVINO, in one run.

    python scripts/runtime_bench.py [--model M.onnx] [--int8 M.int8.onnx] [--repeats 2]   (make bench-runtime)

Per line (batch 1, the serving case) and batch 32, FP32 and INT8, 1 and 2 threads, p50/p95 ms per call.
The lines are rendered by the synthetic renderer (zh_en validation recipe); batch 32 is 32 lines cut to one
width, so every runtime sees the same work and none reads padding. Without --int8, the INT8 model is the
static QDQ recipe of the quantize stage built from --model with 128 rendered calibration lines. Each
runtime's logits are compared with ONNX Runtime's (max |difference|) on single lines and on a padded batch of
mixed widths: a runtime that gets the padded batch wrong cannot serve our batched predictor. The whole table
is measured `--repeats` times; a ratio counts only if it holds in every repeat. Saves runs/bench/runtime.*.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from crnn.charset import load_charset
from crnn.command import models_dir
from crnn.data.preprocess import InputSpec, pad_batch, preprocess
from crnn.data.source import SynthSource
from crnn.onnx_model import read_metadata
from crnn.settings import compose_run_config
from crnn.timing import measure

ROOT = Path(__file__).resolve().parents[1]
BATCH = 32
BATCH_WIDTH = 320


def rendered_lines(n: int, spec: InputSpec, seed: int) -> list[np.ndarray]:
    cfg = compose_run_config(["experiment=zh_en"])[0]
    src = SynthSource(cfg.corpus, cfg.render, load_charset(cfg.charset), seed=seed)
    return [preprocess(src.sample(i, balanced=True).image, spec) for i in range(n)]


def build_int8(fp32: Path, calib_lines: list[np.ndarray], dest: Path) -> None:
    from crnn.quantize import CalibrationReader, build_candidate
    from crnn.settings import QuantizeConfig

    build_candidate("static_qdq", fp32, dest, QuantizeConfig(), CalibrationReader(calib_lines))


def ort_runner(
    path: Path, threads: int, level: str = "all", spinning: bool = True, denormal_as_zero: bool = False
) -> Callable:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if denormal_as_zero:  # the article's setting: flush denormal floats to zero in the session's kernels
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x, w: sess.run(None, {"image": x, "widths": w})[0]


def openvino_runner(path: Path, threads: int, hint: str = "LATENCY") -> Callable:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(path)), "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": hint}
    )
    request = compiled.create_infer_request()

    def run(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return request.infer({"image": x, "widths": w})[0].copy()

    return run


def runtimes(threads: int) -> dict[str, Callable[[Path], Callable]]:
    out = {
        "onnxruntime (default)": lambda p: ort_runner(p, threads),
        "onnxruntime, no spinning": lambda p: ort_runner(p, threads, spinning=False),
        "onnxruntime, denormals as zero": lambda p: ort_runner(p, threads, denormal_as_zero=True),
        "onnxruntime, basic graph opt": lambda p: ort_runner(p, threads, level="basic"),
        "onnxruntime, extended graph opt": lambda p: ort_runner(p, threads, level="extended"),
    }
    try:
        import openvino  # noqa: F401

        out["openvino (latency hint)"] = lambda p: openvino_runner(p, threads)
        out["openvino (throughput hint)"] = lambda p: openvino_runner(p, threads, "THROUGHPUT")
    except ImportError:
        print("openvino is not installed (.venv/bin/pip install openvino): measuring ONNX Runtime only")
    return out


def frames(width: int, hstride: int) -> int:
    return -(-width // hstride)


def parity(run: Callable, ref: Callable, lines: list[np.ndarray], hstride: int) -> dict[str, float]:
    """Against ONNX Runtime on the same file: max |logit difference| and the share of lines whose best path
    (argmax per frame) is the same, for lines alone and in one padded batch of mixed widths."""
    alone_diff, alone_same = 0.0, 0
    for x in lines[:16]:
        w = np.array([x.shape[-1]], dtype=np.int64)
        a, b = run(x[None], w)[0], ref(x[None], w)[0]
        alone_diff = max(alone_diff, float(np.abs(a - b).max()))
        alone_same += bool((a.argmax(-1) == b.argmax(-1)).all())
    batch, widths = pad_batch(lines[:16])
    a, b = run(batch, widths), ref(batch, widths)
    padded_diff, padded_same = 0.0, 0
    for i, w in enumerate(widths):
        ai, bi = a[i, : frames(int(w), hstride)], b[i, : frames(int(w), hstride)]
        padded_diff = max(padded_diff, float(np.abs(ai - bi).max()))
        padded_same += bool((ai.argmax(-1) == bi.argmax(-1)).all())
    n = len(lines[:16])
    return {
        "alone": alone_diff,
        "padded_batch": padded_diff,
        "alone_same_path": alone_same / n,
        "padded_same_path": padded_same / n,
    }


def line_ms(run: Callable, lines: list[np.ndarray], reps: int) -> dict:
    """ms per call reading one line at a time, cycling through `lines` at their own widths (batch 1)."""
    it = iter(range(10**9))

    def one_line() -> None:
        x = lines[next(it) % len(lines)]
        run(x[None], np.array([x.shape[-1]], dtype=np.int64))

    return measure(one_line, reps=reps, warmup=10)


def time_one(run: Callable, lines: list[np.ndarray], batch32: np.ndarray, reps: int) -> dict:
    widths32 = np.full(len(batch32), BATCH_WIDTH, dtype=np.int64)
    line = line_ms(run, lines, reps)
    batched = measure(lambda: run(batch32, widths32), reps=max(5, reps // 8), warmup=2)
    return {"line": line, "batch32": batched, "batch32_lines_per_s": len(batch32) / (batched["p50"] / 1000)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default=str(models_dir() / "crnn_zh_en.onnx"), help="FP32 ONNX (the bundled one)"
    )
    ap.add_argument("--int8", default=None, help="INT8 ONNX (default: static QDQ built from --model)")
    ap.add_argument("--lines", type=int, default=64)
    ap.add_argument("--reps", type=int, default=200, help="single-line calls per measurement")
    ap.add_argument("--repeats", type=int, default=2, help="times the whole table is measured")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "runtime"))
    a = ap.parse_args()

    fp32 = Path(a.model)
    meta = read_metadata(fp32)
    spec = InputSpec(**json.loads(meta["input_spec"]))
    hstride = int(json.loads(meta["model_config"])["hstride"])
    lines = rendered_lines(a.lines, spec, seed=20261126)
    batch32 = np.stack(
        [
            np.pad(x, ((0, 0), (0, 0), (0, max(0, BATCH_WIDTH - x.shape[-1]))))[..., :BATCH_WIDTH]
            for x in lines[:BATCH]
        ]
    )
    tmp = Path(tempfile.mkdtemp())
    int8 = Path(a.int8) if a.int8 else tmp / "static_qdq.onnx"
    if not a.int8:
        t = time.perf_counter()
        build_int8(fp32, rendered_lines(128, spec, seed=7), int8)
        print(f"built INT8 static QDQ from {fp32} in {time.perf_counter() - t:.0f} s")
    models = {"fp32": fp32, "int8": int8}
    rows: list[dict] = []
    for repeat in range(a.repeats):
        for threads in a.threads:
            for precision, path in models.items():
                ref = ort_runner(path, threads)
                for name, make in runtimes(threads).items():
                    try:
                        run = make(path)
                    except Exception as e:  # a runtime that cannot read the file is a result, not a crash
                        rows.append(
                            {
                                "runtime": name,
                                "precision": precision,
                                "threads": threads,
                                "repeat": repeat,
                                "error": f"{type(e).__name__}: {str(e)[:200]}",
                            }
                        )
                        continue
                    row = {"runtime": name, "precision": precision, "threads": threads, "repeat": repeat}
                    row |= time_one(run, lines, batch32, a.reps)
                    if repeat == 0:
                        row["parity"] = parity(run, ref, lines, hstride)
                    rows.append(row)
                    print(format_row(row), flush=True)
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "models": {k: str(v) for k, v in models.items()},
        "rows": rows,
        "ratios": ratios(rows),
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    md = to_markdown(report)
    out.with_suffix(".md").write_text(md)
    print(md)


def format_row(r: dict) -> str:
    if "error" in r:
        return f"{r['runtime']:<34} {r['precision']:<5} t{r['threads']}  ERROR {r['error']}"
    p = r.get("parity", {})
    return (
        f"{r['runtime']:<34} {r['precision']:<5} t{r['threads']}  line p50 {r['line']['p50']:.3f} "
        f"p95 {r['line']['p95']:.3f} ms  batch32 p50 {r['batch32']['p50']:.2f} ms "
        f"({r['batch32_lines_per_s']:.0f} lines/s)  parity {p}"
    )


def ratios(rows: list[dict]) -> list[dict]:
    """Each runtime's speed against ONNX Runtime's default, per repeat (>1: faster)."""
    base = {
        (r["precision"], r["threads"], r["repeat"]): r
        for r in rows
        if r["runtime"] == "onnxruntime (default)" and "error" not in r
    }
    out = []
    for r in rows:
        b = base.get((r["precision"], r["threads"], r["repeat"]))
        if "error" in r or b is None or r is b:
            continue
        out.append(
            {
                "runtime": r["runtime"],
                "precision": r["precision"],
                "threads": r["threads"],
                "repeat": r["repeat"],
                "line_p50": b["line"]["p50"] / r["line"]["p50"],
                "batch32_p50": b["batch32"]["p50"] / r["batch32"]["p50"],
            }
        )
    return out


def to_markdown(report: dict) -> str:
    rows = [r for r in report["rows"] if r["repeat"] == 0]
    lines = [
        "| runtime | precision | threads | line p50 / p95 ms | batch 32 p50 ms | batch 32 lines/s | "
        "max diff alone / padded batch | same best path alone / padded |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['runtime']} | {r['precision']} | {r['threads']} | cannot run: {r['error'][:80]} ||||"
            )
            continue
        p = r.get("parity", {})
        lines.append(
            f"| {r['runtime']} | {r['precision']} | {r['threads']} | {r['line']['p50']:.3f} / "
            f"{r['line']['p95']:.3f} | {r['batch32']['p50']:.2f} | {r['batch32_lines_per_s']:.0f} | "
            f"{p.get('alone', float('nan')):.2g} / {p.get('padded_batch', float('nan')):.2g} | "
            f"{p.get('alone_same_path', float('nan')):.0%} / {p.get('padded_same_path', float('nan')):.0%} |"
        )
    lines += [
        "",
        "Speed against ONNX Runtime's default in the same repeat (line p50, batch 32 p50; >1 faster):",
        "",
    ]
    lines += [
        "| runtime | precision | threads | "
        + " | ".join(f"repeat {k}" for k in sorted({r["repeat"] for r in report["ratios"]}))
        + " |"
    ]
    lines += ["|---|---|---|" + "---|" * len({r["repeat"] for r in report["ratios"]})]
    keyed: dict[tuple, list[str]] = {}
    for r in report["ratios"]:
        keyed.setdefault((r["runtime"], r["precision"], r["threads"]), []).append(
            f"{r['line_p50']:.2f}x / {r['batch32_p50']:.2f}x"
        )
    for (name, prec, threads), vals in keyed.items():
        lines.append(f"| {name} | {prec} | {threads} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
