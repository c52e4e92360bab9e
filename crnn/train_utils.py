"""The training stage's helpers (crnn.train): device and precision, the model to start from, training data,
the learning-rate schedule, lineage, and the checkpoints a run writes and resumes from.

crnn.train holds the loop, validation and the stage's entry point; everything here is a plain function of
its arguments, so each piece can be read (and tested) on its own.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from crnn import distributed
from crnn.charset import Charset
from crnn.data.dataset import (
    AugmentedLines,
    Batch,
    BucketBatchSampler,
    Collate,
    EpochKeyedBatches,
    LmdbLineDataset,
    ShuffledIndices,
    SynthBatchStream,
    epoch_and_skip,
    in_step_order,
)
from crnn.data.lmdb_io import LmdbReader
from crnn.data.preprocess import InputSpec
from crnn.data.source import train_stream_source
from crnn.data.synth import stream_fingerprint
from crnn.data.train_augment import line_augmenter
from crnn.lineage import git_commit, sha256_file
from crnn.models.checkpoint import (
    Checkpoint,
    atomic_torch_save,
    load_checkpoint,
    save_checkpoint,
)
from crnn.models.config import ModelConfig
from crnn.models.crnn import CRNN
from crnn.settings import RunConfig, TrainConfig
from crnn.stop import ignore_stop_signals
from crnn.tracking import Tracker

STATE_FORMAT = "crnn-toolkit/train-state/v1"

# The input-spec fields that change what a model sees; a checkpoint and the config must agree on them.
SPEC_FIELDS = ("height", "channels", "mean", "std", "cleanup", "smooth")


@dataclass
class TrainState:
    """Where a run stands; saved in last.pt so a resumed run continues exactly."""

    step: int = 0
    best_cer: float = math.inf
    best_step: int = -1
    mlflow_run_id: str | None = None
    skipped: dict[str, int] = field(default_factory=lambda: {"corrupt": 0, "too_long": 0, "empty_label": 0})
    rewarm_from: int | None = None  # the step a weights-only resume warmed the rate up again from
    ema: dict | None = None  # the moving average a resume continues (train.ema_decay), until the run takes it
    # Lines drawn for training (skipped ones included) over all processes, as rank 0's draw times the world
    # size (every rank draws a batch of the same size): batches change size between a CPU and a GPU, so
    # steps do not say. A run resumed from a state written before the count existed counts from that step.
    lines_seen: int = 0
    lines_counted_from: int = 0
    # Seconds in training steps (wall clock, all processes at once) and lines drawn, per device type
    # ("cpu", "cuda"): one run moves between CPU sessions and GPU bursts, and the model card says what each
    # gave. A step's time runs from drawing its batch to its update, so loader start-up is in the first
    # step; validation and saving are not. Counted from `devices_counted_from` (a state written before the
    # count resumes from its step).
    devices: dict[str, dict] = field(default_factory=dict)
    devices_counted_from: int = 0

    def count_device(self, kind: str, seconds: float, lines: int) -> None:
        d = self.devices.setdefault(kind, {"seconds": 0.0, "lines": 0})
        d["seconds"] += seconds
        d["lines"] += lines

    def count_skipped(self, batch: Batch) -> None:
        for k, v in batch.skipped.items():
            self.skipped[k] = self.skipped.get(k, 0) + v


# ---------------------------------------------------------------------------------------------- device


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is visible")
    return torch.device(name)


def amp_dtype_for(
    t: TrainConfig, device: torch.device, bf16_supported: bool | None = None
) -> torch.dtype | None:
    """The autocast dtype of training and fine-tuning alike: None (full precision) unless `train.amp` on
    CUDA (bfloat16 where the GPU has it, else float16, which needs the gradient scaler) or `train.cpu_amp`
    on the CPU (bfloat16)."""
    if device.type == "cpu" and t.cpu_amp:
        return torch.bfloat16
    if not t.amp or device.type != "cuda":
        return None
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16_supported else torch.float16


def make_scheduler(
    opt: torch.optim.Optimizer, t: TrainConfig, rewarm_from: int | None = None
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up then cosine decay to 2 % of `t.lr` at `t.max_steps` (or one-cycle).

    `rewarm_from`: a run resumed from weights alone (a committed snapshot, fresh AdamW moments) warms up
    again over `t.warmup_steps` from that step into the schedule. Adam's first steps with empty moments move
    every weight by about the full rate whatever its gradient; at v2's step 2700 that took the synthetic
    validation CER from 6.8 % to 9.8 % before it recovered (GPU burst, 2026-11-26)."""
    if t.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=t.lr,
            total_steps=max(t.max_steps, 1),
            pct_start=min(0.3, max(t.warmup_steps, 1) / max(t.max_steps, 1)),
        )
    if t.schedule != "cosine":
        raise ValueError(f"train.schedule must be cosine or onecycle, got {t.schedule!r}")

    factor = partial(warmup_cosine, warmup=t.warmup_steps, horizon=t.max_steps, rewarm_from=rewarm_from)
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def warmup_cosine(step: int, warmup: int, horizon: int, rewarm_from: int | None = None) -> float:
    """The rate's factor at `step` (the recognizer's and the detector's schedule): linear warm-up, cosine
    decay to 2 % at `horizon`, times a second linear warm-up from `rewarm_from` (see make_scheduler)."""
    if step < warmup:
        base = (step + 1) / max(warmup, 1)
    else:
        progress = (step - warmup) / max(horizon - warmup, 1)
        base = 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if rewarm_from is not None and step >= rewarm_from:
        base *= min(1.0, (step - rewarm_from + 1) / max(warmup, 1))
    return base


