"""Shared test helpers: compose the real Hydra config, render small real LMDBs, run real stage CLIs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crnn.settings import RunConfig, compose_run_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def bundled_model() -> Path:
    """The model `make serve` serves by default: the bundled INT8 file when one qualified, else FP32."""
    int8 = ROOT / "models" / "crnn_zh_en.int8.onnx"
    return int8 if int8.is_file() else ROOT / "models" / "crnn_zh_en.onnx"


def compose_cfg(overrides: list[str]) -> RunConfig:
    return compose_run_config(overrides)[0]


def tiny_overrides(tmp: Path, name: str = "t") -> list[str]:
    """The demo preset, shrunk: small splits in `tmp`, no MLflow unless a test asks, one thread."""
    return [
        "experiment=demo",
        f"name={name}",
        f"runs_dir={tmp}/runs",
        f"data.root={tmp}/data",
        "data.splits.train.size=256",
        "data.splits.val.size=64",
        "data.splits.test.size=32",
        "data.workers=1",
        "mlflow.enabled=false",
        f"mlflow.tracking_uri=sqlite:///{tmp}/mlruns/mlflow.db",
        f"mlflow.artifact_root={tmp}/mlruns/artifacts",
        "train.num_workers=0",
        "train.threads=1",
        "train.log_every=5",
        "train.batch_size=16",
    ]


def run_module(
    module: str,
    overrides: list[str],
    timeout: float = 900,  # a 500-step fixture takes 5+ min on a busy 2-core machine
    env: dict | None = None,
    prefix: list[str] | None = None,
) -> subprocess.CompletedProcess:
    cmd = (prefix or [sys.executable, "-m"]) + [module, *overrides]
    e = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=e)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by `make browser`; Playwright downloads nothing


def launch_chromium(playwright):
    """Headless Debian Chromium with the flags this closed network needs (no background connections)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )


def browser_output_dir(request) -> Path:
    """Where browser tests keep their screenshots: runs/test-output/ in the repository."""
    out = Path(request.config.rootpath) / "runs" / "test-output"
    out.mkdir(parents=True, exist_ok=True)
    return out


