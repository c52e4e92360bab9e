"""Training stage: train or fine-tune a CRNN with CTC; resumes exactly; runs unchanged under torchrun.

    python -m crnn.train experiment=demo
    python -m crnn.train experiment=demo train.resume=true            # continue a killed run
    python -m crnn.train experiment=zh_en train.init_from=runs/demo/train/best.pt   # fine-tune
    torchrun --nproc_per_node=2 -m crnn.train experiment=demo         # DDP (gloo on CPU, nccl on CUDA)

Writes runs/<name>/train/{last.pt,best.pt,summary.json}. `last.pt` carries the whole training state
(optimizer, scheduler, step, RNG, MLflow run id); `best.pt` is the bundle later stages read.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from crnn import distributed
from crnn.charset import Charset, load_charset
from crnn.data.dataset import (
    Batch,
    BucketBatchSampler,
    Collate,
    LmdbLineDataset,
    ShuffledIndices,
    SynthBatchStream,
    epoch_and_skip,
)
from crnn.data.lmdb_io import LmdbReader
from crnn.data.source import train_stream_source
from crnn.inference import TorchBackend, score_dataset
from crnn.memory import keep_freed_memory
from crnn.metrics import SceneScores
from crnn.models.checkpoint import Checkpoint, git_commit, load_checkpoint, save_checkpoint, sha256_file
from crnn.models.complexity import count_macs, count_params
from crnn.models.crnn import CRNN, ModelConfig
from crnn.settings import RunConfig, load_run_config
from crnn.tracking import Tracker


@dataclass
class TrainState:
    step: int = 0
    best_cer: float = math.inf
    best_step: int = -1
    mlflow_run_id: str | None = None
    skipped: dict[str, int] = field(default_factory=lambda: {"corrupt": 0, "too_long": 0, "empty_label": 0})


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is visible")
    return torch.device(name)


def model_config_for(cfg: RunConfig, charset: Charset) -> ModelConfig:
    m = cfg.model
    return ModelConfig(
        channels=list(m.channels),
        pool_after=list(m.pool_after),
        hstride=m.hstride,
        lstm_hidden=m.lstm_hidden,
        lstm_layers=m.lstm_layers,
        num_classes=charset.num_classes,
        height=cfg.input.height,
        name=m.name,
    )


def transfer_from(src: Checkpoint, charset: Charset) -> tuple[CRNN, dict]:
    """A model with the source's architecture and weights, its classifier mapped onto `charset`.

    Rows of characters both alphabets share (and the blank) are copied; new characters keep their fresh
    initialisation. Returns the model and what was kept, for the log.
    """
    mc = ModelConfig(**{**src.model_config.as_dict(), "num_classes": charset.num_classes})
    model = CRNN(mc)
    state = {k: v for k, v in src.state_dict.items() if not k.startswith("classifier.")}
    model.load_state_dict(state, strict=False)
    old_w, old_b = src.state_dict["classifier.weight"], src.state_dict["classifier.bias"]
    old_index = {c: i + 1 for i, c in enumerate(src.charset.chars)}
    shared = 0
    with torch.no_grad():
        model.classifier.weight[0] = old_w[0]
        model.classifier.bias[0] = old_b[0]
        for i, c in enumerate(charset.chars):
            j = old_index.get(c)
            if j is not None:
                model.classifier.weight[i + 1] = old_w[j]
                model.classifier.bias[i + 1] = old_b[j]
                shared += 1
    return model, {
        "shared_chars": shared,
        "new_chars": len(charset.chars) - shared,
        "dropped_chars": len(src.charset.chars) - shared,
    }


def make_scheduler(opt: torch.optim.Optimizer, cfg: RunConfig) -> torch.optim.lr_scheduler.LRScheduler:
    t = cfg.train
    if t.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=t.lr,
            total_steps=max(t.max_steps, 1),
            pct_start=min(0.3, max(t.warmup_steps, 1) / max(t.max_steps, 1)),
        )
    if t.schedule != "cosine":
        raise ValueError(f"train.schedule must be cosine or onecycle, got {t.schedule!r}")

    def factor(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / max(t.warmup_steps, 1)
        progress = (step - t.warmup_steps) / max(t.max_steps - t.warmup_steps, 1)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def data_fingerprint(paths: list[str]) -> str:
    """Hash of each training LMDB's size and labels: changes when the data does, cheap to compute."""
    h = hashlib.sha256()
    for p in paths:
        reader = LmdbReader(p)
        h.update(f"{reader.num_samples}".encode())
        for label in reader.labels():
            h.update((label or "\x00").encode("utf-8"))
    return h.hexdigest()[:16]


