"""Ship a character LM beside the bundled recognizer, so that `make serve`, `crnn predict` and `crnn serve`
read with it (decoder lm):

    python scripts/ship_lm.py experiment=zh_en_v2 [+lm=runs/zh_en_v2/lm/lm.npz] [+as=zh_en] [+force=true]

The LM changes what the bundled model answers, so it passes the same gate as a new model (issue 12's
rule, scripts/ship_model.py): in one `make eval-real` run that read the bundled file twice, plain
(`bundled=models/crnn_zh_en.int8.onnx`) and with the LM (`bundled_lm=models/crnn_zh_en.int8.onnx+<lm>`), the
LM reading must make fewer errors on the real lines overall, not be worse in any category of 30 lines or
more (paired sign-flip test on the same lines) and meet every synthetic target the plain reading meets. The
LM must have been tuned with that very file (its lineage names the file's sha256) and built for its
alphabet. Where an LM is bundled already, the new one must beat that reading instead (the same run reads
the served file with the bundled LM too: `served_lm=<served file>+models/crnn_zh_en.lm.npz`).

Copies the LM to models/crnn_<as>.lm.npz (refusing if all that models/ would then serve passes +max_mb, 15 MB
by default), rewrites models/crnn_<as>.realdev.json from the LM reading (the
figures `make regress-real` checks, which then reads with the LM too) and the model card's LM section.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from ship_model import (
    ROOT,
    TARGETS,
    _json,
    bundled_file,
    pct,
    read_with_lm,
    realdev_baseline,
    replacement_problems,
)

from crnn.cli import StageError, stage_errors
from crnn.command import MODELS_BUDGET_MB, within_budget
from crnn.lineage import sha256_file
from crnn.lm import LMFormatError, load_lm
from crnn.onnx_model import OnnxBackend
from crnn.paired import LINES_FILE, pair, read_lines
from crnn.settings import compose_run_config

CARD_START, CARD_END = "<!-- lm: written by scripts/ship_lm.py -->", "<!-- /lm -->"


def reading(report: dict, served_sha: str, lm_sha: str | None, what: str) -> dict:
    """The row of one report that read the served file with the LM of `lm_sha` (None: plain)."""
    for m in report["models"]:
        if (
            m.get("sha256") == served_sha
            and m.get("lm_sha256") == lm_sha
            and (lm_sha or m.get("decoder") != "lm")
        ):
            return m
    raise StageError(
        f"the make eval-real run did not read the served file {what}: MODELS=bundled=<served file>,"
        "bundled_lm=<served file>+<this lm>[,served_lm=<served file>+<the bundled lm>]"
    )


def real_set(row: dict) -> dict:
    found = next((s for s in row["sets"] if s["kind"] == "folder"), None)
    if found is None:
        raise StageError(f"{row['name']} was not scored on a folder of real lines (make eval-real)")
    return found


def card_section(plain: dict, fused: dict, plain_real: dict, fused_real: dict, lm_file: Path, lm) -> str:
    cats = sorted(plain_real["scenes"])
    lines = [
        CARD_START,
        "## Decoding: the character LM",
        "",
        f"`{lm_file.name}` ({lm_file.stat().st_size / 1e6:.2f} MB, {len(lm.discounted):,} n-grams of up to "
        f"{lm.order} characters) is counted from {lm.meta.get('corpus_lines', 0):,} lines of the training "
        f"corpus (seed {lm.meta.get('corpus_seed')}), never from evaluation lines; the beam search (width "
        f"{lm.fusion.beam_width}) adds alpha = {lm.fusion.alpha} x log P_lm and beta = {lm.fusion.beta} per "
        f"character, chosen on {lm.meta.get('tuned_on', {}).get('lines', '?')} synthetic validation lines "
        "(`make lm`). `make serve` and `crnn predict` read with it (decoder lm); a request may still ask "
        "for `decoder=greedy`.",
        "",
        "| what | greedy | with the LM |",
        "|---|---|---|",
        f"| real lines, all {plain_real['n']} | {pct(plain_real['cer'])} | {pct(fused_real['cer'])} |",
        *[
            f"| real {c} ({plain_real['scenes'][c]['n']}) | {pct(plain_real['scenes'][c]['cer'])} | "
            f"{pct(fused_real['scenes'].get(c, {}).get('cer', float('nan')))} |"
            for c in cats
        ],
        *[
            f"| synthetic {s} | {pct(plain['scenes'][s]['cer'])} | {pct(fused['scenes'][s]['cer'])} |"
            for s in TARGETS
            if s in plain["scenes"] and s in fused["scenes"]
        ],
        f"| p50 / p95 ms per line, 1 thread | {plain['latency_ms']['p50']:.2f} / "
        f"{plain['latency_ms']['p95']:.2f} | {fused['latency_ms']['p50']:.2f} / "
        f"{fused['latency_ms']['p95']:.2f} |",
        "",
        CARD_END,
    ]
    return "\n".join(lines)


def write_card(card: Path, section: str, start: str = CARD_START, end: str = CARD_END) -> None:
    """`section` (which opens with `start` and closes with `end`) in place of the card's, else appended."""
    text = card.read_text() if card.is_file() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    card.write_text(text)


