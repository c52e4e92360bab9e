"""What the article's clean-up does in page mode, measured (make bench-serve runs it).

    python scripts/page_cleanup.py --model runs/demo/quantize/model.int8.onnx --lmdb data/demo/test

Pages of eight test lines are composed (crnn.data.pages) as a clean scan and as a photograph (on a table,
at a perspective, lit from one side). Each page goes through page mode with every `cleanup` option; the
figures are the share of pages where exactly the right number of lines was found, the CER of the page's
text (lines joined with newlines, so a missed or split line costs its characters), and the time per page
(segmentation + recognition, one thread). Writes runs/bench/page_cleanup.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from crnn.data.lmdb_io import LmdbReader
from crnn.data.pages import compose_page, photograph
from crnn.metrics import TextScore
from crnn.serve.engine import Engine
from crnn.serve.segment import CLEANUPS, split

ROOT = Path(__file__).resolve().parents[1]


def pages(lmdb: str, n_pages: int, per_page: int, seed: int) -> list[dict]:
    reader = LmdbReader(lmdb)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(np.arange(1, len(reader) + 1))
    out = []
    for p in range(n_pages):
        recs = [reader.read(int(i)) for i in idx[p * per_page : (p + 1) * per_page]]
        recs = [r for r in recs if r.image is not None and r.label]
        if len(recs) < 2:
            break
        page, _ = compose_page([r.image for r in recs])
        photo, _ = photograph(page, rng)
        out.append({"labels": [r.label for r in recs], "scan": page, "photo": photo})
    return out


def measure(engine: Engine, items: list[dict], kind: str, cleanup: str) -> dict:
    score, exact, ms = TextScore(), 0, []
    for it in items:
        t0 = time.perf_counter()
        crops = split(it[kind], "page", cleanup)
        lines = engine.recognize([c for c, _ in crops], [b for _, b in crops])
        ms.append((time.perf_counter() - t0) * 1000)
        exact += int(len(lines) == len(it["labels"]))
        score.add("\n".join(it["labels"]), "\n".join(ln.text for ln in lines))
    return {
        "image": kind,
        "cleanup": cleanup,
        "pages": len(items),
        "lines_found_exactly": exact / max(1, len(items)),
        "cer": score.cer,
        "ms_per_page_p50": float(np.median(ms)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lmdb", required=True, help="test LMDB whose lines make the pages")
    ap.add_argument("--pages", type=int, default=40)
    ap.add_argument("--lines", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for path in (a.model, a.lmdb):
        if not Path(path).exists():
            print(
                f"error: {path} does not exist (make demo builds the demo model and test set)",
                file=sys.stderr,
            )
            return 2
    engine = Engine(a.model, threads=1)
    items = pages(a.lmdb, a.pages, a.lines, a.seed)
    rows = [measure(engine, items, kind, c) for kind in ("scan", "photo") for c in CLEANUPS]
    out = {"model": a.model, "lmdb": a.lmdb, "lines_per_page": a.lines, "rows": rows}
    md = [
        f"Page mode with each clean-up option: {len(items)} pages of {a.lines} lines from {a.lmdb}, "
        f"model {Path(a.model).name}.",
        "",
        "| image | cleanup | pages with every line found | page CER | ms per page (p50) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['image']} | {r['cleanup']} | {r['lines_found_exactly']:.0%} | {r['cer']:.2%} | "
            f"{r['ms_per_page_p50']:.1f} |"
        )
    text = "\n".join(md) + "\n"
    dest = ROOT / "runs" / "bench"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "page_cleanup.json").write_text(json.dumps(out, indent=2))
    (dest / "page_cleanup.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
