"""Lone glyphs read beside the detector's lines (crnn.detect.glyphs), measured on synthetic pages.

    python scripts/lone_glyphs.py [--detector models/det_zh_en.onnx] [--pages 100] [--seed 9700]

Pages are drawn from their own seed (neither training's, validation's nor calibration's). Two things:
1. every labelled line of a page (distractors' ignore boxes included) given as a box: whatever
   crnn.detect.glyphs then adds is not a line of the page, so every glyph counted is a fault;
2. the bundled detector and recognizer (+ LM) reading every page with and without the glyphs: F1 at
   IoU >= 0.5, the recall of boxes of one or two characters, and page CER.

Saves runs/bench/lone_glyphs.{json,md}.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from small_pages import parse_args, save_bench  # noqa: E402  (scripts/, beside this file)

from crnn.command import default_lm, default_model  # noqa: E402
from crnn.detect.boxes import fit_to_ink, page_lines, row_order, upright  # noqa: E402
from crnn.detect.data import page_synth  # noqa: E402
from crnn.detect.detector import Detector  # noqa: E402
from crnn.detect.evaluate import RecognizerReader  # noqa: E402
from crnn.detect.glyphs import lone_glyphs  # noqa: E402
from crnn.detect.score import Counts, score_page  # noqa: E402
from crnn.detect.train import page_truth  # noqa: E402
from crnn.settings import compose_run_config  # noqa: E402


def main() -> None:
    args = parse_args(__doc__, 100, "--unused", "", 9700)
    synth = page_synth(compose_run_config([f"experiment={args.experiment}"])[0], seed=args.seed)
    det = Detector(args.detector, threads=2)
    reader = RecognizerReader(default_model(), 2, lm=default_lm(None) or "")
    faults, lines, read = 0, 0, {False: Counts(), True: Counts()}
    by_layout: dict[str, int] = {}
    for i in tqdm(range(args.pages), desc="pages", unit="page"):
        page = synth.page(i)
        quads = [ln.quad for ln in page.lines]
        lines += len(quads)
        got = lone_glyphs(page.image, quads, [fit_to_ink(*upright(page.image, q), q) for q in quads])
        faults += len(got)
        if got:
            by_layout[page.layout] = by_layout.get(page.layout, 0) + len(got)
        boxes, truth = det.detect(page.image), page_truth(page)
        for glyphs in (False, True):
            found = page_lines(page.image, boxes, glyphs=glyphs)
            texts = reader.recognize([ln.crop for ln in found])
            read[glyphs].add(score_page(truth, [ln.quad for ln in found], texts, row_order))
    rows = {("with" if k else "without"): v.as_dict() for k, v in read.items()}
    record = {
        "detector": args.detector,
        "pages": args.pages,
        "seed": args.seed,
        "lines": lines,
        "glyphs_with_every_line_boxed": faults,
        "by_layout": by_layout,
        "read": rows,
    }
    md = [
        f"Lone glyphs (crnn.detect.glyphs) on {args.pages} synthetic pages (seed {args.seed}): with every "
        f"one of their {lines} labelled lines boxed, {faults} glyphs added (each a fault) {by_layout or ''}",
        "",
        f"The bundled detector ({Path(args.detector).name}) and recognizer + LM on the same pages:",
        "",
        "| glyphs | F1 | boxes of 1-2 characters found | page CER | edits / chars |",
        "|---|---|---|---|---|",
    ]
    for k, d in rows.items():
        md.append(
            f"| {k} | {d['f1']:.4f} | {d['short_matched']} of {d['short_truth']} | {d['cer']:.4f} | "
            f"{d['edits']} / {d['chars']} |"
        )
    save_bench("lone_glyphs", record, md)


if __name__ == "__main__":
    main()