def validate(
    model: CRNN,
    dataset: LmdbLineDataset,
    charset: Charset,
    spec,
    device: torch.device,
    batch_size: int,
    max_lines: int = 0,
) -> tuple[SceneScores, dict]:
    """CER per scene type through the shared inference path (crnn.inference), then back to training mode."""
    backend = TorchBackend(model, charset, spec, device)
    scores, skipped = score_dataset(backend, dataset, batch_size, max_lines)
    model.train()
    return scores, skipped


def build_train_loader(
    cfg: RunConfig, charset: Charset, dist_info: distributed.DistInfo, collate: Collate, start_step: int
):
    t = cfg.train
    if cfg.data.train == "synth":
        stream = SynthBatchStream(
            partial(train_stream_source, cfg, charset),
            cfg.input,
            t.batch_size,
            start_step=start_step,
            rank=dist_info.rank,
            world=dist_info.world,
            pool_batches=t.stream_pool,
        )
        loader = DataLoader(
            stream,
            batch_size=None,
            collate_fn=collate,
            num_workers=t.num_workers,
            persistent_workers=False,
            prefetch_factor=4 if t.num_workers else None,
        )
        return None, lambda epoch, skip: loader, None
    if cfg.data.train != "lmdb":
        raise ValueError(f"data.train must be lmdb or synth, got {cfg.data.train!r}")
    paths = cfg.data.train_paths()
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

    def loader_for(epoch: int, skip: int) -> DataLoader:
        sampler.set_epoch(epoch, skip)
        return DataLoader(
            ds, batch_sampler=sampler, collate_fn=collate, num_workers=t.num_workers, persistent_workers=False
        )

    return ds, loader_for, sampler


def batches_forever(loader_for, sampler, start_step: int):
    """Yields batches from `start_step` on, across epochs, in the same order an uninterrupted run sees."""
    if sampler is None:  # the synthetic stream is endless and starts at its step by itself
        yield from loader_for(0, 0)
        return
    per_epoch = len(sampler)
    epoch, skip = epoch_and_skip(start_step, per_epoch)
    while True:
        yield from loader_for(epoch, skip)
        epoch, skip = epoch + 1, 0


def train_step(
    model: CRNN,
    ddp_model: torch.nn.Module,
    batch: Batch,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    use_amp: bool,
    amp_dtype: torch.dtype,
    grad_clip: float,
) -> float:
    """One optimisation step with CTC loss; returns the loss."""
    images = batch.images.to(device, non_blocking=True)
    if len(batch):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            logits = ddp_model(images)
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, N, C)
        loss = F.ctc_loss(
            log_probs,
            batch.targets.to(device),
            batch.input_lengths.to(device),
            batch.target_lengths.to(device),
            blank=0,
            reduction="mean",
            zero_infinity=True,
        )
    else:  # every line skipped: keep DDP ranks in step with a zero loss
        loss = sum(p.sum() * 0.0 for p in ddp_model.parameters())
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(opt)
    scaler.update()
    sched.step()
    return float(loss.detach())


