"""A weights-only fp16 snapshot of a training checkpoint, small enough to commit, so that training never
restarts from zero when a machine's disk is lost. It resumes with
`train.resume=true train.resume_from=<snapshot>` (at its step, with fresh optimizer moments). A run that
keeps a moving average of its weights (`train.ema_decay`) is snapshot as that average: it reads better, and
the moments restart anyway.

    python scripts/snapshot.py runs/zh_en_v2/train/last.pt models/snapshots/crnn_zh_en_v2.pt
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from crnn.models.checkpoint import load_checkpoint, save_checkpoint
from crnn.train_utils import load_train_state


def main(src: str, dst: str) -> None:
    ck = load_checkpoint(src)
    state = load_train_state(ck, Path(src)) or {}
    ema = state.get("ema")  # a run with train.ema_decay: its moving average, as best.pt holds
    weights, what = (ema["weights"], "moving average of the weights") if ema else (ck.state_dict, "weights")
    half = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    lineage = dict(
        ck.lineage, mlflow_run_id=state.get("mlflow_run_id") or ck.lineage.get("mlflow_run_id", "")
    )
    if ema:
        lineage["ema_decay"] = ema["decay"]
    save_checkpoint(replace(ck, state_dict=half, train_state=None, lineage=lineage), dst)
    print(f"[snapshot] {dst}: step {lineage.get('step')}, fp16 {what} of {src}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
