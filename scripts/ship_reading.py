"""Ship a change in how the bundled model is read, its files unchanged (the predictor's second look, the
plate grammar of crnn.formats):

    python scripts/ship_reading.py experiment=zh_en_v2 +before=runs/<a>/eval_real +after=runs/<b>/eval_real \
        [+as=zh_en] [+force=true]

`before` and `after` are two `make eval-real` runs over the same lines that both read the served file (with
the bundled LM where one is bundled): `before` the way it serves now, which must make exactly the edits its
committed figures (models/crnn_<as>.realdev.json) say, `after` the way this code serves (eval.second_look
and eval.formats at their defaults), `before` some other way. The change answers differently, so it passes
the same gate as a new model (issue 12's rule, scripts/ship_model.py): fewer errors on the real lines
overall, no category of 30 lines or more worse by the paired sign-flip test on the same lines, and every
synthetic target the old reading meets kept; a change that reads every line to the same text both ways and
differs only in its formats' fingerprints (recorded anew) passes without it. Then
models/crnn_<as>.realdev.json is rewritten from `after` (recording how it read), the figures `make
regress-real` checks from then on, and (unless only the record changed) the model card's "Reading" section.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from ship_lm import real_set, write_card
from ship_model import ROOT, TARGETS, _json, bundled_file, pct, realdev_baseline, replacement_problems

from crnn.cli import StageError, stage_errors
from crnn.formats import SERVED_FORMATS
from crnn.lineage import sha256_file
from crnn.paired import LINES_FILE, pair, read_lines
from crnn.predictor import Predictor, SecondLook
from crnn.regress import how_read
from crnn.settings import compose_run_config

CARD_START, CARD_END = "<!-- reading: written by scripts/ship_reading.py -->", "<!-- /reading -->"


def ms(row: dict) -> str:
    return f"{row['latency_ms']['p50']:.2f} / {row['latency_ms']['p95']:.2f}"


def card_section(rows: dict, real: dict, how: dict) -> str:
    """The model card's account of how the bundled model is read, before and after, on the same lines."""
    b, a = rows["before"], rows["after"]
    rb, ra = real["before"], real["after"]
    cats = sorted(rb["scenes"])
    look = how.get("second_look")
    said = (
        f"lines read with a confidence under {look['below']:g} are read again blurred by "
        f"{look['sigma']:g} px and the surer reading kept (`crnn.predictor.SecondLook`; "
        "`--no-second-look` turns it off)"
        if look
        else "each line is read once"
    )
    if "plate_zh" in how.get("formats", []):
        said += (
            "; a reading that looks like a Chinese licence plate is decoded again as the most probable plate "
            "(`crnn.formats`; `--no-plates` turns it off)"
        )
    return "\n".join(
        [
            CARD_START,
            "## Reading",
            "",
            f"As served, {said}. Shipped by `make ship-reading`, the same lines read both ways:",
            "",
            "| what | before | as served |",
            "|---|---|---|",
            f"| real lines, all {rb['n']} | {pct(rb['cer'])} | {pct(ra['cer'])} |",
            *[
                f"| real {c} ({rb['scenes'][c]['n']}) | {pct(rb['scenes'][c]['cer'])} | "
                f"{pct(ra['scenes'].get(c, {}).get('cer', float('nan')))} |"
                for c in cats
            ],
            *[
                f"| synthetic {t} | {pct(b['scenes'][t]['cer'])} | {pct(a['scenes'][t]['cer'])} |"
                for t in TARGETS
                if t in b.get("scenes", {}) and t in a.get("scenes", {})
            ],
            f"| p50 / p95 ms per line, 1 thread | {ms(b)} | {ms(a)} |",
            "",
            CARD_END,
        ]
    )


def served_formats(served: Path) -> dict:
    """The formats this code holds the served file's readings to (those its alphabet can write), and their
    fingerprints."""
    from crnn.onnx_model import OnnxBackend

    p = Predictor(OnnxBackend(served, threads=1), formats=SERVED_FORMATS)
    return {"formats": p.applied_formats, "format_ids": p.format_ids}


def served_reading(report: dict, served_sha: str, lm_sha: str | None, where: Path) -> dict:
    """The row of a report that read the served file with the bundled LM (or plain, without one)."""
    for m in report["models"]:
        if m.get("sha256") == served_sha and m.get("lm_sha256") == lm_sha:
            return m
    with_lm = f" with the bundled LM {lm_sha[:12]}" if lm_sha else ""
    raise StageError(f"{where} did not read the served file{with_lm}: MODELS=bundled=<served file>[+<lm>]")


