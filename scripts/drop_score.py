"""Detected lines dropped as not text by their reading's confidence, measured on synthetic pages.

    python scripts/drop_score.py [--detector models/det_zh_en.onnx] [--pages 200] [--below 0,0.3,0.5]
        [--short 0]

A detector fires on some things that are not text (a logo, a texture, a photo's edge); the recognizer reads
them as a glyph or two with low confidence, and each costs the page an insertion. PaddleOCR's pipeline drops
a line read under `drop_score` (0.5). Pages are drawn from their own seed (neither training's, validation's
nor calibration's); each is read once by the bundled detector and recognizer (+ LM), and its lines are scored
with those read under each threshold left out (with `--short N`, only readings of at most N characters).
Page CER, detection P / R / F1, and the lines dropped that matched a labelled line. Saves
runs/bench/drop_score[_shortN].{json,md}.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from small_pages import layout_table, page_readers, parse_args, save_bench, tally  # noqa: E402  (scripts/, beside this file)

from crnn.detect.boxes import row_order  # noqa: E402
from crnn.detect.score import Counts, match, score_page  # noqa: E402
from crnn.detect.train import page_truth  # noqa: E402


def droppable(text: str, short: int) -> bool:
    """A reading the threshold applies to: any (short 0), or one of at most `short` characters."""
    return short <= 0 or len(text.replace(" ", "")) <= short


def main() -> None:
    args = parse_args(__doc__, 200, "--below", "0,0.2,0.3,0.4,0.5,0.6", 9800, {"--short": 0})
    below = [float(b) for b in args.below.split(",")]
    synth, det, reader = page_readers(args)
    total = {b: Counts() for b in below}
    lost = {b: 0 for b in below}  # dropped lines that matched a labelled one
    by_layout: dict[str, dict[float, Counts]] = {}
    for i in tqdm(range(args.pages), desc="pages", unit="page"):
        page = synth.page(i)
        lines, truth = det.lines(page.image), page_truth(page)
        read = reader.engine.recognize([ln.crop for ln in lines], [[0, 0, 1, 1]] * len(lines))
        matched = {p for _, p in match(truth.quads, [ln.quad for ln in lines])}
        for b in below:
            keep = [j for j, r in enumerate(read) if r.confidence >= b or not droppable(r.text, args.short)]
            lost[b] += len(matched - set(keep))
            c = score_page(truth, [lines[j].quad for j in keep], [read[j].text for j in keep], row_order)
            tally(total, by_layout, page.layout, b, c)
    figs = {b: total[b].as_dict() for b in below}
    record = {
        "detector": args.detector,
        "pages": args.pages,
        "seed": args.seed,
        "below": below,
        "short": args.short,
        "page_cer": {str(b): figs[b]["cer"] for b in below},
        "edits": {str(b): figs[b]["edits"] for b in below},
        "f1": {str(b): figs[b]["f1"] for b in below},
        "matched_dropped": {str(b): lost[b] for b in below},
        "edits_by_layout": {
            k: {str(b): v[b].as_dict()["edits"] for b in below} for k, v in by_layout.items()
        },
    }
    md = layout_table(
        "Detected lines dropped when read under a confidence"
        + (f" (readings of at most {args.short} characters)" if args.short > 0 else "")
        + f", {args.pages} synthetic pages (seed {args.seed}), bundled detector"
        f" ({Path(args.detector).name}) and recognizer + LM: page edits by layout",
        "under",
        below,
        by_layout,
    )
    for label, key, fmt in (
        ("**page CER**", "cer", ".4f"),
        ("detection P", "precision", ".3f"),
        ("detection R", "recall", ".3f"),
        ("detection F1", "f1", ".4f"),
    ):
        md.append(f"| {label} | " + " | ".join(format(figs[b][key], fmt) for b in below) + " |")
    md.append("| labelled lines dropped | " + " | ".join(str(lost[b]) for b in below) + " |")
    save_bench("drop_score" + (f"_short{args.short}" if args.short > 0 else ""), record, md)


if __name__ == "__main__":
    main()