# ----------------------------------------------------------------------------------- the model to start


def model_config_for(cfg: RunConfig, charset: Charset) -> ModelConfig:
    """The config's model (crnn.models.crnn.ModelConfig, the one description) with the alphabet's classes."""
    return replace(cfg.model, num_classes=charset.num_classes)


def spec_mismatches(ckpt: InputSpec, cfg: InputSpec) -> list[str]:
    return [
        f"input.{f}: checkpoint {getattr(ckpt, f)!r}, config {getattr(cfg, f)!r}"
        for f in SPEC_FIELDS
        if getattr(ckpt, f) != getattr(cfg, f)
    ]


def check_resume(ck: Checkpoint, path: Path, cfg: RunConfig, charset: Charset) -> None:
    """A resumed run must see what it saw before: same alphabet, input spec and model."""
    if ck.charset != charset:
        raise ValueError(f"{path} was trained on another alphabet than charset={cfg.charset}")
    wanted = model_config_for(cfg, charset).as_dict()
    diffs = spec_mismatches(ck.input_spec, cfg.input) + [
        f"model.{k}: checkpoint {v!r}, config {wanted[k]!r}"
        for k, v in ck.model_config.as_dict().items()
        if wanted.get(k) != v
    ]
    if diffs:
        raise ValueError(
            f"train.resume=true: {path} was trained with another setup than the config asks for ("
            + "; ".join(diffs)
            + "); set the config back to the checkpoint's values or start a new run (another name)"
        )


def check_init_from(src: Checkpoint, path: str, cfg: RunConfig) -> None:
    """Fine-tuning keeps the source's architecture and may change the alphabet, not what the model sees."""
    diffs = spec_mismatches(src.input_spec, cfg.input)
    if src.model_config.hstride != cfg.model.hstride:
        diffs.append(f"model.hstride: checkpoint {src.model_config.hstride}, config {cfg.model.hstride}")
    if diffs:
        raise ValueError(
            f"train.init_from={path} reads its input differently from the config ("
            + "; ".join(diffs)
            + "); set input.* (and model.hstride) to the checkpoint's values to fine-tune from it"
        )


# How far below the average character a new character's logit starts (see transfer_from).
NEW_ROW_MARGIN = 4.0


