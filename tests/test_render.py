import random
from dataclasses import replace

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from crnn.charset import load_charset
from crnn.config import from_dict
from crnn.data.corpus import CorpusConfig
from crnn.data.fonts import FontSpec, covers, load_font
from crnn.data.render import SCENES, LineRenderer, RenderConfig, SceneRecipe, _draw_mask, recrop
from crnn.data.source import SynthSource
from tests.conftest import CONFIGS


@pytest.fixture(scope="module")
def render_cfg() -> RenderConfig:
    return from_dict(RenderConfig, yaml.safe_load((CONFIGS / "render" / "default.yaml").read_text()))


def _glyph(spec, ch: str) -> np.ndarray:
    font = load_font(spec.path, spec.index, 40)
    img = Image.new("L", (60, 60), 0)
    ImageDraw.Draw(img).text((5, 5), ch, font=font, fill=255)
    return np.asarray(img)


def _picked_font(src: SynthSource, index: int, scene: str, attempt: int):
    """The font SynthSource.sample picked for line `index`, its draws replayed up to `attempt` (the texts
    before it found no font)."""
    rng = random.Random(f"render:{src.seed}:{index}")
    for a in range(attempt):
        assert src.renderer.pick_font(scene, src.corpus.line(index, attempt=a), rng) is None
    return src.renderer.pick_font(scene, src.corpus.line(index, attempt=attempt), rng)


def _drawn_with_only(spec, render_cfg: RenderConfig, src: SynthSource, index: int, scene: str, text: str):
    """Line `index` drawn again by a renderer that knows no font but `spec` (same degradation draws)."""
    recipe = replace(render_cfg.scenes[scene], fonts=[spec.name])
    solo = LineRenderer(replace(render_cfg, scenes={scene: recipe}))
    nrng = np.random.default_rng([src.seed & 0xFFFFFFFF, index, 7])
    return solo.render_with_box(text, scene, random.Random(0), nrng)[0]


@pytest.mark.parametrize("scene", SCENES)
def test_each_scene_renders_its_label(render_cfg, scene):
    cs = load_charset("zh_en")
    src = SynthSource(CorpusConfig(), render_cfg, cs, seed=3)
    for i in range(12):
        no_font = src.stats.no_font
        s = src.sample(i, scene=scene)
        attempt = src.stats.no_font - no_font  # texts no font of the scene could draw, replaced by the next
        assert s.scene == scene
        assert s.image.dtype == np.uint8 and s.image.shape[0] == render_cfg.height
        assert s.image.shape[1] >= 4
        assert s.label == src.corpus.line(i, attempt=attempt)
        assert not cs.oov(s.label)
        assert float(s.image.std()) > 3.0  # there is ink on the ground, not a flat image
        # the font picked for the line is the one it was drawn with: a renderer with no other font
        # draws the same image ...
        spec = _picked_font(src, i, scene, attempt)
        assert spec is not None
        assert np.array_equal(_drawn_with_only(spec, render_cfg, src, i, scene, s.label), s.image)
        # ... draws every character of the label as a glyph of its own, not as its .notdef box (no tofu)
        notdef = _glyph(spec, "\uffff")
        for ch in set(s.label) - {" "}:
            assert not np.array_equal(_glyph(spec, ch), notdef), (spec.name, ch)


def test_coverage_check_rejects_missing_glyphs(render_cfg):
    r = LineRenderer(render_cfg)
    latin_only = [f for f in r.scene_fonts["handwritten"] if f.style == "hand"]
    assert latin_only, "the handwritten scene should include Latin handwriting fonts"
    spec = latin_only[0]
    assert not covers(spec, "你好")
    assert r.bank.pick(latin_only, "你好", random.Random(0)) is None
    # a font that has the glyph draws it differently from its .notdef box
    cjk = r.scene_fonts["printed"][0]
    assert covers(cjk, "永")
    assert not np.array_equal(_glyph(cjk, "永"), _glyph(cjk, "\uffff"))


def test_renderer_is_deterministic_and_counts(render_cfg):
    cs = load_charset("digits")
    a = SynthSource(CorpusConfig(kinds={"date": 1}), render_cfg, cs, seed=1)
    b = SynthSource(CorpusConfig(kinds={"date": 1}), render_cfg, cs, seed=1)
    for i in range(8):
        sa, sb = a.sample(i, balanced=True), b.sample(i, balanced=True)
        assert sa.label == sb.label and np.array_equal(sa.image, sb.image)
    assert a.stats.rendered == 8 and sorted(a.stats.by_scene) == sorted(SCENES)


def test_recrop_frames_the_ink_anew_and_loses_none(render_cfg):
    cs = load_charset("digits")
    plain = SynthSource(CorpusConfig(kinds={"date": 1}), render_cfg, cs, seed=3)
    cut = SynthSource(CorpusConfig(kinds={"date": 1}), render_cfg, cs, seed=3, recrop_p=1.0)
    rng = random.Random(0)
    changed = 0
    for i in range(12):
        a, b = plain.sample(i, balanced=True), cut.sample(i, balanced=True)
        assert a.label == b.label and b.image.shape[0] == render_cfg.height
        changed += int(a.image.shape != b.image.shape or not np.array_equal(a.image, b.image))
        # the same line drawn again with its box: the box holds the ink, and a cut with zero margins keeps it
        img, (top, bottom, left, right) = plain.renderer.render_with_box(
            a.label, a.scene, rng, np.random.default_rng(i)
        )
        assert 0 <= top < bottom <= img.shape[0] and 0 <= left < right <= img.shape[1]
        tight = recrop(img, (top, bottom, left, right), 32, np.random.default_rng(0), margin=(0.0, 0.0))
        assert tight.shape[0] == 32 and tight.shape[1] >= 4
    assert changed >= 10  # margins drawn at random: nearly every line is framed differently
    # with recrop_p 0 the stream is the plain one, draw for draw
    again = SynthSource(CorpusConfig(kinds={"date": 1}), render_cfg, cs, seed=3, recrop_p=0.0)
    assert np.array_equal(again.sample(5, balanced=True).image, plain.sample(5, balanced=True).image)


