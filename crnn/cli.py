"""What every stage's command line shares: bad input ends in one line naming the file or key, exit code 2.

A traceback is for bugs; a missing checkpoint, a foreign ONNX file or an impossible prune target is the
user's to fix, so it gets one clear sentence instead.
"""

from __future__ import annotations

import contextlib
import sys


class StageError(RuntimeError):
    """A stage cannot proceed because of its input or its settings."""


@contextlib.contextmanager
def stage_errors():
    from crnn.charset import CharsetError
    from crnn.config import ConfigError
    from crnn.data.lmdb_io import LmdbFormatError
    from crnn.models.checkpoint import CheckpointError

    try:
        yield
    except (StageError, CheckpointError, ConfigError, CharsetError, LmdbFormatError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