def transfer_from(src: Checkpoint, charset: Charset) -> tuple[CRNN, dict]:
    """A model with the source's architecture and weights, its classifier mapped onto `charset`.

    Rows of characters both alphabets share (and the blank) are copied. A new character's row starts as
    the mean of the source's character rows plus its own fresh initialisation, with its bias lowered by
    `NEW_ROW_MARGIN`: its logit is then about the average character's, far below each frame's winner, so
    the fine-tuned model starts out reading what the source read. A fresh row alone (logits near 0) beat
    the trained rows on most frames: v2 moved onto GB2312 read its validation lines at 184 % CER before its
    first step. Returns the model and what was kept, for the log.
    """
    model = CRNN(replace(src.model_config, num_classes=charset.num_classes))
    state = {k: v for k, v in src.state_dict.items() if not k.startswith("classifier.")}
    model.load_state_dict(state, strict=False)
    old_w, old_b = src.state_dict["classifier.weight"].float(), src.state_dict["classifier.bias"].float()
    old_index = {c: i + 1 for i, c in enumerate(src.charset.chars)}
    rows = [(0, 0)] + [(i + 1, old_index[c]) for i, c in enumerate(charset.chars) if c in old_index]
    fresh = [i + 1 for i, c in enumerate(charset.chars) if c not in old_index]
    with torch.no_grad():
        w, b = model.classifier.weight, model.classifier.bias
        if fresh and len(old_w) > 1:
            w[fresh] += old_w[1:].mean(0)
            b[fresh] += old_b[1:].mean() - NEW_ROW_MARGIN
        for new, old in rows:
            w[new] = old_w[old]
            b[new] = old_b[old]
    shared = len(rows) - 1
    return model, {
        "shared_chars": shared,
        "new_chars": len(charset.chars) - shared,
        "dropped_chars": len(src.charset.chars) - shared,
    }


def last_checkpoint_path(cfg: RunConfig) -> Path:
    """The last.pt a resumed run starts from: train.resume_from (a file, or the folder holding last.pt, as
    a training bundle brings it back) or the run's own."""
    src = cfg.train.resume_from
    if not src:
        return cfg.stage_dir("train") / "last.pt"
    p = Path(src)
    return p / "last.pt" if p.is_dir() else p


def initial_model(
    cfg: RunConfig, charset: Charset, last_path: Path, say: Callable[[str], None]
) -> tuple[CRNN, Checkpoint | None, dict]:
    """The model a run starts from: last.pt (train.resume), train.init_from (fine-tuning) or a fresh one.
    Returns the model, the checkpoint to resume from (or None) and what init_from transferred."""
    t = cfg.train
    if t.resume and last_path.is_file():
        ck = load_checkpoint(last_path)
        check_resume(ck, last_path, cfg, charset)
        return ck.build_model(), ck, {}
    if t.resume and t.resume_from:
        raise FileNotFoundError(f"train.resume_from={t.resume_from}: no checkpoint at {last_path}")
    if t.resume:
        say(
            f"train.resume=true but {last_path} does not exist: starting "
            + ("from init_from" if t.init_from else "a new run")
        )
    if t.init_from:
        src = load_checkpoint(t.init_from)
        check_init_from(src, t.init_from, cfg)
        model, transfer = transfer_from(src, charset)
        return model, None, transfer
    return CRNN(model_config_for(cfg, charset)), None, {}


# ------------------------------------------------------------------------------------------ training data


@dataclass
class TrainData:
    """The training batches of one process, across epochs, in the order an uninterrupted run sees them."""

    dataset: LmdbLineDataset | None  # None: the synthetic stream (data.train=synth)
    loader_for: Callable[[int, int], Iterable[Batch]]  # (epoch, batches to skip) -> that epoch's batches
    per_epoch: int | None  # batches per epoch; None: endless

    def batches(self, start_step: int) -> Iterator[Batch]:
        """Batches from `start_step` on (close the generator to stop its loader workers)."""
        if self.per_epoch is None:  # the stream starts at its step by itself
            yield from self.loader_for(0, 0)
            return
        epoch, skip = epoch_and_skip(start_step, self.per_epoch)
        while True:
            yield from self.loader_for(epoch, skip)
            epoch, skip = epoch + 1, 0