def test_excluded_fonts_are_not_used(render_cfg):
    r = LineRenderer(render_cfg, exclude_fonts=["noto_serif_sc"])
    assert all(f.name != "noto_serif_sc" for f in r.scene_fonts["printed"])


def test_contact_sheets_are_written(tmp_path):
    import importlib.util

    import cv2

    from tests.conftest import ROOT

    # in this process: the script's `main` is all its command line does (argv[1:] as overrides)
    spec = importlib.util.spec_from_file_location("contact_sheet", ROOT / "scripts" / "contact_sheet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["experiment=demo", f"runs_dir={tmp_path}", "+rows=3"])
    for scene in SCENES:
        img = cv2.imread(str(tmp_path / "demo" / "samples" / f"{scene}.png"), cv2.IMREAD_GRAYSCALE)
        assert img is not None and img.shape[0] >= 3 * 32
        labels = (tmp_path / "demo" / "samples" / f"{scene}.txt").read_text(encoding="utf-8").splitlines()
        assert len(labels) == 3 and all(labels)


def test_word_spaces_are_set_narrower_or_wider_and_the_words_drawn_alike(render_cfg):
    """Justified and tightly set print puts less than a space between words (the recognizer read a
    journal's `undergoing crustal` as one word): a recipe's word_space resizes each space, not the words."""
    spec = FontSpec("serif", "/usr/share/fonts/opentype/urw-base35/NimbusRoman-Regular.otf")
    if not covers(spec, "a"):
        pytest.skip("fonts-urw-base35 is not installed (make fonts)")
    text, size = "undergoing crustal shortening", 48
    space = load_font(spec.path, spec.index, size).getlength(" ")

    def ink_columns(scale: float, p: float = 1.0) -> np.ndarray:
        recipe = SceneRecipe(fonts=["serif"], word_space_p=p, word_space=[scale, scale])
        cols = np.flatnonzero(_draw_mask(text, spec, size, recipe, np.random.default_rng(0)).max(axis=0))
        return cols

    plain, tight, loose = ink_columns(1.0, p=0.0), ink_columns(0.5), ink_columns(1.5)
    width = lambda c: c[-1] - c[0]  # noqa: E731
    # two spaces, each half (or one and a half) as wide: the ink is that much narrower (or wider)
    assert abs((width(plain) - width(tight)) - space) <= 2
    assert abs((width(loose) - width(plain)) - space) <= 2
    # each word keeps its own ink: the runs of paper between them are what changed
    gaps = lambda c: np.diff(c)[np.diff(c) > 1]  # noqa: E731
    assert len(gaps(tight)) == len(gaps(plain)) and gaps(tight).max() < gaps(plain).max()
    # spaces of their own width at 1.0: the line's ink as drawn without (the margins are drawn after it)
    same = ink_columns(1.0)
    assert np.array_equal(same - same[0], plain - plain[0])

    # characters drawn one by one (extra letter spacing) resize their spaces too
    def spaced_width(scale: float) -> int:
        recipe = SceneRecipe(
            fonts=["serif"], spacing_p=1.0, spacing=[0.02, 0.02], word_space_p=1.0, word_space=[scale, scale]
        )
        c = np.flatnonzero(_draw_mask(text, spec, size, recipe, np.random.default_rng(0)).max(axis=0))
        return c[-1] - c[0]

    assert abs((spaced_width(1.0) - spaced_width(0.5)) - space) <= 2
    # an italic's last glyph leans past its advance (10 px here): the canvas holds all of its ink at any
    # right margin drawn, trailing space or not
    italic = FontSpec("italic", "/usr/share/fonts/opentype/urw-base35/Z003-MediumItalic.otf")
    wide = load_font(italic.path, italic.index, size).getlength(" ")
    for line in ("staff lived of", "staff f "):
        for seed in range(20):
            cols = {}
            for scale, p in ((1.0, 0.0), (0.5, 1.0)):
                recipe = SceneRecipe(fonts=["italic"], word_space_p=p, word_space=[scale, scale])
                mask = _draw_mask(line, italic, size, recipe, np.random.default_rng(seed))
                cols[scale] = np.flatnonzero(mask.max(axis=0))
                assert mask.shape[1] - 1 - cols[scale][-1] >= int(0.05 * size)  # the least right margin drawn
            inner = line.strip().count(" ")
            assert width(cols[0.5]) >= width(cols[1.0]) - inner * wide / 2 - 2


def test_a_recipe_without_word_spaces_draws_as_before():
    """Recipes that leave word_space_p at 0 make the random draws they made before it existed (the next
    draw after a line is the one recorded with the renderer of commit fa26027^), so their lines, and the
    data and test sets made with them, do not change."""
    spec = FontSpec("serif", "/usr/share/fonts/opentype/urw-base35/NimbusRoman-Regular.otf")
    if not covers(spec, "a"):
        pytest.skip("fonts-urw-base35 is not installed (make fonts)")
    recorded = {
        (): 0.6066357757671799,
        ("spacing_p", 1.0): 0.7294965609839984,
        ("char_jitter", 0.1): 0.0907530456191219,
    }
    for key, after in recorded.items():
        recipe = SceneRecipe(fonts=["serif"], **dict([key] if key else []))
        nrng = np.random.default_rng(0)
        _draw_mask("undergoing crustal shortening", spec, 48, recipe, nrng)
        assert nrng.random() == after
