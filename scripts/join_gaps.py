"""Boxes of one row joined across a gap of paper (join_overlapping's gap), measured on synthetic pages.

    python scripts/join_gaps.py [--detector models/det_zh_en.onnx] [--pages 200] [--gaps 0,0.2,0.35,0.5]

The detector's kernel can break inside a line at a word space (monospace receipt print, a loosely set
heading), and the two pieces, each boxed apart, cost the page a line break and often a glyph the cut ran
through. Pages are drawn from their own seed (neither training's, validation's nor calibration's); each is
read by the detector once, then its boxes are joined along their row across gaps under each value (in the
smaller box's heights; 0: only overlapping boxes, as the detector joins them) and read by the bundled
recognizer (+ LM) as page mode reads them. Detection F1 at IoU >= 0.5 and page CER by layout; saves
runs/bench/join_gaps.{json,md}.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from small_pages import all_row, layout_table, parse_args, read_sweep, save_bench  # noqa: E402  (scripts/, beside this file)

from crnn.detect.boxes import join_overlapping, join_slack, page_lines  # noqa: E402


def main() -> None:
    args = parse_args(__doc__, 200, "--gaps", "0,0.2,0.35,0.5,0.7", 9900)
    gaps = [float(g) for g in args.gaps.split(",")]

    def joined(page, boxes, g: float, b) -> list:
        boxes = join_overlapping(boxes, join_slack(b), g) if g > 0 else boxes
        return page_lines(page.image, boxes, b.fit_ink, b.split_rows, b.lone_glyphs, b.crop_ends)

    total, by_layout = read_sweep(args, gaps, joined)
    record = {
        "detector": args.detector,
        "pages": args.pages,
        "seed": args.seed,
        "gaps": gaps,
        "all": {str(g): total[g].as_dict() for g in gaps},
        "by_layout": {k: {str(g): v[g].as_dict() for g in gaps} for k, v in by_layout.items()},
    }
    md = layout_table(
        f"Boxes joined along their row across gaps under each value (heights), {args.pages} synthetic "
        f"pages (seed {args.seed}), bundled detector ({Path(args.detector).name}) and recognizer + LM: "
        "page CER (edits) by layout",
        "gap",
        gaps,
        by_layout,
    )
    md.append(all_row(gaps, total))
    md.append(
        "| F1 (P / R) | "
        + " | ".join(
            f"{d['f1']:.4f} ({d['precision']:.3f} / {d['recall']:.3f})"
            for d in (total[g].as_dict() for g in gaps)
        )
        + " |"
    )
    save_bench("join_gaps", record, md)


if __name__ == "__main__":
    main()
