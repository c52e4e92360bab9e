"""Contact sheet PNG per scene type, so a person can look at what the renderer makes.

    python scripts/contact_sheet.py experiment=demo [+rows=24] [+recipes=real]     (make samples EXP=demo)

Writes runs/<name>/samples/<scene>.png: `rows` lines of that scene, each under its label's index, for every
scene of the run's render config and also for the scenes of configs/render/<recipes>.yaml (default `real`:
the receipt, plate, scene, scan and screen recipes) that the run's config lacks, drawn with the run's
alphabet and corpus; `+recipes=none` leaves them out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from crnn.charset import load_charset
from crnn.data.source import SynthSource
from crnn.settings import compose_run_config


def contact_sheet(images: list[np.ndarray], gap: int = 4, max_width: int = 1400) -> np.ndarray:
    width = min(max_width, max(i.shape[1] for i in images))
    rows = []
    for img in images:
        img = img[:, :width]
        rows.append(np.pad(img, ((gap // 2, gap // 2), (0, width - img.shape[1])), constant_values=255))
        rows.append(np.full((1, width), 160, np.uint8))
    return np.vstack(rows)


def main(overrides: list[str]) -> None:
    cfg, own = compose_run_config(overrides, extras=("rows", "recipes"))
    rows = int(own.get("rows", 24))
    recipes = own.get("recipes", "real")
    split = cfg.data.splits.get("val")
    seed = split.seed if split else cfg.seed
    charset = load_charset(cfg.charset)
    sources = [(SynthSource(cfg.corpus, cfg.render, charset, seed=seed), None)]
    if recipes != "none":
        args = [a for a in overrides if not a.startswith("render=")] + [f"render={recipes}"]
        extra = compose_run_config(args, extras=("rows", "recipes"))[0]
        sources.append((SynthSource(cfg.corpus, extra.render, charset, seed=seed), set(cfg.render.scenes)))
    out = cfg.stage_dir("samples")
    out.mkdir(parents=True, exist_ok=True)
    for src, done in sources:
        for scene in src.scenes:
            if done is None or scene not in done:
                write_sheet(src, scene, rows, out)


def write_sheet(src: SynthSource, scene: str, rows: int, out: Path) -> None:
    samples = [src.sample(i, scene=scene) for i in range(rows)]
    path = out / f"{scene}.png"
    cv2.imwrite(str(path), contact_sheet([s.image for s in samples]))
    (out / f"{scene}.txt").write_text("\n".join(s.label for s in samples) + "\n", encoding="utf-8")
    print(f"[samples] {path} ({rows} lines; labels in {path.with_suffix('.txt')})")


if __name__ == "__main__":
    main(sys.argv[1:])
