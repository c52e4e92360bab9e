"""DB's loss: balanced BCE on the probability map (hardest negatives, 3 per positive), dice on the
approximate binary map, L1 on the threshold map within the border band (weights as PaddleOCR's DBLoss:
5, 1, 10). A positive pixel's BCE counts its `prob_weight` (crnn.detect.targets: small kernels more)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def balanced_bce(
    pred: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor,
    neg_ratio: float = 3.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    pos = gt * mask
    neg = (1 - gt) * mask
    n_pos = int(pos.sum().item())
    if weight is not None:
        pos = pos * weight
    n_neg = min(int(neg.sum().item()), int(max(n_pos, 1) * neg_ratio))
    loss = F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), gt, reduction="none")
    pos_loss = (loss * pos).sum()
    neg_loss, _ = torch.topk((loss * neg).flatten(), max(n_neg, 1))
    return (pos_loss + neg_loss.sum()) / (pos.sum() + n_neg + 1e-6)


def dice(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    inter = (pred * gt * mask).sum()
    union = (pred * mask).sum() + (gt * mask).sum() + 1e-6
    return 1 - 2 * inter / union


def masked_l1(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((pred - gt).abs() * mask).sum() / (mask.sum() + 1e-6)


def db_loss(
    out: dict[str, torch.Tensor],
    t: dict[str, torch.Tensor],
    weights: tuple[float, float, float] = (5.0, 1.0, 10.0),
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts; `t` holds the targets of crnn.detect.targets as (N, 1, H, W) tensors."""
    prob = balanced_bce(out["prob"], t["prob"], t["prob_mask"], weight=t.get("prob_weight"))
    binary = dice(out["binary"], t["prob"], t["prob_mask"])
    thresh = masked_l1(out["thresh"], t["thresh"], t["thresh_mask"])
    total = weights[0] * prob + weights[1] * binary + weights[2] * thresh
    return total, {"prob": prob.item(), "binary": binary.item(), "thresh": thresh.item()}
