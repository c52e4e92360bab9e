"""Boxes over several printed rows cut into their rows (crnn.detect.boxes.split_rows), measured on
synthetic pages.

    python scripts/split_rows.py [--detector models/det_zh_en.onnx] [--pages 100] [--seed 9700]

At a receipt's tight leading the detector's probability map can bridge the paper between two rows, and the
recognizer then reads one box of two rows as a line of neither's text. Pages are drawn from their own seed
(neither training's, validation's nor calibration's), and three things are measured:

1. the labelled line boxes, each holding one line: how many the splitter cuts (every cut is a fault), by
   layout, for a small grid of its settings around the defaults;
2. boxes drawn over two neighbouring lines of one page (one above the other, sharing half their width,
   apart by less than half a line, of about one height; grown as the detector's boxes are), as the merged
   boxes on real receipts are: how
   many it cuts into two parts that each hold their line (its centre and 60 % of its rows);
3. the bundled detector and recognizer (+ LM) reading every page with and without the splitter: F1 at
   IoU >= 0.5 and page CER, so what it does where the detector does not merge rows is seen too.

Saves runs/bench/split_rows.{json,md}.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from small_pages import OUT, parse_args  # noqa: E402  (scripts/, beside this file)

from crnn.command import default_lm, default_model  # noqa: E402
from crnn.detect.boxes import (  # noqa: E402
    SPLIT_GAP_SHARE,
    SPLIT_MAX_ROW,
    SPLIT_MIN_LINES,
    SPLIT_MIN_ROW,
    page_lines,
    row_bands,
    row_order,
    upright,
)
from crnn.detect.data import page_synth  # noqa: E402
from crnn.detect.detector import Detector  # noqa: E402
from crnn.detect.evaluate import RecognizerReader  # noqa: E402
from crnn.detect.polygons import quad_size  # noqa: E402
from crnn.detect.score import Counts, score_page  # noqa: E402
from crnn.detect.train import page_truth  # noqa: E402
from crnn.settings import compose_run_config  # noqa: E402

GRID = {
    "min_lines": (1.4, SPLIT_MIN_LINES, 1.8),
    "gap": (0.05, SPLIT_GAP_SHARE, 0.2),
    "min_row": (0.25, SPLIT_MIN_ROW, 0.45),
    "max_row": (1.0, SPLIT_MAX_ROW, 2.0),
}


def neighbours(quads: list[np.ndarray]) -> list[tuple[int, int]]:
    """Pairs (upper, lower) of lines that a detector could box as one: sharing half the narrower one's
    width, about one height, the lower one less than half a line below."""
    pairs = []
    for i, a in enumerate(quads):
        for j, b in enumerate(quads):
            ah, bh = float(np.ptp(a[:, 1])), float(np.ptp(b[:, 1]))
            gap = float(b[:, 1].min() - a[:, 1].max())
            shared = min(a[:, 0].max(), b[:, 0].max()) - max(a[:, 0].min(), b[:, 0].min())
            narrow = min(np.ptp(a[:, 0]), np.ptp(b[:, 0]))
            if i != j and 0 <= gap < 0.5 * ah and shared > 0.5 * narrow and abs(bh - ah) < 0.3 * ah:
                pairs.append((i, j))
    return pairs


def union(a: np.ndarray, b: np.ndarray, page_hw: tuple[int, int]) -> np.ndarray:
    """The box around both lines, grown by 4 % of a line's height on every side as the detector's boxes
    are (calibrated to 1.08 times the labelled height)."""
    d = 0.04 * float(np.ptp(a[:, 1]))
    x0, y0 = np.maximum(np.minimum(a.min(axis=0), b.min(axis=0)) - d, 0)
    x1, y1 = np.minimum(np.maximum(a.max(axis=0), b.max(axis=0)) + d, [page_hw[1], page_hw[0]])
    return np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def holds(part: np.ndarray, line: np.ndarray) -> bool:
    """The part cut out holds the line: its centre and most of its rows (the cut may run through a line's
    descenders where lines nearly touch)."""
    top, bottom = float(line[:, 1].min()), float(line[:, 1].max())
    shared = min(bottom, float(part[:, 1].max())) - max(top, float(part[:, 1].min()))
    return part[:, 1].min() <= (top + bottom) / 2 <= part[:, 1].max() and shared >= 0.6 * (bottom - top)


def band_quads(quad: np.ndarray, crop_m: tuple, bands: list[tuple[int, int]]) -> list[np.ndarray]:
    import cv2

    crop, m = crop_m
    inv, w = np.linalg.inv(m), float(crop.shape[1])
    return [
        cv2.perspectiveTransform(np.float64([[[0, t], [w, t], [w, b], [0, b]]]), inv)[0].astype(np.float32)
        for t, b in bands
    ]


def draw(args) -> list[dict]:
    """Each page's labelled line crops and its neighbouring pairs' union crops (the line height the
    splitter is told: the median labelled box's), and the detector's readings with and without it."""
    cfg = compose_run_config([f"experiment={args.experiment}"])[0]
    synth = page_synth(cfg, seed=args.seed)
    det = Detector(args.detector, threads=2)
    reader = RecognizerReader(default_model(), 2, lm=default_lm(None) or "")
    pages = []
    for i in tqdm(range(args.pages), desc="pages", unit="page"):
        page = synth.page(i)
        quads = [ln.quad for ln in page.lines if not ln.ignore]
        if not quads:
            continue
        line_h = float(np.median([quad_size(q)[1] for q in quads]))
        pairs = [
            (quads[a], quads[b], union(quads[a], quads[b], page.image.shape)) for a, b in neighbours(quads)
        ]
        boxes = det.detect(page.image)
        truth = page_truth(page)
        read = {}
        for split in (False, True):
            lines = page_lines(page.image, boxes, split=split)
            texts = reader.recognize([ln.crop for ln in lines])
            read[split] = score_page(truth, [ln.quad for ln in lines], texts, row_order)
        pages.append(
            {
                "layout": page.layout,
                "line_h": line_h,
                "lines": [upright(page.image, q) for q in quads],
                "pairs": [(a, b, u, upright(page.image, u)) for a, b, u in pairs],
                "read": read,
            }
        )
    return pages


def sweep(pages: list[dict], **bands: float) -> dict:
    cut = Counter()
    lines = pairs = split = 0
    for p in pages:
        for crop, _ in p["lines"]:
            lines += 1
            if row_bands(crop, p["line_h"], **bands):
                cut[p["layout"]] += 1
        for a, b, u, crop_m in p["pairs"]:
            pairs += 1
            got = band_quads(u, crop_m, row_bands(crop_m[0], p["line_h"], **bands))
            split += len(got) == 2 and holds(got[0], a) and holds(got[1], b)
    return {
        **bands,
        "lines": lines,
        "lines_cut": sum(cut.values()),
        "cut_by_layout": dict(cut),
        "pairs": pairs,
        "pairs_split": split,
    }


def main() -> None:
    args = parse_args(__doc__, 100, "--grid", "default", 9700)
    pages = draw(args)
    rows = [sweep(pages, **dict(zip(GRID, v))) for v in itertools.product(*GRID.values())]
    read = {}
    for split in (False, True):
        c = Counts()
        for p in pages:
            c.add(p["read"][split])
        d = c.as_dict()
        read["with" if split else "without"] = {k: round(d[k], 4) for k in ("f1", "cer", "edits", "chars")}
    OUT.mkdir(parents=True, exist_ok=True)
    record = {"detector": args.detector, "pages": len(pages), "seed": args.seed, "grid": rows, "read": read}
    (OUT / "split_rows.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    default = {
        "min_lines": SPLIT_MIN_LINES,
        "gap": SPLIT_GAP_SHARE,
        "min_row": SPLIT_MIN_ROW,
        "max_row": SPLIT_MAX_ROW,
    }
    md = [
        f"Boxes cut into their rows (crnn.detect.boxes.split_rows) on {len(pages)} synthetic pages (seed "
        f"{args.seed}): labelled line boxes cut (faults), boxes over two neighbouring lines cut into both",
        "",
        "| min_lines | gap | min_row | max_row | line boxes cut | merged pairs cut in two |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        mark = " (default)" if all(r[k] == v for k, v in default.items()) else ""
        md.append(
            f"| {r['min_lines']:g} | {r['gap']:g} | {r['min_row']:g} | {r['max_row']:g}{mark} | "
            f"{r['lines_cut']} of {r['lines']} "
            f"{r['cut_by_layout'] or ''} | {r['pairs_split']} of {r['pairs']} "
            f"({r['pairs_split'] / max(1, r['pairs']):.0%}) |"
        )
    md += [
        "",
        f"The bundled detector ({Path(args.detector).name}) and recognizer + LM on the same pages:",
        "",
        "| splitter | F1 | page CER | edits / chars |",
        "|---|---|---|---|",
    ]
    for k, d in read.items():
        md.append(f"| {k} | {d['f1']:.4f} | {d['cer']:.4f} | {d['edits']} / {d['chars']} |")
    (OUT / "split_rows.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
