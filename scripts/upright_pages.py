"""Pages read upright and upside down, as page mode serves them (the bundled detector and recognizer with its
LM, crnn.serve.upright deciding whether a page is turned): how many pages are turned, and page CER and
detection F1 either way. Synthetic pages of their own seed by default; `+real=true` reads the real pages
(../shared/realdev/pages, evaluation only) turned half round instead, beside their upright scores.

    python scripts/upright_pages.py [+pages=60] [+seed=9800] [+real=true]

Writes runs/upright/upright.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import crnn.detect.evaluate as evaluate  # noqa: E402
from crnn.command import default_detector, default_lm, default_model  # noqa: E402
from crnn.data.image_io import decode_image  # noqa: E402
from crnn.detect.boxes import row_order  # noqa: E402
from crnn.detect.data import page_synth  # noqa: E402
from crnn.detect.score import Counts, PageTruth, score_page  # noqa: E402
from crnn.settings import compose_run_config  # noqa: E402


def half_turn(gray: np.ndarray, truth: PageTruth) -> tuple[np.ndarray, PageTruth]:
    """The page and its truth turned half round."""
    h, w = gray.shape[:2]
    back = np.float32([w, h])
    turned = [back - q for q in truth.quads]
    ignore = [back - q for q in truth.ignore]
    return np.ascontiguousarray(gray[::-1, ::-1]), PageTruth(
        turned, truth.texts, ignore, truth.category, truth.complete
    )


def synthetic(n: int, seed: int) -> list[tuple[np.ndarray, PageTruth]]:
    cfg, _ = compose_run_config(["experiment=det_zh_en"], ())
    synth = page_synth(cfg, seed)
    pages = [synth.page(i) for i in range(n)]
    return [
        (p.image, PageTruth(list(p.quads()), [ln.text for ln in p.lines], [], "printed_doc_zh"))
        for p in pages
    ]


def real() -> list[tuple[np.ndarray, PageTruth]]:
    pages = evaluate.load_pages(ROOT.parent / "shared" / "realdev" / "pages")
    return [(decode_image(p.path.read_bytes()), p.truth) for p in pages if p.truth.complete]


def main(argv: list[str]) -> None:
    opts = dict(a[1:].split("=", 1) for a in argv if a.startswith("+"))
    pages = (
        real()
        if opts.get("real") == "true"
        else synthetic(int(opts.get("pages", 60)), int(opts.get("seed", 9800)))
    )
    decided: list[bool] = []
    served = evaluate.upright  # the reader's own decision, counted

    def counted(*args, **kw):
        out = served(*args, **kw)
        decided.append(out[2])
        return out

    evaluate.upright = counted
    reader = evaluate.DetectorReader(
        str(default_model()), str(default_detector()), 2, lm=str(default_lm(None) or "")
    )
    out = {}
    for way in ("upright", "upside down"):
        total, turned, by = Counts(), 0, {}
        for gray, truth in pages:
            if way == "upside down":
                gray, truth = half_turn(gray, truth)
            before = len(decided)
            quads, texts = reader.read(gray, truth)
            turned += any(decided[before:])
            c = score_page(truth, quads, texts, row_order)
            total.add(c)
            by.setdefault(truth.category, Counts()).add(c)
        cers = {k: v.edits / max(v.chars, 1) for k, v in sorted(by.items())}
        out[way] = {"pages": len(pages), "turned": turned, "page_cer": total.edits / max(total.chars, 1)}
        out[way] |= {"f1": total.as_dict()["f1"], "page_cer_by_category": cers}
        each = ", ".join(f"{k} {v:.3f}" for k, v in cers.items())
        print(
            f"{way:12} {turned:3d} of {len(pages)} pages turned, page CER {out[way]['page_cer']:.3f} ({each})"
        )
    dest = ROOT / "runs" / "upright" / "upright.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
