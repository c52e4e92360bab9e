"""The plate grammar (crnn.formats) measured on synthetic lines, never real ones.

    python scripts/plate_format.py [model.onnx] [+lines=3000] [hydra overrides]

Reads `lines` validation lines of the experiment's recipes (every scene in turn, the val split's corpus
seed and fonts: the lines `make smooth` reads) as the server does (the bundled LM, the second look), once
without formats and once holding readings to crnn.formats.SERVED_FORMATS. Reports per scene: CER both
ways and how many readings looked like a plate (a reading held to the grammar on a scene that is not a
plate is a false alarm). Plates are scored with realdev's plate_zh rules (spaces and the dot dropped), the
other scenes as `make eval` scores them. Saves runs/bench/plate_format.{json,md}.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import editdistance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from small_pages import save_bench  # noqa: E402  (scripts/, beside this file)

from crnn.command import default_lm, default_model  # noqa: E402
from crnn.data.preprocess import preprocess  # noqa: E402
from crnn.formats import FORMATS, SERVED_FORMATS  # noqa: E402
from crnn.serve.engine import Engine  # noqa: E402
from crnn.settings import compose_run_config  # noqa: E402
from crnn.smooth import validation_lines  # noqa: E402
from crnn.textnorm import Normalizer  # noqa: E402


def main(argv: list[str]) -> None:
    model = argv.pop(0) if argv and argv[0].endswith(".onnx") else default_model()
    cfg, own = compose_run_config(["experiment=zh_en_v2", *argv], extras=("lines",))
    n = int(own.get("lines", 3000))
    lines = validation_lines(replace(cfg, smooth=replace(cfg.smooth, lines=n)))
    lm = default_lm(model) or ""
    engines = {
        k: Engine(model, threads=2, decoder="lm" if lm else "greedy", lm_path=lm, formats=f)
        for k, f in (("without", ()), ("with", SERVED_FORMATS))
    }
    xs = [preprocess(s.image, engines["with"].spec) for s in lines]
    reads = {k: e.predictor.read_inputs(xs) for k, e in engines.items()}
    norm = Normalizer(cfg.eval.normalize)
    looks = [FORMATS[f].looks_like for f in SERVED_FORMATS]
    rows: dict[str, dict] = {}
    for i, s in enumerate(lines):
        cat = "plate_zh" if s.scene == "plate" else s.scene
        r = rows.setdefault(s.scene, {"lines": 0, "chars": 0, "without": 0, "with": 0, "held": 0})
        gt = norm(s.label, cat)
        r["lines"] += 1
        r["chars"] += len(gt)
        for k in ("without", "with"):
            r[k] += editdistance.eval(gt, norm(reads[k][i].text, cat))
        r["held"] += any(f(reads["without"][i].text) for f in looks)
    record = {"model": model, "lm": lm, "lines": n, "formats": list(SERVED_FORMATS), "scenes": rows}
    md = [
        f"Synthetic validation lines of every scene ({n}, val seed and fonts), {Path(model).name}"
        f"{' + ' + Path(lm).name if lm else ''} with the second look, without and with the plate grammar",
        "",
        "| scene | lines | CER without | CER with | readings that looked like a plate |",
        "|---|---|---|---|---|",
    ]
    for scene, r in rows.items():
        cer = {k: 100 * r[k] / max(1, r["chars"]) for k in ("without", "with")}
        md.append(f"| {scene} | {r['lines']} | {cer['without']:.2f} % | {cer['with']:.2f} % | {r['held']} |")
    save_bench("plate_format", record, md)


if __name__ == "__main__":
    main(sys.argv[1:])
