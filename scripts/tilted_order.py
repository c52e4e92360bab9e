"""Reading order on turned pages (crnn.detect.boxes.reading_order), measured on synthetic pages' boxes.

    python scripts/tilted_order.py [--pages 40] [--turns 0,1,2,4] [--seed 9800] [--detector FILE]

Pages of every layout are drawn straight (no turn, no perspective; their own seed) and their labelled boxes
ordered as they lie: that order is the reference. Each page is then turned about its centre by each angle
(both ways) and its lines ordered two ways: by rows as they lie (the realdev scorer's sweep, with columns:
page mode's order before this change) and as page mode orders them now (turned upright first).
- `detected`: the turned image read by the detector as page mode reads it (its boxes cut into rows,
  fitted to their ink, lone glyphs added: `Detector.lines`), each box matched to a labelled one (IoU >= 0.5);
  the reference is then the labelled order of the matched boxes. Turn 0 shows what detection alone costs.
- `labelled`: the labelled boxes turned. A check only: a rigid turn is undone exactly, so the upright
  column is 100 % whenever the lines agree on their turn.
Per layout and angle: the share of pages read in the reference order, and the lines out of place (edit
distance between the two orders over the number of lines). Saves runs/bench/tilted_order.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import editdistance
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from small_pages import save_bench  # noqa: E402  (scripts/, beside this file)

from crnn.detect.boxes import _columns_then_rows, reading_order, turned  # noqa: E402
from crnn.detect.data import page_synth  # noqa: E402
from crnn.detect.detector import Detector  # noqa: E402
from crnn.detect.score import match  # noqa: E402
from crnn.settings import compose_run_config  # noqa: E402


def detected_orders(det: Detector, image: np.ndarray, quads: list[np.ndarray], deg: float) -> dict | None:
    """The page image and its boxes turned by `deg` about its centre; the detector's boxes matched to the
    labelled ones (IoU >= 0.5), and the labelled indices in the order each way puts the detector's boxes;
    None when fewer than two match."""
    import cv2

    h, w = image.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), -deg, 1.0)  # cv2 turns counter-clockwise for positive
    page = cv2.warpAffine(image, m, (w, h), borderValue=int(np.median(image)))
    truth = [cv2.transform(q[None].astype(np.float32), m)[0] for q in quads]
    found = [ln.quad for ln in det.lines(page)]  # page mode's boxes: rows cut, ink fitted, glyphs added
    pairs = {p: g for g, p in match(truth, found)}
    if len(pairs) < 2:
        return None
    kept = sorted(pairs)
    boxes = [found[p] for p in kept]
    return {
        "as they lie": [pairs[kept[i]] for i in _columns_then_rows(boxes)],
        "upright": [pairs[kept[i]] for i in reading_order(boxes)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="det_zh_en")
    ap.add_argument("--pages", type=int, default=40, help="pages per layout")
    ap.add_argument("--turns", default="0,1,2,4")
    ap.add_argument("--seed", type=int, default=9800)  # neither training's, validation's nor calibration's
    ap.add_argument("--detector", default="models/det_zh_en.onnx", help="'' to skip the detected boxes")
    args = ap.parse_args()
    turns = [float(t) for t in args.turns.split(",")]
    cfg = compose_run_config([f"experiment={args.experiment}"])[0]
    layouts = list(cfg.detect.pages.layouts)
    det = Detector(args.detector, threads=2) if args.detector else None
    rows = []
    for layout in layouts:
        over = [
            f"experiment={args.experiment}",
            "detect.pages.rotate_p=0",
            "detect.pages.perspective_p=0",
            "detect.pages.layouts={" + ",".join(f"{k}:{int(k == layout)}" for k in layouts) + "}",
        ]
        synth = page_synth(compose_run_config(over)[0], seed=args.seed)
        pages = []
        for i in tqdm(range(args.pages), desc=layout, unit="page"):
            page = synth.page(i)
            quads = [ln.quad for ln in page.lines]
            if len(quads) >= 2:
                pages.append((quads, np.float32(page.image.shape[::-1]) / 2, page.image))
        for deg in turns:
            for boxes in ("labelled", "detected") if det else ("labelled",):
                score = {"as they lie": [0, 0, 0], "upright": [0, 0, 0]}  # in order, out of place, lines
                n = 0
                for quads, centre, image in pages:
                    ref = _columns_then_rows(quads)
                    for sign in (1, -1) if deg else (1,):
                        if boxes == "labelled":
                            t = turned(quads, sign * deg, centre)
                            got = {"as they lie": _columns_then_rows(t), "upright": reading_order(t)}
                            want = ref
                        else:
                            got = detected_orders(det, image, quads, sign * deg)
                            if got is None:
                                continue
                            want = [g for g in ref if g in set(got["upright"])]
                        n += 1
                        for how, order in got.items():
                            sc = score[how]
                            sc[0] += order == want
                            sc[1] += editdistance.eval(order, want)
                            sc[2] += len(want)
                rows.append(
                    {
                        "layout": layout,
                        "boxes": boxes,
                        "turn": deg,
                        "pages": n,
                        **{f"{how}_in_order": round(sc[0] / max(1, n), 3) for how, sc in score.items()},
                        **{
                            f"{how}_out_of_place": round(sc[1] / max(1, sc[2]), 4)
                            for how, sc in score.items()
                        },
                    }
                )
    record = {"experiment": args.experiment, "pages_per_layout": args.pages, "seed": args.seed, "rows": rows}
    md = [
        f"Synthetic pages' labelled boxes ({args.pages} per layout, drawn straight, seed {args.seed}), "
        "turned both ways: pages read in the straight page's order, and lines out of place, ordered by rows "
        "as the boxes lie / turned upright first (page mode)",
        "",
        "| layout | boxes | turn | pages | in order: as they lie | upright | out of place: as they lie "
        "| upright |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['layout']} | {r['boxes']} | {r['turn']:g} | {r['pages']} | "
            f"{r['as they lie_in_order']:.2f} | "
            f"{r['upright_in_order']:.2f} | {100 * r['as they lie_out_of_place']:.1f} % | "
            f"{100 * r['upright_out_of_place']:.1f} % |"
        )
    save_bench("tilted_order", record, md)


if __name__ == "__main__":
    main()
