"""How far the boxes page mode reports should be narrowed to their ink (crnn.detect.boxes.fit_to_ink),
measured on synthetic pages.

    python scripts/ink_boxes.py [--detector models/det_zh_en.onnx] [--pages 100] [--shares 0,0.01,0.02,...]

The detector's boxes run from a tall glyph's top to a descender's bottom, as its training targets do; real
datasets (SROIE, ICDAR) label a line by the rows its ink covers. The same synthetic pages (their own seed,
neither training's, validation's nor calibration's) are drawn twice, labelled each way
(`detect.pages.label_rows`), and read once by the bundled detector and recognizer (+ its LM). Each row
reports the boxes as detected (share 0) or fitted to the rows whose ink reaches `share` of the fullest
row's (then, at the default share, with fits under `min_fit` of the box's height not believed): F1 at
IoU >= 0.5 against each labelling, the matched boxes' mean IoU with the ink labels and median height over
them, and page CER with both sides put in order by the realdev scorer's row sweep, the truth's
lines by their ink boxes (as on real pages) and by their font boxes. The recognizer reads the detector's
boxes in every row, so CER moves with reading order only. Saves runs/bench/ink_boxes.{json,md}.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from small_pages import parse_args, save_bench  # noqa: E402  (scripts/, beside this file)

from crnn.command import default_lm, default_model  # noqa: E402
from crnn.detect.boxes import INK_MIN_FIT, INK_ROW_SHARE, fit_to_ink, row_order, upright  # noqa: E402
from crnn.detect.data import page_synth  # noqa: E402
from crnn.detect.detector import Detector  # noqa: E402
from crnn.detect.evaluate import RecognizerReader  # noqa: E402
from crnn.detect.polygons import quad_size, rect_iou  # noqa: E402
from crnn.detect.score import Counts, match, score_page  # noqa: E402
from crnn.detect.train import page_truth  # noqa: E402
from crnn.settings import compose_run_config  # noqa: E402

MIN_FITS = (0.0, 0.2, 0.3, 0.4, 0.5)  # a fit under this part of the box's height keeps the box


def read_pages(args) -> list[dict]:
    """Each page drawn with both labellings, its boxes as detected, their crops' transforms, their texts."""
    labels = {}
    for rows in ("font", "ink"):
        cfg = compose_run_config([f"experiment={args.experiment}", f"detect.pages.label_rows={rows}"])[0]
        labels[rows] = page_synth(cfg, seed=args.seed)
    det = Detector(args.detector, threads=2)
    reader = RecognizerReader(default_model(), 2, lm=default_lm(None) or "")
    out = []
    for i in tqdm(range(args.pages), desc="pages", unit="page"):
        font, ink = labels["font"].page(i), labels["ink"].page(i)
        assert np.array_equal(font.image, ink.image), "the two labellings drew different pages"
        quads = [b.quad for b in det.detect(font.image)]
        crops = [upright(font.image, q) for q in quads]
        texts = reader.recognize([c for c, _ in crops])
        out.append(
            {
                "truth": {"font": page_truth(font), "ink": page_truth(ink)},
                "boxes": list(zip(crops, quads)),
                "texts": texts,
            }
        )
    return out


def measure(pages: list[dict], share: float, min_fit: float) -> dict:
    f1 = {"font": Counts(), "ink": Counts()}
    cer = {"font": Counts(), "ink": Counts()}
    ious, heights = [], []
    for page in pages:
        quads = [fit_to_ink(c, m, q, share, min_fit) if share else q for (c, m), q in page["boxes"]]
        for rows, truth in page["truth"].items():
            f1[rows].add(score_page(truth, quads, None, None))
            cer[rows].add(score_page(truth, quads, page["texts"], row_order))
        ink = page["truth"]["ink"].quads
        for g, p in match(ink, quads):
            ious.append(rect_iou(ink[g], quads[p]))
            heights.append(quad_size(quads[p])[1] / max(1.0, quad_size(ink[g])[1]))
    return {
        "share": share,
        "min_fit": min_fit,
        "f1_ink": round(f1["ink"].as_dict()["f1"], 4),
        "f1_font": round(f1["font"].as_dict()["f1"], 4),
        "iou_ink": round(float(np.mean(ious)), 4),
        "height_ink": round(float(np.median(heights)), 3),
        "cer_ink_order": round(cer["ink"].as_dict()["cer"], 4),
        "cer_font_order": round(cer["font"].as_dict()["cer"], 4),
    }


def main() -> None:
    args = parse_args(__doc__, 100, "--shares", "0,0.01,0.02,0.05,0.1,0.2", 9500)
    pages = read_pages(args)
    rows = [measure(pages, float(s), INK_MIN_FIT) for s in args.shares.split(",")]
    rows += [measure(pages, INK_ROW_SHARE, f) for f in MIN_FITS if f != INK_MIN_FIT]
    record = {"detector": args.detector, "pages": args.pages, "seed": args.seed, "rows": rows}
    md = [
        f"Boxes of {Path(args.detector).name} fitted to their ink on {args.pages} synthetic pages "
        "(share 0: as detected; then min_fit swept at the default share). F1 at IoU >= 0.5 against ink / "
        "font labels; matched boxes' mean IoU and median height against the ink labels; page CER (bundled "
        "recognizer + LM) with the truth ordered by its ink / font boxes",
        "",
        "| share | min_fit | F1 ink | F1 font | IoU ink | height / ink | CER, truth by ink | CER, by font |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [f"{r[k]:.3f}" for k in ("f1_ink", "f1_font", "iou_ink")]
        cells += [f"{r['height_ink']:.2f}", f"{r['cer_ink_order']:.4f}", f"{r['cer_font_order']:.4f}"]
        md.append(f"| {r['share'] or 'as detected'} | {r['min_fit']:g} | " + " | ".join(cells) + " |")
    save_bench("ink_boxes", record, md)


if __name__ == "__main__":
    main()
