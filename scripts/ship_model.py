"""Ship an experiment's models into models/ with a model card written from the stage reports.

    python scripts/ship_model.py experiment=zh_en +notes=configs/experiment/zh_en.notes.md

Copies runs/<name>/quantize/model.int8.onnx and runs/<name>/export/model.onnx to
models/crnn_<name>.int8.onnx and models/crnn_<name>.onnx (refusing if all that models/ would then serve,
the detector and LM beside them included, passes +max_mb, 15 by default; +out=DIR writes elsewhere), the
evaluation report to models/crnn_<name>.eval.{json,md}, and
writes models/README.md: data, alphabet, steps, hardware, training time, figures per scene type beside
the targets, the learning curve, and the known weaknesses from the notes file. `+as=zh_en` ships the run
under another model's name (models/crnn_zh_en.*, the served default): a new version of the bundled model.

Replacing a bundled model is gated by issue 12's rule: the candidate must make fewer errors than the
bundled model on the real lines overall (its `make eval-real` report against models/crnn_<as>.realdev.json,
the figures `make regress-real` checks), must not be worse in any category of 30 lines or more, and must meet
every synthetic target the bundled model meets (read as served, INT8 with its LM, where the candidate's
`make eval-real` run read the synthetic test set with both files; else `make eval`'s rows, without the LM).
"Worse in a category" is decided on paired lines when the
same `make eval-real` run also read the bundled file (MODELS="...,bundled=<its served file>"): refused
when the candidate's extra edits on the category's lines are below 5 % chance by a one-sided paired
sign-flip test (crnn/paired.py); without those lines, by a strictly lower category CER. `+force=true`
ships anyway. A shipped model's real-line figures become the new models/crnn_<as>.realdev.json. Every
number comes from a report or from MLflow; the training time is summed from the training run's metric
timestamps, leaving out gaps over 10 minutes (between sessions), because a run resumed across sessions has
no single wall time.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from crnn.charset import load_charset
from crnn.cli import StageError, stage_errors
from crnn.command import MODELS_BUDGET_MB, within_budget
from crnn.lineage import sha256_file
from crnn.lm import load_lm
from crnn.paired import LINES_FILE, Paired, pair, read_lines
from crnn.regress import how_read
from crnn.settings import compose_run_config

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"printed": 0.01, "signboard": 0.03, "handwritten": 0.05, "blurry": 0.05}
SCENES = ["printed", "signboard", "handwritten", "blurry"]
MIN_CATEGORY_LINES = 30  # issue 12: categories smaller than this are too noisy to decide a replacement
SIGNIFICANCE = 0.05  # a category's losses on paired lines refuse a candidate below this chance


def _json(path: Path) -> dict:
    if not path.is_file():
        raise StageError(f"{path} does not exist: run the stage that writes it first")
    return json.loads(path.read_text())


def training_history(tracking_uri: str, run_id: str) -> tuple[float, list[tuple[int, float]], dict]:
    """Active training seconds, the val CER by step, and the per-scene val CER at the last validation."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    stamps = sorted(m.timestamp for m in client.get_metric_history(run_id, "loss"))
    seconds = sum(b - a for a, b in zip(stamps, stamps[1:]) if b - a < 600_000) / 1000
    curve = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_cer"))
    return seconds, curve, {}


def pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def served_row(report: dict, int8: bool, where: str = "make eval", file: Path | None = None) -> dict:
    """The row of an evaluation report that scored the file `make serve` would use (`file`, when given:
    a report made with other artifacts does not count)."""
    want = "int8_onnx" if int8 else "fp32_onnx"
    row = next((m for m in report["models"] if m["name"] == want), None)
    if row is None:
        raise StageError(f"the evaluation report has no {want} row: score the shipped files ({where})")
    if file is not None and (ROOT / row["path"]).resolve() != file.resolve():
        raise StageError(f"the report's {want} row scored {row['path']}, not {file}: run {where} again")
    return row


def fresh_report(path: Path, served: Path, where: str) -> dict:
    """A report made after the file it scored was last written (a re-export or re-quantization since
    leaves figures of another model behind)."""
    if not path.is_file():
        raise StageError(f"{path} does not exist: run {where}")
    if path.stat().st_mtime < served.stat().st_mtime:
        raise StageError(f"{path} is older than {served}: run {where} again")
    return _json(path)


