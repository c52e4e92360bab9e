"""Ship the text-line detector into models/ with a model card written from its stage reports.

    python scripts/ship_detector.py experiment=det_zh_en      (make ship-detector)

Copies runs/<name>/detect/export/detector.onnx to models/det_zh_en.onnx, the name page mode loads, whatever
experiment trained it (+as=<other> for another name), and the INT8 file when crnn.detect.quantize kept one;
the real-page report to models/det_zh_en.pages.json, and writes the card models/det_zh_en.md: architecture,
size, MACs, training (pages seen, steps, validation F1 by step), the
quantization decision, and the real-page table per source type beside the projection splitter and
PP-OCRv4. Refuses when the ONNX files models/ serves would pass +max_mb (15 by default), when the
detector does not beat the projection splitter on the real pages (detection F1 at every level and page
CER over all complete pages), or when it does not beat the detector models/ already holds, measured in
the same `make detect-eval` run (page CER lower, no level's F1 more than 0.01 lower): page mode must not
get worse by shipping it.

    python scripts/ship_detector.py experiment=det_zh_en name=<run> +record=true

writes the served detector's figures again (models/det_zh_en.pages.json and the card's real-page section)
from `make detect-eval ARGS="name=<run> ..."`, when that run read the files models/ serves (detector,
recognizer and LM, by sha256): the figures move with the recognizer and page mode's code, not only the
detector. Nothing is shipped, so nothing is gated.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from crnn.cli import StageError, stage_errors
from crnn.command import BUNDLED, BUNDLED_DETECTOR, BUNDLED_LM, MODELS_BUDGET_MB, within_budget
from crnn.lineage import sha256_file
from crnn.settings import compose_run_config

ROOT = Path(__file__).resolve().parents[1]
SERVED_AS = Path(BUNDLED_DETECTOR[-1]).stem  # the name page mode loads (det_zh_en), whatever the experiment


def _json(path: Path) -> dict | list:
    if not path.is_file():
        raise StageError(f"{path} does not exist: run the stage that writes it first")
    return json.loads(path.read_text())


def by_reader(results: list[dict]) -> dict[str, dict]:
    out = {}
    for r in results:
        key = "detector" if r["reader"].startswith("detector") else "projection"
        key = "ppocr" if r["reader"].startswith("PP-OCR") else key
        out[r.get("key", key)] = r  # reports before the truth reader carry no key
    return out


def check_better(readers: dict[str, dict]) -> list[str]:
    """Where the detector does not beat the projection splitter."""
    det, proj = readers.get("detector"), readers.get("projection")
    if det is None or proj is None:
        return ["the real-page report lacks the detector or the projection splitter"]
    worse = [
        f"{lvl} F1 {v['f1']:.3f} <= projection's {proj['levels'][lvl]['f1']:.3f}"
        for lvl, v in det["levels"].items()
        if v["f1"] <= proj["levels"].get(lvl, {}).get("f1", 0.0)
    ]
    if det["complete_pages"]["cer"] >= proj["complete_pages"]["cer"]:
        worse.append(
            f"page CER {det['complete_pages']['cer']:.3f} >= projection's {proj['complete_pages']['cer']:.3f}"
        )
    return worse


F1_BUDGET = 0.01  # detection F1 a replacement may lose on a level while it lowers the page CER


def check_replaces(readers: dict[str, dict], served: str) -> list[str]:
    """Where the detector does not beat the one models/ serves, both measured in the same run behind the
    same recognizer: its page CER over all complete pages must be lower, and no level's F1 more than
    F1_BUDGET lower. Nothing to beat when models/ has none, or it is this very file (`served`, sha256)."""
    det, old = readers.get("detector"), readers.get("bundled")
    if old is None:
        return ["the real-page report lacks the bundled detector: run make detect-eval with it"]
    if served in old.get("files", {}).values():
        return []
    worse = [
        f"{lvl} F1 {v['f1']:.3f} < the bundled detector's {old['levels'][lvl]['f1']:.3f} - {F1_BUDGET}"
        for lvl, v in det["levels"].items()
        if v["f1"] < old["levels"].get(lvl, {}).get("f1", 0.0) - F1_BUDGET
    ]
    new_cer, old_cer = det["complete_pages"]["cer"], old["complete_pages"]["cer"]
    if new_cer >= old_cer:
        worse.append(f"page CER {new_cer:.3f} >= the bundled detector's {old_cer:.3f}")
    return worse


def _f1(levels: dict, level: str) -> str:
    v = levels.get(level)
    return f"{v['f1']:.3f} ({v['precision']:.2f} / {v['recall']:.2f})" if v else "-"


def _cer(cats: dict, cat: str) -> str:
    return f"{cats[cat]['cer']:.3f}" if cat in cats else "-"


def page_table(readers: dict[str, dict]) -> list[str]:
    """Every source type's figures per reader: the ICDAR scene words too, where page mode is weakest."""
    rows = [
        "| reader | line-level F1 (P / R) | receipt segments F1 (P / R) | scene words F1 (P / R) "
        "| page CER receipts | page CER zh ads | page CER scenes | page CER all complete "
        "| p50 / p95 ms per page |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in ("detector", "bundled", "truth", "projection", "ppocr"):
        r = readers.get(key)
        if r is None:
            continue
        lv, cats, ms = r["levels"], r["categories"], r["latency_ms"]
        p95 = f" / {ms['p95']:.0f}" if "p95" in ms else ""  # reports before p95 carry none
        rows.append(
            f"| {r['reader']} | {_f1(lv, 'line')} | {_f1(lv, 'segment')} | {_f1(lv, 'word')} | "
            f"{_cer(cats, 'receipt_en')} | {_cer(cats, 'printed_doc_zh')} | {_cer(cats, 'scene_en')} | "
            f"{r['complete_pages']['cer']:.3f} | {ms['p50']:.0f}{p95} |"
        )
    return rows


REAL_PAGES = "## Real pages"


def first_in(folder: Path, names) -> Path | None:
    """The first of `names` that `folder` holds (the INT8 file first, as page mode serves it), or None."""
    return next((folder / n for n in names if (folder / n).is_file()), None)


def served_set(out: Path, name: str) -> list[Path]:
    """The files page mode reads from `out`: the detector `name` (INT8 where shipped), the recognizer
    (crnn.command.BUNDLED, INT8 first) and its LM when one is bundled."""
    detector = first_in(out, (f"{name}.int8.onnx", f"{name}.onnx"))
    recognizer = first_in(out, BUNDLED)
    if detector is None or recognizer is None:
        raise StageError(f"{out} serves no detector {name} or no bundled recognizer: nothing to record")
    lm = out / BUNDLED_LM
    return [detector, recognizer, *([lm] if lm.is_file() else [])]


def record(out: Path, name: str, results: list[dict], report: Path, pages_dir: str) -> None:
    """The served detector's real-page figures written again (models/<name>.pages.json and the card's real-
    page section) from a `make detect-eval` run that read the very files models/ serves, without the gate:
    nothing served changes, so nothing is shipped. Page mode's figures move with the recognizer, the LM
    and the code between the files (box fitting, lone glyphs), and the card kept the ones it shipped with."""
    readers = by_reader(results)
    bundled = readers.get("bundled")
    if bundled is None:
        raise StageError(
            f"{report} has no bundled-detector reading: make detect-eval with readers [bundled,...]"
        )
    served = served_set(out, name)
    if set(bundled.get("files", {}).values()) != {sha256_file(p) for p in served}:
        raise StageError(
            f"{report} did not read the files {out} serves ({', '.join(p.name for p in served)}) and nothing "
            "else: make detect-eval again"
        )
    card_path = out / f"{name}.md"
    report = report.relative_to(ROOT) if report.is_relative_to(ROOT) else report
    text = card_path.read_text()
    head = text[: text.index(REAL_PAGES)] if REAL_PAGES in text else text.rstrip() + "\n\n"
    section = [
        f"{REAL_PAGES} ({pages_dir}; evaluation only)",
        "",
        *page_table(readers),
        "",
        "Detection at IoU >= 0.5 on axis-aligned rectangles; page CER end to end (complete pages) behind "
        f"the served recognizer and LM ({', '.join(p.name for p in served[1:])}); latency per page on "
        f"this machine's 2 cores, decode excluded. Recorded from `{report}`, which read the served files; "
        "how these figures moved, session by session, is in docs/page_mode.md.",
        "",
    ]
    card_path.write_text(head + "\n".join(section))
    (out / f"{name}.pages.json").write_text(json.dumps(results, indent=2))
    print(f"recorded {out / (name + '.pages.json')} and the real-page section of {card_path}")


def boxes_row(served: Path) -> str:
    """The box settings the served file carries, and where they came from (crnn.detect.calibrate)."""
    from crnn.detect.detector import read_detector_metadata, saved_boxes

    meta = read_detector_metadata(served)
    b, cal = saved_boxes(served), json.loads(meta["lineage"]).get("calibration")  # as served: a file from
    text = (  # before a setting reads with its default
        f"unclip {b.unclip_scale:g}, box threshold {b.box_thresh:g}, binarization {b.bin_thresh:g}, "
        f"long side at most {b.max_side} px"
        + (f" and smaller pages scaled up to {min(b.upscale_to, b.max_side)} px, " if b.upscale_to else ", ")
        + ("overlapping pieces of a row joined" if b.join_overlaps else "pieces not joined")
    )
    if cal:
        before, chosen = cal["before"], cal["chosen"]
        text += (
            f": chosen by `make detect-calibrate` on {cal['pages']} synthetic pages (F1 {before['f1']:.3f} "
            f"-> {chosen['f1']:.3f}, box height / truth {before['height_ratio']:.2f} -> "
            f"{chosen['height_ratio']:.2f})"
        )
    else:
        text += ": the config's, not calibrated"
    if b.zoom_gain > 0:  # not calibrated: scripts/scan_pages.py
        text += (
            f"; a page scaled down is read again over its text when that gives it {b.zoom_gain:g} times "
            "the pixels (`scripts/scan_pages.py`)"
        )
    if b.fit_ink:  # not calibrated: scripts/ink_boxes.py
        text += (
            "; boxes reported narrowed to the rows and end columns their ink covers (`scripts/ink_boxes.py`)"
        )
    if b.split_rows:  # not calibrated: scripts/split_rows.py
        text += "; a box over several printed rows cut into its rows (`scripts/split_rows.py`)"
    if b.lone_glyphs:  # not calibrated: scripts/lone_glyphs.py
        text += "; lone glyphs in table columns that no box covers read too (`scripts/lone_glyphs.py`)"
    return f"| box settings | {text} |"


def branch_text(init_from: dict | None) -> str:
    """A run started from another's weights (detect.train.init_from) has trained on that run's pages too."""
    if not init_from:
        return ""
    return f" started from the weights of step {init_from['step']:,} of `{init_from['path']}`"


def card(
    name: str,
    experiment: str,
    export: dict,
    quant: dict | None,
    train: dict,
    readers: dict,
    pages_dir: str,
    served: Path,
) -> str:
    m = export["model"]
    lines = [
        f"# {name}: the text-line detector behind page mode",
        "",
        f"Trained as `experiment={experiment}` (configs/experiment/{experiment}.yaml; its runs in "
        f"runs/{experiment}/detect/).",
        "",
        "A DB (differentiable binarization) network trained on synthetic pages only (crnn/detect/pages.py: "
        "documents, receipts, ads, scenes, screens, tables drawn with the zh_en corpus and the real-image "
        "recipes' fonts and photos). It finds text lines as rotated boxes; page mode warps each upright and "
        "the recognizer reads them all in one batch, in reading order.",
        "",
        "| what | value |",
        "|---|---|",
        f"| architecture | {m['name']}: {m['block']} backbone, widths {m['channels']}, depths {m['depths']}, "
        f"FPN neck {m['neck']} |",
        f"| parameters | {export['params']:,} |",
        f"| MACs at 640 x 640 | {export['macs_640'] / 1e9:.2f} G |",
        f"| FP32 file | {export['size_bytes'] / 1e6:.2f} MB |",
        f"| training | the weights of step {export['step']} (best synthetic validation F1), of a run now at "
        f"step {train['steps']}{branch_text(export.get('init_from'))} |",
        f"| validation F1 (synthetic pages) | {train['best_f1']:.3f} |",
        f"| ONNX parity | max prob diff {export['parity']['max_abs_diff']:.1e}, "
        f"{export['parity']['same_boxes']}/{export['parity']['boxes']} same boxes |",
        boxes_row(served),
    ]
    if quant is not None:
        lines.append(
            f"| INT8 | {quant['decision']} (F1 {quant['int8']['f1']:.3f} vs {quant['fp32']['f1']:.3f}, "
            f"{quant['int8']['ms_p50']:.0f} vs {quant['fp32']['ms_p50']:.0f} ms per page) |"
        )
    curve = ", ".join(f"{h['step']}: {h['f1']:.3f}" for h in train.get("history", []))
    lines += ["", f"Validation F1 by step: {curve}.", "", f"{REAL_PAGES} ({pages_dir}; evaluation only)", ""]
    lines += page_table(readers)
    lines += [
        "",
        "Detection at IoU >= 0.5 on axis-aligned rectangles; page CER end to end with the bundled "
        "recognizer; latency per page on this machine's 2 cores, decode excluded.",
        "",
    ]
    return "\n".join(lines)


def shipped_files(run: Path, out: Path, name: str, quant: dict | None) -> tuple[dict[Path, Path], Path]:
    """What goes where (source -> models/ file) and the file page mode will serve. Whatever experiment trained
    it, the detector is shipped under the one name page mode loads (`SERVED_AS`): a wider or decayed run
    replaces the bundled detector, it does not sit beside it unused."""
    files = {run / "export" / "detector.onnx": out / f"{name}.onnx"}
    served = run / "export" / "detector.onnx"
    if quant is not None and quant["kept"]:
        served = run / "quantize" / "detector.int8.onnx"
        files[served] = out / f"{name}.int8.onnx"
    return files, served


def main(argv: list[str]) -> int:
    cfg, own = compose_run_config(argv, extras=("max_mb", "out", "force", "as", "record"))
    run = ROOT / cfg.runs_dir / cfg.name / "detect"
    if str(own.get("record", "")).lower() in ("true", "1", "yes"):  # the figures only: nothing is shipped
        report = run / cfg.detect.eval.out_dir / "pages.json"
        out = Path(own.get("out", ROOT / "models"))
        record(out, own.get("as", SERVED_AS), _json(report), report, cfg.detect.eval.pages)
        return 0
    export = _json(run / "export" / "export_report.json")
    quant = (
        _json(run / "quantize" / "quantize_report.json")
        if (run / "quantize" / "quantize_report.json").is_file()
        else None
    )
    train = _json(run / "train" / "summary.json")
    results = _json(run / cfg.detect.eval.out_dir / "pages.json")
    readers = by_reader(results)
    worse = check_better(readers)
    if worse and not own.get("force"):
        raise StageError(
            "not shipped: the detector does not beat the projection splitter: " + "; ".join(worse)
        )
    out = Path(own.get("out", ROOT / "models"))
    name = own.get("as", SERVED_AS)
    files, served = shipped_files(run, out, name, quant)
    if first_in(out, BUNDLED_DETECTOR) is not None:
        worse = check_replaces(readers, sha256_file(served))
        if worse and not own.get("force"):
            raise StageError("not shipped: the detector does not beat the bundled one: " + "; ".join(worse))
    out.mkdir(parents=True, exist_ok=True)
    if served == run / "export" / "detector.onnx":
        (out / f"{name}.int8.onnx").unlink(missing_ok=True)
    scored = readers["detector"].get("files", {})
    if sha256_file(served) not in scored.values():  # page mode serves INT8 when kept: that file was scored
        raise StageError(
            f"{run / cfg.detect.eval.out_dir / 'pages.json'} did not score {served} as it is now: "
            "run make detect-eval again"
        )
    within_budget(out, files, float(own.get("max_mb", MODELS_BUDGET_MB)), "this detector")
    for src, dest in files.items():
        shutil.copyfile(src, dest)
    (out / f"{name}.pages.json").write_text(json.dumps(results, indent=2))
    (out / f"{name}.md").write_text(
        card(name, cfg.name, export, quant, train, readers, cfg.detect.eval.pages, served)
    )
    print(f"shipped {', '.join(str(d) for d in files.values())} and {out / (name + '.md')}")
    return 0


if __name__ == "__main__":
    with stage_errors():
        sys.exit(main(sys.argv[1:]))
