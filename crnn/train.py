"""Training stage: train or fine-tune a CRNN with CTC; resumes exactly; runs unchanged under torchrun.

    python -m crnn.train experiment=demo
    python -m crnn.train experiment=demo train.resume=true            # continue a killed run
    python -m crnn.train experiment=zh_en train.init_from=runs/demo/train/best.pt   # fine-tune
    torchrun --nproc_per_node=2 -m crnn.train experiment=demo         # DDP (gloo on CPU, nccl on CUDA)

Writes runs/<name>/train/{last.pt,best.pt,summary.json}. `last.pt` carries the whole training state
(optimizer, scheduler, step, RNG, MLflow run id); `best.pt` is the bundle later stages read.

Read it top-down, as torchvision's references/classification/train.py: `train_step` is one optimisation
step, `train_steps` the one loop (training and the pruning stage's `finetune` both run it), `evaluate`
scores the validation set per scene type, `fit` alternates them with checkpoints, `train` sets a run up and
`main` is the Hydra entry point. Device, data, schedule and checkpoint helpers are in crnn.train_utils.
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from crnn import distributed
from crnn.charset import Charset, load_charset
from crnn.data.dataset import Batch, LmdbLineDataset
from crnn.data.preprocess import InputSpec
from crnn.distill import Teacher, load_teacher
from crnn.ema import WeightEma
from crnn.inference import TorchBackend, score_dataset
from crnn.memory import keep_freed_memory
from crnn.models.checkpoint import Checkpoint, save_checkpoint
from crnn.models.complexity import count_macs, count_params
from crnn.models.crnn import CRNN
from crnn.settings import RunConfig, TrainConfig, load_run_config
from crnn.stop import StopRequest, exit_status, stop_on_signals
from crnn.tracking import Tracker
from crnn.train_utils import (
    TrainData,
    TrainState,
    amp_dtype_for,
    bring_home,
    initial_model,
    last_checkpoint_path,
    lineage_for,
    make_scheduler,
    pick_device,
    restore_last,
    save_last,
    schedule_from,
    snapshot,
    train_data,
)

# ------------------------------------------------------------------------------------------ one step


@dataclass
class Optimization:
    """What a step needs: the model, the module its forward runs through (the DDP wrapper, or the model
    itself in one process), the optimizer, scheduler and gradient scaler, and the autocast dtype."""

    model: CRNN
    forward: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full precision
    grad_clip: float
    channels_last: bool = False
    teacher: Teacher | None = None  # knowledge distillation (crnn.distill): off when None
    ema: WeightEma | None = None  # the weights' moving average (train.ema_decay): off when None
    world: int = 1  # processes training together, each on its own share of the lines (DDP)


def make_optimization(
    model: CRNN, t: TrainConfig, device: torch.device, teacher: Teacher | None = None
) -> Optimization:
    """AdamW with the configured schedule and precision (the same for training and fine-tuning)."""
    amp_dtype = amp_dtype_for(t, device)
    if t.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    forward = torch.compile(model, dynamic=True) if t.compile else model
    sched = make_scheduler(opt, t)
    return Optimization(
        model, forward, opt, sched, scaler, device, amp_dtype, t.grad_clip, t.channels_last, teacher
    )


def autocast(parts: Optimization):
    if parts.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(parts.device.type, dtype=parts.amp_dtype)


def batch_loss(parts: Optimization, batch: Batch) -> torch.Tensor:
    """Mean CTC loss of a batch (the model reads each line's true width, as inference does), blended with
    the distillation loss when the run has a teacher."""
    d = parts.device
    fmt = torch.channels_last if parts.channels_last else torch.contiguous_format
    images, widths = batch.images.to(d, non_blocking=True, memory_format=fmt), batch.widths.to(d)
    with autocast(parts):
        logits = parts.forward(images, widths)
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, N, C)
    targets, input_lengths = batch.targets.to(d), batch.input_lengths.to(d)
    loss = F.ctc_loss(
        log_probs, targets, input_lengths, batch.target_lengths.to(d), blank=0, zero_infinity=True
    )
    if parts.teacher is None:
        return loss
    with autocast(parts):
        teacher_logits = parts.teacher.logits(images, widths)
    return parts.teacher.blend(loss, logits, teacher_logits, input_lengths)


def blank_loss(parts: Optimization) -> torch.Tensor:
    """A zero loss for a batch whose lines were all skipped, computed through the same forward (under DDP,
    the wrapper's, which joins the gradient all-reduce the other ranks start) on one blank line, times 0.
    The model reads it in eval mode, so BatchNorm's running statistics do not see it."""
    cfg = parts.model.cfg
    width = 4 * cfg.hstride
    x = torch.zeros(1, 1, cfg.height, width, device=parts.device)
    parts.model.eval()
    try:
        with autocast(parts):
            logits = parts.forward(x, torch.tensor([width], device=parts.device))
    finally:
        parts.model.train()
    return logits.float().sum() * 0.0


def train_step(parts: Optimization, batch: Batch) -> float:
    """One optimisation step with CTC loss (and distillation, with a teacher); returns the loss."""
    loss = batch_loss(parts, batch) if len(batch) else blank_loss(parts)
    parts.opt.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()
    parts.scaler.unscale_(parts.opt)
    torch.nn.utils.clip_grad_norm_(parts.model.parameters(), parts.grad_clip)
    parts.scaler.step(parts.opt)
    parts.scaler.update()
    parts.sched.step()
    return float(loss.detach())


# ------------------------------------------------------------------------------------------ the loop


@dataclass
class StepLog:
    """What the loop reports: losses, throughput, the tqdm postfix and MLflow metrics every `every` steps
    and at step `last`. `prefix` names the metrics (pruning's fine-tuning logs prune_ft_loss, ...), and
    `step_base` places them on one axis across fine-tuning rounds."""

    tracker: Tracker | None
    every: int
    last: int
    prefix: str = ""
    step_base: int = 0
    world: int = 1
    losses: list[float] = field(default_factory=list)
    ema: float | None = None
    images: int = 0
    window_images: int = 0
    window_t0: float = field(default_factory=time.perf_counter)
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # (step, loss EMA, img/s) per report
    stopped: str = ""  # why the loop stopped before its last step ("" when it reached it)

    def add(self, loss: float, lines: int) -> None:
        self.losses.append(loss)
        self.ema = loss if self.ema is None else 0.95 * self.ema + 0.05 * loss
        self.images += lines * self.world
        self.window_images += lines * self.world

    def report(self, step: int, lr: float, bar: tqdm) -> None:
        if step % self.every and step != self.last:
            return
        now = time.perf_counter()
        ips = self.window_images / max(now - self.window_t0, 1e-9)
        self.window_images, self.window_t0 = 0, now
        self.curve.append((self.step_base + step, float(self.ema), ips))
        if self.tracker is not None:
            p = self.prefix
            metrics = {f"{p}loss": self.losses[-1], f"{p}loss_ema": self.ema, f"{p}lr": lr}
            self.tracker.log_metrics({**metrics, f"{p}throughput_img_s": ips}, step=self.step_base + step)
        bar.set_postfix(loss=f"{self.ema:.3f}", lr=f"{lr:.2e}", img_s=f"{ips:.0f}")

    def mean_of(self, part: slice) -> float | None:
        return float(np.mean(self.losses[part])) if self.losses else None


def train_steps(
    parts: Optimization, batches: Iterator[Batch], state: TrainState, stop: int, log: StepLog, bar: tqdm
) -> None:
    """The training loop, shared by training and fine-tuning: steps from `state.step` up to `stop`."""
    parts.model.train()
    kind = parts.device.type
    while state.step < stop:
        t0 = time.perf_counter()
        batch = next(batches)
        state.count_skipped(batch)
        loss = train_step(parts, batch)
        if parts.ema is not None:
            parts.ema.update(parts.model)
        state.step += 1
        drawn = (len(batch) + sum(batch.skipped.values())) * parts.world
        state.lines_seen += drawn
        state.count_device(kind, time.perf_counter() - t0, drawn)
        log.add(loss, len(batch))
        bar.update(1)
        log.report(state.step, parts.sched.get_last_lr()[0], bar)


def finetune(
    model: CRNN,
    cfg: RunConfig,
    steps: int,
    lr: float,
    desc: str,
    tracker: Tracker | None = None,
    metric_prefix: str = "ft",
    step_base: int = 0,
    teacher: Teacher | None = None,
) -> list[float]:
    """Fine-tune `model` in place for `steps` on the experiment's training data (one process), with a short
    warm-up and a cosine decay from `lr`, through the training loop. The pruning stage runs it between
    pruning steps; `step_base` gives each round a fresh data order and its place on the metrics' axis."""
    if steps <= 0:
        return []
    device = next(model.parameters()).device
    if cfg.train.keep_heap and device.type == "cpu":
        keep_freed_memory()
    t = replace(cfg.train, lr=lr, max_steps=steps, warmup_steps=min(50, steps // 10))
    parts = make_optimization(model, t, device, teacher)
    data = train_data(
        replace(cfg, seed=cfg.seed + 1 + step_base, train=t), load_charset(cfg.charset), model.cfg.hstride
    )
    log = StepLog(tracker, t.log_every, steps, prefix=f"{metric_prefix}_", step_base=step_base)
    bar = tqdm(total=steps, desc=desc, unit="step", dynamic_ncols=True)
    with closing(data.batches(0)) as batches, bar:
        train_steps(parts, batches, TrainState(), steps, log, bar)
    model.eval()
    return log.losses


# ----------------------------------------------------------------------------------------- validation


def evaluate(
    model: CRNN, val: LmdbLineDataset, charset: Charset, spec: InputSpec, device: torch.device, t: TrainConfig
) -> dict:
    """CER per scene type through the shared inference path (crnn.inference), then back to training mode."""
    scores, skipped = score_dataset(
        TorchBackend(model, charset, spec, device), val, t.val_batch_size, t.val_max_lines
    )
    model.train()
    return {"val": scores.as_dict(), "val_skipped": skipped}


def validation_set(cfg: RunConfig, charset: Charset) -> LmdbLineDataset:
    """The validation lines as stored: `train.augment` is for training lines only, never these."""
    return LmdbLineDataset(cfg.data.val_paths(), charset, cfg.input, cfg.oov_policy)


def val_metrics(result: dict) -> dict[str, float]:
    v = result["val"]
    metrics = {f"val_cer_{s}": r["cer"] for s, r in v["scenes"].items()}
    return {**metrics, "val_cer": v["overall"]["cer"], "val_acc": v["overall"]["acc"]}


def val_line(step: int, result: dict) -> str:
    v = result["val"]
    scenes = ", ".join(f"{s} {r['cer']:.4f}" for s, r in v["scenes"].items())
    raw = f" (trained weights {result['val_raw_cer']:.4f})" if "val_raw_cer" in result else ""
    return f"[val] step {step}: CER {scenes} | overall {v['overall']['cer']:.4f}{raw}"


# ------------------------------------------------------------------------------------------- a run


@dataclass
class Run:
    """One training run as `train` set it up: what the loop, validation and checkpoints read."""

    cfg: RunConfig
    charset: Charset
    dist: distributed.DistInfo
    parts: Optimization
    state: TrainState
    tracker: Tracker
    lineage: dict
    val: LmdbLineDataset

    @property
    def out_dir(self) -> Path:
        return self.cfg.stage_dir("train")

    @property
    def served(self) -> CRNN:
        """The weights later stages read: the moving average when the run keeps one, else the trained ones."""
        return self.parts.ema.model if self.parts.ema is not None else self.parts.model

    def snapshot(self, averaged: bool = False) -> Checkpoint:
        """The trained weights (last.pt, which a resume continues), or with `averaged` the served ones."""
        model = self.served if averaged else self.parts.model
        s = self.state
        lineage = dict(
            self.lineage,
            lines_seen=s.lines_seen,
            lines_counted_from=s.lines_counted_from,
            devices=copy.deepcopy(s.devices),
            devices_counted_from=s.devices_counted_from,
        )
        if averaged and self.parts.ema:
            lineage["ema_decay"] = self.parts.ema.decay
        return snapshot(model, self.charset, self.cfg.input, lineage, s.step)


def validate(run: Run) -> dict:
    """Rank 0: score the validation set (the served weights; with a moving average, the trained ones
    too, as val_raw_cer), log it, keep best.pt when the CER is the best so far."""
    p, state, t = run.parts, run.state, run.cfg.train
    result = evaluate(run.served, run.val, run.charset, run.cfg.input, p.device, t)
    metrics = {**val_metrics(result), "lines_seen": state.lines_seen}
    if p.ema is not None:
        raw = evaluate(p.model, run.val, run.charset, run.cfg.input, p.device, t)
        result["val_raw_cer"] = metrics["val_raw_cer"] = raw["val"]["overall"]["cer"]
    run.tracker.log_metrics(metrics, step=state.step)
    cer = result["val"]["overall"]["cer"]
    if cer < state.best_cer:
        state.best_cer, state.best_step = cer, state.step
        save_checkpoint(run.snapshot(averaged=True), run.out_dir / "best.pt")
    return result


def due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


@dataclass
class Clock:
    """The wall-clock side of a run: `train.max_minutes` (stop, validate and save when spent) and
    `train.save_minutes` (save last.pt that often, whatever the step). Under DDP rank 0's clock decides for
    every rank, so that all stop at the same step."""

    max_minutes: float
    save_minutes: float
    stop: StopRequest = field(default_factory=StopRequest)
    t0: float = field(default_factory=time.monotonic)
    last_save: float = field(default_factory=time.monotonic)

    def stop_reason(self, dist_info: distributed.DistInfo, device: torch.device) -> str:
        """Why the run stops here ("" to go on): its time budget is spent, or a signal asked it to stop."""
        spent = self.max_minutes > 0 and time.monotonic() - self.t0 >= 60 * self.max_minutes
        if not distributed.agree(spent or bool(self.stop.signal_name), dist_info, device):
            return ""
        return self.stop.reason or f"train.max_minutes={self.max_minutes} spent"

    def save_due(self) -> bool:
        return self.save_minutes > 0 and time.monotonic() - self.last_save >= 60 * self.save_minutes

    def saved(self) -> None:
        self.last_save = time.monotonic()


def save_state(run: Run, clock: Clock) -> None:
    ema = run.parts.ema.state_dict() if run.parts.ema is not None else None
    save_last(run.out_dir / "last.pt", run.snapshot(), run.parts.opt, run.state, ema)
    clock.saved()


def fit(run: Run, data: TrainData) -> tuple[dict, StepLog]:
    """Train from the run's step to train.max_steps (or until train.max_minutes is spent), validating
    (rank 0, the others wait) and saving last.pt on schedule. Returns the last validation (empty if none ran
    here) and the loop's log."""
    t, state, main = run.cfg.train, run.state, run.dist.is_main
    log = StepLog(run.tracker, t.log_every, t.max_steps, world=run.dist.world)
    clock = Clock(t.max_minutes, t.save_minutes)
    bar = tqdm(
        total=t.max_steps, initial=state.step, desc="train", unit="step", disable=not main, dynamic_ncols=True
    )
    last_val: dict = {}
    with stop_on_signals() as asked, closing(data.batches(state.step)) as batches, bar:
        clock.stop = asked  # checked with the clock, at every log, validation and save step
        while state.step < t.max_steps:
            every = (t.val_every, t.save_every, t.log_every)
            stop = min([t.max_steps] + [(state.step // e + 1) * e for e in every])
            train_steps(run.parts, batches, state, stop, log, bar)
            reason = clock.stop_reason(run.dist, run.parts.device)
            ending = bool(reason)
            if main and ending and asked.signal_name:
                save_state(run, clock)  # first: a scheduler's grace period may end before validation does
            if due(state.step, t.val_every, t.max_steps) or ending:
                if main:
                    last_val = validate(run)
                    bar.write(val_line(state.step, last_val))
                distributed.barrier(run.dist)
            if main and (due(state.step, t.save_every, t.max_steps) or ending or clock.save_due()):
                save_state(run, clock)
            if ending:
                bar.write(f"[train] {reason}: stopped at step {state.step}")
                log.stopped = reason if state.step < t.max_steps else ""
                break
    return last_val, log


def log_start(run: Run, data: TrainData, transfer: dict) -> None:
    model, cfg, d = run.parts.model, run.cfg, run.dist
    params, macs = count_params(model), count_macs(model.cfg, 320)
    run.tracker.log_params(
        {
            "cfg": asdict(cfg),
            "model_params": params,
            "model_macs_32x320": macs,
            "world_size": d.world,
            "device": str(run.parts.device),
            **transfer,
        }
    )
    if not d.is_main:
        return
    print(
        f"[train] {model.cfg.name}: {params / 1e6:.2f} M params, {macs / 1e6:.1f} M MACs at 32x320, "
        f"{run.charset.num_classes - 1} chars, device {run.parts.device}, world {d.world}, "
        f"start step {run.state.step}/{cfg.train.max_steps}"
    )
    if data.dataset is not None:
        print(f"[train] {len(data.dataset)} training lines; labels: {data.dataset.label_stats.as_dict()}")


def summarize(run: Run, last_val: dict, log: StepLog, wall: float, data: TrainData, extra: dict) -> dict:
    model, state, out = run.parts.model, run.state, run.out_dir
    return {
        "name": run.cfg.name,
        "model": model.cfg.as_dict(),
        "params": count_params(model),
        "macs_32x320": count_macs(model.cfg, 320),
        "steps": state.step,
        "lines_seen": state.lines_seen,
        "lines_counted_from": state.lines_counted_from,
        "devices": state.devices,
        "devices_counted_from": state.devices_counted_from,
        "best_step": state.best_step,
        "best_val_cer": state.best_cer,
        "final": last_val,
        "skipped": state.skipped,
        "loss_first": log.mean_of(slice(0, 5)),
        "loss_last": log.mean_of(slice(-5, None)),
        "labels": data.dataset.label_stats.as_dict() if data.dataset is not None else {},
        "throughput_img_s": log.images / max(wall, 1e-9),
        "loss_curve": log.curve,
        "stopped_early": log.stopped,
        "wall_s": wall,
        "world_size": run.dist.world,
        "device": str(run.parts.device),
        "checkpoint": str(out / "best.pt"),
        "last": str(out / "last.pt"),
        "mlflow_run_id": run.state.mlflow_run_id,
        **extra,
    }


def finish(run: Run, last_val: dict, log: StepLog, wall: float, data: TrainData, transfer: dict) -> dict:
    """Every rank: measure how far the ranks' weights drifted apart. Rank 0: a final validation if none
    ran, summary.json and the MLflow record. Returns the summary (empty on the other ranks)."""
    divergence = distributed.max_param_divergence(run.parts.model, run.dist)
    if not run.dist.is_main:
        return {}
    last_val = last_val or validate(run)
    extra = {"ddp_max_param_divergence": divergence, "transfer": transfer}
    summary = summarize(run, last_val, log, wall, data, extra)
    path = run.out_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    skipped = {f"skipped_{k}": v for k, v in run.state.skipped.items()}
    run.tracker.log_metrics(
        {"best_val_cer": run.state.best_cer, "ddp_max_param_divergence": divergence, **skipped}
    )
    run.tracker.log_artifact(run.out_dir / "best.pt", "checkpoint")
    run.tracker.log_artifact(path)
    return summary


def prepare_process(t: TrainConfig, device: torch.device, seed: int) -> None:
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.keep_heap and device.type == "cpu":
        keep_freed_memory()
    torch.manual_seed(seed)


def moving_average(
    model: CRNN, decay: float, state: TrainState, say: Callable[[str], None]
) -> WeightEma | None:
    """The run's moving average of the weights: continued from the resumed state's, else started at the
    weights the run starts from. None when train.ema_decay is 0."""
    if not decay:
        if state.ema is not None:
            say(
                "train.ema_decay=0: the resumed state's moving average is dropped; validation and best.pt "
                f"now read the trained weights (best so far, {state.best_cer:.4f}, was the average's)"
            )
            state.ema = None
        return None
    ema = WeightEma(model, decay)
    if state.ema is not None:
        if state.ema.get("decay") != decay:
            say(f"the resumed moving average, kept with decay {state.ema.get('decay')}, goes on with {decay}")
        ema.load_state_dict(state.ema)
    elif state.step:
        say(f"train.ema_decay={decay}: the moving average starts at step {state.step}'s weights")
    state.ema = None  # the run's copy lives in the WeightEma now
    return ema


def run_training(cfg: RunConfig, dist_info: distributed.DistInfo, device: torch.device) -> dict:
    """Set the run up (model, optimizer, resume, DDP, data), train it and write its summary."""
    prepare_process(cfg.train, device, cfg.seed)
    charset = load_charset(cfg.charset)
    say = print if dist_info.is_main else (lambda _msg: None)
    last_path = last_checkpoint_path(cfg)
    model, resume, transfer = initial_model(cfg, charset, last_path, lambda m: say(f"[train] {m}"))
    teacher = load_teacher(cfg.train.distill, charset, model.cfg, cfg.input, device, "train")
    parts = make_optimization(model.to(device), cfg.train, device, teacher)
    state = TrainState()
    if resume is not None:
        state = restore_last(resume, last_path, parts.opt, lambda m: say(f"[train] {m}"))
        parts.sched = schedule_from(parts.opt, cfg.train, state)  # at the run's step
    parts.ema = moving_average(model, cfg.train.ema_decay, state, lambda m: say(f"[train] {m}"))
    parts.world = dist_info.world
    if dist_info.enabled:
        parts.forward = DDP(model)
    data = train_data(cfg, charset, model.cfg.hstride, state.step, dist_info)
    val = validation_set(cfg, charset)
    own = cfg.mlflow if dist_info.is_main else replace(cfg.mlflow, enabled=False, metrics_file="")
    tracker = Tracker(own)
    lineage = {**lineage_for(cfg, resume), **(teacher.lineage() if teacher else {})}
    run = Run(cfg, charset, dist_info, parts, state, tracker, lineage, val)
    tags = {"stage": "train", "git_commit": run.lineage["git_commit"], "model": model.cfg.name}
    tags["data_fingerprint"] = run.lineage["data_fingerprint"]
    with tracker.run(run_name="train", tags=tags, resume_run_id=state.mlflow_run_id):
        # without MLflow here (a training bundle) the run id travels on, for the run at home to continue
        state.mlflow_run_id = tracker.run_id or state.mlflow_run_id
        run.lineage["mlflow_run_id"] = state.mlflow_run_id or ""
        if cfg.train.resume_from and resume is not None and dist_info.is_main:
            bring_home(last_path.parent, cfg.stage_dir("train"), tracker, lambda m: say(f"[train] {m}"))
        log_start(run, data, transfer)
        t0 = time.perf_counter()
        last_val, log = fit(run, data)
        return finish(run, last_val, log, time.perf_counter() - t0, data, transfer)


def train(cfg: RunConfig) -> dict:
    """Train as configured (or fine-tune, with train.init_from): one process, or one of N under torchrun."""
    device = pick_device(cfg.train.device)
    dist_info = distributed.setup(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    summary = run_training(cfg, dist_info, device)  # the DDP wrapper ends with this call ...
    distributed.teardown(dist_info)  # ... so the process group and its threads end here
    return summary


def print_summary(summary: dict) -> None:
    if not summary:
        return
    print(f"[train] checkpoint: {summary['checkpoint']} (best step {summary['best_step']})")
    print(f"[train] MLflow run: {summary['mlflow_run_id']} (make mlflow-ui)")
    print(f"[train] throughput: {summary['throughput_img_s']:.0f} img/s; skipped: {summary['skipped']}")
    curve = summary.get("loss_curve") or []
    if curve:
        print("[train] loss curve (step, loss EMA, img/s):")
        stride = max(1, -(-len(curve) // 12))  # at most 12 rows, the last one always
        for step, loss, ips in curve[::stride] + ([curve[-1]] if (len(curve) - 1) % stride else []):
            print(f"    {step:>8}  {loss:8.4f}  {ips:8.0f}")
    print("[train] validation CER per scene type (final step):")
    for s, v in summary["final"]["val"]["scenes"].items():
        print(f"    {s:<12} n={v['n']:<5} CER {v['cer'] * 100:6.2f}%   line acc {v['acc'] * 100:6.2f}%")
    o = summary["final"]["val"]["overall"]
    print(f"    {'overall':<12} n={o['n']:<5} CER {o['cer'] * 100:6.2f}%   line acc {o['acc'] * 100:6.2f}%")


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    summary = train(load_run_config(dcfg))
    print_summary(summary)
    # stopped by a signal: say so in the exit status (130, 143), so that `make demo` or a `&&` chain stops
    status = exit_status(summary.get("stopped_early", ""))
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