def replacement_problems(
    cand_syn: dict,
    inc_syn: dict,
    cand_real: dict | None = None,
    inc_real: dict | None = None,
    min_lines: int = MIN_CATEGORY_LINES,
    paired: dict[str, Paired] | None = None,
) -> list[str]:
    """Why a candidate may not replace the bundled model (empty: it may). `*_syn` are the served rows of
    the synthetic evaluations, `*_real` the two models' figures on the same real lines (one test set's
    summary: n, cer and per-category scenes), `paired` the lines of each category each model read better
    in one run. Real lines decide first; a synthetic target binds only where the bundled model meets it,
    so a new model never ships by giving up what the old one did."""
    problems = []
    if inc_real is not None and cand_real is not None:
        if cand_real["n"] != inc_real["n"]:
            return [
                f"real lines: the candidate was scored on {cand_real['n']} lines, the bundled model on "
                f"{inc_real['n']}: not comparable (score the bundled model on the same lines and commit its "
                "figures, as make regress-real would need too)"
            ]
        if cand_real["cer"] >= inc_real["cer"]:
            problems.append(
                f"real lines overall: CER {pct(cand_real['cer'])}, not lower than the bundled model's "
                f"{pct(inc_real['cer'])}"
            )
        for cat, b in sorted(inc_real["scenes"].items()):
            c = cand_real["scenes"].get(cat)
            if b["n"] < min_lines:
                continue
            if c is None or c["n"] != b["n"]:
                got = f"{c['n']} lines" if c else "no lines"
                problems.append(f"{cat}: {got}, the bundled model's figures are over {b['n']}")
            elif paired is not None and cat in paired:
                pr = paired[cat]
                if pr.p_worse < SIGNIFICANCE:
                    problems.append(
                        f"{cat} ({b['n']} lines): {pr.worse} lines read worse and {pr.better} better than "
                        f"by the bundled model, {sum(pr.diffs):+d} edits (paired sign-flip test p = "
                        f"{pr.p_worse:.3f} < {SIGNIFICANCE})"
                    )
            elif c["cer"] >= b["cer"]:
                problems.append(
                    f"{cat} ({b['n']} lines): CER {pct(c['cer'])}, not lower than the bundled model's "
                    f"{pct(b['cer'])}"
                )
    for scene, target in TARGETS.items():
        b, c = inc_syn["scenes"].get(scene), cand_syn["scenes"].get(scene)
        if b is None or b["cer"] > target:
            continue
        if c is None or c["cer"] > target:
            got = pct(c["cer"]) if c else "not measured"
            problems.append(
                f"synthetic {scene}: CER {got} misses the <= {target * 100:g}% target the bundled model "
                f"meets ({pct(b['cer'])})"
            )
    return problems


def read_with_lm(baseline: dict, lm_file: Path, lm_sha256: str) -> None:
    """Name in a real-line baseline (realdev_baseline) the LM its figures were read with, as served."""
    where = str(lm_file.relative_to(ROOT)) if lm_file.is_relative_to(ROOT) else str(lm_file)
    baseline["models"][0].update({"lm": where, "lm_sha256": lm_sha256})


def realdev_baseline(report: dict, row: dict, real: dict, shipped: Path, sha256: str) -> dict:
    """The figures `make regress-real` compares the bundled model with, taken from the candidate's
    `make eval-real` run (same file, same lines, one thread): the shape of that gate's own report, with
    the shipped file's sha256 so that the next replacement knows which file the figures describe."""
    overall = {k: real[k] for k in ("n", "chars", "edits", "cer", "acc", "ned") if k in real}
    return {
        "experiment": "bundled",
        "machine": report.get("machine", {}),
        "test_sets": [t for t in report.get("test_sets", []) if t.get("path") == real["path"]],
        "normalize": report.get("normalize"),
        "models": [
            {
                "name": "bundled",
                "path": str(shipped.relative_to(ROOT)) if shipped.is_relative_to(ROOT) else str(shipped),
                "sha256": sha256,
                "decoder": row.get("decoder", "greedy"),
                # how its lines were read: make regress-real compares readings made alike only
                "second_look": row.get("second_look"),
                "formats": row.get("formats") or [],
                "format_ids": row.get("format_ids") or {},
                "format": row["format"],
                "int8": row["int8"],
                "size_bytes": row.get("size_bytes"),
                "params": row.get("params"),
                "macs": row.get("macs"),
                "scenes": real["scenes"],
                "overall": overall,
                "sets": [real],
                "latency_ratio_to_fp32_onnx": None,
            }
        ],
    }


