"""Where an artifact came from: file digests and the git commit, without PyTorch (ONNX-only stages use it)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit() -> str:
    """HEAD of the checkout this code runs from (`-dirty` with uncommitted changes). A copy of the code
    outside its repository (a training bundle) says where it came from in CRNN_GIT_COMMIT."""
    if os.environ.get("CRNN_GIT_COMMIT"):
        return os.environ["CRNN_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        commit = out.stdout.strip() if out.returncode == 0 else "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        return commit + ("-dirty" if dirty and commit != "unknown" else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
