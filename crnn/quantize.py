"""Quantize stage: INT8 candidates measured against the FP32 ONNX; the fastest one within the CER budget wins.

    python -m crnn.quantize experiment=demo     # runs/demo/quantize/{model.int8.onnx,report.json,report.md}

Candidates (each after onnxruntime's `quant_pre_process`):
  dynamic_all  dynamic INT8 on every op: the article's recipe, kept for the record (ONNX Runtime's integer
               convolution path is slow on CPU, so expect it to lose);
  dynamic_rnn  dynamic INT8 on LSTM/MatMul/Gemm only;
  static_qdq   static QDQ INT8, per-channel 7-bit weights (`quantize.reduce_range`: full 8-bit U8S8
               saturates on AVX2 CPUs without VNNI), calibrated on training lines
               (the LMDB, or the synthetic stream);
  static_qdq_rnn  static_qdq, then dynamic INT8 on the LSTM, which static QDQ leaves in FP32 (the
               LSTM's weights are most of a small model's file).
Every candidate and the FP32 reference are measured in the same run: file size, latency p50/p95 at each
batch size and thread count, validation CER per scene. A candidate qualifies when it is faster than FP32
at the selection key (the smallest batch at the most threads measured), its CER is within
`quantize.cer_budget_points` of FP32 on every scene and overall, and it reads a line the same alone as in
a batch (`quantize.require_batch_invariance`: dynamic INT8 computes activation scales per call, over the
whole batch, so it cannot). If none qualifies, the report says so, FP32 stays the model, and the stage
exits non-zero unless `quantize.allow_none=true`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import hydra
import numpy as np
import onnx
from omegaconf import DictConfig
from tqdm import tqdm

from crnn.cli import StageError, stage_errors
from crnn.data.lines import LmdbLineDataset
from crnn.data.preprocess import InputSpec, pad_batch, preprocess
from crnn.data.source import SynthSource, train_stream_source
from crnn.lineage import git_commit, sha256_file
from crnn.onnx_model import WIDTHS_INPUT, OnnxBackend, read_metadata, set_metadata
from crnn.predictor import Predictor, batch_invariance_gap
from crnn.scoring import score_dataset
from crnn.settings import QuantizeConfig, RunConfig, load_run_config
from crnn.timing import measure
from crnn.tracking import Tracker

CANDIDATES = ("dynamic_all", "dynamic_rnn", "static_qdq", "static_qdq_rnn")


class QuantizeError(StageError):
    pass


class CalibrationReader:
    """Feeds calibration batches (grouped by width) of preprocessed training lines to the calibrator."""

    def __init__(self, xs: list[np.ndarray], batch_size: int = 16, input_name: str = "image") -> None:
        xs = sorted((x for x in xs if x is not None), key=lambda x: x.shape[-1])
        self.batches = []
        for k in range(0, len(xs), batch_size):
            batch, widths = pad_batch(xs[k : k + batch_size])
            self.batches.append({input_name: batch, WIDTHS_INPUT: widths})
        self.lines = len(xs)
        self._it = iter(self.batches)

    @classmethod
    def from_lmdb(cls, dataset: LmdbLineDataset, n: int) -> CalibrationReader:
        """n lines spread evenly over the training LMDB."""
        step = max(1, len(dataset) // max(n, 1))
        return cls([dataset[i].x for i in range(0, len(dataset), step)[:n]])

    @classmethod
    def from_synth(cls, source: SynthSource, n: int, spec: InputSpec) -> CalibrationReader:
        """n lines of the synthetic training stream (`data.train=synth` has no training LMDB)."""
        return cls([preprocess(source.sample(i).image, spec) for i in range(n)])

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.batches)


def static_qdq(src: Path, dest: Path, calib, method, reduce_range: bool) -> None:
    """Static QDQ INT8 as both quantize stages make it (recognizer and detector): per-channel signed
    weights, unsigned activations, 7-bit weights with `reduce_range`."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(src),
        str(dest),
        calib,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=method,
        reduce_range=reduce_range,
    )


