"""The CRNN's architecture as plain data, without PyTorch: configs, ONNX metadata and the serving path read
it; `crnn.models.crnn` builds the network from it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

# After which conv layer a pool follows (0-based), for the 7-layer CRNN of Shi et al. 2016.
DEFAULT_POOL_AFTER = (0, 1, 3, 5, 6)
# How each conv layer after the first is built: "conv" a full 3x3 convolution (VGG, Shi et al.), "dwsep" a
# depthwise 3x3 then a pointwise 1x1 convolution (MobileNetV1, PP-LCNet), about 9x fewer multiply-adds at a
# given width, so a mobile-style preset can afford wider layers for the same cost.
BLOCKS = ("conv", "dwsep")


@dataclass
class ModelConfig:
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128, 256, 256, 256])
    pool_after: list[int] = field(default_factory=lambda: list(DEFAULT_POOL_AFTER))
    hstride: int = 4
    lstm_hidden: int = 128
    lstm_layers: int = 2
    num_classes: int = 0  # alphabet size + 1 (blank); set from the charset
    height: int = 32
    name: str = "small"
    block: str = "conv"

    def validate(self) -> None:
        n_pools = len(self.pool_after)
        if self.height != 2**n_pools:
            raise ValueError(f"model.height={self.height} must be 2**len(pool_after)={2**n_pools}")
        if self.hstride not in [2**k for k in range(n_pools + 1)]:
            raise ValueError(f"model.hstride must be a power of two up to {2**n_pools}, got {self.hstride}")
        if any(c <= 0 for c in self.channels):
            raise ValueError(f"model.channels must be positive, got {self.channels}")
        if any(not 0 <= p < len(self.channels) for p in self.pool_after):
            raise ValueError(f"model.pool_after indices must be within the {len(self.channels)} conv layers")
        if self.block not in BLOCKS:
            raise ValueError(f"model.block must be one of {BLOCKS}, got {self.block!r}")
        if self.num_classes < 2:
            raise ValueError("model.num_classes must be set from the alphabet (>= 2)")

    def as_dict(self) -> dict:
        return asdict(self)

    def pools(self) -> list[tuple[int, int] | None]:
        """Per conv layer: its pool kernel (kh, kw) or None."""
        n_wide = int(math.log2(self.hstride))
        out: list[tuple[int, int] | None] = [None] * len(self.channels)
        for k, idx in enumerate(self.pool_after):
            out[idx] = (2, 2) if k < n_wide else (2, 1)
        return out
