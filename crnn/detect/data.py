"""Training batches for the detector: synthetic pages, scaled and cut to square crops, with DB targets.

The stream is a pure function of (seed, batch index): worker w of W renders batches w, w + W, ... and the
loader hands them out in order, so a resumed run continues with the batch after its last step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from crnn.charset import load_charset
from crnn.data.source import SynthSource
from crnn.detect.boxes import BoxConfig, det_normalize, read_scale
from crnn.detect.pages import Page, PageSynth
from crnn.detect.targets import make_targets
from crnn.stop import ignore_stop_signals

if TYPE_CHECKING:
    from crnn.settings import RunConfig

TARGET_KEYS = ("prob", "prob_mask", "thresh", "thresh_mask", "prob_weight")


def page_synth(cfg: RunConfig, seed: int) -> PageSynth:
    """Pages from the run's corpus, render recipes and alphabet."""
    source = SynthSource(cfg.corpus, cfg.render, load_charset(cfg.charset), seed=seed)
    return PageSynth(source, cfg.detect.pages, seed=seed)


def crop_sample(
    page: Page,
    size: int,
    scale: tuple[float, float],
    nrng: np.random.Generator,
    boxes: BoxConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The page scaled, then cut or padded to size x size at a random place: the image and its lines' quads
    and ignore flags there (a line the cut crosses is ignored).

    With `boxes` (training), the scale is `scale` times the one inference reads the page at
    (crnn.detect.boxes.read_scale), so text is trained at the sizes it is served at; without it, the
    page's long side becomes `scale` x `size` (a whole page in the crop)."""
    h, w = page.image.shape
    base = read_scale(h, w, boxes) if boxes else size / max(h, w)
    s = base * nrng.uniform(*scale)
    nh, nw = max(8, int(round(h * s))), max(8, int(round(w * s)))
    img = cv2.resize(page.image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    sx, sy = nw / w, nh / h
    ox = int(nrng.integers(0, nw - size + 1)) if nw > size else -int(nrng.integers(0, size - nw + 1))
    oy = int(nrng.integers(0, nh - size + 1)) if nh > size else -int(nrng.integers(0, size - nh + 1))
    pad = float(np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])))
    out = np.full((size, size), pad, np.uint8)
    src = img[max(0, oy) : max(0, oy) + size, max(0, ox) : max(0, ox) + size]
    out[max(0, -oy) : max(0, -oy) + src.shape[0], max(0, -ox) : max(0, -ox) + src.shape[1]] = src
    quads = page.quads() * np.float32([sx, sy]) - np.float32([ox, oy])
    ignore = np.array([ln.ignore for ln in page.lines], bool)
    if len(quads):
        outside = (quads.min(axis=1) < 0).any(axis=1) | (quads.max(axis=1) > size).any(axis=1)
        ignore = ignore | outside
    return out, quads, ignore


class PageBatches(IterableDataset):
    """Batches (x, targets) of `batch` crops each, from batch index `start` on."""

    def __init__(self, cfg: RunConfig, start: int, seed: int) -> None:
        self.cfg, self.start, self.seed = cfg, start, seed
        self.synth: PageSynth | None = None

    def batch(self, b: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.synth is None:
            self.synth = page_synth(self.cfg, self.seed)
        t = self.cfg.detect.train
        xs, maps = [], {k: [] for k in TARGET_KEYS}
        page, page_index = None, -1
        for i in range(t.batch_size):
            index = b * t.batch_size + i
            if index // t.crops_per_page != page_index:  # several crops of one page: rendering costs more
                page_index = index // t.crops_per_page  # than a training step's share of a page
                page = self.synth.page(page_index)
            nrng = np.random.default_rng([self.seed, index, 23])
            img, quads, ignore = crop_sample(page, t.size, tuple(t.scale), nrng, self.cfg.detect.boxes)
            xs.append(det_normalize(img))
            for k, v in make_targets(quads, ignore, t.size, t.size, self.cfg.detect.targets).items():
                maps[k].append(v)
        x = torch.from_numpy(np.stack(xs)[:, None])
        return x, {k: torch.from_numpy(np.stack(v)[:, None]) for k, v in maps.items()}

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        b = self.start + worker
        while True:
            yield self.batch(b)
            b += workers


def train_loader(cfg: RunConfig, start: int) -> DataLoader:
    workers = cfg.detect.train.num_workers
    return DataLoader(
        PageBatches(cfg, start, seed=cfg.seed * 7919 + 17),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
        worker_init_fn=ignore_stop_signals,  # Ctrl-C stops the main process politely (crnn.stop)
    )


def validation_pages(cfg: RunConfig) -> list[Page]:
    """The fixed synthetic pages training validates on: their own seed, every layout in turn."""
    synth = page_synth(cfg, cfg.detect.val_seed)
    layouts = synth.layouts
    return [synth.page(i, layouts[i % len(layouts)]) for i in range(cfg.detect.train.val_pages)]
