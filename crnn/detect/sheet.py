"""A contact sheet of synthetic pages and their line boxes: `python -m crnn.detect.sheet experiment=X`
writes runs/<name>/detect/samples/pages.png (two pages of every layout; readable boxes red, ignored blue),
to look at what the detector learns from before training on it.
"""

from __future__ import annotations

import cv2
import hydra
import numpy as np
from omegaconf import DictConfig

from crnn.cli import stage_errors
from crnn.detect.data import page_synth
from crnn.settings import RunConfig, load_run_config

TILE = 400


def tile(page, label: str) -> np.ndarray:
    img = cv2.cvtColor(page.image, cv2.COLOR_GRAY2BGR)
    for ln in page.lines:
        color = (255, 0, 0) if ln.ignore else (0, 0, 255)
        cv2.polylines(img, [ln.quad.astype(np.int32)], True, color, 2)
    s = TILE / max(img.shape[:2])
    img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    out = np.full((TILE + 24, TILE, 3), 128, np.uint8)
    out[: img.shape[0], : img.shape[1]] = img
    cv2.putText(out, label, (4, TILE + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 90, 0), 1)
    return out


def run(cfg: RunConfig, per_layout: int = 2) -> str:
    synth = page_synth(cfg, cfg.detect.val_seed + 1)
    tiles = []
    for k in range(per_layout):
        for i, layout in enumerate(synth.layouts):
            page = synth.page(k * 100 + i, layout)
            tiles.append(tile(page, f"{layout}: {sum(not ln.ignore for ln in page.lines)} lines"))
    cols = len(synth.layouts)
    rows = [np.hstack(tiles[r : r + cols]) for r in range(0, len(tiles), cols)]
    out = cfg.stage_dir("detect") / "samples"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pages.png"
    cv2.imwrite(str(path), np.vstack(rows))
    return str(path)


@hydra.main(config_path="../../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        print(run(load_run_config(dcfg)))


if __name__ == "__main__":
    main()
