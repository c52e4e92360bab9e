"""DDP with real processes over gloo: ranks stay in step when one rank's batch is empty, and a run ends
without leaving the process group's threads to the interpreter's shutdown."""

import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from crnn import distributed
from crnn.charset import load_charset
from crnn.data.dataset import Collate, Item
from crnn.models.config import ModelConfig
from crnn.models.crnn import CRNN
from crnn.settings import TrainConfig
from crnn.train import make_optimization, train_step
from tests.conftest import read_summary, run_module, tiny_overrides


def _tiny_model() -> CRNN:
    torch.manual_seed(0)
    mc = ModelConfig(
        channels=[8] * 7, lstm_hidden=8, lstm_layers=1, num_classes=load_charset("digits").num_classes
    )
    return CRNN(mc)


def _lines(rank: int, width: int, label: str) -> list[Item]:
    rng = np.random.default_rng(rank)
    return [Item(rng.random((1, 32, width), dtype=np.float32) - 0.5, label, "printed") for _ in range(4)]


def _rank_main(rank: int, init_file: str, out: str) -> None:
    """Three DDP steps; rank 1's first and last batches hold only lines too long for CTC (all skipped)."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    model = _tiny_model()
    parts = make_optimization(model, TrainConfig(max_steps=3, warmup_steps=1), torch.device("cpu"))
    parts.forward = DDP(model)
    collate = Collate(load_charset("digits"), model.cfg.hstride)
    fits, too_long = _lines(rank, 64, "123"), _lines(rank, 16, "1234567890")
    sizes = []
    for step in range(3):
        batch = collate(too_long if rank == 1 and step != 1 else fits)
        sizes.append(len(batch))
        train_step(parts, batch)
    gap = distributed.max_param_divergence(model, distributed.DistInfo(rank, 2))
    Path(out, f"rank{rank}.json").write_text(json.dumps({"sizes": sizes, "gap": gap}))
    del parts
    dist.destroy_process_group()


def test_a_rank_with_an_empty_batch_keeps_in_step(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_rank_main, args=(r, str(tmp_path / "init"), str(tmp_path))) for r in range(2)
    ]
    for p in procs:
        p.start()
    deadline = time.time() + 180
    for p in procs:
        p.join(timeout=max(1.0, deadline - time.time()))
    hung = [i for i, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert not hung, f"rank(s) {hung} still waiting after 180 s: the ranks fell out of step"
    assert [p.exitcode for p in procs] == [0, 0]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["sizes"] == [4, 4, 4] and r1["sizes"] == [0, 4, 0]  # the case under test did happen
    assert r0["gap"] == r1["gap"] == 0.0


def test_an_empty_batch_leaves_batchnorm_statistics_alone():
    model = _tiny_model()
    parts = make_optimization(model, TrainConfig(max_steps=2, warmup_steps=1), torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    empty = Collate(load_charset("digits"), model.cfg.hstride)(_lines(0, 16, "1234567890"))
    assert len(empty) == 0
    assert train_step(parts, empty) == 0.0
    assert model.training
    for k, v in before.items():
        assert torch.equal(model.state_dict()[k], v), k


_THREADS_AFTER_TRAIN = """
import json, os, sys
from pathlib import Path
from crnn.settings import compose_run_config
from crnn.train import train
train(compose_run_config(sys.argv[2:])[0])
names = sorted(p.read_text().strip() for p in Path("/proc/self/task").glob("*/comm"))
Path(sys.argv[1], f"threads.{os.environ['RANK']}.json").write_text(json.dumps(names))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread names from /proc")
def test_ddp_run_ends_its_process_group_before_exit(tiny_data, tmp_path):
    """A real two-rank torchrun of `crnn.train` keeps the ranks' weights equal, and the gloo group's threads
    are joined by `train` itself, not left to the interpreter's shutdown (where a busy machine saw rank 0
    abort: 'terminate called without an active exception')."""
    script = tmp_path / "train_then_list_threads.py"
    script.write_text(_THREADS_AFTER_TRAIN)
    over = tiny_overrides(tmp_path, "ddpthreads") + [
        f"data.root={tiny_data / 'data'}",
        "train.max_steps=4",
        "train.val_every=4",
        "train.val_max_lines=8",
    ]
    run_module(
        str(script),
        [str(tmp_path), *over],
        prefix=[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
    )
    s = read_summary(tmp_path, "ddpthreads")
    assert s["world_size"] == 2 and s["steps"] == 4  # two ranks under torchrun, the steps asked for
    assert s["ddp_max_param_divergence"] == 0.0
    for rank in range(2):
        names = json.loads((tmp_path / f"threads.{rank}.json").read_text())
        assert not [n for n in names if "gloo" in n], f"rank {rank} still runs {names}"
