"""Pruning stage: structured channel pruning of the convolutions, fine-tuning between steps, then fusion.

    python -m crnn.prune experiment=demo [prune.target_macs_ratio=0.5] [prune.criterion=bn_scale]

A pruned model is a CRNN with narrower `channels` in its config: no masks, no special class, so every later
stage loads it like any other checkpoint. When a convolution loses output channels, the next convolution
loses the matching input channels, its BatchNorm the matching entries, and after the last convolution the
BiLSTM's input weights (both directions) lose the matching columns.

Why explicit code rather than Torch-Pruning: the CRNN's dependency graph is a chain (conv -> BN -> ReLU
-> pool, then the LSTM's input projection), which 60 lines below handle exactly, including the LSTM's
per-direction input weights; it adds no dependency, and the widths it produces are the config's list, which
is what makes a pruned model an ordinary CRNN.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from crnn.cli import StageError, stage_errors
from crnn.data.dataset import LmdbLineDataset
from crnn.distill import load_teacher
from crnn.inference import TorchBackend, score_dataset
from crnn.models.checkpoint import Checkpoint, git_commit, load_checkpoint, save_checkpoint, sha256_file
from crnn.models.complexity import count_macs, count_params
from crnn.models.crnn import CRNN, ConvBNReLU, DepthwiseSeparable, ModelConfig
from crnn.settings import PruneConfig, RunConfig, load_run_config
from crnn.tracking import Tracker
from crnn.train import finetune

CRITERIA = ("l1", "bn_scale")


class PruneError(StageError):
    """A pruning target or setting that cannot be honoured."""


def conv_blocks(model: CRNN) -> list[ConvBNReLU]:
    """The ConvBNReLU that decides each conv layer's output channels (a depthwise-separable layer's
    pointwise half)."""
    return [m[1] if isinstance(m, DepthwiseSeparable) else m for m in conv_layers(model)]


def conv_layers(model: CRNN) -> list[nn.Module]:
    return [m for m in model.features if isinstance(m, (ConvBNReLU, DepthwiseSeparable))]


def dropped_depthwise_output(layer: DepthwiseSeparable, kept: torch.Tensor) -> torch.Tensor:
    """What the pointwise half received from the depthwise channels that pruning removes, per output channel.

    A removed input channel reads as zeros (as with a full conv, where a zero input simply contributes
    nothing), but a depthwise channel turns zeros into the constant ReLU(BN(0)), which the pointwise conv
    had been adding in. The caller folds that constant into the pointwise BatchNorm's running mean, so a
    channel whose input was always zero is removed without changing the output.
    """
    dw_bn, pw_conv = layer[0][1], layer[1][0]
    dropped = torch.ones(dw_bn.num_features, dtype=torch.bool)
    dropped[kept] = False
    scale = dw_bn.weight / torch.sqrt(dw_bn.running_var + dw_bn.eps)
    constant = torch.relu(dw_bn.bias - dw_bn.running_mean * scale)
    return pw_conv.weight[:, dropped, 0, 0] @ constant[dropped]


def copy_unit(old: ConvBNReLU, new: ConvBNReLU, out_keep: torch.Tensor, in_keep: torch.Tensor | None) -> None:
    """Copy the kept output channels (and, for a full conv, the kept input channels) of a Conv-BN pair."""
    weight = old[0].weight[out_keep]
    new[0].weight.copy_(weight if in_keep is None else weight[:, in_keep])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new[1], name).copy_(getattr(old[1], name)[out_keep])
    new[1].num_batches_tracked.copy_(old[1].num_batches_tracked)


def channel_importance(block: ConvBNReLU, criterion: str) -> torch.Tensor:
    conv, bn = block[0], block[1]
    if criterion == "l1":
        return conv.weight.detach().abs().sum(dim=(1, 2, 3))
    if criterion == "bn_scale":
        return bn.weight.detach().abs()
    raise PruneError(f"prune.criterion must be one of {CRITERIA}, got {criterion!r}")


def round_width(c: float, round_to: int, min_channels: int) -> int:
    return max(min_channels, int(round(c / round_to)) * round_to)


def widths_for_keep(channels: list[int], keep: list[float], round_to: int, min_channels: int) -> list[int]:
    return [min(c, round_width(c * k, round_to, min(min_channels, c))) for c, k in zip(channels, keep)]


def widths_for_target(cfg: ModelConfig, target_macs: float, p: PruneConfig) -> list[int]:
    """The widest uniform keep ratio whose rounded widths fit `target_macs` (bisection on the ratio)."""

    def keep_at(k: float) -> list[float]:
        return [1.0 if i in p.skip_layers else k for i in range(len(cfg.channels))]

    def macs_at(k: float) -> int:
        w = widths_for_keep(cfg.channels, keep_at(k), p.round_to, p.min_channels)
        return count_macs(ModelConfig(**{**cfg.as_dict(), "channels": w}), 320)

    smallest = macs_at(0.0)
    if smallest > target_macs:
        full = count_macs(cfg, 320)
        raise PruneError(
            f"prune.target_macs_ratio cannot be met: the narrowest allowed widths (min_channels="
            f"{p.min_channels}, round_to={p.round_to}) still need {smallest / full:.1%} of the MACs, "
            f"more than the {target_macs / full:.1%} asked for; lower the target or min_channels"
        )
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if macs_at(mid) <= target_macs:
            lo = mid
        else:
            hi = mid
    return widths_for_keep(cfg.channels, keep_at(lo), p.round_to, p.min_channels)


@torch.no_grad()
def prune_to_widths(model: CRNN, widths: list[int], criterion: str) -> CRNN:
    """A new, narrower CRNN keeping the most important channels of each conv, with weights copied."""
    cfg = model.cfg
    if len(widths) != len(cfg.channels):
        raise PruneError(f"{len(widths)} widths for {len(cfg.channels)} conv layers")
    if any(w > c or w <= 0 for w, c in zip(widths, cfg.channels)):
        raise PruneError(f"widths {widths} must be within 1..{cfg.channels} (pruning never widens)")
    new = CRNN(ModelConfig(**{**cfg.as_dict(), "channels": list(widths)}))
    prev_keep = torch.arange(1)  # the single input channel
    for old, nl, w in zip(conv_layers(model), conv_layers(new), widths):
        lost = None
        if isinstance(old, DepthwiseSeparable):  # the depthwise half keeps the channels its input kept
            copy_unit(old[0], nl[0], prev_keep, None)
            lost = dropped_depthwise_output(old, prev_keep)
            old, nl = old[1], nl[1]
        keep = torch.sort(torch.topk(channel_importance(old, criterion), w).indices).values
        copy_unit(old, nl, keep, prev_keep)
        if lost is not None:
            nl[1].running_mean.sub_(lost[keep])
        prev_keep = keep
    for name, p in model.rnn.named_parameters():
        target = getattr(new.rnn, name)
        if name.startswith("weight_ih_l0"):  # layer 0 of either direction reads the last conv's channels
            target.copy_(p[:, prev_keep])
        else:
            target.copy_(p)
    new.classifier.load_state_dict(model.classifier.state_dict())
    return new.to(next(model.parameters()).device)


def describe(model: CRNN) -> dict:
    return {
        "channels": list(model.cfg.channels),
        "params": count_params(model),
        "macs_32x320": count_macs(model.cfg),
    }


def run(cfg: RunConfig, p: PruneConfig) -> dict:
    """Prune step by step to the target, fine-tuning between steps; writes pruned.pt and report.json."""
    if p.criterion not in CRITERIA:
        raise PruneError(f"prune.criterion must be one of {CRITERIA}, got {p.criterion!r}")
    if not p.layer_keep and not 0.0 < p.target_macs_ratio < 1.0:
        raise PruneError(f"prune.target_macs_ratio must be within (0, 1), got {p.target_macs_ratio}")
    if p.iterations < 1:
        raise PruneError(f"prune.iterations must be at least 1, got {p.iterations}")
    source = Path(p.source or cfg.stage_dir("train") / "best.pt")
    src = load_checkpoint(source)
    model = src.build_model().eval()
    if p.layer_keep and len(p.layer_keep) != len(model.cfg.channels):
        raise PruneError(
            f"prune.layer_keep has {len(p.layer_keep)} ratios for {len(model.cfg.channels)} conv layers"
        )
    out_dir = cfg.stage_dir("prune")
    out_dir.mkdir(parents=True, exist_ok=True)
    val = LmdbLineDataset(cfg.data.val_paths(), src.charset, src.input_spec, cfg.oov_policy)
    # the unpruned model teaches the pruned one (unless prune.distill.teacher names another)
    device = next(model.parameters()).device
    teacher = load_teacher(p.distill, src.charset, model.cfg, src.input_spec, device, "prune", str(source))

    def evaluate(m: CRNN) -> dict:
        scores, _ = score_dataset(
            TorchBackend(m, src.charset, src.input_spec), val, cfg.train.val_batch_size, p.val_max_lines
        )
        return scores.as_dict()

    original = model.cfg
    full_macs = count_macs(original)
    if p.layer_keep:
        final_widths = widths_for_keep(original.channels, p.layer_keep, p.round_to, p.min_channels)
    else:
        final_widths = widths_for_target(original, full_macs * (1 - p.target_macs_ratio), p)
    before = {**describe(model), "val": evaluate(model)}
    tracker = Tracker(cfg.mlflow)
    input_sha = sha256_file(source)
    parent = src.lineage.get("mlflow_run_id", "")
    steps_log = []
    with tracker.run(
        "prune",
        tags={
            "stage": "prune",
            "parent_run_id": parent,
            "input_sha256": input_sha,
            "input_artifact": str(source),
            "git_commit": git_commit(),
        },
    ):
        tracker.log_params(
            {
                "prune": asdict(p),
                "source": str(source),
                "widths_before": original.channels,
                "widths_after": final_widths,
            }
        )
        step_base = 0
        for it in range(1, p.iterations + 1):
            frac = it / p.iterations
            widths = [
                min(cur, round_width(o + (f - o) * frac, p.round_to, min(p.min_channels, o)))
                for cur, o, f in zip(model.cfg.channels, original.channels, final_widths)
            ]
            if it == p.iterations:
                widths = [min(cur, f) for cur, f in zip(model.cfg.channels, final_widths)]
            model = prune_to_widths(model, widths, p.criterion)
            losses = finetune(
                model,
                cfg,
                p.finetune_steps,
                p.lr,
                f"prune {it}/{p.iterations} fine-tune",
                tracker,
                "prune_ft",
                step_base,
                teacher,
            )
            step_base += p.finetune_steps
            info = {"iteration": it, **describe(model), "loss_end": losses[-1] if losses else None}
            steps_log.append(info)
            tracker.log_metrics(
                {"macs_32x320": info["macs_32x320"], "params": info["params"]}, step=step_base
            )
            print(
                f"[prune] step {it}: widths {widths}, "
                f"MACs {info['macs_32x320'] / full_macs:.1%} of the original"
            )
        losses = finetune(
            model,
            cfg,
            p.final_finetune_steps,
            p.lr,
            "prune final fine-tune",
            tracker,
            "prune_ft",
            step_base,
            teacher,
        )
        after = {**describe(model), "val": evaluate(model)}
        lineage = {
            "stage": "prune",
            "source_sha256": input_sha,
            "source": str(source),
            "data_fingerprint": src.lineage.get("data_fingerprint", ""),
            "git_commit": git_commit(),
            "mlflow_run_id": tracker.run_id or "",
            "parent_run_id": parent,
            **(teacher.lineage() if teacher else {}),
        }
        dest = out_dir / "pruned.pt"
        save_checkpoint(
            Checkpoint(
                model.cfg,
                {k: v.cpu() for k, v in model.state_dict().items()},
                src.charset,
                src.input_spec,
                lineage,
            ),
            dest,
        )
        report = {
            "source": str(source),
            "criterion": p.criterion,
            "distill": teacher.lineage() if teacher else None,
            "target_macs_ratio": p.target_macs_ratio,
            "macs_removed": 1 - after["macs_32x320"] / before["macs_32x320"],
            "params_removed": 1 - after["params"] / before["params"],
            "before": before,
            "after": after,
            "steps": steps_log,
            "checkpoint": str(dest),
            "cer_delta_points": {
                s: 100 * (after["val"]["scenes"][s]["cer"] - v["cer"])
                for s, v in before["val"]["scenes"].items()
                if s in after["val"]["scenes"]
            },
        }
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
        tracker.log_metrics(
            {
                "macs_removed": report["macs_removed"],
                "params_removed": report["params_removed"],
                **{f"val_cer_{s}_before": v["cer"] for s, v in before["val"]["scenes"].items()},
                **{f"val_cer_{s}": v["cer"] for s, v in after["val"]["scenes"].items()},
                "val_cer": after["val"]["overall"]["cer"],
            }
        )
        tracker.log_artifact(dest, "checkpoint")
        tracker.log_artifact(out_dir / "report.json")
    print_report(report)
    return report


def print_report(r: dict) -> None:
    b, a = r["before"], r["after"]
    print(f"[prune] widths {b['channels']} -> {a['channels']}")
    print(
        f"[prune] params {b['params'] / 1e6:.3f} M -> {a['params'] / 1e6:.3f} M "
        f"({r['params_removed']:.1%} removed); "
        f"MACs at 32x320 {b['macs_32x320'] / 1e6:.1f} M -> {a['macs_32x320'] / 1e6:.1f} M "
        f"({r['macs_removed']:.1%} removed)"
    )
    for s, v in b["val"]["scenes"].items():
        av = a["val"]["scenes"].get(s, {})
        print(f"    {s:<12} CER {v['cer'] * 100:6.2f}% -> {av.get('cer', math.nan) * 100:6.2f}%")
    print(f"[prune] checkpoint: {r['checkpoint']}")


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        cfg = load_run_config(dcfg)
        run(cfg, cfg.prune)


if __name__ == "__main__":
    main()