def bundled_file(dest: Path, as_name: str) -> Path:
    """The file `make serve` uses for that name: INT8 where shipped, else FP32 (the Makefile's rule)."""
    int8 = dest / f"crnn_{as_name}.int8.onnx"
    return int8 if int8.is_file() else dest / f"crnn_{as_name}.onnx"


def candidate_real(run: Path, served: Path, has_int8: bool, path: str | None) -> dict | None:
    """The candidate's figures on real lines from `make eval-real` (the set at `path`, else the report's
    folder of real lines), or None when it was not scored on them."""
    where = f"make eval-real EXP={run.name}"
    if not (run / "eval_real" / "report.json").is_file():
        return None
    report = fresh_report(run / "eval_real" / "report.json", served, where)
    row = served_row(report, has_int8, where, served)
    found = next(
        (s for s in row["sets"] if s["path"] == path or (path is None and s["kind"] == "folder")), None
    )
    return {"report": report, "row": row, "set": found} if found else None


def paired_lines(
    run: Path, real: dict, incumbent_sha: str, set_path: str, incumbent_lm: str | None = None
) -> dict[str, Paired] | None:
    """Per category, the candidate's edits against the bundled file's on the same lines, when the
    candidate's `make eval-real` run read that file too (found by its sha256); None otherwise. The line
    records name the file each model was, so lines of an older run under the same names never pair."""
    inc = next(  # the bundled file read as it serves: with its LM (incumbent_lm, a sha256) or plain
        (
            m
            for m in real["report"]["models"]
            if m.get("sha256") == incumbent_sha and m.get("lm_sha256") == incumbent_lm
        ),
        None,
    )
    if inc is None:
        print(
            f"[ship] the bundled file was not read in make eval-real EXP={run.name}: categories are "
            "compared by CER alone (add bundled=<the served file> to MODELS to compare them line by line)"
        )
        return None
    lines_file = run / "eval_real" / LINES_FILE
    if not lines_file.is_file():
        raise StageError(f"{lines_file} is missing: run make eval-real EXP={run.name} again")
    try:
        lines = read_lines(lines_file)
        cand, other = lines[real["row"]["name"]], lines[inc["name"]]
        for name, ls, sha in (
            (real["row"]["name"], cand, real["row"].get("sha256")),
            (inc["name"], other, incumbent_sha),
        ):
            if {r.get("sha256") for r in ls.values()} != {sha}:
                raise ValueError(f"{name}'s lines were read from another file than its report row's")
        return pair(cand, other, set_path)
    except (KeyError, ValueError) as e:
        raise StageError(f"{lines_file}: {e}: run make eval-real EXP={run.name} again") from None


def served_synthetic(
    real: dict, incumbent_sha: str, incumbent_lm: str | None, targets_set: dict
) -> tuple[dict, dict] | None:
    """The synthetic test set as both models serve it (INT8, its LM, the second look, plates), from the
    candidate's `make eval-real` run when that run also read the bundled file as served, the same way, on
    the set the targets are stated on (`targets_set`: the synthetic set of the bundled model's
    crnn_<as>.eval.json, same path and size); None otherwise. Issue 12 states its synthetic targets for the
    INT8 model as served, so these decide them where they exist (session 46, fixed before zh_en_v2_wise3's
    figures were read: before, the gate read `make eval`'s rows, the network without its LM)."""
    inc = next(
        (
            m
            for m in real["report"]["models"]
            if m.get("sha256") == incumbent_sha and m.get("lm_sha256") == incumbent_lm
        ),
        None,
    )
    if inc is None or how_read(inc) != how_read(real["row"]):
        return None
    if inc.get("decoder", "greedy") != real["row"].get("decoder", "greedy"):
        return None

    def synthetic(row: dict) -> dict | None:
        return next(
            (s for s in row["sets"] if (s["path"], s["n"]) == (targets_set["path"], targets_set["n"])), None
        )

    cand, other = synthetic(real["row"]), synthetic(inc)
    return None if cand is None or other is None else (cand, other)


def synthetic_set(row: dict) -> dict | None:
    """The synthetic test set a `make eval` row scored: the one with every scene a target is stated for."""
    return next((s for s in row["sets"] if s["kind"] != "folder" and set(TARGETS) <= set(s["scenes"])), None)