def finetune(
    model: CRNN,
    cfg: RunConfig,
    steps: int,
    lr: float,
    desc: str,
    tracker: Tracker | None = None,
    metric_prefix: str = "ft",
    step_base: int = 0,
) -> list[float]:
    """Fine-tune `model` in place for `steps` on the experiment's training data (single process), with a
    short warm-up and a cosine decay from `lr`. Used by the pruning stage between pruning steps."""
    if steps <= 0:
        return []
    device = next(model.parameters()).device
    if cfg.train.keep_heap and device.type == "cpu":
        keep_freed_memory()
    charset = load_charset(cfg.charset)
    collate = Collate(charset, model.cfg.hstride)
    sub = replace(
        cfg,
        seed=cfg.seed + 1 + step_base,  # a fresh data order for each fine-tuning round
        train=replace(cfg.train, lr=lr, max_steps=steps, warmup_steps=min(50, steps // 10)),
    )
    _, loader_for, sampler = build_train_loader(sub, charset, distributed.DistInfo(), collate, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.train.weight_decay)
    sched = make_scheduler(opt, sub)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    use_amp = cfg.train.amp and device.type == "cuda"
    model.train()
    losses = []
    batches = batches_forever(loader_for, sampler, 0)
    for k in tqdm(range(steps), desc=desc, unit="step", dynamic_ncols=True):
        lv = train_step(
            model,
            model,
            next(batches),
            opt,
            sched,
            scaler,
            device,
            use_amp,
            torch.bfloat16,
            cfg.train.grad_clip,
        )
        losses.append(lv)
        if tracker is not None and (k + 1) % cfg.train.log_every == 0:
            tracker.log_metrics({f"{metric_prefix}_loss": lv}, step=step_base + k + 1)
    model.eval()
    return losses


def train(cfg: RunConfig) -> dict:
    t = cfg.train
    device = pick_device(t.device)
    dist_info = distributed.setup(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.keep_heap and device.type == "cpu":
        keep_freed_memory()
    torch.manual_seed(cfg.seed)
    out_dir = cfg.stage_dir("train")
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    charset = load_charset(cfg.charset)
    state = TrainState()
    transfer_info: dict = {}
    resume_ckpt = None
    if t.resume and last_path.is_file():
        resume_ckpt = load_checkpoint(last_path)
        if resume_ckpt.charset != charset:
            raise ValueError(f"{last_path} was trained on another alphabet than charset={cfg.charset}")
        model = resume_ckpt.build_model()
    elif t.init_from:
        if t.resume and dist_info.is_main:
            print(f"[train] train.resume=true but {last_path} does not exist: starting from init_from")
        src = load_checkpoint(t.init_from)
        model, transfer_info = transfer_from(src, charset)
    else:
        if t.resume and dist_info.is_main:
            print(f"[train] train.resume=true but {last_path} does not exist: starting a new run")
        model = CRNN(model_config_for(cfg, charset))
    model.to(device)
    mc = model.cfg
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    sched = make_scheduler(opt, cfg)
    if resume_ckpt is not None:
        ts = resume_ckpt.train_state or {}
        opt.load_state_dict(ts["optimizer"])
        sched.load_state_dict(ts["scheduler"])
        state = TrainState(
            step=int(ts["step"]),
            best_cer=float(ts["best_cer"]),
            best_step=int(ts["best_step"]),
            mlflow_run_id=ts.get("mlflow_run_id") or None,
            skipped=dict(ts["skipped"]),
        )
        torch.set_rng_state(ts["torch_rng"])
    ddp_model = DDP(model) if dist_info.enabled else model
    collate = Collate(charset, mc.hstride)
    train_ds, loader_for, sampler = build_train_loader(cfg, charset, dist_info, collate, state.step)
    val_ds = LmdbLineDataset(cfg.data.val_paths(), charset, cfg.input, cfg.oov_policy)
    use_amp = t.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    fingerprint = (
        data_fingerprint(cfg.data.train_paths())
        if train_ds is not None
        else hashlib.sha256(
            json.dumps([asdict(cfg.corpus), asdict(cfg.render), cfg.seed], default=str).encode()
        ).hexdigest()[:16]
    )
    lineage = {
        "stage": "train",
        "data_fingerprint": fingerprint,
        "git_commit": git_commit(),
        "source_sha256": sha256_file(t.init_from) if t.init_from else "",
        "config_name": cfg.name,
    }
    tracker = Tracker(cfg.mlflow) if dist_info.is_main else Tracker(type(cfg.mlflow)(enabled=False))
    summary: dict = {}
    with tracker.run(
        run_name="train",
        tags={
            "stage": "train",
            "git_commit": lineage["git_commit"],
            "data_fingerprint": fingerprint,
            "model": mc.name,
        },
        resume_run_id=state.mlflow_run_id,
    ):
        state.mlflow_run_id = tracker.run_id
        lineage["mlflow_run_id"] = tracker.run_id or ""
        params = count_params(model)
        macs = count_macs(mc, 320)
        tracker.log_params(
            {
                "cfg": asdict(cfg),
                "model_params": params,
                "model_macs_32x320": macs,
                "world_size": dist_info.world,
                "device": str(device),
                **transfer_info,
            }
        )
        label_stats = train_ds.label_stats.as_dict() if train_ds is not None else {}
        if dist_info.is_main:
            print(
                f"[train] {mc.name}: {params / 1e6:.2f} M params, {macs / 1e6:.1f} M MACs at 32x320, "
                f"{charset.num_classes - 1} chars, device {device}, world {dist_info.world}, "
                f"start step {state.step}/{t.max_steps}"
            )
            if train_ds is not None:
                print(f"[train] {len(train_ds)} training lines; labels: {label_stats}")

        def snapshot(step: int) -> Checkpoint:
            return Checkpoint(
                model_config=mc,
                state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
                charset=charset,
                input_spec=cfg.input,
                lineage=dict(lineage, step=step),
            )

        def save_last() -> None:
            ck = snapshot(state.step)
            ck.train_state = {
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "step": state.step,
                "best_cer": state.best_cer,
                "best_step": state.best_step,
                "mlflow_run_id": state.mlflow_run_id or "",
                "skipped": state.skipped,
                "torch_rng": torch.get_rng_state(),
            }
            save_checkpoint(ck, last_path)

        def run_validation() -> dict:
            scores, vskipped = validate(
                model, val_ds, charset, cfg.input, device, t.val_batch_size, t.val_max_lines
            )
            d = scores.as_dict()
            metrics = {f"val_cer_{s}": v["cer"] for s, v in d["scenes"].items()}
            metrics["val_cer"] = d["overall"]["cer"]
            metrics["val_acc"] = d["overall"]["acc"]
            tracker.log_metrics(metrics, step=state.step)
            if d["overall"]["cer"] < state.best_cer:
                state.best_cer, state.best_step = d["overall"]["cer"], state.step
                save_checkpoint(snapshot(state.step), best_path)
            return {"val": d, "val_skipped": vskipped}

        model.train()
        bar = tqdm(
            total=t.max_steps,
            initial=state.step,
            desc="train",
            unit="step",
            disable=not dist_info.is_main,
            dynamic_ncols=True,
        )
        last_val: dict = {}
        window_imgs, window_t0, wall_t0, loss_ema = 0, time.perf_counter(), time.perf_counter(), None
        total_imgs = 0
        first_losses: list[float] = []
        recent_losses: list[float] = []
        batches = batches_forever(loader_for, sampler, state.step)
        while state.step < t.max_steps:
            batch = next(batches)
            for k, v in batch.skipped.items():
                state.skipped[k] = state.skipped.get(k, 0) + v
            lv = train_step(
                model, ddp_model, batch, opt, sched, scaler, device, use_amp, amp_dtype, t.grad_clip
            )
            state.step += 1
            n = len(batch) * dist_info.world
            window_imgs += n
            total_imgs += n
            loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv
            if len(first_losses) < 5:
                first_losses.append(lv)
            recent_losses = (recent_losses + [lv])[-5:]
            bar.update(1)
            if dist_info.is_main and (state.step % t.log_every == 0 or state.step == t.max_steps):
                dt = time.perf_counter() - window_t0
                ips = window_imgs / max(dt, 1e-9)
                tracker.log_metrics(
                    {"loss": lv, "loss_ema": loss_ema, "lr": sched.get_last_lr()[0], "throughput_img_s": ips},
                    step=state.step,
                )
                bar.set_postfix(
                    loss=f"{loss_ema:.3f}", lr=f"{sched.get_last_lr()[0]:.2e}", img_s=f"{ips:.0f}"
                )
                window_imgs, window_t0 = 0, time.perf_counter()
            if state.step % t.val_every == 0 or state.step == t.max_steps:
                if dist_info.is_main:
                    last_val = run_validation()
                    bar.write(
                        f"[val] step {state.step}: CER "
                        + ", ".join(f"{s} {v['cer']:.4f}" for s, v in last_val["val"]["scenes"].items())
                        + f" | overall {last_val['val']['overall']['cer']:.4f}"
                    )
                distributed.barrier(dist_info)
            if dist_info.is_main and (state.step % t.save_every == 0 or state.step == t.max_steps):
                save_last()
        bar.close()
        wall = time.perf_counter() - wall_t0
        divergence = distributed.max_param_divergence(model, dist_info)
        if dist_info.is_main:
            if not last_val:
                last_val = run_validation()
            summary = {
                "name": cfg.name,
                "model": mc.as_dict(),
                "params": count_params(model),
                "macs_32x320": macs,
                "steps": state.step,
                "best_step": state.best_step,
                "best_val_cer": state.best_cer,
                "final": last_val,
                "skipped": state.skipped,
                "loss_first": float(np.mean(first_losses)) if first_losses else None,
                "loss_last": float(np.mean(recent_losses)) if recent_losses else None,
                "labels": label_stats,
                "throughput_img_s": total_imgs / max(wall, 1e-9),
                "wall_s": wall,
                "world_size": dist_info.world,
                "ddp_max_param_divergence": divergence,
                "device": str(device),
                "checkpoint": str(best_path),
                "last": str(last_path),
                "mlflow_run_id": tracker.run_id,
                "transfer": transfer_info,
            }
            (out_dir / "summary.json").write_text(
                json.dumps(summary, indent=2, ensure_ascii=False, default=str)
            )
            tracker.log_metrics(
                {
                    "best_val_cer": state.best_cer,
                    "ddp_max_param_divergence": divergence,
                    **{f"skipped_{k}": v for k, v in state.skipped.items()},
                }
            )
            tracker.log_artifact(best_path, "checkpoint")
            tracker.log_artifact(out_dir / "summary.json")
    distributed.teardown(dist_info)
    return summary


def print_summary(summary: dict) -> None:
    if not summary:
        return
    print(f"[train] checkpoint: {summary['checkpoint']} (best step {summary['best_step']})")
    print(f"[train] MLflow run: {summary['mlflow_run_id']} (make mlflow-ui)")
    print(f"[train] throughput: {summary['throughput_img_s']:.0f} img/s; skipped: {summary['skipped']}")
    print("[train] validation CER per scene type (final step):")
    for s, v in summary["final"]["val"]["scenes"].items():
        print(f"    {s:<12} n={v['n']:<5} CER {v['cer'] * 100:6.2f}%   line acc {v['acc'] * 100:6.2f}%")
    o = summary["final"]["val"]["overall"]
    print(f"    {'overall':<12} n={o['n']:<5} CER {o['cer'] * 100:6.2f}%   line acc {o['acc'] * 100:6.2f}%")


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    summary = train(load_run_config(dcfg))
    print_summary(summary)


if __name__ == "__main__":
    main()