def _collate_step(collate: Collate, pair: tuple[int, list]) -> tuple[int, Batch]:
    step, items = pair
    return step, collate(items)


def synth_train_data(
    cfg: RunConfig, charset: Charset, dist_info, collate: Collate, start_step: int
) -> TrainData:
    t = cfg.train
    stream = SynthBatchStream(
        partial(train_stream_source, cfg, charset),
        cfg.input,
        t.batch_size,
        start_step=start_step,
        rank=dist_info.rank,
        world=dist_info.world,
        pool_batches=t.stream_pool,
        augment=line_augmenter(t.augment, cfg.input.height, cfg.seed),
    )
    loader = DataLoader(
        stream,
        batch_size=None,
        collate_fn=partial(_collate_step, collate),
        num_workers=t.num_workers,
        persistent_workers=False,
        prefetch_factor=4 if t.num_workers else None,
        in_order=not t.num_workers,  # each worker renders whole pools: take what is ready, reorder here
        worker_init_fn=ignore_stop_signals,  # the main process stops them when it stops politely
    )
    return TrainData(None, lambda epoch, skip: in_step_order(loader, start_step), None)


def lmdb_train_data(cfg: RunConfig, charset: Charset, dist_info, collate: Collate) -> TrainData:
    t, paths = cfg.train, cfg.data.train_paths()
    ds = LmdbLineDataset(paths, charset, cfg.input, cfg.oov_policy)
    if len(ds) == 0:
        raise ValueError(
            f"training data {paths} holds no usable line (label stats: {ds.label_stats.as_dict()})"
        )
    if dist_info.enabled:
        base = DistributedSampler(
            ds, num_replicas=dist_info.world, rank=dist_info.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
    else:
        base = ShuffledIndices(len(ds), cfg.seed)
    sampler = BucketBatchSampler(base, ds.widths(), t.batch_size, seed=cfg.seed, pool_batches=t.bucket_pool)
    # with train.augment: the workers get (epoch, index) keys and augment each line as a function of them
    augment = line_augmenter(t.augment, cfg.input.height, cfg.seed)
    lines, batches = (
        (ds, sampler) if augment is None else (AugmentedLines(ds, augment), EpochKeyedBatches(sampler))
    )

    def loader_for(epoch: int, skip: int) -> DataLoader:
        sampler.set_epoch(epoch, skip)
        return DataLoader(
            lines,
            batch_sampler=batches,
            collate_fn=collate,
            num_workers=t.num_workers,
            worker_init_fn=ignore_stop_signals,
        )

    return TrainData(ds, loader_for, len(sampler))


def train_data(
    cfg: RunConfig,
    charset: Charset,
    hstride: int,
    start_step: int = 0,
    dist_info: distributed.DistInfo | None = None,
) -> TrainData:
    """This process's share of the training data (LMDBs, or the synthetic stream), from `start_step` on."""
    dist_info = dist_info or distributed.DistInfo()
    collate = Collate(charset, hstride)
    if cfg.data.train == "synth":
        return synth_train_data(cfg, charset, dist_info, collate, start_step)
    if cfg.data.train != "lmdb":
        raise ValueError(f"data.train must be lmdb or synth, got {cfg.data.train!r}")
    return lmdb_train_data(cfg, charset, dist_info, collate)


def lmdb_fingerprint(paths: list[str]) -> str:
    """Hash of each training LMDB's size and labels: changes when the data does, cheap to compute."""
    h = hashlib.sha256()
    for p in paths:
        reader = LmdbReader(p)
        h.update(f"{reader.num_samples}".encode())
        for label in reader.labels():
            h.update((label or "\x00").encode("utf-8"))
    return h.hexdigest()[:16]


def data_fingerprint(cfg: RunConfig) -> str:
    """What the run trains on: the LMDBs' labels, or everything that decides the synthetic stream's lines."""
    if cfg.data.train == "synth":
        return stream_fingerprint(cfg)
    return lmdb_fingerprint(cfg.data.train_paths())


def lineage_for(cfg: RunConfig, resumed: Checkpoint | None = None) -> dict:
    """A resumed run keeps the source its first step started from (train.init_from is not read again: a
    training bundle resumes without the file, and the file at home may have changed since)."""
    t = cfg.train
    if resumed is not None and "source_sha256" in resumed.lineage:
        source = resumed.lineage["source_sha256"]
    else:
        source = sha256_file(t.init_from) if t.init_from else ""
    # a teacher the run learnt from stays in its lineage when it goes on without one (crnn.distill)
    taught = (
        {k: v for k, v in resumed.lineage.items() if k.startswith(("teacher", "distill_"))} if resumed else {}
    )
    return {
        "stage": "train",
        "data_fingerprint": data_fingerprint(cfg),
        "git_commit": git_commit(),
        "source_sha256": source,
        "config_name": cfg.name,
        **taught,
    }


# ------------------------------------------------------------------------------------------- checkpoints


def snapshot(model: CRNN, charset: Charset, spec: InputSpec, lineage: dict, step: int) -> Checkpoint:
    """The bundle later stages read (best.pt): model, alphabet, input spec and lineage at `step`."""
    return Checkpoint(
        model_config=model.cfg,
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        charset=charset,
        input_spec=spec,
        lineage=dict(lineage, step=step),
    )


def state_path(weights: Path, previous: bool = False) -> Path:
    """Where the optimizer / RNG state of a weights file lives: last.pt -> last.state.pt (and, only while
    a save is under way, the state before it: last.state.prev.pt)."""
    return weights.with_name(weights.stem + (".state.prev.pt" if previous else ".state.pt"))


def save_last(
    path: Path, ck: Checkpoint, opt: torch.optim.Optimizer, state: TrainState, ema: dict | None = None
) -> None:
    """`ck` (the weights, as best.pt) in `path`, and what an exact resume needs beside it in
    last.state.pt: optimizer, step, best so far, re-warm-up start, RNG, MLflow run (the rate is a function
    of the step and the re-warm-up start: no scheduler state). Two files, so that neither
    outgrows what travels easily (16 MiB) and the weights alone still resume (with fresh optimizer moments).
    Each write is atomic; the state before this save is kept until the new weights are in place, so a kill
    at any moment leaves weights and a state of the same step (`load_train_state` picks it). A run that
    keeps a moving average of its weights (`ema`) saves it in the state too: 3.7 MB more for the tiny
    preset (11 MB in all, still under the 16 MiB a file may have to travel in)."""
    train_state = {
        "format": STATE_FORMAT,
        "optimizer": opt.state_dict(),
        "step": state.step,
        "best_cer": state.best_cer,
        "best_step": state.best_step,
        "mlflow_run_id": state.mlflow_run_id or "",
        "skipped": state.skipped,
        "rewarm_from": state.rewarm_from,
        "lines_seen": state.lines_seen,
        "lines_counted_from": state.lines_counted_from,
        "devices": state.devices,
        "devices_counted_from": state.devices_counted_from,
        "torch_rng": torch.get_rng_state(),
    }
    if ema is not None:
        train_state["ema"] = ema
    current, previous = state_path(path), state_path(path, previous=True)
    if current.is_file() and path.is_file():
        os.replace(current, previous)
    atomic_torch_save(train_state, current)
    save_checkpoint(replace(ck, train_state=None), path)
    previous.unlink(missing_ok=True)


def _read_state(path: Path) -> dict | None:
    try:
        ts = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return ts if isinstance(ts, dict) and ts.get("format") == STATE_FORMAT else None


def load_train_state(ck: Checkpoint, path: Path) -> dict | None:
    """The optimizer / RNG state that belongs to the weights in `path`: inside it (files written before the
    split), or the state file beside it of the same step; None when there is none (weights only)."""
    if ck.train_state is not None:
        return ck.train_state
    step = int(ck.lineage.get("step", -1))
    for candidate in (state_path(path), state_path(path, previous=True)):
        ts = _read_state(candidate) if candidate.is_file() else None
        if ts is not None and int(ts["step"]) == step:
            return ts
    return None


def restore_last(
    ck: Checkpoint, path: Path, opt: torch.optim.Optimizer, say: Callable[[str], None] = print
) -> TrainState:
    """The counterpart of `save_last`: loads the optimizer's moments and the RNG, returns where the run
    stood. Weights alone (a committed fp16 snapshot, say) resume at their step with fresh optimizer moments.
    The scheduler is not loaded: its rate is a function of the step and the state's `rewarm_from`, so the
    caller builds it from the returned state (`schedule_from`), one way for both kinds of resume."""
    ts = load_train_state(ck, path)
    if ts is None:
        step = int(ck.lineage.get("step", 0))
        say(
            f"{path} holds weights only: resuming at step {step} with fresh optimizer moments, "
            "the rate warmed up again"
        )
        return TrainState(
            step=step,
            mlflow_run_id=ck.lineage.get("mlflow_run_id") or None,
            rewarm_from=step,
            lines_seen=int(ck.lineage.get("lines_seen", 0)),
            lines_counted_from=int(ck.lineage.get("lines_counted_from", step)),
            devices=copy.deepcopy(ck.lineage.get("devices", {})),
            devices_counted_from=int(ck.lineage.get("devices_counted_from", step)),
        )
    opt.load_state_dict(ts["optimizer"])
    torch.set_rng_state(ts["torch_rng"])
    return TrainState(
        step=int(ts["step"]),
        best_cer=float(ts["best_cer"]),
        best_step=int(ts["best_step"]),
        mlflow_run_id=ts.get("mlflow_run_id") or None,
        skipped=dict(ts["skipped"]),
        rewarm_from=ts.get("rewarm_from"),
        ema=ts.get("ema"),
        lines_seen=int(ts.get("lines_seen", 0)),
        lines_counted_from=int(ts.get("lines_counted_from", ts["step"])),
        devices=copy.deepcopy(ts.get("devices", {})),
        devices_counted_from=int(ts.get("devices_counted_from", ts["step"])),
    )


def schedule_from(
    opt: torch.optim.Optimizer, t: TrainConfig, state: TrainState
) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler of a resumed run at its step (with the re-warm-up its state names, if any)."""
    return at_step(make_scheduler(opt, t, state.rewarm_from), state.step)


def at_step(sched: torch.optim.lr_scheduler.LRScheduler, step: int) -> torch.optim.lr_scheduler.LRScheduler:
    """`sched` moved to `step`, its rate the schedule's there. A resumed run rebuilds its scheduler rather
    than loading a saved one: the rate is a function of the step (and the re-warm-up), so one way serves a
    resume with and without optimizer state, for the recognizer and the detector alike. Built after the
    optimizer's state is loaded, the scheduler keeps the base rate the run started with (`initial_lr`)."""
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": on purpose here
        warnings.simplefilter("ignore", UserWarning)
        sched.last_epoch = step - 1
        sched.step()
    return sched


def bring_home(src: Path, out: Path, tracker: Tracker, say: Callable[[str], None]) -> None:
    """A run resumed from elsewhere (`train.resume_from`, `detect.train.resume_from`: what a training
    bundle brought back) into its folder `out`: its best.pt comes along (the state's best score refers to
    it), and its metrics file joins this MLflow run, once: the files imported are remembered by hash in
    `out`. Its last.pt and state come along too, so that a run of no steps here (`max_steps` at its step:
    a GPU-trained model is not continued on a CPU) leaves a folder that `resume=true` continues. Shared by
    the recognizer and the detector."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("best.pt", "last.pt", "last.state.pt"):
        if (src / name).is_file() and (src / name).resolve() != (out / name).resolve():
            shutil.copyfile(src / name, out / name)
    metrics = src / "metrics.jsonl"
    if not metrics.is_file() or tracker.run_id is None:
        return
    done_path = out / "imported_metrics.json"
    done = json.loads(done_path.read_text()) if done_path.is_file() else []
    digest = sha256_file(metrics)
    if digest in done:
        return
    n = tracker.import_metrics(metrics)
    done_path.write_text(json.dumps(done + [digest]))
    say(f"{n} metric values of {metrics} logged into MLflow run {tracker.run_id}")
