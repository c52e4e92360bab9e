"""Which long side small pages are best read at (detect.boxes.upscale_to), measured on synthetic pages.

    python scripts/small_pages.py [--detector models/det_zh_en.onnx] [--pages 150] [--targets 0,560,640,...]

Two kinds of small page, neither of them real (the real pages only evaluate):
- shrunk: synthetic pages (their own seed) drawn at their usual 512 to 960 px, then saved at a long side
  of 250 to 640 px, as a web image or a thumbnail is: the lines get smaller than the detector was taught;
- drawn small: pages drawn at 300 to 450 px, where the renderer's smallest fonts make text large for the
  page.
Each page is read with the file's box settings and `upscale_to` set to each target (0: the page's own
scale), and scored at IoU >= 0.5 as calibration scores pages. Saves runs/bench/small_pages.{json,md}.
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


def save_bench(name: str, record: dict, md: list[str]) -> None:
    """A benchmark's figures as runs/bench/<name>.json and its table as <name>.md, the table printed."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    (OUT / f"{name}.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


def shrunk_pages(cfg, n: int, seed: int) -> list[tuple[np.ndarray, PageTruth]]:
    synth, rng, out = page_synth(cfg, seed=seed), np.random.default_rng(seed), []
    for i in range(n):
        page = synth.page(i)
        h, w = page.image.shape
        f = int(rng.integers(250, 641)) / max(h, w)
        small = cv2.resize(
            page.image, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA
        )
        k = np.float32([small.shape[1] / w, small.shape[0] / h])
        t = page_truth(page)
        truth = PageTruth([q * k for q in t.quads], t.texts, [q * k for q in t.ignore], t.category)
        out.append((small, truth))
    return out


def drawn_small(experiment: str, n: int, seed: int) -> list[tuple[np.ndarray, PageTruth]]:
    cfg = compose_run_config([f"experiment={experiment}", "detect.pages.long_side=[300,450]"])[0]
    synth = page_synth(cfg, seed=seed)
    return [(p.image, page_truth(p)) for p in (synth.page(i) for i in range(n))]


def f1(detector: Detector, pages: list[tuple[np.ndarray, PageTruth]]) -> dict:
    """F1, precision and recall at IoU >= 0.5 over the pages, and the mean ms per page (detector only)."""
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