def read_summary(tmp: Path, name: str = "t") -> dict:
    return json.loads((tmp / "runs" / name / "train" / "summary.json").read_text())


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Real LMDBs rendered by the data stage (demo alphabet), shared by the training tests."""
    tmp = tmp_path_factory.mktemp("tiny")
    from crnn.data import synth

    synth.run(compose_cfg(tiny_overrides(tmp)))
    return tmp


@pytest.fixture(scope="session")
def chain(tiny_data, tmp_path_factory):
    """A tiny model trained, pruned, exported and quantized by the real stage CLIs."""
    tmp = tmp_path_factory.mktemp("chain")
    data = tiny_data / "data"
    # both cores for the two training stages (one thread took 255 s of CI's test time, two 190 s)
    common = tiny_overrides(tmp, "c") + [f"data.root={data}", "train.threads=2"]
    two = {"OMP_NUM_THREADS": "2"}
    run_module(
        "crnn.train",
        # long enough to read its own 256 training lines well: the serving tests send those
        common
        + [
            "train.max_steps=500",
            "train.batch_size=32",
            "train.val_every=500",
            "train.lr=0.003",
            "train.warmup_steps=20",
        ],
        env=two,
    )
    run_module(
        "crnn.prune",
        common
        + [
            "prune.target_macs_ratio=0.4",
            "prune.iterations=2",
            "prune.finetune_steps=20",
            "prune.final_finetune_steps=40",
            "prune.distill.weight=0.5",  # the trained model teaches the pruned one
        ],
        env=two,
    )
    run_module("crnn.export", common + ["export.parity_widths=[16,100,700,2000]", "export.parity_lines=16"])
    # the tiny model's own training lines as the check set: it reads them confidently, so INT8 agreement
    # measures quantization, not a half-trained model's coin flips
    run_module(
        "crnn.quantize",
        common
        + [
            f"data.val_lmdb=[{data}/train]",
            "quantize.latency_reps=5",
            "quantize.calibration_lines=64",
            "quantize.batch_sizes=[1,4]",
            "quantize.threads=[1]",  # a grid without "all cores" (it once raised KeyError)
            "quantize.allow_none=true",  # a noisy machine may time every candidate slower
        ],
    )
    return tmp / "runs" / "c"


@pytest.fixture(scope="session")
def mini_detector(tmp_path_factory) -> dict:
    """A detector trained for 150 steps on two small rendered pages (it learns them, nothing else), and its
    ONNX export: what the detector's serving tests read pages with."""
    import numpy as np
    import torch

    from crnn.detect.boxes import det_normalize
    from crnn.detect.data import TARGET_KEYS, crop_sample, page_synth
    from crnn.detect.export import export_onnx
    from crnn.detect.model import build_detector
    from crnn.detect.pages import Page, PageLine
    from crnn.detect.targets import make_targets
    from crnn.detect.train import make_optimizer, train_step

    torch.manual_seed(0)
    size = 224
    cfg = compose_cfg(
        [
            "experiment=det_zh_en",
            "detect.train.warmup_steps=10",
            "detect.train.max_steps=150",
            "detect.pages.long_side=[200,224]",
            "detect.pages.distractor_p=0",
            "detect.pages.rotate_p=0",
            "detect.pages.perspective_p=0",
            "detect.boxes.upscale_to=0",  # it learns two 224 px pages as they are, and reads them so
        ]
    )
    synth = page_synth(cfg, seed=3)
    pages, xs, maps = [], [], {k: [] for k in TARGET_KEYS}
    for i, layout in enumerate(["document", "receipt"]):
        img, quads, ignore = crop_sample(
            synth.page(40 + i, layout), size, (1.0, 1.0), np.random.default_rng(i)
        )
        page = synth.page(40 + i, layout)
        pages.append(
            Page(
                img, [PageLine(q, ln.text, bool(ig)) for q, ln, ig in zip(quads, page.lines, ignore)], layout
            )
        )
        xs.append(det_normalize(img))
        for k, v in make_targets(quads, ignore, size, size, cfg.detect.targets).items():
            maps[k].append(v)
    batch = (
        torch.from_numpy(np.stack(xs)[:, None]),
        {k: torch.from_numpy(np.stack(v)[:, None]) for k, v in maps.items()},
    )
    model = build_detector(cfg.detect.model)
    opt, sched = make_optimizer(model, cfg)
    for _ in range(150):
        train_step(model, opt, batch, torch.device("cpu"), 5.0)
        sched.step()
    model.eval()
    path = tmp_path_factory.mktemp("detector") / "det.onnx"
    from dataclasses import asdict

    from crnn.detect.detector import FORMAT

    meta = {
        "format": FORMAT,
        "boxes": json.dumps(asdict(cfg.detect.boxes)),
        "model_config": json.dumps(cfg.detect.model.to_dict()),
        "lineage": json.dumps({"stage": "test"}),
    }
    export_onnx(model, path, 17, meta)
    return {"model": model, "pages": pages, "onnx": path, "cfg": cfg}


def signal_once_saved(cmd: list[str], saved: Path, sig: int, group: bool) -> tuple[int, str]:
    """Run `cmd` in a session of its own, send it `sig` once `saved` exists (the training loop is running,
    its handlers in place), to its whole process group (Ctrl-C at a terminal) or to it alone (`kill`).
    Returns its exit status and output; a run that outlives the test is killed."""
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # as a terminal starts it: a job started in the background of a script (CI's `make test &`) inherits
        # SIGINT ignored, and crnn.stop leaves an ignored signal ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not saved.is_file():
            time.sleep(0.05)
        assert proc.poll() is None and saved.is_file(), "the run ended, or saved nothing, before the signal"
        os.killpg(proc.pid, sig) if group else os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out
