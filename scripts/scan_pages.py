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

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from small_pages import parse_args, sweep  # noqa: E402  (scripts/, beside this file)

from crnn.detect.data import page_synth  # noqa: E402
from crnn.detect.score import PageTruth  # noqa: E402
from crnn.detect.train import page_truth  # noqa: E402
from crnn.settings import compose_run_config  # noqa: E402


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


def main() -> None:
    args = parse_args(__doc__, 100, "--gains", "0,1.25,1.5,2,3", 9300)
    cfg = compose_run_config([f"experiment={args.experiment}"])[0]
    sets = {
        "on a scan": scanned_pages(cfg, args.pages, args.seed, sheet=True),
        "filling the scan": scanned_pages(cfg, args.pages, args.seed, sheet=False),
    }
    gains = [float(g) for g in args.gains.split(",")]
    sweep(args, "zoom_gain", gains, sets, "Large pages", "one reading", "scan_pages")


if __name__ == "__main__":
    main()