def sweep(
    args: argparse.Namespace, setting: str, values: list, sets: dict, kind: str, base_label: str, stem: str
) -> None:
    """Each page set read with the file's box settings and `setting` at each value; the table printed and
    saved as runs/bench/<stem>.{json,md}. A value of 0 is labelled `base_label`."""
    base = Detector(args.detector, threads=2)
    rows = []
    for value in tqdm(values, desc=setting, unit="value"):
        det = Detector(args.detector, threads=2, boxes=replace(base.boxes, **{setting: value}))
        rows.append({setting: value, **{name: f1(det, pages) for name, pages in sets.items()}})
    OUT.mkdir(parents=True, exist_ok=True)
    record = {"detector": args.detector, "pages": args.pages, "seed": args.seed, "rows": rows}
    (OUT / f"{stem}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    names = list(sets)
    md = [
        f"{kind} read with {Path(args.detector).name} at each {setting} ({args.pages} pages per kind; "
        "F1 (P / R) at IoU >= 0.5, ms per page for the detector alone)",
        "",
        f"| {setting} | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for r in rows:
        cells = [
            f"{r[n]['f1']:.3f} ({r[n]['precision']:.2f} / {r[n]['recall']:.2f}), {r[n]['ms']:.0f} ms"
            for n in names
        ]
        md.append(f"| {r[setting] or base_label} | " + " | ".join(cells) + " |")
    (OUT / f"{stem}.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


def page_readers(args: argparse.Namespace):
    """What a sweep that reads pages end to end reads with: synthetic pages of its own seed, the detector
    file, and the bundled recognizer (+ its LM), as page mode serves them."""
    from crnn.command import default_lm, default_model
    from crnn.detect.evaluate import RecognizerReader

    synth = page_synth(compose_run_config([f"experiment={args.experiment}"])[0], seed=args.seed)
    reader = RecognizerReader(default_model(), 2, lm=default_lm(None) or "")
    return synth, Detector(args.detector, threads=2), reader


def tally(total: dict, by_layout: dict, layout: str, value: float, c: Counts) -> None:
    """One page's counts at one swept value, into the sweep's totals and its layout's."""
    total[value].add(c)
    by_layout.setdefault(layout, {}).setdefault(value, Counts()).add(c)


def read_sweep(args: argparse.Namespace, values: list[float], lines_at) -> tuple[dict, dict]:
    """Each synthetic page detected once, its lines made at each swept value (`lines_at(page, boxes, value,
    box settings)` -> crnn.detect.boxes.Line list), read by the recognizer and scored: the totals and the
    totals by layout, per value."""
    from crnn.detect.boxes import row_order
    from crnn.detect.train import page_truth

    synth, det, reader = page_readers(args)
    total = {v: Counts() for v in values}
    by_layout: dict[str, dict[float, Counts]] = {}
    for i in tqdm(range(args.pages), desc="pages", unit="page"):
        page = synth.page(i)
        boxes, truth = det.detect(page.image), page_truth(page)
        for v in values:
            found = lines_at(page, boxes, v, det.boxes)
            texts = reader.recognize([ln.crop for ln in found])
            c = score_page(truth, [ln.quad for ln in found], texts, row_order)
            tally(total, by_layout, page.layout, v, c)
    return total, by_layout


def all_row(values: list[float], total: dict) -> str:
    """A sweep table's last row: page CER (edits) over every page at each value."""
    cells = (f"{total[v].as_dict()['cer']:.4f} ({total[v].as_dict()['edits']})" for v in values)
    return "| **all** | " + " | ".join(cells) + " |"


def layout_table(title: str, label: str, values: list[float], by_layout: dict) -> list[str]:
    """A sweep's markdown: its title, then one row per page layout with the edits at each swept value
    (`by_layout`: layout -> value -> crnn.detect.score.Counts), columns headed `label` and the value."""
    md = [title, "", "| layout | " + " | ".join(f"{label} {v:g}" for v in values) + " |"]
    md.append("|---|" + "---|" * len(values))
    for layout, row in sorted(by_layout.items()):
        md.append(f"| {layout} | " + " | ".join(str(row[v].as_dict()["edits"]) for v in values) + " |")
    return md


def parse_args(
    doc: str, pages: int, flag: str, values: str, seed: int, extra: dict[str, int] | None = None
) -> argparse.Namespace:
    """The arguments the page sweeps take: the detector file, the experiment, how many pages per kind,
    the values to sweep (`flag`, comma-separated), the pages' seed, and a sweep's own integer flags."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="models/det_zh_en.onnx")
    ap.add_argument("--experiment", default="det_zh_en")
    ap.add_argument("--pages", type=int, default=pages)
    ap.add_argument(flag, default=values)
    for name, default in (extra or {}).items():
        ap.add_argument(name, type=int, default=default)
    ap.add_argument("--seed", type=int, default=seed)  # neither training's, validation's nor calibration's
    return ap.parse_args()


def main() -> None:
    args = parse_args(__doc__, 150, "--targets", "0,560,640,720,800,960", 9100)
    cfg = compose_run_config([f"experiment={args.experiment}"])[0]
    sets = {
        "shrunk to 250-640 px": shrunk_pages(cfg, args.pages, args.seed),
        "drawn at 300-450 px": drawn_small(args.experiment, args.pages, args.seed + 1),
    }
    targets = [int(t) for t in args.targets.split(",")]
    sweep(args, "upscale_to", targets, sets, "Small pages", "own scale", "small_pages")


if __name__ == "__main__":
    main()
