"""The CRNN family: VGG-style Conv-BN-ReLU stack -> BiLSTM -> linear classifier over the alphabet + blank.

The conv layers are full 3x3 convolutions or, with `block: dwsep` (the mobile preset), depthwise-separable
ones; a depthwise conv reads each column's own 3x3 neighbourhood like a full one, so the width masking
below holds for both.

Widths are a list in the config, so a pruned model is the same class with narrower widths. The input height
is fixed (32 by default) and reduced to 1 by five 2x pools; the first log2(hstride) of them also halve the
width, so the output has ceil(W / hstride) frames.
"""

from __future__ import annotations

import torch
from torch import nn

from crnn.models.config import DEFAULT_POOL_AFTER, ModelConfig  # noqa: F401  (re-exported)
from crnn.models.geometry import output_length


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, 1, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class DepthwiseSeparable(nn.Sequential):
    """A depthwise 3x3 Conv-BN-ReLU then a pointwise 1x1 Conv-BN-ReLU: one conv layer of a "dwsep" model.

    Both halves are ConvBNReLU, so fusion and pruning treat them like any other conv; the pointwise half
    decides the layer's output channels.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(ConvBNReLU(cin, cin, 3, groups=cin), ConvBNReLU(cin, cout, 1))


def conv_layer(cin: int, cout: int, index: int, block: str) -> nn.Module:
    """Layer `index` of the stack; the first is always a full conv (a depthwise conv of one channel is a
    3x3 filter with a single output, too little to start from)."""
    if block == "dwsep" and index > 0:
        return DepthwiseSeparable(cin, cout)
    return ConvBNReLU(cin, cout)


def check_widths(widths: torch.Tensor, batch: int, batch_width: int) -> None:
    """One width per line, each in 1..W of its padded batch (skipped while tracing for ONNX)."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    if widths.shape != (batch,):
        raise ValueError(f"widths must have shape ({batch},), one per line, got {tuple(widths.shape)}")
    lo, hi = int(widths.min()), int(widths.max())
    if lo < 1 or hi > batch_width:
        raise ValueError(f"widths must lie in 1..{batch_width} (the batch's width), got {lo}..{hi}")


def mask_columns(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero the columns of (N, C, H, W) `x` at or past each row's length."""
    cols = torch.arange(x.shape[-1], device=x.device)
    return x * (cols[None, :] < lengths[:, None]).to(x.dtype)[:, None, None, :]


class CRNN(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = 1
        for i, (cout, pool) in enumerate(zip(cfg.channels, cfg.pools())):
            layers.append(conv_layer(cin, cout, i, cfg.block))
            if pool is not None:
                layers.append(nn.MaxPool2d(pool, pool, ceil_mode=True))
            cin = cout
        self.features = nn.Sequential(*layers)
        # Which entries of `features` are conv blocks (masked after) and which pools halve the width.
        self._conv_at = [i for i, m in enumerate(layers) if not isinstance(m, nn.MaxPool2d)]
        self._wide_pool_at = [
            i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d) and m.kernel_size[1] == 2
        ]
        self.rnn = nn.LSTM(
            cin, cfg.lstm_hidden, num_layers=cfg.lstm_layers, bidirectional=True, batch_first=True
        )
        self.classifier = nn.Linear(2 * cfg.lstm_hidden, cfg.num_classes)

    def forward(self, x: torch.Tensor, widths: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 1, H, W) normalised images -> (N, T, C) logits, T = ceil(W / hstride).

        `widths` (N,) are the lines' true widths in pixels inside a right-padded batch. With them a line
        reads exactly as it reads alone: after every conv block the columns past the line's width are set
        to zero (what the conv's own zero padding shows a line that is alone; ReLU outputs are >= 0, so
        ceil-mode max pools see the same maxima), and the BiLSTM runs over each line's true frames only
        (packed sequences; ONNX LSTM `sequence_lens`), so its backward direction never reads padding.
        Frames past a line's length are not meant to be read (the decoder cuts them off).
        """
        if widths is None:
            return self.head(self.features(x).squeeze(2).transpose(1, 2), None)
        check_widths(widths, x.shape[0], x.shape[-1])
        lengths = widths
        x = mask_columns(x, lengths)  # whatever the batch was padded with, the first conv sees zeros
        conv_at, wide_pool_at = set(self._conv_at), set(self._wide_pool_at)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wide_pool_at:
                lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
            elif i in conv_at:
                x = mask_columns(x, lengths)
        return self.head(x.squeeze(2).transpose(1, 2), lengths)

    def head(self, f: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """(N, T, C) features -> logits, the BiLSTM seeing `lengths` frames of each line (all when None)."""
        if lengths is None:
            f, _ = self.rnn(f)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                f, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            f, _ = nn.utils.rnn.pad_packed_sequence(
                self.rnn(packed)[0], batch_first=True, total_length=f.shape[1]
            )
        return self.classifier(f)

    def output_length(self, width: int) -> int:
        return output_length(width, self.cfg.hstride)


def build_model(cfg: ModelConfig) -> CRNN:
    return CRNN(cfg)
