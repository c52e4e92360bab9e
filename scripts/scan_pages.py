"""When a page read scaled down is worth reading again over its text (detect.boxes.zoom_gain), measured on
synthetic pages.

    python scripts/scan_pages.py [--detector models/det_zh_en.onnx] [--pages 100] [--gains 0,1.25,1.5,2,3]

Two kinds of large page, neither of them real (the real pages only evaluate):
- on a scan: synthetic pages (their own seed) magnified 2 to 4 times, as a 600 dpi scan holds a receipt,
  and laid on a light sheet 1.5 to 3 times their long side, as SROIE's 4961 x 7016 scans hold receipts:
  read at `max_side`, their lines reach the network a few pixels tall;
- filling the scan: the same pages magnified alike, without the sheet, where the text fills the page and
  nothing is gained by reading it again.
Each page is read with the file's box settings and `zoom_gain` set to each value (0: one reading), and
scored at IoU >= 0.5 as calibration scores pages, with the mean time per page (detector only, 2 threads).
Saves runs/bench/scan_pages.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crnn.detect.data import page_synth  # noqa: E402
from crnn.detect.detector import Detector  # noqa: E402
from crnn.detect.score import Counts, PageTruth, score_page  # noqa: E402
from crnn.detect.train import page_truth  # noqa: E402
from crnn.settings import compose_run_config  # noqa: E402

OUT = ROOT / "runs" / "bench"


def scanned_pages(cfg, n: int, seed: int, sheet: bool) -> list[tuple[np.ndarray, PageTruth]]:
    synth, rng, out = page_synth(cfg, seed=seed), np.random.default_rng(seed), []
    for i in range(n):
        page = synth.page(i)
        m = float(rng.uniform(2.0, 4.0))
        big = cv2.resize(page.image, None, fx=m, fy=m, interpolation=cv2.INTER_CUBIC)
        h, w = big.shape
        x0 = y0 = 0
        if sheet:
            c = float(rng.uniform(1.5, 3.0))
            sh, sw = int(h * c), int(w * rng.uniform(1.2, c))
            paper = rng.normal(rng.uniform(225, 250), 3.0, (sh, sw))
            canvas = np.clip(paper, 0, 255).astype(np.uint8)
            y0, x0 = int(rng.integers(0, sh - h + 1)), int(rng.integers(0, sw - w + 1))
            canvas[y0 : y0 + h, x0 : x0 + w] = big
            big = canvas
        t = page_truth(page)
        k, o = np.float32([m, m]), np.float32([x0, y0])
        out.append(
            (big, PageTruth([q * k + o for q in t.quads], t.texts, [q * k + o for q in t.ignore], t.category))
        )
    return out


def f1(detector: Detector, pages: list[tuple[np.ndarray, PageTruth]]) -> dict:
    total, seconds = Counts(), 0.0
    for image, truth in pages:
        t0 = time.perf_counter()
        quads = [b.quad for b in detector.detect(image)]
        seconds += time.perf_counter() - t0
        total.add(score_page(truth, quads, None, None))
    d = total.as_dict()
    return {
        **{k: round(d[k], 4) for k in ("f1", "precision", "recall")},
        "ms": round(1000 * seconds / len(pages), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="models/det_zh_en.onnx")
    ap.add_argument("--experiment", default="det_zh_en")
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--gains", default="0,1.25,1.5,2,3")
    ap.add_argument("--seed", type=int, default=9300)  # neither training's, validation's nor calibration's
    args = ap.parse_args()
    cfg = compose_run_config([f"experiment={args.experiment}"])[0]
    base = Detector(args.detector, threads=2)
    sets = {
        "on a scan": scanned_pages(cfg, args.pages, args.seed, sheet=True),
        "filling the scan": scanned_pages(cfg, args.pages, args.seed, sheet=False),
    }
    rows = []
    for gain in tqdm([float(g) for g in args.gains.split(",")], desc="zoom_gain", unit="gain"):
        det = Detector(args.detector, threads=2, boxes=replace(base.boxes, zoom_gain=gain))
        rows.append({"zoom_gain": gain, **{name: f1(det, pages) for name, pages in sets.items()}})
    OUT.mkdir(parents=True, exist_ok=True)
    record = {"detector": args.detector, "pages": args.pages, "seed": args.seed, "rows": rows}
    (OUT / "scan_pages.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    names = list(sets)
    md = [
        f"Large pages read with {Path(args.detector).name} at each zoom_gain ({args.pages} pages per kind; "
        "F1 (P / R) at IoU >= 0.5, ms per page)",
        "",
        "| zoom_gain | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for r in rows:
        cells = [
            f"{r[n]['f1']:.3f} ({r[n]['precision']:.2f} / {r[n]['recall']:.2f}), {r[n]['ms']:.0f} ms"
            for n in names
        ]
        md.append(f"| {r['zoom_gain'] or 'one reading'} | " + " | ".join(cells) + " |")
    (OUT / "scan_pages.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