def build_candidate(
    name: str, pre: Path, dest: Path, qc: QuantizeConfig, calib: CalibrationReader | None
) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantType,
        quantize_dynamic,
    )

    if name == "dynamic_all":
        quantize_dynamic(str(pre), str(dest), weight_type=QuantType.QInt8)
    elif name == "dynamic_rnn":
        quantize_dynamic(
            str(pre), str(dest), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM", "MatMul", "Gemm"]
        )
    elif name in ("static_qdq", "static_qdq_rnn"):
        methods = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }
        if qc.calibration_method not in methods:
            raise QuantizeError(f"quantize.calibration_method must be one of {sorted(methods)}")
        assert calib is not None
        calib.rewind()
        static_qdq(pre, dest, calib, methods[qc.calibration_method], qc.reduce_range)
        if name == "static_qdq_rnn":
            staged = dest.with_suffix(".qdq.onnx")
            dest.rename(staged)
            quantize_dynamic(
                str(staged), str(dest), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"]
            )
            staged.unlink()
    else:
        raise QuantizeError(f"unknown quantize candidate {name!r}; known: {list(CANDIDATES)}")


def latency_table(path: Path, spec: InputSpec, qc: QuantizeConfig) -> dict:
    """p50/p95 ms per (batch, threads) on random inputs of the configured width."""
    out = {}
    cores = os.cpu_count() or 1
    for threads in qc.threads:
        backend = OnnxBackend(path, threads=threads or cores)
        for bs in qc.batch_sizes:
            x = (
                np.random.default_rng(0)
                .uniform(-0.5, 0.5, (bs, 1, spec.height, qc.latency_width))
                .astype(np.float32)
            )
            w = np.full(bs, qc.latency_width, dtype=np.int64)
            reps = max(5, qc.latency_reps // max(1, bs // 8))
            out[f"b{bs}_t{threads or cores}"] = measure(lambda b=backend, x=x, w=w: b.logits(x, w), reps)
    return out


def selection_key(qc: QuantizeConfig) -> str:
    """The latency entry candidates are chosen by: the smallest batch measured (serving's one line) at
    the most threads measured (0 means all cores)."""
    cores = os.cpu_count() or 1
    return f"b{min(qc.batch_sizes)}_t{max(t or cores for t in qc.threads)}"


def measure_model(name: str, path: Path, spec: InputSpec, val: LmdbLineDataset, qc: QuantizeConfig) -> dict:
    preds: dict[int, str] = {}
    backend = OnnxBackend(path)
    scores, skipped = score_dataset(Predictor(backend), val, 64, qc.val_max_lines, predictions=preds)
    lines = [x for x in (val[i].x for i in range(min(len(val), 16))) if x is not None]
    return {
        "name": name,
        "batch_invariance_max_abs_diff": batch_invariance_gap(backend, lines) if lines else 0.0,
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "latency_ms": latency_table(path, spec, qc),
        "val": scores.as_dict(),
        "val_skipped": skipped,
        "_predictions": preds,
    }


def agreement(a: dict[int, str], b: dict[int, str]) -> float:
    """Share of lines on which two models decode the same text."""
    common = set(a) & set(b)
    return sum(a[i] == b[i] for i in common) / max(len(common), 1)


def qualifies(
    c: dict, ref: dict, budget_points: float, key: str, invariance_atol: float | None = None
) -> tuple[bool, str]:
    """Faster than FP32 at `key`, within the CER budget on every scene and overall, and (unless
    `invariance_atol` is None) reading a line the same alone as in a batch."""
    gap = c.get("batch_invariance_max_abs_diff", 0.0)
    if invariance_atol is not None and gap > invariance_atol:
        return (
            False,
            f"answers depend on the batch (max logit change {gap:.1e} > {invariance_atol:.0e}; "
            "dynamic INT8 scales activations per call)",
        )
    if c["latency_ms"][key]["p50"] >= ref["latency_ms"][key]["p50"]:
        return (
            False,
            f"not faster than FP32 at {key} ({c['latency_ms'][key]['p50']:.2f} ms vs "
            f"{ref['latency_ms'][key]['p50']:.2f} ms)",
        )
    worse = []
    for scene, v in ref["val"]["scenes"].items():
        delta = 100 * (c["val"]["scenes"][scene]["cer"] - v["cer"])
        if delta > budget_points:
            worse.append(f"{scene} +{delta:.2f}")
    delta = 100 * (c["val"]["overall"]["cer"] - ref["val"]["overall"]["cer"])
    if delta > budget_points:
        worse.append(f"overall +{delta:.2f}")
    if worse:
        return False, f"CER over the {budget_points} point budget: {', '.join(worse)}"
    return True, "faster than FP32 and within the CER budget"


def run(cfg: RunConfig, qc: QuantizeConfig) -> dict:
    """Build, measure and choose; writes model.int8.onnx (if one qualifies), report.json and report.md."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = Path(qc.source) if qc.source else cfg.stage_dir("export") / "model.onnx"
    meta = read_metadata(source)
    unknown = [c for c in qc.candidates if c not in CANDIDATES]
    if unknown or not qc.candidates:
        raise QuantizeError(
            f"quantize.candidates must be a non-empty subset of {list(CANDIDATES)}, got {qc.candidates}"
        )
    spec = InputSpec(**json.loads(meta["input_spec"]))
    from crnn.charset import Charset

    charset = Charset.from_string(meta["charset"])
    val = LmdbLineDataset(cfg.data.val_paths(), charset, spec, cfg.oov_policy)
    if len(val) == 0:
        raise QuantizeError(f"validation set {cfg.data.val_paths()} holds no usable line")
    calib = None
    if any(c.startswith("static") for c in qc.candidates):
        if cfg.data.train == "synth":
            source_lines = train_stream_source(cfg, charset)
            calib = CalibrationReader.from_synth(source_lines, qc.calibration_lines, spec)
        else:
            train = LmdbLineDataset(cfg.data.train_paths(), charset, spec, cfg.oov_policy)
            calib = CalibrationReader.from_lmdb(train, qc.calibration_lines)
        if calib.lines == 0:
            raise QuantizeError(
                f"calibration set is empty: no readable line in {cfg.data.train_paths()} "
                f"(quantize.calibration_lines={qc.calibration_lines})"
            )
    out_dir = cfg.stage_dir("quantize")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = selection_key(qc)
    input_sha = sha256_file(source)
    lineage_src = json.loads(meta["lineage"])
    tracker = Tracker(cfg.mlflow)
    with (
        tracker.run(
            "quantize",
            tags={
                "stage": "quantize",
                "parent_run_id": lineage_src.get("mlflow_run_id", ""),
                "input_sha256": input_sha,
                "input_artifact": str(source),
                "git_commit": git_commit(),
            },
        ),
        tempfile.TemporaryDirectory() as tmpd,
    ):
        tmp = Path(tmpd)
        pre = tmp / "pre.onnx"
        logging.getLogger().setLevel(logging.WARNING)  # the quantizer logs one INFO line per tensor
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=False)
        results = [measure_model("fp32", source, spec, val, qc)]
        for name in tqdm(qc.candidates, desc="quantize candidates"):
            dest = tmp / f"{name}.onnx"
            build_candidate(name, pre, dest, qc, calib)
            m = onnx.load(str(dest))
            lineage = {
                **lineage_src,
                "stage": "quantize",
                "recipe": name,
                "source_sha256": input_sha,
                "mlflow_run_id": tracker.run_id or "",
                "git_commit": git_commit(),
            }
            set_metadata(m, {**meta, "lineage": json.dumps(lineage)})
            onnx.save(m, str(dest))
            results.append(measure_model(name, dest, spec, val, qc))
        ref = results[0]
        for r in results[1:]:
            atol = qc.batch_invariance_atol if qc.require_batch_invariance else None
            ok, why = qualifies(r, ref, qc.cer_budget_points, key, atol)
            r["qualifies"], r["why"] = ok, why
            r["speedup_vs_fp32"] = ref["latency_ms"][key]["p50"] / r["latency_ms"][key]["p50"]
            r["size_ratio_vs_fp32"] = ref["size_bytes"] / r["size_bytes"]
            r["same_text_as_fp32"] = agreement(r["_predictions"], ref["_predictions"])
        for r in results:
            r.pop("_predictions")
        winners = sorted(
            (r for r in results[1:] if r["qualifies"]), key=lambda r: r["latency_ms"][key]["p50"]
        )
        chosen = winners[0]["name"] if winners else None
        final = out_dir / "model.int8.onnx"
        kept = out_dir / "candidates"
        kept.mkdir(exist_ok=True)
        for r in results[1:]:  # every candidate stays on disk, so evaluation can put them side by side
            shutil.copyfile(tmp / f"{r['name']}.onnx", kept / f"{r['name']}.onnx")
            r["path"] = str(kept / f"{r['name']}.onnx")
        if chosen:
            shutil.copyfile(tmp / f"{chosen}.onnx", final)
        else:
            final.unlink(missing_ok=True)
        report = {
            "source": str(source),
            "machine_cores": os.cpu_count(),
            "selection_key": key,
            "cer_budget_points": qc.cer_budget_points,
            "chosen": chosen,
            "decision": (
                f"{chosen}: the fastest candidate at {key} within the CER budget"
                if chosen
                else "no candidate is both faster than FP32 and within the CER budget; FP32 stays"
            ),
            "models": results,
        }
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
        (out_dir / "report.md").write_text(to_markdown(report))
        tracker.log_params({"quantize": {k: str(v) for k, v in vars(qc).items()}})
        for r in results:
            tracker.log_metrics(
                {
                    f"{r['name']}_size_bytes": r["size_bytes"],
                    f"{r['name']}_{key}_p50_ms": r["latency_ms"][key]["p50"],
                    f"{r['name']}_val_cer": r["val"]["overall"]["cer"],
                }
            )
        tracker.set_tags({"chosen": chosen or "none"})
        tracker.log_artifact(out_dir / "report.json")
        tracker.log_artifact(out_dir / "report.md")
        if chosen:
            tracker.log_artifact(final, "model")
    print(to_markdown(report))
    if not chosen and not qc.allow_none:
        raise QuantizeError(
            "no INT8 candidate qualified (see runs/<name>/quantize/report.md); "
            "set quantize.allow_none=true to accept FP32"
        )
    return report


def to_markdown(report: dict) -> str:
    models = report["models"]
    keys = list(models[0]["latency_ms"])
    scenes = list(models[0]["val"]["scenes"])
    head = (
        ["model", "size MB", "same text as FP32"]
        + [f"{k} p50/p95 ms" for k in keys]
        + [f"CER {s}" for s in scenes]
        + ["CER all", "verdict"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in models:
        row = [m["name"], f"{m['size_bytes'] / 1e6:.2f}", f"{m.get('same_text_as_fp32', 1.0):.1%}"]
        row += [f"{m['latency_ms'][k]['p50']:.2f} / {m['latency_ms'][k]['p95']:.2f}" for k in keys]
        row += [f"{m['val']['scenes'][s]['cer'] * 100:.2f}%" for s in scenes]
        row += [f"{m['val']['overall']['cer'] * 100:.2f}%", m.get("why", "reference")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + f"\n\nDecision: {report['decision']}.\n"


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        cfg = load_run_config(dcfg)
        run(cfg, cfg.quantize)


if __name__ == "__main__":
    main()
