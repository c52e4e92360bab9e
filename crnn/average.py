"""Checkpoint averaging: the uniform mean of several checkpoints of one run (as fairseq's
average_checkpoints.py, or SWA's average taken after the fact).

    python -m crnn.average runs/zh_en_v2/average/model.pt a0823f1:models/snapshots/crnn_zh_en_v2.pt \
        0aaa813:models/snapshots/crnn_zh_en_v2.pt runs/zh_en_v2/train/last.pt
    make average EXP=zh_en_v2 CKPTS="..."        (writes runs/<EXP>/average/model.pt)

Why: at a constant high learning rate the weights wander around a basin, and one snapshot reads real lines
several tenths of a point better or worse than the next (v2's main run: 4.01 % at step 29,340, 4.36 % at
32,720). The mean of snapshots a few thousand steps apart sits nearer the basin's centre and reads better
than either, on synthetic validation and on real lines, without the extra training a learning-rate decay
costs, and without the decay's drift towards the synthetic mix.

An input is a file, or `<commit>:<path>`: a snapshot that a later commit replaced (models/snapshots/ keeps
one file per run, so older steps live in git history). BatchNorm's running statistics are averaged like the
weights; integer buffers (batches seen) come from the newest input.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from crnn.cli import StageError, stage_errors
from crnn.models.checkpoint import Checkpoint, git_commit, load_checkpoint, save_checkpoint, sha256_file

ROOT = Path(__file__).resolve().parents[1]
GIT_SPEC = re.compile(r"^([0-9a-fA-F]{7,40}):(.+)$")


class AverageError(StageError):
    """Inputs that cannot be averaged: fewer than two, another model, another alphabet."""


def resolve(spec: str, workdir: Path, repo: Path = ROOT, index: int = 0) -> Path:
    """A file path, or `<commit>:<path>` written out of git history into `workdir` (as input `index`, so
    that two inputs of one name never share a file there)."""
    if Path(spec).is_file():
        return Path(spec)
    m = GIT_SPEC.match(spec)
    if not m:
        raise AverageError(f"{spec} is neither a file nor <commit>:<path>")
    out = workdir / f"{index}_{m.group(1)}_{Path(m.group(2)).name}"
    proc = subprocess.run(["git", "show", spec], cwd=repo, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise AverageError(f"git show {spec}: {proc.stderr.decode(errors='replace').strip()}")
    out.write_bytes(proc.stdout)
    return out


def average_state_dicts(dicts: list[dict]) -> dict:
    """Float tensors: the mean, computed in fp32 and stored in the newest input's dtype (an fp16 snapshot
    stays fp16). Other tensors (BatchNorm's batch counter): the newest input's."""
    newest = dicts[-1]
    out = {}
    for k, v in newest.items():
        if v.is_floating_point():
            mean = torch.stack([d[k].float() for d in dicts]).mean(0)
            out[k] = mean.to(v.dtype)
        else:
            out[k] = v.clone()
    return out


def check_compatible(ckpts: list[Checkpoint], names: list[str], shas: list[str] | None = None) -> None:
    """One model, alphabet and input, inputs oldest first: the newest input gives the average its step,
    run and integer buffers, so an order that goes back in steps is a mistake in the command, except once,
    where a fine-tune follows the file it started from (its lineage's source_sha256 is that file's: a
    weight-space ensemble of a fine-tune and its start, WiSE-FT) and its steps count afresh."""
    steps = [ck.lineage.get("step") for ck in ckpts]
    if all(isinstance(s, int) for s in steps):
        drops = [i for i in range(1, len(steps)) if steps[i] < steps[i - 1]]
        if drops and not _fine_tune_follows_start(ckpts, shas, drops):
            raise AverageError(f"name the checkpoints oldest first: their steps are {steps}")
    first = ckpts[0]
    for ck, name in zip(ckpts[1:], names[1:]):
        if ck.model_config != first.model_config:
            raise AverageError(
                f"{name} is another model than {names[0]}: {ck.model_config} != {first.model_config}"
            )
        if ck.charset.as_string() != first.charset.as_string():
            raise AverageError(f"{name} reads another alphabet than {names[0]}")
        if ck.input_spec != first.input_spec:
            raise AverageError(f"{name} takes another input than {names[0]}")
        if ck.state_dict.keys() != first.state_dict.keys():
            raise AverageError(f"{name} has other tensors than {names[0]}")


def _fine_tune_follows_start(ckpts: list[Checkpoint], shas: list[str] | None, drops: list[int]) -> bool:
    """True when the one place the steps go back is where a fine-tune follows the file it started from,
    and every input from there on is of that fine-tune (started from the same file)."""
    if shas is None or len(drops) != 1:
        return False
    i = drops[0]
    return all(ck.lineage.get("source_sha256") == shas[i - 1] for ck in ckpts[i:])


def average(specs: list[str], out: str | Path, repo: Path = ROOT) -> Checkpoint:
    """Average the checkpoints named by `specs` (oldest first) into `out`; its lineage lists every input
    with its step and sha256, and takes the newest input's run fields (config, MLflow run, step)."""
    if len(specs) < 2:
        raise AverageError(f"averaging needs two or more checkpoints, got {len(specs)}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [resolve(s, Path(tmp), repo, i) for i, s in enumerate(specs)]
        ckpts = [load_checkpoint(p) for p in paths]
        shas = [sha256_file(p) for p in paths]
        check_compatible(ckpts, specs, shas)
        for j, sha in enumerate(shas):
            if sha in shas[:j]:
                first = specs[shas.index(sha)]
                raise AverageError(f"{first} and {specs[j]} are the same file: it would count twice")
        inputs = [
            {
                "spec": s,
                "sha256": sha,
                "step": ck.lineage.get("step"),
                "config_name": ck.lineage.get("config_name", ""),
            }
            for s, sha, ck in zip(specs, shas, ckpts)
        ]
    newest = ckpts[-1]
    lineage = {
        **{
            k: v
            for k, v in newest.lineage.items()
            if k in ("config_name", "mlflow_run_id", "data_fingerprint")
        },
        "stage": "average",
        "step": newest.lineage.get("step"),
        "averaged": inputs,
        "git_commit": git_commit(),
    }
    avg = replace(
        newest,
        state_dict=average_state_dicts([c.state_dict for c in ckpts]),
        lineage=lineage,
        train_state=None,
    )
    save_checkpoint(avg, out)
    return avg


def describe(lineage: dict) -> str:
    """One line for a model card: which steps were averaged (of which runs, when they are not one)."""
    inputs = lineage["averaged"]
    steps = ", ".join(f"{i['step']:,}" if isinstance(i.get("step"), int) else "?" for i in inputs)
    runs = list(dict.fromkeys(i["config_name"] for i in inputs if i.get("config_name")))
    if len(runs) > 1:
        return f"the uniform average of {len(inputs)} checkpoints of {', '.join(runs)}, at steps {steps}"
    return f"the uniform average of {len(inputs)} checkpoints of the run, at steps {steps}"


def main(argv: list[str]) -> int:
    """python -m crnn.average OUT IN IN [IN ...]: exit 2 with one line on bad input, as every stage."""
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with stage_errors():
        avg = average(argv[1:], argv[0])
    print(f"[average] {argv[0]}: {describe(avg.lineage)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
