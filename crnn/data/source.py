"""A synthetic sample source: corpus text drawn by the renderer in a scene type, a pure function of its index.

Used by the LMDB writer (`python -m crnn.data.synth`) and by the on-the-fly training stream alike, so the
two produce the same kind of data from the same config.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from crnn.charset import Charset
from crnn.data.corpus import Corpus, CorpusConfig
from crnn.data.render import LineRenderer, RenderConfig, recrop

if TYPE_CHECKING:
    from crnn.settings import RunConfig


@dataclass
class SynthSample:
    image: np.ndarray
    label: str
    scene: str


@dataclass
class SourceStats:
    rendered: int = 0
    no_font: int = 0  # texts no font of the scene could draw (redrawn with new text, counted here)
    by_scene: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"rendered": self.rendered, "no_font": self.no_font, "by_scene": dict(self.by_scene)}


class SynthSource:
    def __init__(self, corpus_cfg: CorpusConfig, render_cfg: RenderConfig, charset: Charset, seed: int,
                 exclude_fonts: list[str] | tuple[str, ...] = (), recrop_p: float = 0.0) -> None:
        self.seed = seed
        self.recrop_p = recrop_p  # share of lines cut again around their ink (crnn.data.render.recrop)
        self.corpus = Corpus(corpus_cfg, charset, seed=seed)
        self.renderer = LineRenderer(render_cfg, exclude_fonts=exclude_fonts)
        self.scenes = self.renderer.scene_names
        # a scene with its own text kinds (plates, receipts, ...) draws from its own view of the corpus
        self.corpora = {s: self.corpus.for_scene(r.text, r.text_lengths, r.text_max_len)
                        for s, r in render_cfg.scenes.items()}
        self.scene_weights = [render_cfg.scenes[s].weight for s in self.scenes]
        self.stats = SourceStats()

    def scene_for(self, index: int, balanced: bool) -> str:
        """Balanced: scenes in turn (val/test sets hold every scene); else drawn by recipe weight."""
        if balanced:
            return self.scenes[index % len(self.scenes)]
        return random.Random(f"scene:{self.seed}:{index}").choices(self.scenes, weights=self.scene_weights)[0]

    def sample(self, index: int, scene: str | None = None, balanced: bool = False,
               target_len: int | None = None) -> SynthSample:
        scene = scene or self.scene_for(index, balanced)
        rng = random.Random(f"render:{self.seed}:{index}")
        nrng = np.random.default_rng([self.seed & 0xFFFFFFFF, index, 7])
        for attempt in range(10):
            text = self.corpora[scene].line(index, target_len=target_len, attempt=attempt)
            out = self.renderer.render_with_box(text, scene, rng, nrng)
            if out is not None:
                img = out[0]
                if self.recrop_p > 0 and nrng.random() < self.recrop_p:
                    img = recrop(img, out[1], self.renderer.cfg.height, nrng)
                self.stats.rendered += 1
                self.stats.by_scene[scene] = self.stats.by_scene.get(scene, 0) + 1
                return SynthSample(img, text, scene)
            self.stats.no_font += 1
        raise RuntimeError(f"scene {scene!r}: no configured font could draw 10 corpus lines in a row; "
                           "check render.scenes.*.fonts against the alphabet")


def train_stream_source(cfg: RunConfig, charset: Charset) -> SynthSource:
    """The synthetic source behind `data.train=synth`: the train split's fonts and re-crop share, seeded by
    split seed and run seed (fine-tuning rounds bump the run seed and so see lines training did not).
    Training and INT8 calibration both draw from it, so calibration sees the distribution the model learnt."""
    split = cfg.data.splits.get("train")
    return SynthSource(
        cfg.corpus,
        cfg.render,
        charset,
        seed=(split.seed if split else 0) + 7919 * cfg.seed,
        exclude_fonts=split.exclude_fonts if split else (),
        recrop_p=split.recrop_p if split else 0.0,
    )
