"""The DB detector family: a small backbone (plain 3x3 or depthwise-separable blocks) with four feature
levels (strides 4, 8, 16, 32), an FPN neck that fuses them at stride 4, and DB's two heads (text
probability, border threshold) upsampled to the input's resolution.

`DetModelConfig` is the whole description, so a checkpoint rebuilds its network from its own config
(`build_detector`). Exported graphs keep the probability head only: the threshold head and the
differentiable binarization exist for training (DB, Liao et al. 2020), inference thresholds the
probability map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crnn.detect.config import DetModelConfig


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


def block(cin: int, cout: int, stride: int, kind: str) -> nn.Module:
    if kind == "dwsep":
        return nn.Sequential(ConvBNReLU(cin, cin, 3, stride, groups=cin), ConvBNReLU(cin, cout, 1))
    return ConvBNReLU(cin, cout, 3, stride)


class Backbone(nn.Module):
    def __init__(self, cfg: DetModelConfig) -> None:
        super().__init__()
        stages, cin = [], 1
        for i, (cout, depth) in enumerate(zip(cfg.channels, cfg.depths)):
            layers = [ConvBNReLU(cin, cout, 3, 2) if i == 0 else block(cin, cout, 2, cfg.block)]
            layers += [block(cout, cout, 1, cfg.block) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats[1:]  # strides 4, 8, 16, 32


class FPN(nn.Module):
    """DB's neck: 1x1 laterals, top-down sums, a 3x3 conv per level to neck/4 channels, all upsampled to
    stride 4 and concatenated."""

    def __init__(self, in_channels: list[int], neck: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, neck, 1, bias=False) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(neck, neck // 4, 3, padding=1, bias=False) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        lat = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode="nearest")
        size = lat[0].shape[-2:]
        outs = [smooth(p) for smooth, p in zip(self.smooth, lat)]
        outs = [outs[0]] + [F.interpolate(o, size=size, mode="nearest") for o in outs[1:]]
        return torch.cat(outs, dim=1)


class Head(nn.Module):
    """3x3 conv, then two 2x transposed convs back to the input's resolution; one sigmoid map."""

    def __init__(self, neck: int) -> None:
        super().__init__()
        c = neck // 4
        self.body = nn.Sequential(
            ConvBNReLU(neck, c, 3),
            nn.ConvTranspose2d(c, c, 2, 2, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, 1, 2, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


class DBNet(nn.Module):
    def __init__(self, cfg: DetModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.neck = FPN(cfg.channels[1:], cfg.neck)
        self.prob_head = Head(cfg.neck)
        self.thresh_head = Head(cfg.neck)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """(N, 1, H, W) with H, W multiples of 32 -> the probability map (N, 1, H, W) in eval mode; in
        training also the threshold map and DB's approximate binary map."""
        fused = self.neck(self.backbone(x))
        prob = self.prob_head(fused)
        if not self.training:
            return prob
        thresh = self.thresh_head(fused)
        binary = torch.sigmoid(self.cfg.k * (prob - thresh))
        return {"prob": prob, "thresh": thresh, "binary": binary}


def build_detector(cfg: DetModelConfig) -> DBNet:
    """The one factory: every stage builds the detector from its config here."""
    return DBNet(cfg)


def count_macs(model: DBNet, height: int = 640, width: int = 640) -> int:
    """Multiply-accumulates of one (1, 1, height, width) inference: convolutions and transposed ones
    (everything else here is a small fraction)."""
    total = 0

    def hook(m: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        if isinstance(m, nn.ConvTranspose2d):  # each input pixel meets every kernel tap once
            total += _inp[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
        else:
            total += out.numel() * k

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, height, width))
    model.train(was)
    for h in handles:
        h.remove()
    return total
