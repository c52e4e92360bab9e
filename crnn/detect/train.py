"""Train the text-line detector on synthetic pages: `python -m crnn.detect.train experiment=det_zh_en`.

Read top to bottom like the recognizer's crnn.train: set up (model, optimizer, resume), `train_steps`
until the step or wall-clock budget is spent, `evaluate` on the synthetic validation pages every
`val_every` steps (precision, recall, F1 at IoU 0.5, read the way inference reads them), save last.pt
(weights) + last.state.pt (optimizer, step, RNG, MLflow run; the rate is the schedule's at the step)
atomically every `save_minutes` and at the end, best.pt on the best F1. `detect.train.resume=true`
continues in the same MLflow run; `detect.train.init_from=<last.pt>` starts a new run (step 0, its own
schedule) from another run's weights, a decay branch or a fine-tune. Everything lands in
runs/<name>/detect/train/.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from crnn.cli import StageError, stage_errors
from crnn.detect.boxes import BoxConfig, det_input, find_boxes
from crnn.detect.config import DetModelConfig
from crnn.detect.data import train_loader, validation_pages
from crnn.detect.loss import db_loss
from crnn.detect.model import DBNet, build_detector
from crnn.detect.pages import Page
from crnn.detect.score import Counts, PageTruth, score_page
from crnn.lineage import git_commit, sha256_file
from crnn.models.checkpoint import atomic_torch_save
from crnn.settings import RunConfig, load_run_config
from crnn.stop import StopRequest, exit_status, stop_on_signals
from crnn.tracking import Tracker
from crnn.train_utils import at_step, bring_home, pick_device, warmup_cosine

FORMAT = "crnn-detector/1"


# ------------------------------------------------------------------------------------------ checkpoints


def save_detector(path: Path, model: DBNet, lineage: dict, boxes: BoxConfig) -> None:
    atomic_torch_save(
        {
            "format": FORMAT,
            "model_config": model.cfg.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "boxes": asdict(boxes),
            "lineage": lineage,
        },
        path,
    )


def load_detector(path: str | Path) -> tuple[DBNet, dict]:
    """The detector in a checkpoint, in eval mode, and the checkpoint's dict (lineage, box settings)."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no detector checkpoint at {path}")
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise StageError(f"{path} is not a detector checkpoint (format {FORMAT})")
    model = build_detector(DetModelConfig(**ck["model_config"]))
    model.load_state_dict(ck["state_dict"])
    return model.eval(), ck


def state_file(weights: Path) -> Path:
    return weights.with_name(weights.stem + ".state.pt")


# ------------------------------------------------------------------------------------------ one step


