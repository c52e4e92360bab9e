"""Conv + BatchNorm (+ ReLU) folded for inference.

At inference a BatchNorm is an affine map per channel, so it folds into the preceding convolution's
weights and bias: w' = w * g / sqrt(v + eps), b' = beta + (b - mu) * g / sqrt(v + eps). The ReLU stays as
an in-place op right after the conv (ONNX Runtime and oneDNN fuse Conv+Relu themselves). The fused model is
the same CRNN object with each ConvBNReLU reduced to Conv(+bias) -> Identity -> ReLU, so it exports and
evaluates like any other.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from crnn.models.crnn import CRNN, ConvBNReLU


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    ).to(conv.weight.device, conv.weight.dtype)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
    return fused


def fuse_model(model: CRNN) -> CRNN:
    """A fused copy for inference (eval mode); the input model is left as it was."""
    fused = copy.deepcopy(model).eval()
    for block in fused.features:
        if isinstance(block, ConvBNReLU) and isinstance(block[1], nn.BatchNorm2d):
            block[0] = fuse_conv_bn(block[0], block[1])
            block[1] = nn.Identity()
    return fused


def is_fused(model: CRNN) -> bool:
    return all(not isinstance(m, nn.BatchNorm2d) for m in model.modules())
