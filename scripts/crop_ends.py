"""How far past its box's ends page mode reads a line (detect.boxes.crop_ends), measured on synthetic pages.

    python scripts/crop_ends.py [--detector models/det_zh_en.onnx] [--pages 100] [--ends 0,0.1,0.2,0.3]

The detector's boxes stop at the ink of a line's first and last glyph, and the recognizer drops a glyph
that touches the crop's edge. Pages are drawn from their own seed (neither training's, validation's nor
calibration's); each is read by the detector once, and its lines by the bundled recognizer (+ LM) with the
crops run on past each box's ends by each value (in box heights; the boxes reported do not change, so
detection F1 does not either). Page CER by layout; saves runs/bench/crop_ends.{json,md}.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from small_pages import all_row, layout_table, parse_args, read_sweep, save_bench  # noqa: E402  (scripts/, beside this file)

from crnn.detect.boxes import page_lines  # noqa: E402


def main() -> None:
    args = parse_args(__doc__, 100, "--ends", "0,0.1,0.2,0.3", 9700)
    ends = [float(e) for e in args.ends.split(",")]
    total, by_layout = read_sweep(args, ends, lambda page, boxes, e, _: page_lines(page.image, boxes, ends=e))
    record = {
        "detector": args.detector,
        "pages": args.pages,
        "seed": args.seed,
        "ends": ends,
        "page_cer": {str(e): total[e].as_dict()["cer"] for e in ends},
        "edits": {str(e): total[e].as_dict()["edits"] for e in ends},
        "edits_by_layout": {k: {str(e): v[e].as_dict()["edits"] for e in ends} for k, v in by_layout.items()},
    }
    md = layout_table(
        f"Crops run on past their boxes' ends, {args.pages} synthetic pages (seed {args.seed}), bundled "
        f"detector ({Path(args.detector).name}) and recognizer + LM: page CER (edits) by layout",
        "ends",
        ends,
        by_layout,
    )
    md.append(all_row(ends, total))
    save_bench("crop_ends", record, md)


if __name__ == "__main__":
    main()
