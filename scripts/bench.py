"""Foundation benchmark: renderer lines/s, training img/s per preset, params and MACs, the hstride choice.

    python scripts/bench.py [--quick]          (make bench)

Prints a Markdown table and saves runs/bench/foundation.{json,md}. Timings are measured here, in one run,
on whatever machine runs it (the machine is recorded); nothing here is asserted by tests.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from crnn.charset import load_charset
from crnn.data.dataset import Collate, Item, ctc_frames_needed
from crnn.data.preprocess import preprocess
from crnn.data.render import SceneRecipe
from crnn.data.source import SynthSource
from crnn.models.complexity import count_macs, count_params
from crnn.models.crnn import CRNN, ModelConfig
from crnn.settings import RunConfig, compose_run_config
from crnn.timing import measure

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("tiny", "small", "base", "mobile")


def load(overrides: list[str]) -> RunConfig:
    return compose_run_config(overrides)[0]


def preset_config(preset: str, num_classes: int, hstride: int | None = None) -> ModelConfig:
    """configs/model/<preset>.yaml for an alphabet, every field (the block type included) as configured."""
    pc = load(["model=" + preset]).model
    return ModelConfig(**{**pc.as_dict(), "num_classes": num_classes, "hstride": hstride or pc.hstride})


def all_degradations(r: SceneRecipe) -> SceneRecipe:
    """Every degradation of the recipe switched on for every line (the worst case for speed)."""
    probs = {k: 1.0 for k in vars(r) if k.endswith("_p") and k not in ("invert_p", "spacing_p")}
    return replace(r, **probs)


_SRC: SynthSource | None = None


def _init(cfg: RunConfig, seed: int) -> None:
    global _SRC
    _SRC = SynthSource(cfg.corpus, cfg.render, load_charset(cfg.charset), seed=seed)
    for i in range(40):  # load fonts and cmaps before the clock starts
        _SRC.sample(10_000_000 + i, balanced=True)


def _work(rng: tuple[int, int]) -> int:
    chars = 0
    for i in range(*rng):
        chars += len(_SRC.sample(i, balanced=True).label)
    return chars


def render_rate(cfg: RunConfig, n: int, workers: int) -> dict:
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, _init, (cfg, 123)) as pool:
        pool.map(_work, [(0, 1)] * workers)  # wait for initialisers
        t0 = time.perf_counter()
        chars = sum(pool.map(_work, [(a, min(a + 50, n)) for a in range(0, n, 50)]))
        dt = time.perf_counter() - t0
    return {"lines_per_s": n / dt, "chars_per_s": chars / dt, "mean_chars": chars / n, "workers": workers}


def sample_batch(cfg: RunConfig, n: int, seed: int = 5) -> list[Item]:
    src = SynthSource(cfg.corpus, cfg.render, load_charset(cfg.charset), seed=seed)
    return [Item(preprocess(s.image, cfg.input), s.label, s.scene) for s in (src.sample(i) for i in range(n))]


def train_rate(
    cfg: RunConfig, preset: str, items: list[Item], seconds: float, hstride: int | None = None
) -> dict:
    charset = load_charset(cfg.charset)
    mc = preset_config(preset, charset.num_classes, hstride)
    model = CRNN(mc)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    collate = Collate(charset, mc.hstride)
    items = sorted(items, key=lambda it: it.x.shape[-1])
    bs = 64
    batches = [collate(items[k : k + bs]) for k in range(0, len(items) - bs + 1, bs)]
    np.random.default_rng(0).shuffle(batches)  # width-grouped batches in a mixed order, as in training
    warmup = 2
    t0, imgs = 0.0, 0
    for done, b in enumerate(batches[:warmup] + batches):
        if done == warmup:
            t0, imgs = time.perf_counter(), 0
        logits = model(b.images, b.widths)  # each line read at its true width, as training does
        lp = F.log_softmax(logits, -1).transpose(0, 1)
        loss = F.ctc_loss(lp, b.targets, b.input_lengths, b.target_lengths, zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        imgs += len(b)
        if done + 1 >= warmup + 4 and time.perf_counter() - t0 > seconds:
            break
    dt = time.perf_counter() - t0
    return {
        "img_per_s": imgs / dt,
        "mean_width": float(np.mean([it.x.shape[-1] for it in items])),
        "params": count_params(model),
        "macs_32x320": count_macs(mc, 320),
        "skipped_too_long": sum(b.skipped["too_long"] for b in batches),
    }


@torch.no_grad()
def infer_latency(preset: str, num_classes: int, hstride: int, width: int = 320, reps: int = 50) -> float:
    m = CRNN(preset_config(preset, num_classes, hstride)).eval()
    x = torch.zeros(1, 1, 32, width)
    return measure(lambda: m(x), reps)["p50"]


def onnx_latency(preset: str, num_classes: int, width: int, threads: int, reps: int = 100) -> float:
    """p50 ms of the exported FP32 graph at batch 1 (what serving runs); weights do not change the time."""
    import tempfile

    import onnxruntime as ort

    from crnn.export import export_onnx

    mc = preset_config(preset, num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(CRNN(mc), path, 17, {})
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        x, w = np.zeros((1, 1, 32, width), np.float32), np.array([width], np.int64)
        return measure(lambda: sess.run(None, {"image": x, "widths": w}), reps)["p50"]


def preset_table(width: int = 360) -> dict:
    """zh_en presets side by side: what one line costs to serve, what a training step costs."""
    zh = load([])
    n = load_charset(zh.charset).num_classes
    return {
        p: {
            "onnx_fp32_ms_1thread": onnx_latency(p, n, width, 1),
            "onnx_fp32_ms_2threads": onnx_latency(p, n, width, 2),
        }
        for p in PRESETS
    }


def fit_fraction(items: list[Item], charset, hstride: int) -> dict:
    ok = [ctc_frames_needed(charset.encode(it.label)) <= -(-it.x.shape[-1] // hstride) for it in items]
    fpc = [(-(-it.x.shape[-1] // hstride)) / max(len(it.label), 1) for it in items]
    return {"lines_that_fit": float(np.mean(ok)), "frames_per_char_p5": float(np.percentile(fpc, 5))}


def recipe_rates(overrides: list[str], n: int) -> dict:
    """Renderer lines/s per scene recipe, one process (zh_en alphabet): `n` lines of each scene after a
    warm-up that loads its fonts and photographs."""
    cfg = load(overrides)
    src = SynthSource(cfg.corpus, cfg.render, load_charset(cfg.charset), seed=123)
    out = {}
    for scene in src.scenes:
        for i in range(20):
            src.sample(10_000_000 + i, scene=scene)
        t0, chars = time.perf_counter(), 0
        for i in range(n):
            chars += len(src.sample(i, scene=scene).label)
        dt = time.perf_counter() - t0
        out[scene] = {"lines_per_s": n / dt, "chars_per_s": chars / dt, "mean_chars": chars / n}
        print(f"[bench] {scene}: {n / dt:.0f} lines/s, {chars / n:.1f} chars/line")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer lines and shorter timings")
    ap.add_argument("--presets-only", action="store_true", help="only the zh_en preset latency table")
    ap.add_argument("--recipes", action="store_true", help="only renderer lines/s per scene of render=real")
    a = ap.parse_args()
    if a.recipes:
        rates = recipe_rates(["render=real"], 100 if a.quick else 500)
        md = "| scene (render=real, zh_en, 1 process) | lines/s | chars/s | mean chars/line |\n"
        md += "|---|---:|---:|---:|\n"
        for k, v in rates.items():
            md += f"| {k} | {v['lines_per_s']:.0f} | {v['chars_per_s']:.0f} | {v['mean_chars']:.1f} |\n"
        dest = ROOT / "runs" / "bench"
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "recipes.json").write_text(json.dumps(rates, indent=2))
        (dest / "recipes.md").write_text(md)
        print(md)
        return
    if a.presets_only:
        table = preset_table()
        print("| preset (zh_en, 3873 classes) | ONNX FP32 ms, 32x360, 1 thread | 2 threads |")
        print("|---|---:|---:|")
        for k, v in table.items():
            print(f"| {k} | {v['onnx_fp32_ms_1thread']:.2f} | {v['onnx_fp32_ms_2threads']:.2f} |")
        return
    n_lines, secs, n_items = (600, 4.0, 384) if a.quick else (3000, 20.0, 1024)
    workers = os.cpu_count() or 1
    torch.set_num_threads(workers)
    out: dict = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": workers,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
    }
    cfgs = {"demo (digits)": load(["experiment=demo"]), "zh_en": load([])}

    out["render"] = {}
    for label, cfg in cfgs.items():
        out["render"][label] = render_rate(cfg, n_lines, workers)
        worst = replace(
            cfg,
            render=replace(cfg.render, scenes={k: all_degradations(v) for k, v in cfg.render.scenes.items()}),
        )
        out["render"][label + ", every degradation on"] = render_rate(worst, n_lines, workers)
        print(f"[bench] render {label}: {out['render'][label]['lines_per_s']:.0f} lines/s")

    out["train"] = {}
    for label, cfg in cfgs.items():
        items = sample_batch(cfg, n_items)
        for preset in PRESETS:
            r = train_rate(cfg, preset, items, secs)
            out["train"][f"{label} / {preset}"] = r
            print(f"[bench] train {label} / {preset}: {r['img_per_s']:.0f} img/s")

    zh = cfgs["zh_en"]
    items = sample_batch(zh, n_items)
    charset = load_charset(zh.charset)
    out["hstride"] = {}
    for hs in (4, 8):
        r = train_rate(zh, "small", items, secs, hstride=hs)
        out["hstride"][hs] = {
            **fit_fraction(items, charset, hs),
            "train_img_per_s": r["img_per_s"],
            "macs_32x320": r["macs_32x320"],
            "infer_ms_32x320": infer_latency("small", charset.num_classes, hs),
        }
        print(f"[bench] hstride {hs}: {out['hstride'][hs]}")

    out["presets"] = preset_table()
    dest = ROOT / "runs" / "bench"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "foundation.json").write_text(json.dumps(out, indent=2))
    md = to_markdown(out)
    (dest / "foundation.md").write_text(md)
    print(md)


def to_markdown(out: dict) -> str:
    m = out["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads",
        "",
        "| renderer | lines/s | chars/s | mean chars/line |",
        "|---|---:|---:|---:|",
    ]
    for k, v in out["render"].items():
        lines.append(f"| {k} | {v['lines_per_s']:.0f} | {v['chars_per_s']:.0f} | {v['mean_chars']:.1f} |")
    lines += [
        "",
        "| training (batch 64, CTC, AdamW) | img/s | params | MACs at 32x320 | mean width px |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, v in out["train"].items():
        lines.append(
            f"| {k} | {v['img_per_s']:.0f} | {v['params'] / 1e6:.2f} M | {v['macs_32x320'] / 1e6:.0f} M "
            f"| {v['mean_width']:.0f} |"
        )
    lines += [
        "",
        "| hstride (small, zh_en) | lines whose label fits CTC | frames/char p5 | train img/s "
        "| MACs 32x320 | eager ms 32x320 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, v in out["hstride"].items():
        lines.append(
            f"| {k} | {v['lines_that_fit'] * 100:.2f}% | {v['frames_per_char_p5']:.2f} | "
            f"{v['train_img_per_s']:.0f} | {v['macs_32x320'] / 1e6:.0f} M | {v['infer_ms_32x320']:.2f} |"
        )
    lines += [
        "",
        "| preset (zh_en, 3873 classes) | ONNX FP32 ms, 32x360, 1 thread | 2 threads |",
        "|---|---:|---:|",
    ]
    for k, v in out.get("presets", {}).items():
        lines.append(f"| {k} | {v['onnx_fp32_ms_1thread']:.2f} | {v['onnx_fp32_ms_2threads']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
