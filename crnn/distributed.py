"""Process-group set-up for `torchrun`: the same training script runs with one process or N.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them we are a single process and nothing here does
anything. gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# Imported before any process group exists, on purpose. Its functions take `group=group.WORLD` as a default
# argument, evaluated when the module is first imported; DistributedDataParallel imports it, so imported
# after `init_process_group` those defaults hold the world process group for the rest of the process. Then
# `destroy_process_group` cannot free it: the gloo group and its threads (gloo_tcp_loop, pt_gloo_runloop)
# live on until the interpreter's own shutdown frees the module, where the group's destructor joins its
# threads and frees tensors while Python is half torn down. That was the rank-0 SIGABRT ("terminate called
# without an active exception") a busy CI machine hit after training had finished. Imported here first,
# the defaults are None and the group dies inside `teardown`.
if dist.is_available():
    import torch.distributed.nn.functional  # noqa: F401


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_type: str) -> DistInfo:
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    info = DistInfo(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    )
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend)
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def agree(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's `flag` on every rank (a decision taken from rank 0's clock, say), so that all ranks take
    the same branch and none waits in a collective the others skipped. The tensor lives on `device`:
    nccl only moves CUDA tensors."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def teardown(info: DistInfo) -> None:
    """End the process group once every rank is done with it: the DDP wrapper must already be gone (it
    holds the group), no rank may still be inside a collective (the barrier), and the group's threads are
    joined here, while the interpreter is whole, rather than at exit."""
    if info.enabled and dist.is_initialized():
        gc.collect()  # a DDP wrapper caught in a reference cycle would keep the group alive
        dist.barrier()
        dist.destroy_process_group()


def max_param_divergence(model: torch.nn.Module, info: DistInfo) -> float:
    """Largest difference of any parameter between ranks (0 when DDP kept them in step)."""
    if not info.enabled:
        return 0.0
    worst = None
    for p in model.parameters():
        t = p.detach().to(torch.float64)
        lo, hi = t.clone(), t.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        gap = (hi - lo).abs().max()
        worst = gap if worst is None else torch.maximum(worst, gap)
    return float(worst.item()) if worst is not None else 0.0
