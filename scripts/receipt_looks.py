"""How a recognizer reads synthetic receipt lines printed each way: plain, round dot-matrix dots, a till's
draft-mode dots, an 8 x 8 bitmap face (fonts-misaki) plain and in draft dots, and a needle printer's own
bitmap faces printed dot by dot (render=real's needle_fonts, xfonts-base), round and draft. The same ASCII
receipt texts (render=real's receipt corpus) are drawn once per look, with the rest of the receipt recipe
as it is, and read greedily; CER ignores case and spaces, as SROIE's receipts are scored. No real line is
read, so the figures can guide the recipes without touching the evaluation sets.

    python scripts/receipt_looks.py [model.onnx] [+lines=200] [hydra overrides]
"""

from __future__ import annotations

import random
import sys
from dataclasses import replace
from pathlib import Path

import editdistance
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crnn.charset import load_charset  # noqa: E402
from crnn.command import default_model  # noqa: E402
from crnn.data.render import LineRenderer  # noqa: E402
from crnn.data.source import SynthSource  # noqa: E402
from crnn.detect.evaluate import RecognizerReader  # noqa: E402
from crnn.settings import compose_run_config  # noqa: E402
from crnn.textnorm import Normalizer  # noqa: E402

BITMAP_FACE = "/usr/share/fonts/truetype/misaki/misaki_gothic.ttf"  # apt-get install fonts-misaki
LOOKS = {
    "plain": dict(dot_matrix_p=0.0),
    "round dots": dict(dot_matrix_p=1.0, dot_draft_p=0.0),
    "draft dots": dict(dot_matrix_p=1.0, dot_draft_p=1.0),
    "8x8 bitmap face": dict(dot_matrix_p=0.0, fonts=["bitmap_8x8"]),
    "8x8 face, draft dots": dict(dot_matrix_p=1.0, dot_draft_p=1.0, fonts=["bitmap_8x8"]),
    "needle faces": dict(needle_p=1.0, dot_draft_p=0.0),
    "needle faces, draft": dict(needle_p=1.0, dot_draft_p=1.0),
}


def receipt_texts(cfg, render, n: int) -> list[str]:
    """`n` ASCII lines of the receipt corpus (seed 11): what SROIE's receipts print."""
    corpus = SynthSource(cfg.corpus, render, load_charset(cfg.charset), seed=11).corpora["receipt"]
    return [t for t in (corpus.line(i) for i in range(3 * n)) if t.isascii() and t.strip()][:n]


def look_lines(render, change: dict, texts: list[str]) -> list[tuple[str, np.ndarray]]:
    """(text, image) of each text printed one way (a LOOKS entry), each line from its own seed."""
    solo = LineRenderer(replace(render, scenes={"receipt": replace(render.scenes["receipt"], **change)}))
    pairs = [
        (t, solo.render(t, "receipt", random.Random(i), np.random.default_rng(i)))
        for i, t in enumerate(texts)
    ]
    return [(t, img) for t, img in pairs if img is not None]


def main(argv: list[str]) -> None:
    model = next((a for a in argv if a.endswith(".onnx")), None) or default_model()
    overrides = [a for a in argv if not a.endswith(".onnx")]  # Hydra overrides, and +lines=N
    cfg, extra = compose_run_config(["experiment=zh_en_v2", *overrides], ("lines",))
    n = int(extra.get("lines", 200))
    render = cfg.render
    if Path(BITMAP_FACE).is_file():
        face = {"path": BITMAP_FACE, "index": 0, "style": "pixel"}
        render = replace(render, fonts={**render.fonts, "bitmap_8x8": face})
    texts = receipt_texts(cfg, render, n)
    reader = RecognizerReader(model, 2, "", second_look=False)  # the model's own reading
    norm = Normalizer(cfg.eval.normalize)  # as eval-real scores SROIE's receipt lines: no case, no spaces
    print(f"{model}: {len(texts)} receipt lines per look, greedy, CER without case and spaces")
    for look, change in LOOKS.items():
        if "bitmap_8x8" in change.get("fonts", []) and "bitmap_8x8" not in render.fonts:
            print(f"  {look:22} skipped: {BITMAP_FACE} is not installed (apt-get install fonts-misaki)")
            continue
        needles = render.scenes["receipt"].needle_fonts
        if change.get("needle_p") and not any(Path(render.fonts[f]["path"]).is_file() for f in needles):
            print(f"  {look:22} skipped: no needle face is installed (make fonts: xfonts-base)")
            continue
        pairs = look_lines(render, change, texts)
        reads = reader.recognize([img for _, img in pairs])
        truth = [norm(t, "receipt_en") for t, _ in pairs]
        edits = sum(editdistance.eval(t, norm(r, "receipt_en")) for t, r in zip(truth, reads))
        chars = sum(len(t) for t in truth)
        print(f"  {look:22} {len(pairs):4d} lines  CER {edits / max(chars, 1):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