def replacement_check(
    run: Path,
    dest: Path,
    as_name: str,
    ev: dict,
    served: Path,
    has_int8: bool,
    gated: bool,
    incumbent_sha: str,
) -> dict | None:
    """Refuses (StageError) a candidate that may not replace the model shipped as models/crnn_<as_name>.*
    when `gated` (another file is bundled under that name and +force is off: shipping the same file again,
    for a new model card, decides nothing); returns the candidate's real-line figures for the new baseline
    (None: not scored on real lines). `incumbent_sha`: the bundled file's sha256, hashed once by main."""
    baseline = dest / f"crnn_{as_name}.realdev.json"
    inc_base = _json(baseline) if baseline.is_file() else None
    inc_model = inc_base["models"][0] if inc_base else {}
    inc_real = inc_model["sets"][0] if inc_base else None
    real = candidate_real(run, served, has_int8, inc_real["path"] if inc_real else None)
    incumbent = bundled_file(dest, as_name)
    if not gated:
        return real
    if inc_real is None:
        raise StageError(
            f"{incumbent} has no real-line figures to beat ({baseline} is missing): score it first (make "
            f"regress-real writes runs/bundled/realdev/report.json; copy it there), or ship with +force=true"
        )
    if inc_model.get("sha256") not in (None, incumbent_sha):
        raise StageError(f"{baseline} describes another file than {incumbent}: score the bundled model again")
    if real is None:
        raise StageError(
            f"{incumbent} was scored on the real lines of {inc_real['path']} ({baseline.name}); score the "
            f"candidate on the same lines first: make eval-real EXP={run.name} REALDEV={inc_real['path']} "
            "REAL_PEERS="
        )
    problems = []
    if real["report"].get("normalize") != inc_base.get("normalize"):
        problems.append("the two models' real lines were scored by different normalisation rules")
    if real["row"].get("decoder", "greedy") != inc_model.get("decoder", "greedy"):
        problems.append("the two models' real lines were decoded differently")
    if how_read(real["row"]) != how_read(inc_model):
        problems.append(
            f"the two models' real lines were read differently ({how_read(real['row'])} against "
            f"{how_read(inc_model)})"
        )
    paired = paired_lines(run, real, incumbent_sha, inc_real["path"], inc_model.get("lm_sha256"))
    cand_syn = served_row(ev, has_int8, file=served)  # make eval scored the file that ships
    inc_syn = served_row(_json(dest / f"crnn_{as_name}.eval.json"), incumbent.name.endswith(".int8.onnx"))
    stated = synthetic_set(inc_syn)
    syn = served_synthetic(real, incumbent_sha, inc_model.get("lm_sha256"), stated) if stated else None
    if syn is None:
        print(
            f"[ship] synthetic targets read from make eval's rows (without the LM): make eval-real "
            f"EXP={run.name} did not read the synthetic test set with both files as served"
        )
        syn = cand_syn, inc_syn
    else:
        print(f"[ship] synthetic targets read as served (with the LMs) from make eval-real EXP={run.name}")
    problems += replacement_problems(syn[0], syn[1], real["set"], inc_real, paired=paired)
    if problems:
        raise StageError(
            f"this model may not replace {incumbent}: "
            + "; ".join(problems)
            + " (+force=true ships it anyway)"
        )
    return real


def init_line(init_from: str) -> list[str]:
    """Where the weights started, from the initial checkpoint's own lineage: a run that continues
    another one has seen that one's lines too."""
    if not init_from:
        return []
    from crnn.models.checkpoint import load_checkpoint

    lineage = load_checkpoint(ROOT / init_from).lineage or {}
    step = lineage.get("step")
    what = (
        f"step {step:,} of `{lineage.get('config_name', '?')}`" if step is not None else "its lineage unknown"
    )
    return [f"- Initialised from `{init_from}` ({what}); the lines above are this run's own."]


def lines_seen_text(train: dict, batch_size: int) -> str:
    """How many lines the run trained on, as its state counted them (a GPU burst's batches are larger than
    the CPU's, so steps times one batch size is not it). A run that began before the count existed counts
    from the step it was first resumed with it; runs older still give only steps times the batch size."""
    steps, seen = train["steps"], train.get("lines_seen")
    if seen is None:
        return f"{steps * batch_size:,} lines seen if every one of its {steps:,} steps had {batch_size} lines"
    since = train.get("lines_counted_from", 0)
    if not since:
        return f"{seen:,} lines seen in {steps:,} steps"
    return (
        f"{seen:,} lines seen in steps {since:,} to {steps:,} (the first {since:,} steps ran before the "
        "run counted lines)"
    )


