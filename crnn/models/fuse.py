"""Conv + BatchNorm (+ ReLU) folded for inference.

At inference a BatchNorm is an affine map per channel, so it folds into the preceding convolution's
weights and bias: w' = w * g / sqrt(v + eps), b' = beta + (b - mu) * g / sqrt(v + eps). The ReLU stays as
an in-place op right after the conv (ONNX Runtime and oneDNN fuse Conv+Relu themselves). The fused model is
the same CRNN object with each ConvBNReLU reduced to Conv(+bias) -> Identity -> ReLU, so it exports and
evaluates like any other. The folding itself is PyTorch's `fuse_conv_bn_eval`.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from crnn.models.crnn import CRNN, ConvBNReLU


def fuse_model(model: CRNN) -> CRNN:
    """A fused copy for inference (eval mode); the input model is left as it was."""
    fused = copy.deepcopy(model).eval()
    for block in fused.features.modules():
        if isinstance(block, ConvBNReLU) and isinstance(block[1], nn.BatchNorm2d):
            block[0] = fuse_conv_bn_eval(block[0], block[1])
            block[1] = nn.Identity()
    return fused


def is_fused(model: CRNN) -> bool:
    return all(not isinstance(m, nn.BatchNorm2d) for m in model.modules())
