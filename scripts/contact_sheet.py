"""Contact sheet PNG per scene type, so a person can look at what the renderer makes.

    python scripts/contact_sheet.py experiment=demo [+rows=24]     (make samples EXP=demo)

Writes runs/<name>/samples/<scene>.png: `rows` lines of that scene, each under its label's index.
"""

from __future__ import annotations

import sys

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
    cfg, own = compose_run_config(overrides, extras=("rows",))
    rows = int(own.get("rows", 24))
    split = cfg.data.splits.get("val")
    src = SynthSource(
        cfg.corpus, cfg.render, load_charset(cfg.charset), seed=split.seed if split else cfg.seed
    )
    out = cfg.stage_dir("samples")
    out.mkdir(parents=True, exist_ok=True)
    for scene in src.scenes:
        samples = [src.sample(i, scene=scene) for i in range(rows)]
        path = out / f"{scene}.png"
        cv2.imwrite(str(path), contact_sheet([s.image for s in samples]))
        (out / f"{scene}.txt").write_text("\n".join(s.label for s in samples) + "\n", encoding="utf-8")
        print(f"[samples] {path} ({rows} lines; labels in {path.with_suffix('.txt')})")


if __name__ == "__main__":
    main(sys.argv[1:])