def devices_text(train: dict) -> str:
    """Where the run trained, as its state timed it per device type: a run that moves between CPU sessions
    and GPU bursts reports each, with its lines per second. Runs from before the count name the step it
    began at."""
    devices = train.get("devices") or {}
    if not devices:
        return "- Trained on: not recorded (the run predates the count per device)."
    names = {"cpu": "CPU", "cuda": "CUDA GPU"}
    parts = [
        f"{d['seconds'] / 3600:.2f} h on {names.get(k, k)} ({d['lines']:,} lines, "
        f"{d['lines'] / max(d['seconds'], 1e-9):.0f} lines/s)"
        for k, d in sorted(devices.items())
    ]
    since = train.get("devices_counted_from", 0)
    tail = f", counted from step {since:,} (the run's earlier steps predate the count)" if since else ""
    return f"- Trained on: {'; '.join(parts)}{tail}."


def average_line(source: str, exported_sha256: str = "") -> list[str]:
    """The shipped weights are a mean of the run's checkpoints (crnn/average.py) when the exported file
    says so: the card names the steps, since the run's last step alone would not describe them. The file
    must still be the one exported (`exported_sha256`, from the export report), or the card would name
    another average's steps."""
    from crnn.average import describe
    from crnn.models.checkpoint import load_checkpoint

    path = Path(source) if Path(source).is_absolute() else ROOT / source
    if exported_sha256 and (not path.is_file() or sha256_file(path) != exported_sha256):
        # checked first: a file replaced by plain weights, or gone, would otherwise drop the line silently
        raise StageError(f"{source} is gone or changed since it was exported: run make export again")
    lineage = load_checkpoint(path).lineage if path.is_file() else {}
    if lineage.get("stage") != "average":
        return []
    return [f"- The weights are {describe(lineage)} (`{source}`, `make average`)."]