def make_optimizer(
    model: DBNet, cfg: RunConfig, rewarm_from: int | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW on the recognizer's schedule (warm-up, cosine to 2 %, a re-warm-up after a weights-only
    resume: crnn.train_utils.warmup_cosine)."""
    t = cfg.detect.train
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return opt, make_schedule(opt, cfg, rewarm_from)


def make_schedule(
    opt: torch.optim.Optimizer, cfg: RunConfig, rewarm_from: int | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """Built after a resumed optimizer's state is loaded, its base rate is the one the run started with
    (the state's `initial_lr`), as the recognizer's is; a new run's is `detect.train.lr`."""
    t = cfg.detect.train
    factor = partial(warmup_cosine, warmup=t.warmup_steps, horizon=t.max_steps, rewarm_from=rewarm_from)
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_step(
    model: DBNet, opt: torch.optim.Optimizer, batch, device: torch.device, grad_clip: float
) -> dict[str, float]:
    x, targets = batch
    x = x.to(device, non_blocking=True)
    targets = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
    out = model(x)
    loss, parts = db_loss(out, targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return {"loss": loss.item(), **parts}


# ------------------------------------------------------------------------------------------ evaluate


@torch.no_grad()
def detect_page(model: DBNet, gray: np.ndarray, boxes: BoxConfig, device: torch.device) -> list[np.ndarray]:
    """Quads of one page as inference finds them (crnn.detect.boxes), with the PyTorch model."""
    x, scale = det_input(gray, boxes)
    prob = model(torch.from_numpy(x).to(device))[0, 0].float().cpu().numpy()
    return [b.quad for b in find_boxes(prob, scale, gray.shape[:2], boxes)]


def page_truth(page: Page) -> PageTruth:
    return PageTruth(
        quads=[ln.quad for ln in page.lines if not ln.ignore],
        texts=[ln.text for ln in page.lines if not ln.ignore],
        ignore=[ln.quad for ln in page.lines if ln.ignore],
        category=page.layout,
    )


def evaluate(model: DBNet, pages: list[Page], boxes: BoxConfig, device: torch.device) -> dict:
    """Detection precision / recall / F1 (and the recall of short boxes) over the pages, overall and per
    layout."""
    was = model.training
    model.eval()
    total, per = Counts(), {}
    for page in pages:
        c = score_page(page_truth(page), detect_page(model, page.image, boxes, device), None, None)
        total.add(c)
        per.setdefault(page.layout, Counts()).add(c)
    model.train(was)
    return {"overall": total.as_dict(), "layouts": {k: v.as_dict() for k, v in per.items()}}


# ------------------------------------------------------------------------------------------ the run


def out_dir(cfg: RunConfig) -> Path:
    return cfg.stage_dir("detect") / "train"


def resume_path(cfg: RunConfig) -> Path | None:
    t = cfg.detect.train
    if t.resume_from:
        p = Path(t.resume_from)
        return p / "last.pt" if p.is_dir() else p
    if t.resume:
        p = out_dir(cfg) / "last.pt"
        return p if p.is_file() else None
    return None


def setup(cfg: RunConfig, device: torch.device, say) -> tuple[DBNet, torch.optim.Optimizer, object, dict]:
    """Model, optimizer, scheduler and the run's state (step, best F1, MLflow run), resumed when asked."""
    model = build_detector(cfg.detect.model)
    state = {
        "step": 0,
        "best_f1": -1.0,
        "mlflow_run_id": "",
        "history": [],
        "rewarm_from": None,
        "init_from": None,
    }
    path = resume_path(cfg)
    st, step = None, 0
    if path is not None:
        ck = load_weights(model, path, cfg, str(path))
        step = int(ck["lineage"].get("step", 0))
        state["init_from"] = ck["lineage"].get("init_from")  # a branch's source, with or without its state
        sp = state_file(path)
        st = torch.load(sp, map_location="cpu", weights_only=False) if sp.is_file() else None
        st = st if st is not None and int(st["step"]) == step else None
        # weights alone (a snapshot, a best.pt, a crash between the two writes): the rate warms up again
        state["rewarm_from"] = st.get("rewarm_from") if st is not None else step
    # on the device before the optimizer loads its state: Adam puts its moments where the parameters are
    # then (a CUDA resume failed with moments on the CPU)
    model.to(device).train()
    opt, sched = make_optimizer(model, cfg, state["rewarm_from"])
    if path is not None:
        if st is not None:
            opt.load_state_dict(st["optimizer"])
            torch.set_rng_state(st["torch_rng"])
            state = {k: st.get(k, v) for k, v in state.items()}
        else:
            say(
                f"no optimizer state of step {step} beside {path}: fresh optimizer moments, the rate warmed "
                "up again, best F1 unknown"
            )
        # the rate is the schedule's at the step, with or without a saved state
        sched = at_step(make_schedule(opt, cfg, state["rewarm_from"]), step)
        state["step"] = step
        say(f"resumed from {path} at step {step} (lr {sched.get_last_lr()[0]:.2e})")
    elif cfg.detect.train.init_from:
        state["init_from"] = start_from(model, cfg)
        src = state["init_from"]
        say(f"new run from the weights of {src['path']} (its step {src['step']})")
    return model, opt, sched, state


def load_weights(model: DBNet, path: Path, cfg: RunConfig, what: str) -> dict:
    """A checkpoint's weights into `model`, refused when it holds another network; the checkpoint's dict."""
    loaded, ck = load_detector(path)
    if loaded.cfg != cfg.detect.model:
        raise StageError(f"{what} holds model {loaded.cfg}, the config asks for {cfg.detect.model}")
    model.load_state_dict(loaded.state_dict())
    return ck


def start_from(model: DBNet, cfg: RunConfig) -> dict:
    """Load detect.train.init_from's weights into a new run's model; what it was, for the lineage."""
    path = Path(cfg.detect.train.init_from)
    path = path / "last.pt" if path.is_dir() else path  # a run's folder: where it left off
    ck = load_weights(model, path, cfg, f"detect.train.init_from={path}")
    return {"path": str(path), "sha256": sha256_file(path), "step": int(ck["lineage"].get("step", 0))}


def save(cfg: RunConfig, name: str, model: DBNet, opt, state: dict, lineage: dict) -> None:
    path = out_dir(cfg) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if name == "last.pt":
        atomic_torch_save(
            {
                **state,
                "optimizer": opt.state_dict(),
                "torch_rng": torch.get_rng_state(),
            },
            state_file(path),
        )
    save_detector(path, model, {**lineage, "step": state["step"]}, cfg.detect.boxes)


def train(cfg: RunConfig) -> dict:
    t = cfg.detect.train
    if t.size % 32:
        raise StageError(f"detect.train.size must be a multiple of 32, got {t.size}")
    device = pick_device(t.device)
    if t.threads:
        torch.set_num_threads(t.threads)
    say = lambda m: tqdm.write(f"[detect.train] {m}")  # noqa: E731
    model, opt, sched, state = setup(cfg, device, say)
    start_step = state["step"]
    val = validation_pages(cfg)
    lineage = {
        "stage": "detect.train",
        "git_commit": git_commit(),
        "config_name": cfg.name,
        "pages": asdict(cfg.detect.pages),
        "model": cfg.detect.model.to_dict(),
        "init_from": state["init_from"],  # kept in the run's state: a resumed branch still names its source
    }
    tracker = Tracker(cfg.mlflow)
    with tracker.run(
        "detect.train",
        {"stage": "detect.train", "model": cfg.detect.model.name},
        resume_run_id=state["mlflow_run_id"] or None,
    ):
        state["mlflow_run_id"] = tracker.run_id or state["mlflow_run_id"]
        lineage["mlflow_run_id"] = state["mlflow_run_id"]
        tracker.log_params({"detect": asdict(cfg.detect), "seed": cfg.seed})
        if t.resume_from:  # what a bundle brought back: its best.pt and metrics join this run
            bring_home(resume_path(cfg).parent, out_dir(cfg), tracker, say)
        stopped = fit(cfg, model, opt, sched, state, val, device, tracker, lineage, say)
    summary = {
        "name": cfg.name,
        "steps": state["step"],
        "stopped_early": stopped,
        "batch_size": t.batch_size,
        # this run's only: an earlier run (a GPU bundle's, say) may have had another batch size
        "started_at_step": start_step,
        "pages_seen_this_run": (state["step"] - start_step) * t.batch_size // t.crops_per_page,
        "best_f1": state["best_f1"],
        "history": state["history"],
        "params": sum(p.numel() for p in model.parameters()),
    }
    out_dir(cfg).mkdir(parents=True, exist_ok=True)
    (out_dir(cfg) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def fit(cfg, model, opt, sched, state, val, device, tracker, lineage, say) -> str:
    """Train until max_steps or max_minutes, or until Ctrl-C or `kill` asks it to stop (crnn.stop);
    validation history goes into `state` (saved with last.pt). Returns why it stopped early ("" if not)."""
    with stop_on_signals() as asked:
        return _fit(cfg, model, opt, sched, state, val, device, tracker, lineage, say, asked)


def first_page_batch(state: dict) -> int:
    """Where this run's stream of synthetic pages goes on: at its step, and a branch's after the pages its
    source trained on (it would see the source's first pages again otherwise)."""
    return state["step"] + int((state.get("init_from") or {}).get("step", 0))


def _fit(cfg, model, opt, sched, state, val, device, tracker, lineage, say, asked: StopRequest) -> str:
    t = cfg.detect.train
    start, t0, last_save = state["step"], time.perf_counter(), time.perf_counter()
    window, stopped = [], ""
    bar = tqdm(total=t.max_steps, initial=start, desc="detect.train", dynamic_ncols=True)
    for batch in train_loader(cfg, first_page_batch(state)):
        if state["step"] >= t.max_steps:
            break
        parts = train_step(model, opt, batch, device, t.grad_clip)
        sched.step()
        state["step"] += 1
        window.append(parts)
        bar.update(1)
        step = state["step"]
        if step % t.log_every == 0:
            mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            rate = (step - start) * t.batch_size / (time.perf_counter() - t0)
            mean["crops_per_s"] = rate
            mean["lr"] = sched.get_last_lr()[0]
            tracker.log_metrics({f"train_{k}": v for k, v in mean.items()}, step=step)
            bar.set_postfix(loss=f"{mean['loss']:.3f}", crops_s=f"{rate:.1f}")
            window = []
        if t.max_minutes > 0 and time.perf_counter() - t0 > 60 * t.max_minutes:
            stopped = f"detect.train.max_minutes={t.max_minutes} spent"
        stopped = asked.reason or stopped
        done = step >= t.max_steps or bool(stopped)
        if step % t.val_every == 0 or done:
            res = evaluate(model, val, cfg.detect.boxes, device)
            o = res["overall"]
            shorts = {"short_recall": o["short_recall"]} if o["short_truth"] else {}  # none: no figure
            state["history"].append(
                {"step": step, **{k: o[k] for k in ("precision", "recall", "f1")}, **shorts}
            )
            tracker.log_metrics(
                {"val_precision": o["precision"], "val_recall": o["recall"], "val_f1": o["f1"]}
                | {f"val_{k}": v for k, v in shorts.items()},
                step=step,
            )
            say(
                f"step {step}: val P {o['precision']:.3f} R {o['recall']:.3f} F1 {o['f1']:.3f}"
                f" (boxes of 1-2 characters: {o['short_matched']} of {o['short_truth']})"
            )
            if o["f1"] > state["best_f1"]:
                state["best_f1"] = o["f1"]
                save(cfg, "best.pt", model, opt, state, lineage)
        if done or step % t.val_every == 0 or time.perf_counter() - last_save > 60 * t.save_minutes:
            save(cfg, "last.pt", model, opt, state, lineage)
            last_save = time.perf_counter()
        if done:
            stopped = stopped if step < t.max_steps else ""
            if stopped:
                say(f"{stopped}: stopped at step {step}")
            break
    bar.close()
    return stopped


@hydra.main(config_path="../../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        summary = train(load_run_config(dcfg))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    status = exit_status(summary["stopped_early"])  # 130, 143: a signal stopped it (make, && stop too)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
