"""An exponential moving average of the weights during training (`train.ema_decay`), as timm's ModelEmaV2.

Why: at the high rate of a long cosine horizon, the weights wander around a basin, and one checkpoint reads
real lines several tenths of a point better or worse than the next (v2's main run: 4.01 % at step 29,340,
4.36 % at 32,720). The mean of the two read 3.88 %, and 2.60 % on synthetic validation against 2.95 and
2.92 % (crnn/average.py). An average over the last ~1/(1 - decay) steps gets that every step, with no
snapshots to keep and no learning-rate decay, whose low-rate steps drift towards the synthetic mix.

The average covers BatchNorm's running statistics too (they are part of what the averaged weights read
with); integer buffers are copied. Validation, best.pt and snapshots use the averaged weights; training
continues on its own weights, and last.state.pt carries the average so that a resume continues it exactly.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEma:
    """The averaged copy of a model, updated after each optimizer step: e <- decay * e + (1 - decay) * w."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(
                f"train.ema_decay={decay}: must lie in (0, 1), or be 0 to train without an average"
            )
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._pairs: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """After every optimizer step, so the (average, weight) tensor pairs are listed once: the optimizer
        updates the weights in place, and state_dict() per step would rebuild the same list."""
        if self._pairs is None:
            pairs = zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)
            self._pairs = [(e, w.detach()) for e, w in pairs]
        for e, w in self._pairs:
            if e.is_floating_point():
                e.lerp_(w, 1.0 - self.decay)
            else:
                e.copy_(w)

    def state_dict(self) -> dict:
        """What last.state.pt keeps: the decay it was taken with and the averaged weights."""
        weights = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return {"decay": self.decay, "weights": weights}

    def load_state_dict(self, d: dict) -> None:
        """The average a resume continues; the decay is the config's, which may differ from the saved one."""
        self.model.load_state_dict(d["weights"])  # copies into the same tensors: the listed pairs stay valid