def main(argv: list[str]) -> int:
    cfg, own = compose_run_config(argv, extras=("notes", "max_mb", "out", "as", "force"))
    as_name = str(own.get("as") or cfg.name)
    force = str(own.get("force", "false")).lower() in ("true", "1", "yes")
    run = ROOT / cfg.runs_dir / cfg.name
    train = _json(run / "train" / "summary.json")
    prune = _json(run / "prune" / "report.json") if (run / "prune" / "report.json").is_file() else None
    quant = _json(run / "quantize" / "report.json")
    export = _json(run / "export" / "report.json")
    shipped_pruned = Path(export["source"]).name == "pruned.pt"
    int8, fp32 = run / "quantize" / "model.int8.onnx", run / "export" / "model.onnx"
    if not fp32.is_file():
        raise StageError(f"{fp32} does not exist: run make export EXP={cfg.name}")
    if not int8.is_file() and quant.get("chosen"):
        raise StageError(f"{int8} does not exist: run make quantize EXP={cfg.name}")
    has_int8 = int8.is_file()  # no INT8 when no recipe qualified: FP32 alone is shipped and served
    shipped = [int8, fp32] if has_int8 else [fp32]
    ev = fresh_report(run / "eval" / "report.json", shipped[0], f"make eval EXP={cfg.name}")
    notes = Path(own["notes"]).read_text().strip() if own.get("notes") else "(none recorded)"
    uri = cfg.mlflow.tracking_uri
    seconds, curve, _ = (
        training_history(uri, train["mlflow_run_id"]) if train.get("mlflow_run_id") else (0, [], {})
    )

    dest = ROOT / own.get("out", "models")
    dest.mkdir(exist_ok=True)
    out_int8, out_fp32 = dest / f"crnn_{as_name}.int8.onnx", dest / f"crnn_{as_name}.onnx"
    files = {fp32: out_fp32, **({int8: out_int8} if has_int8 else {})}
    max_mb = float(own.get("max_mb", MODELS_BUDGET_MB))
    gone = () if has_int8 else (out_int8,)  # an FP32-only model replaces an INT8 file of that name
    within_budget(dest, files, max_mb, "this model", gone)
    before = bundled_file(dest, as_name)
    before_sha = sha256_file(before) if before.is_file() else ""
    served_sha = sha256_file(shipped[0])
    replacing = before_sha not in ("", served_sha)
    real = replacement_check(
        run, dest, as_name, ev, shipped[0], has_int8, replacing and not force, before_sha
    )
    lm_out, cand_lm = dest / f"crnn_{as_name}.lm.npz", (real or {}).get("row", {}).get("lm")
    if cand_lm and not force:  # checked before anything is copied
        tuned = load_lm(cand_lm).meta.get("tuned_on", {}).get("recognizer_sha256")
        if tuned != served_sha:
            raise StageError(
                f"{cand_lm} was tuned with another file than {shipped[0]}: make lm EXP={cfg.name}"
            )
    if cand_lm:
        within_budget(dest, {**files, Path(cand_lm): lm_out}, max_mb, "this model and its LM", gone)
    stale = dest / f"crnn_{as_name}.realdev.json"
    if has_int8:
        shutil.copyfile(int8, out_int8)
    else:
        out_int8.unlink(missing_ok=True)  # an older INT8 file would be served instead of this model
    shutil.copyfile(fp32, out_fp32)
    shutil.copyfile(run / "eval" / "report.json", dest / f"crnn_{as_name}.eval.json")
    shutil.copyfile(run / "eval" / "report.md", dest / f"crnn_{as_name}.eval.md")
    served_out = out_int8 if has_int8 else out_fp32
    if real is not None:
        baseline = realdev_baseline(real["report"], real["row"], real["set"], served_out, served_sha)
        if cand_lm:  # read with the LM that ships beside it: regress-real and the card read with it too
            read_with_lm(baseline, lm_out, sha256_file(cand_lm))
        stale.write_text(json.dumps(baseline, indent=2, ensure_ascii=False))
    elif replacing and stale.is_file():
        stale.unlink()  # another model's figures: make regress-real would check this one against them
        print(f"[ship] removed {stale}: no real-line figures for this model (make eval-real EXP={cfg.name})")
    if cand_lm:  # scored as model.onnx+lm.npz: that LM serves beside it (the card's LM section: make ship-lm)
        shutil.copyfile(cand_lm, lm_out)
    elif replacing and lm_out.is_file():
        lm_out.unlink()  # tuned with the model it served beside, not with this one
        print(f"[ship] removed {lm_out}: it was tuned with the replaced model (make lm, make ship-lm)")

    shipped_out = [out_int8, out_fp32] if has_int8 else [out_fp32]
    models = {m["name"]: m for m in ev["models"]}
    chosen = models.get("int8_onnx" if has_int8 else "fp32_onnx") or ev["models"][-1]
    served = "INT8" if has_int8 else "FP32"
    charset = load_charset(cfg.charset)
    splits = cfg.data.splits
    heldout = (
        sorted(set(splits["test"].exclude_fonts) ^ set(splits["train"].exclude_fonts))
        if "train" in splits
        else []
    )
    md = [
        f"# crnn_{as_name}: the bundled model",
        "",
        f"A CRNN ({train['model']['name']} preset: {train['params'] / 1e6:.2f} M parameters before pruning) "
        + ("trained, pruned, exported" if shipped_pruned else "trained, exported")
        + " and quantized by this toolkit's own stages "
        f"(`experiment={cfg.name}`; exported from `{export['source']}`). "
        f"`make serve` uses the {served} file by default"
        + ("." if has_int8 else f" (no INT8 recipe qualified: {quant.get('decision', '')})."),
        "",
        "| file | size | sha256 |",
        "|---|---|---|",
        *[
            f"| `{p.name}` | {p.stat().st_size / 1e6:.2f} MB | `{sha256_file(p)[:16]}…` |"
            for p in shipped_out
        ],
        "",
        "Everything a server needs (alphabet, input spec, stride, lineage) is in each file's ONNX metadata.",
        "",
        "## Alphabet and data",
        "",
        f"- Alphabet `{cfg.charset}`: {len(charset.chars)} characters (configs/charsets/) and the CTC blank.",
        f"- Training: {lines_seen_text(train, cfg.train.batch_size)}, "
        + (
            "rendered on the fly by the synthetic renderer (`data.train=synth`), never repeated"
            if cfg.data.train == "synth"
            else f"read from LMDB ({splits['train'].size:,} lines rendered once)"
            if "train" in splits
            else "read from LMDB"
        )
        + f"; corpus seed {splits['train'].seed if 'train' in splits else '?'}; scene types (weight): "
        + ", ".join(f"{n} ({r.weight:g})" for n, r in cfg.render.scenes.items())
        + ".",
        *init_line(cfg.train.init_from),
        *average_line(export["source"], export.get("source_sha256", "")),
        f"- Test set: {ev['test_sets'][0]['n']} lines (`{ev['test_sets'][0]['path']}`), corpus seed "
        f"{splits['test'].seed}, 1/4 per scene; fonts never seen in training or validation: "
        f"{', '.join(heldout) or 'none'}.",
        "",
        "## Training",
        "",
        f"- Steps: {train['steps']:,} (best validation at step {train['best_step']:,}); schedule "
        f"{cfg.train.schedule} over {cfg.train.max_steps:,} steps, lr {cfg.train.lr}, AdamW, batch "
        f"{cfg.train.batch_size}; resumable (`train.resume=true`).",
        devices_text(train),
        f"- Evaluated on: {ev['machine'].get('cpu', '?')}, {ev['machine'].get('cores', '?')} CPU cores; "
        f"torch {ev['machine'].get('torch', '?')}.",
        f"- Training time: {seconds / 3600:.2f} h of active training (MLflow metric timestamps).",
    ]
    if prune:
        p = cfg.prune
        ft = p.finetune_steps * len(prune["steps"]) + p.final_finetune_steps
        delta = ", ".join(f"{k} {v:+.2f}" for k, v in sorted(prune["cer_delta_points"].items()))
        md.append(
            f"- Pruning: {prune['criterion']}, {prune['macs_removed'] * 100:.0f}% of MACs removed in "
            f"{len(prune['steps'])} rounds, {ft} fine-tuning steps; validation CER change (points): {delta}."
            + (
                ""
                if shipped_pruned
                else " Not shipped: that CER is worth more than the MACs on a model that already reads "
                "a line in about a millisecond (the `pruned` row below)."
            )
        )
    tried = ", ".join(m["name"] for m in quant["models"] if m["name"] != "fp32")
    md.append(
        f"- Quantization: `{quant['chosen']}` chosen among {tried}."
        if quant.get("chosen")
        else f"- Quantization: none of {tried} qualified ({quant.get('decision', '')}); FP32 is served."
    )
    md += [
        "",
        "## Figures on the held-out test set",
        "",
        "| model | size MB | p50 ms / line | " + " | ".join(f"CER {s}" for s in SCENES) + " | CER all |",
        "|---|---|---|" + "---|" * 5,
    ]
    for m in ev["models"]:
        row = [m["name"], f"{m['size_bytes'] / 1e6:.2f}", f"{m['latency_ms']['p50']:.2f}"]
        row += [pct(m["scenes"][s]["cer"]) if s in m["scenes"] else "–" for s in SCENES]
        row.append(pct(m["overall"]["cer"]))
        md.append("| " + " | ".join(row) + " |")
    md.append(
        f"| **target ({served})** | ≤ 15 (shipped) | ≤ 10 (p95, served) | "
        + " | ".join(f"≤ {TARGETS[s] * 100:.0f}%" for s in SCENES)
        + " | |"
    )
    met = [s for s in SCENES if s in chosen["scenes"] and chosen["scenes"][s]["cer"] <= TARGETS[s]]
    md += [
        "",
        f"Targets met by the {served} model: {', '.join(met) if met else 'none yet'} "
        f"(of {', '.join(SCENES)}). Latency: batch 1, decoded image to text, "
        f"{ev['machine'].get('threads', '?')} threads.",
        "",
    ]
    if curve:
        md += ["## Learning curve (validation CER, all scenes)", "", "| step | val CER |", "|---|---|"]
        md += [f"| {s:,} | {pct(v)} |" for s, v in curve]
        md.append("")
    md += ["## Known weaknesses", "", notes, ""]
    (dest / "README.md").write_text("\n".join(md))
    mb = sum(p.stat().st_size for p in shipped_out) / 1e6
    print(f"[ship] {' + '.join(map(str, shipped_out))} ({mb:.1f} MB), model card {dest / 'README.md'}")
    return 0


if __name__ == "__main__":
    with stage_errors():
        sys.exit(main(sys.argv[1:]))
