"""Compare an experiment's MLflow runs: the params that differ between them, CER, latency and size.

    python scripts/compare_runs.py --experiment demo            (make compare EXP=demo)
    python scripts/compare_runs.py --experiment demo --tracking-uri http://127.0.0.1:5001

Prints a Markdown table (one row per run: stage, start time, the differing params, the CER, latency and
size metrics it logged) and saves it with a plot of every run's CER metrics to runs/<experiment>/compare/.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KEEP = ("cer", "_ms", "size_bytes", "macs_removed", "throughput")


def load_runs(tracking_uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise SystemExit(f"error: no MLflow experiment {experiment!r} at {tracking_uri}; known: {names}")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"], max_results=1000)


def differing_params(runs: list) -> list[str]:
    keys = sorted({k for r in runs for k in r.data.params})
    return [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]


def table(runs: list, max_params: int = 12) -> tuple[list[str], list[list[str]]]:
    params = differing_params(runs)[:max_params]
    metrics = sorted({k for r in runs for k in r.data.metrics if any(t in k for t in KEEP)})
    head = ["run", "stage", "started"] + params + metrics
    rows = []
    for r in runs:
        started = datetime.fromtimestamp(r.info.start_time / 1000).strftime("%m-%d %H:%M")
        row = [r.info.run_name or r.info.run_id[:8], r.data.tags.get("stage", ""), started]
        row += [str(r.data.params.get(p, ""))[:24] for p in params]
        row += [_fmt(k, r.data.metrics.get(k)) for k in metrics]
        rows.append(row)
    return head, rows


def _fmt(key: str, v: float | None) -> str:
    if v is None:
        return ""
    if "cer" in key:
        return f"{v * 100:.2f}%"
    if key.endswith("size_bytes"):
        return f"{v / 1e6:.2f} MB"
    return f"{v:.3g}"


def markdown(head: list[str], rows: list[list[str]]) -> str:
    return (
        "\n".join(
            ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in rows]
        )
        + "\n"
    )


def plot(runs: list, dest: Path) -> None:
    series = {}
    for r in runs:
        for k, v in r.data.metrics.items():
            if "cer" in k and not any(s in k for s in ("printed", "signboard", "handwritten", "blurry")):
                series.setdefault(f"{r.info.run_name}:{k}", v * 100)
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(series)), 4))
    ax.bar(range(len(series)), list(series.values()))
    ax.set_xticks(range(len(series)), list(series), rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("CER %")
    ax.set_title("CER metrics of every run")
    fig.savefig(dest, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    ap.add_argument("--out", default=None, help="folder for compare.md and compare.png")
    a = ap.parse_args(argv)
    runs = load_runs(a.tracking_uri, a.experiment)
    if not runs:
        print(f"error: experiment {a.experiment!r} has no runs", file=sys.stderr)
        return 2
    head, rows = table(runs)
    md = markdown(head, rows)
    out = Path(a.out or Path("runs") / a.experiment / "compare")
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(md)
    plot(runs, out / "compare.png")
    print(md)
    print(f"[compare] {len(runs)} runs; table and plot in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