def same_readings(before: dict, after: dict) -> bool:
    """Whether two runs read the same lines, every one to the same text as answered (`read`, not the
    normalised `pred`, which drops a plate's dot and case): a change that only renames how the reading is
    recorded (a format's fingerprint) passes without the gate, which asks for fewer errors. Records from
    before `read` was kept cannot tell, and go through the gate."""
    return before.keys() == after.keys() and all(
        "read" in before[k] and before[k]["read"] == after[k].get("read") for k in before
    )


def only_fingerprints_differ(before: dict, after: dict) -> bool:
    """Whether two rows read alike but for the formats' fingerprints (crnn.regress.how_read)."""
    b, a = how_read(before), how_read(after)
    return b["format_ids"] != a["format_ids"] and {**b, "format_ids": None} == {**a, "format_ids": None}


def main(argv: list[str]) -> int:
    _, own = compose_run_config(argv, extras=("before", "after", "as", "force", "out"))
    if not own.get("before") or not own.get("after"):
        raise StageError("+before=<eval_real folder> and +after=<eval_real folder> are both needed")
    as_name = str(own.get("as") or "zh_en")
    force = str(own.get("force", "false")).lower() in ("true", "1", "yes")
    dest = Path(own.get("out", ROOT / "models"))
    served = bundled_file(dest, as_name)
    if not served.is_file():
        raise StageError(f"no bundled model {served}: ship one first (make ship)")
    lm_file = dest / f"crnn_{as_name}.lm.npz"
    served_sha, lm_sha = sha256_file(served), (sha256_file(lm_file) if lm_file.is_file() else None)
    folders = {k: Path(own[k]) for k in ("before", "after")}
    reports = {k: _json(f / "report.json") for k, f in folders.items()}
    rows = {k: served_reading(reports[k], served_sha, lm_sha, folders[k]) for k in folders}
    real = {k: real_set(rows[k]) for k in folders}
    # how this code reads the served file, which `after` must and `before` must not
    serves = how_read({"second_look": asdict(SecondLook()), **served_formats(served)})
    got = {k: how_read(rows[k]) for k in folders}
    if got["after"] != serves or got["before"] == serves:
        raise StageError(
            f"'after' must read as this code serves ({serves}) and 'before' otherwise; they read with "
            f"{got['after']} and {got['before']}"
        )
    problems = []
    baseline = dest / f"crnn_{as_name}.realdev.json"
    if baseline.is_file():
        committed = _json(baseline)["models"][0]
        if (committed.get("sha256"), committed.get("lm_sha256")) != (served_sha, lm_sha):
            problems.append(f"{baseline.name} describes other files than the served ones: ship them first")
        elif committed["overall"]["edits"] != real["before"]["edits"]:
            problems.append(
                f"the 'before' run made {real['before']['edits']} edits, {committed['overall']['edits']} in "
                f"{baseline.name}: it does not read the bundled model the way it serves now"
            )
    lines = {k: read_lines(folders[k] / LINES_FILE)[rows[k]["name"]] for k in folders}
    record_only = only_fingerprints_differ(rows["before"], rows["after"]) and same_readings(
        lines["before"], lines["after"]
    )
    if record_only:
        # the change is in how the reading is recorded (a format's fingerprint), not in what it reads
        print("[ship-reading] every line reads the same both ways: only the record changes")
    else:
        paired = pair(lines["after"], lines["before"], real["before"]["path"])
        problems += replacement_problems(
            rows["after"], rows["before"], real["after"], real["before"], paired=paired
        )
    if problems and not force:
        raise StageError(
            "the reading may not ship: " + "; ".join(problems) + " (+force=true ships it anyway)"
        )
    new_base = realdev_baseline(reports["after"], rows["after"], real["after"], served, served_sha)
    how = {k: rows["after"][k] for k in ("lm", "lm_sha256", "second_look", "formats") if k in rows["after"]}
    new_base["models"][0].update(how)
    baseline.write_text(json.dumps(new_base, indent=2, ensure_ascii=False) + "\n")
    if not record_only:  # the card keeps its account of the last change in what is read
        write_card(dest / "README.md", card_section(rows, real, how), CARD_START, CARD_END)
    print(
        f"[ship-reading] real lines {pct(real['before']['cer'])} -> {pct(real['after']['cer'])} "
        f"({real['before']['edits']} -> {real['after']['edits']} edits); {baseline.name} rewritten"
    )
    return 0


if __name__ == "__main__":
    with stage_errors():
        sys.exit(main(sys.argv[1:]))