def main(argv: list[str]) -> int:
    cfg, own = compose_run_config(argv, extras=("lm", "as", "force", "out", "max_mb"))
    as_name = str(own.get("as") or cfg.name)
    force = str(own.get("force", "false")).lower() in ("true", "1", "yes")
    run = ROOT / cfg.runs_dir / cfg.name
    lm_file = Path(own.get("lm") or run / "lm" / "lm.npz")
    lm = load_lm(lm_file)
    dest = ROOT / own.get("out", "models")
    served = bundled_file(dest, as_name)
    if not served.is_file():
        raise StageError(f"no bundled model {served} to read with the LM: ship one first (make ship)")
    served_sha, lm_sha = sha256_file(served), sha256_file(lm_file)
    tuned = lm.meta.get("tuned_on", {}).get("recognizer_sha256")
    if tuned != served_sha and not force:
        raise StageError(
            f"{lm_file} was tuned with another file than {served} (make lm ARGS=lm.model={served})"
        )
    try:
        lm.check_alphabet(OnnxBackend(served, threads=1).charset.fingerprint(), str(served))
    except LMFormatError as e:
        raise StageError(str(e)) from None
    report = _json(run / "eval_real" / "report.json")
    plain = reading(report, served_sha, None, "plain")
    fused = reading(report, served_sha, lm_sha, "with this LM")
    out = dest / f"crnn_{as_name}.lm.npz"
    within_budget(dest, {lm_file: out}, float(own.get("max_mb", MODELS_BUDGET_MB)), "this LM")
    bundled_lm = sha256_file(out) if out.is_file() else None
    # what serves now is what the LM must beat: the bundled LM's reading where one is bundled
    inc = (
        plain
        if bundled_lm in (None, lm_sha)
        else reading(report, served_sha, bundled_lm, "with the bundled LM")
    )
    plain_real, fused_real, inc_real = real_set(plain), real_set(fused), real_set(inc)
    lines = read_lines(run / "eval_real" / LINES_FILE)
    paired = pair(lines[fused["name"]], lines[inc["name"]], inc_real["path"])
    problems = replacement_problems(fused, inc, fused_real, inc_real, paired=paired)
    baseline = dest / f"crnn_{as_name}.realdev.json"
    if baseline.is_file():
        committed = _json(baseline)["models"][0]
        same = committed.get("sha256") == served_sha and committed.get("lm_sha256") == inc.get("lm_sha256")
        if same and committed["overall"]["edits"] != inc_real["edits"]:
            problems.append(
                f"the served reading made {inc_real['edits']} edits here, {committed['overall']['edits']} "
                f"in {baseline.name}: the run does not read the bundled model as its committed figures say"
            )
    if problems and not force:
        raise StageError("the LM may not ship: " + "; ".join(problems) + " (+force=true ships it anyway)")
    shutil.copyfile(lm_file, out)
    new_base = realdev_baseline(report, fused, fused_real, served, served_sha)
    read_with_lm(new_base, out, lm_sha)
    baseline.write_text(json.dumps(new_base, indent=2, ensure_ascii=False) + "\n")
    write_card(dest / "README.md", card_section(plain, fused, plain_real, fused_real, out, lm))
    print(
        f"[ship-lm] {out} ({out.stat().st_size / 1e6:.2f} MB): real lines {pct(plain_real['cer'])} -> "
        f"{pct(fused_real['cer'])} ({plain_real['edits']} -> {fused_real['edits']} edits); {baseline.name} "
        "and the card's LM section rewritten"
    )
    return 0


if __name__ == "__main__":
    with stage_errors():
        sys.exit(main(sys.argv[1:]))
