"""MLflow for every stage: a local store under `mlruns/` that needs no server, or any tracking URI by config.

MLflow 3 refuses its old file store, so the local default is SQLite at mlruns/mlflow.db with artifacts in
mlruns/artifacts/<experiment>/. Runs are tagged with the stage, the git commit and (for later stages) the
parent run and input artifact, which is how `make compare` reconstructs an experiment's lineage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crnn.config import flatten

_BAD_NAME = re.compile(r"[^\w\-. /]")


@dataclass
class MlflowConfig:
    enabled: bool = True
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: str = "mlruns/artifacts"
    experiment: str = "crnn"
    log_artifacts: bool = True
    # Also append every metric to this JSON-lines file, MLflow on or off: a training bundle runs without
    # MLflow and its metrics join the run's MLflow record when training resumes at home (import_metrics)
    metrics_file: str = ""


def param_name(key: str) -> str:
    """MLflow takes names of letters, digits and `_-. /` only; config keys may be globs
    (`eval.normalize.*_zh`), so anything else becomes `_`."""
    return _BAD_NAME.sub("_", key)


def _run_exists(mlflow, run_id: str) -> bool:
    try:
        mlflow.get_run(run_id)
        return True
    except Exception:  # MlflowException: RESOURCE_DOES_NOT_EXIST
        return False


class Tracker:
    """A thin wrapper so stages log the same way; `enabled: false` records nothing (tests, dry runs)."""

    def __init__(self, cfg: MlflowConfig) -> None:
        self.cfg = cfg
        self.run_id: str | None = None
        self._mlflow = None

    @contextlib.contextmanager
    def run(self, run_name: str, tags: dict[str, str], resume_run_id: str | None = None):
        if not self.cfg.enabled:
            yield self
            return
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.tracking"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        import mlflow

        self._mlflow = mlflow
        uri = self.cfg.tracking_uri
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        exp = mlflow.get_experiment_by_name(self.cfg.experiment)
        if exp is None:
            loc = None
            if "://" not in self.cfg.artifact_root:
                loc = (Path(self.cfg.artifact_root).resolve() / self.cfg.experiment).as_uri()
            exp_id = mlflow.create_experiment(self.cfg.experiment, artifact_location=loc)
        else:
            exp_id = exp.experiment_id
        if resume_run_id and not _run_exists(mlflow, resume_run_id):
            # a checkpoint from another machine (a committed snapshot, say) names a run this store lacks
            logging.getLogger(__name__).warning(
                "MLflow run %s is not in %s: starting a new run that names it", resume_run_id, uri
            )
            tags = {**tags, "continues_run": resume_run_id}
            resume_run_id = None
        kwargs: dict[str, Any] = {"run_id": resume_run_id} if resume_run_id else {"run_name": run_name}
        with mlflow.start_run(experiment_id=exp_id, **kwargs) as active:
            self.run_id = active.info.run_id
            mlflow.set_tags(tags)
            yield self

    def log_params(self, params: dict[str, Any]) -> None:
        if self._mlflow is None:
            return
        flat = {param_name(k): str(v)[:500] for k, v in flatten(params).items()}
        existing = self._mlflow.get_run(self.run_id).data.params
        fresh = {k: v for k, v in flat.items() if k not in existing}  # a resumed run keeps its params
        items = list(fresh.items())
        for i in range(0, len(items), 100):
            self._mlflow.log_params(dict(items[i : i + 100]))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not metrics:
            return
        values = {k: float(v) for k, v in metrics.items()}
        if self.cfg.metrics_file:
            path = Path(self.cfg.metrics_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, "time": time.time(), "metrics": values}) + "\n")
        if self._mlflow is not None:
            self._mlflow.log_metrics(values, step=step)

    def import_metrics(self, path: str | Path) -> int:
        """Log the records of a metrics file (`metrics_file` of a run elsewhere, a training bundle's) into
        this run, at their own steps and times. Returns how many metric values were logged."""
        if self._mlflow is None:
            return 0
        n = 0
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            ms = int(rec["time"] * 1000)
            self._mlflow.log_metrics(rec["metrics"], step=rec["step"], timestamp=ms)
            n += len(rec["metrics"])
        return n

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None and self.cfg.log_artifacts and Path(path).exists():
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self._mlflow is not None:
            self._mlflow.set_tags(tags)
