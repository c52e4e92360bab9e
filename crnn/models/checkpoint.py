"""The checkpoint bundle of DESIGN.md: everything a later stage needs, loadable with weights_only=True.

Keys: format, model_config, state_dict, charset, input_spec, lineage, and (training checkpoints only)
train_state. Writes go to a temporary file that is renamed into place, so a killed process leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from crnn.charset import Charset
from crnn.data.preprocess import InputSpec
from crnn.lineage import git_commit, sha256_file  # noqa: F401  (re-exported)
from crnn.models.crnn import CRNN, ModelConfig

FORMAT = "crnn-toolkit/checkpoint/v1"


class CheckpointError(RuntimeError):
    """A missing, truncated or foreign checkpoint."""


@dataclass
class Checkpoint:
    model_config: ModelConfig
    state_dict: dict
    charset: Charset
    input_spec: InputSpec
    lineage: dict = field(default_factory=dict)
    train_state: dict | None = None

    def build_model(self) -> CRNN:
        model = CRNN(self.model_config)
        model.load_state_dict(self.state_dict)
        return model

    def to_dict(self) -> dict:
        d = {
            "format": FORMAT,
            "model_config": self.model_config.as_dict(),
            "state_dict": self.state_dict,
            "charset": self.charset.as_string(),
            "input_spec": self.input_spec.as_dict(),
            "lineage": self.lineage,
        }
        if self.train_state is not None:
            d["train_state"] = self.train_state
        return d


def atomic_torch_save(obj: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> None:
    atomic_torch_save(ckpt.to_dict(), path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with objects, not a torch file at all
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:120]})"
        ) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a crnn-toolkit checkpoint (format key is not {FORMAT!r})")
    try:
        return Checkpoint(
            model_config=ModelConfig(**raw["model_config"]),
            state_dict=raw["state_dict"],
            charset=Charset.from_string(raw["charset"]),
            input_spec=InputSpec(**raw["input_spec"]),
            lineage=dict(raw.get("lineage", {})),
            train_state=raw.get("train_state"),
        )
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: checkpoint lacks or has a bad field ({e})") from None
