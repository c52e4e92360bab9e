"""Synthetic text lines of the scene types of DESIGN.md, grayscale, at any height.

A scene type is a named `SceneRecipe` in config (configs/render/default.yaml: the four original scenes;
configs/render/real.yaml: those four plus recipes for receipts, plates, scene photos, scans and screens):
which fonts, which text, which backgrounds, how much contrast, which degradations with what probability.
`LineRenderer.render` draws one line and returns None when no font of the scene has every glyph of the text
(the caller counts that).

The recipe fields after `jpeg_quality` came with the real-image recipes. Each is off by default and, when
off, draws nothing from the random generators, so a recipe that does not use them renders exactly what it
rendered before they existed (tests/test_recipes.py holds digests of the four original scenes).
"""

from __future__ import annotations

import glob
import random
import re
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from crnn.data import augment
from crnn.data.fonts import FontBank, FontError, FontSpec, covers, load_font
from crnn.data.plate_layout import draw_plate, fits_cells

SCENES = ("printed", "signboard", "handwritten", "blurry")


@dataclass
class SceneRecipe:
    fonts: list[str]
    weight: float = 1.0
    font_scale: list[float] = field(default_factory=lambda: [0.65, 0.85])  # font px / canvas height
    backgrounds: dict[str, float] = field(default_factory=lambda: {"paper": 1.0})
    bg_level: list[float] = field(default_factory=lambda: [215, 255])
    contrast: list[float] = field(default_factory=lambda: [120, 230])  # |bg - ink| in gray levels
    invert_p: float = 0.0  # light ink on a dark ground
    bold_p: float = 0.0  # a stroke in the ink colour
    outline_p: float = 0.0  # a stroke in a contrasting colour
    shadow_p: float = 0.0
    char_jitter: float = 0.0  # per-character vertical/size/spacing wobble, relative to font size
    spacing_p: float = 0.0  # chance of extra space between characters
    spacing: list[float] = field(default_factory=lambda: [0.0, 0.08])  # that extra space (em)
    stroke_jitter_p: float = 0.0
    elastic_p: float = 0.0
    elastic_alpha: float = 1.2
    rotate_p: float = 0.0
    rotate_deg: float = 1.5
    perspective_p: float = 0.0
    perspective: float = 0.15
    motion_blur_p: float = 0.0
    motion_blur_len: int = 5
    defocus_p: float = 0.0
    defocus_sigma: float = 1.2
    low_res_p: float = 0.0
    low_res_scale: float = 0.45
    uneven_light_p: float = 0.0
    uneven_light: float = 0.5
    noise_sigma: float = 3.0
    jpeg_p: float = 0.0
    jpeg_quality: list[int] = field(default_factory=lambda: [15, 60])
    # -- the real-image recipes' fields (configs/render/real.yaml); off by default, see the module doc --
    # the scene's own corpus kinds, (low, high, weight) length ranges and longest line (empty or 0: the run's)
    text: dict[str, float] = field(default_factory=dict)
    text_lengths: list[list[float]] = field(default_factory=list)
    text_max_len: int = 0
    squeeze_p: float = 0.0  # condensed (or extended) glyphs
    squeeze: list[float] = field(default_factory=lambda: [0.6, 0.9])  # width factor
    curve_p: float = 0.0  # baseline bent into an arc or an S
    curve: float = 0.12  # bend, relative to the line's height
    dot_matrix_p: float = 0.0  # strokes as an impact printer's dots
    dot_pitch: list[float] = field(default_factory=lambda: [0.08, 0.12])  # grid pitch, relative to font size
    fade_p: float = 0.0  # faint, uneven ink (ribbon, thermal head, fading)
    fade: float = 0.6
    plate_p: float = 0.0  # a licence plate's frame and bolts around the text
    source_height_p: float = 0.0  # the line made as a small image and scaled up (94x24 plates, small UI text)
    source_height: list[int] = field(default_factory=lambda: [14, 24])  # that image's height in pixels
    binarize_p: float = 0.0  # a bilevel scan
    speckle_p: float = 0.0  # dust and toner specks
    speckle: float = 0.002  # their density (share of pixels)
    tight_p: float = 0.0  # crop to the ink box, margins touching the letters
    tight_margin: list[float] = field(default_factory=lambda: [0.0, 0.1])  # margin, relative to ink height
    plate_cells_p: float = 0.0  # a plate's fixed cells, each glyph as tall as its cell (data/plate_layout.py)
    serial_fonts: list[str] = field(default_factory=list)  # faces for a plate's letters and digits
    dot_draft_p: float = 0.0  # share of dot_matrix_p's lines printed in draft mode (augment.dot_matrix)
    # word spaces set narrower or wider than the font's own space (justified and tightly set print: a
    # journal's `undergoing crustal` with a gap half a space wide, which the recognizer read as one word)
    word_space_p: float = 0.0
    word_space: list[float] = field(default_factory=lambda: [0.5, 1.5])  # times the font's space advance
    # a share of the lines printed from a needle printer's own bitmap face, one dot per pixel of its strike
    # (crnn.data.fonts: `style: needles`), in draft mode at dot_draft_p; lines no such face covers (hanzi)
    # are drawn as before
    needle_p: float = 0.0
    needle_fonts: list[str] = field(default_factory=list)


# Fields added with the real-image recipes. Left out of `render_identity` when at their defaults, so data
# rendered before they existed keeps its fingerprint (crnn.data.synth), as it keeps its images.
_RECIPE_FIELDS = [f.name for f in fields(SceneRecipe)]
_LATER_SCENE_FIELDS = tuple(_RECIPE_FIELDS[_RECIPE_FIELDS.index("text") :])


@dataclass
class RenderConfig:
    height: int = 32  # stored line height (32-64)
    canvas_scale: float = 1.5  # font px = height * canvas_scale * font_scale; drawn large, then downsampled
    fonts: dict[str, dict] = field(default_factory=dict)  # name -> {path, index, style}
    scenes: dict[str, SceneRecipe] = field(default_factory=dict)
    photos: list[str] = field(default_factory=list)  # globs of photographs for the `photo` background


def render_identity(cfg: RenderConfig) -> dict:
    """The render config as a plain dict for fingerprints: `asdict`, less the fields added with the
    real-image recipes where they are at their defaults (so the four original scenes keep the fingerprint
    they had, as they keep their images)."""
    d = asdict(cfg)
    if not d["photos"]:
        del d["photos"]
    defaults = asdict(SceneRecipe(fonts=[]))
    for scene in d["scenes"].values():
        for k in _LATER_SCENE_FIELDS:
            if scene[k] == defaults[k]:
                del scene[k]
    return d


def read_photo(path: str, max_side: int = 1024) -> np.ndarray | None:
    """One photograph as the renderer uses it: grayscale, decoded at half size, at most `max_side` pixels
    on its long side; None when it cannot be read."""
    img = cv2.imread(path, cv2.IMREAD_REDUCED_GRAYSCALE_2)
    if img is None:
        return None
    f = max_side / max(img.shape)
    if f < 1:
        size = (int(img.shape[1] * f), int(img.shape[0] * f))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


def photo_paths(patterns: tuple[str, ...] | list[str]) -> list[str]:
    return sorted({p for pat in patterns for p in glob.glob(pat)})


@lru_cache(maxsize=8)
def load_photos(patterns: tuple[str, ...], max_side: int = 1024) -> tuple[np.ndarray, ...]:
    """The photographs matching `patterns` (read once per process: decoding a 4000x3000 JPEG costs
    ~100 ms, a patch of it microseconds)."""
    photos = (read_photo(p, max_side) for p in photo_paths(patterns))
    return tuple(img for img in photos if img is not None)


class LineRenderer:
    def __init__(self, cfg: RenderConfig, exclude_fonts: list[str] | tuple[str, ...] = ()) -> None:
        if not 16 <= cfg.height <= 128:
            raise ValueError(f"render.height must be within 16..128, got {cfg.height}")
        self.cfg = cfg
        self.bank = FontBank([FontSpec(name=n, **spec) for n, spec in cfg.fonts.items()])
        if not cfg.scenes:
            raise ValueError("render.scenes is empty: configure at least one scene recipe")
        self.scene_fonts: dict[str, list[FontSpec]] = {
            name: self.bank.resolve(recipe.fonts, exclude=exclude_fonts)
            for name, recipe in cfg.scenes.items()
        }
        self.serial_fonts: dict[str, list[FontSpec]] = {
            name: self.bank.resolve(recipe.serial_fonts, exclude=exclude_fonts)
            for name, recipe in cfg.scenes.items()
            if recipe.serial_fonts
        }
        self.needle_fonts: dict[str, list[FontSpec]] = {  # resolved only where used: xfonts-base is optional
            name: self.bank.resolve(recipe.needle_fonts, exclude=exclude_fonts)
            for name, recipe in cfg.scenes.items()
            if recipe.needle_p > 0
        }
        self.photos: tuple[np.ndarray, ...] = ()
        users = [n for n, r in cfg.scenes.items() if r.backgrounds.get("photo", 0) > 0]
        if users:
            self.photos = load_photos(tuple(cfg.photos))
            if not self.photos:
                raise FontError(
                    f"scene(s) {users} draw on photographs but render.photos {cfg.photos} matches no image; "
                    "run `make fonts` (installs the Debian wallpaper package with apt-get)"
                )

    @property
    def scene_names(self) -> list[str]:
        return list(self.cfg.scenes)

    def pick_font(self, scene: str, text: str, rng: random.Random) -> FontSpec | None:
        return self.bank.pick(self.scene_fonts[scene], text, rng)

    def render(
        self, text: str, scene: str, rng: random.Random, nrng: np.random.Generator
    ) -> np.ndarray | None:
        """A uint8 grayscale line of height `cfg.height` showing `text`, or None if no font covers it."""
        out = self.render_with_box(text, scene, rng, nrng)
        return None if out is None else out[0]

    def render_with_box(
        self, text: str, scene: str, rng: random.Random, nrng: np.random.Generator
    ) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """The line and its ink box (top, bottom, left, right) in it, before the scene's geometric faults
        (a degree or two of rotation or perspective moves it by a pixel or so)."""
        recipe = self.cfg.scenes[scene]
        spec = self.pick_font(scene, text, rng)
        if spec is None:
            return None
        size = max(8, int(self.cfg.height * self.cfg.canvas_scale * nrng.uniform(*recipe.font_scale)))
        if _chance(nrng, recipe.plate_cells_p) and fits_cells(text):
            mask = draw_plate(text, spec, size, nrng, self.serial_fonts.get(scene))
            mask = _shape_mask(mask, size, recipe, nrng, squeeze=False)  # the cells set the glyphs' widths
        elif (face := self._needle_face(scene, text, rng, nrng)) is not None:
            mask = _needle_mask(text, face, size, recipe, nrng)
            mask = _shape_mask(mask, size, recipe, nrng, dots=False)  # printed in dots already
        else:
            mask = _draw_mask(text, spec, size, recipe, nrng)
            mask = _shape_mask(mask, size, recipe, nrng)
        img = _compose_scene(mask, recipe, nrng, self.photos)
        img = _degrade(img, recipe, nrng)
        img = np.clip(img, 0, 255).astype(np.uint8)
        h, w = img.shape
        f = self.cfg.height / h
        out_w = max(1, int(round(w * f)))
        rows, cols = np.flatnonzero(mask.max(axis=1) > 64), np.flatnonzero(mask.max(axis=0) > 64)
        if rows.size and cols.size:
            box = (
                int(rows[0] * f),
                int(np.ceil((rows[-1] + 1) * f)),
                int(cols[0] * f),
                int(np.ceil((cols[-1] + 1) * f)),
            )
        else:
            box = (0, self.cfg.height, 0, out_w)
        out = cv2.resize(img, (out_w, self.cfg.height), interpolation=cv2.INTER_AREA)
        if _chance(nrng, recipe.tight_p):
            out = recrop(out, box, self.cfg.height, nrng, margin=tuple(recipe.tight_margin))
            box = (0, self.cfg.height, 0, out.shape[1])  # framed anew around the ink: the box is the line
        return out, box


    def _needle_face(
        self, scene: str, text: str, rng: random.Random, nrng: np.random.Generator
    ) -> FontSpec | None:
        """A needle printer's face for this line at the scene's needle_p, when one covers the text."""
        if not _chance(nrng, self.cfg.scenes[scene].needle_p):
            return None
        return self.bank.pick(self.needle_fonts[scene], text, rng)


def recrop(
    img: np.ndarray,
    box: tuple[int, int, int, int],
    height: int,
    nrng: np.random.Generator,
    margin: tuple[float, float] = (0.0, 0.4),
) -> np.ndarray:
    """The line cut again around its ink with new margins (a fraction of the ink height on each side) and
    scaled back to `height`: text as a detector, a page segmenter or a user's own crop frames it, larger
    and placed differently than the renderer's line box."""
    top, bottom, left, right = box
    band = max(1, bottom - top)
    h, w = img.shape[:2]
    y0 = max(0, int(top - nrng.uniform(*margin) * band))
    y1 = min(h, int(np.ceil(bottom + nrng.uniform(*margin) * band)))
    x0 = max(0, int(left - nrng.uniform(*margin) * band))
    x1 = min(w, int(np.ceil(right + nrng.uniform(*margin) * band)))
    crop = img[y0:y1, x0:x1]
    if crop.shape[0] < 4 or crop.shape[1] < 4:
        return img
    out_w = max(1, int(round(crop.shape[1] * height / crop.shape[0])))
    return cv2.resize(crop, (out_w, height), interpolation=cv2.INTER_LINEAR)


def _draw_mask(text: str, spec: FontSpec, size: int, r: SceneRecipe, nrng: np.random.Generator) -> np.ndarray:
    """Ink coverage (uint8) of the text, on a canvas whose rows hold the whole line box plus random margins.

    The line box is the union of the text's own ink box and a reference box (a tall hanzi or capital and a
    descender), both relative to the baseline: a line of dashes is not stretched to fill the height, and
    nothing is ever clipped, so the label never claims a character the image lost.
    """
    font = load_font(spec.path, spec.index, size)
    stroke = max(1, size // 24) if nrng.random() < r.bold_p else 0
    spacing = nrng.uniform(*r.spacing) * size if nrng.random() < r.spacing_p else 0.0
    jitter = r.char_jitter
    space = nrng.uniform(*r.word_space) if " " in text.strip() and _chance(nrng, r.word_space_p) else 1.0
    # pieces drawn one after another: characters when spaced or jittered, else words and spaces (a word
    # keeps its kerning), else the whole line at once
    pieces: list[tuple[str, ImageFont.FreeTypeFont, float]] = []  # (text, font, advance)
    if spacing != 0.0 or jitter > 0:
        for ch in text:
            f = font
            if jitter > 0 and ch != " ":
                f = load_font(spec.path, spec.index, max(8, int(size * (1 + nrng.uniform(-jitter, jitter)))))
            pieces.append((ch, f, f.getlength(ch) * (space if ch == " " else 1.0) + spacing))
    elif space != 1.0:
        for part in re.split("( +)", text):
            if part:
                scale = space if part[0] == " " else 1.0
                pieces.append((part, font, font.getlength(part) * scale))
    text_w = sum(adv for _, _, adv in pieces) if pieces else font.getlength(text)
    top, bottom = _reference_box(spec, size)
    ink = font.getbbox(text, anchor="ls")
    top, bottom = min(top, ink[1]) - stroke, max(bottom, ink[3]) + stroke
    wobble = int(jitter * size * 0.6) + 1
    box_h = bottom - top
    m_top = int(nrng.uniform(0.1, 0.25) * box_h) + wobble
    m_bot = int(nrng.uniform(0.1, 0.25) * box_h) + wobble
    pad_l = int(nrng.uniform(0.05, 0.5) * size) + stroke + max(0, -ink[0])
    pad_r = int(nrng.uniform(0.05, 0.5) * size) + stroke
    # the ink's right end: past the last advance by the last glyph's overhang (an italic's), spaces resized;
    # measured only then (one more layout of the line, on the renderer's hot path)
    right = (
        max(text_w, ink[2]) if space == 1.0 else text_w + max(0.0, ink[2] - font.getlength(text.rstrip(" ")))
    )
    width = int(right + pad_l + pad_r + 2)
    height = int(box_h + m_top + m_bot)
    img = Image.new("L", (max(width, 4), max(height, 8)), 0)
    draw = ImageDraw.Draw(img)
    baseline = m_top - top
    if not pieces:
        draw.text((pad_l, baseline), text, font=font, fill=255, anchor="ls")
    else:
        x = float(pad_l)
        for piece, f, adv in pieces:
            dy = nrng.uniform(-jitter, jitter) * size * 0.5 if jitter else 0.0
            draw.text((x, baseline + dy), piece, font=f, fill=255, anchor="ls")
            x += adv
    mask = np.asarray(img)
    if stroke:  # bold by dilation: FreeType's stroker costs ~10x a plain draw on long lines
        mask = cv2.dilate(mask, np.ones((2 * stroke + 1, 2 * stroke + 1), np.uint8))
    return mask


def _needle_mask(text: str, spec: FontSpec, size: int, r: SceneRecipe, nrng: np.random.Generator) -> np.ndarray:
    """Ink coverage (uint8) of the text printed from a bitmap face (`spec.px` pixels tall): its strike's own
    pixels, each a needle's dot, the face's cell (ascent and descent) as tall as an outline font of `size`,
    with the margins _draw_mask gives a line. A till prints a space as an empty cell: no word-space change."""
    font = load_font(spec.path, spec.index, spec.px)
    ascent, descent = font.getmetrics()
    img = Image.new("L", (max(1, int(np.ceil(font.getlength(text)))), ascent + descent), 0)
    draw = ImageDraw.Draw(img)
    draw.fontmode = "1"  # the strike's pixels as they are, no smoothing
    draw.text((0, ascent), text, font=font, fill=255, anchor="ls")
    pitch = max(2.0, size / (ascent + descent))
    draft = _chance(nrng, r.dot_draft_p)
    dots = augment.needle_dots(np.asarray(img) > 127, pitch, nrng, draft, stretch=nrng.uniform(0.8, 1.25))
    h = dots.shape[0]
    m_top, m_bot = int(nrng.uniform(0.1, 0.25) * h) + 1, int(nrng.uniform(0.1, 0.25) * h) + 1
    pad_l, pad_r = int(nrng.uniform(0.05, 0.5) * size) + 1, int(nrng.uniform(0.05, 0.5) * size) + 1
    return cv2.copyMakeBorder(dots, m_top, m_bot, pad_l, pad_r, cv2.BORDER_CONSTANT, value=0)


@lru_cache(maxsize=4096)
def _reference_box(spec: FontSpec, size: int) -> tuple[int, int]:
    """Top and bottom (relative to the baseline) of a full line box in this font: a hanzi if it has one,
    an accented capital, a descender."""
    ref = "".join(c for c in "国Ày" if covers(spec, c)) or "x"
    box = load_font(spec.path, spec.index, size).getbbox(ref, anchor="ls")
    return box[1], box[3]


def _chance(nrng: np.random.Generator, p: float) -> bool:
    """True with probability p; draws nothing when p is 0 (the real-image recipes' fields must not shift the
    random streams of recipes that leave them off)."""
    return p > 0 and nrng.random() < p


def _shape_mask(
    mask: np.ndarray,
    size: int,
    r: SceneRecipe,
    nrng: np.random.Generator,
    squeeze: bool = True,
    dots: bool = True,
) -> np.ndarray:
    """The real-image recipes' changes to the ink itself: condensed glyphs, a bent baseline, printer dots
    (not on a line printed in dots already), faint ink. Nothing is drawn from `nrng` for a recipe that uses
    none of them."""
    if squeeze and _chance(nrng, r.squeeze_p):
        mask = augment.squeeze(mask, nrng, *r.squeeze)
    if _chance(nrng, r.curve_p):
        mask = augment.curve(mask, nrng, r.curve)
    if dots and _chance(nrng, r.dot_matrix_p):
        pitch = size * nrng.uniform(*r.dot_pitch)
        mask = augment.dot_matrix(mask, nrng, pitch, draft=_chance(nrng, r.dot_draft_p))
    if _chance(nrng, r.fade_p):
        mask = augment.fade_ink(mask, nrng, r.fade)
    return mask


def _compose_scene(
    mask: np.ndarray, r: SceneRecipe, nrng: np.random.Generator, photos: tuple[np.ndarray, ...] = ()
) -> np.ndarray:
    h, w = mask.shape
    bg_level = nrng.uniform(*r.bg_level)
    contrast = nrng.uniform(*r.contrast)
    ink = bg_level - contrast
    if ink < 0:  # keep the requested contrast inside 0..255
        bg_level, ink = min(255.0, bg_level - ink), 0.0
    if nrng.random() < r.invert_p:
        bg_level, ink = 255.0 - bg_level, 255.0 - ink
    kinds = list(r.backgrounds)
    kind = kinds[int(nrng.choice(len(kinds), p=_normalised(r.backgrounds.values())))]
    if kind == "photo":
        # a photograph's texture around the ground level: its own mean moved to bg_level, its contrast
        # scaled down so that the text's contrast still holds on average (a sign on a wall, a label on a box)
        patch = augment.photo_patch(photos[int(nrng.integers(len(photos)))], h, w, nrng)
        img = bg_level + (patch - float(patch.mean())) * nrng.uniform(0.15, 0.6)
    else:
        img = augment.background(kind, h, w, bg_level, nrng)
    if _chance(nrng, r.plate_p):
        img = augment.plate_furniture(img, nrng, ink, (ink + bg_level) / 2)
    if nrng.random() < r.stroke_jitter_p:
        mask = augment.stroke_jitter(mask, nrng)
    if nrng.random() < r.shadow_p:
        dx, dy = int(nrng.integers(1, 4)), int(nrng.integers(1, 4))
        shadow = np.zeros_like(mask)
        shadow[dy:, dx:] = mask[: h - dy, : w - dx]
        img = augment.compose(img, shadow, bg_level + (ink - bg_level) * 0.5)
    if nrng.random() < r.outline_p:
        k = max(2, h // 16)
        halo = cv2.dilate(mask, np.ones((k, k), np.uint8))
        outline_level = 255.0 - ink if abs(255.0 - ink - bg_level) > 40 else bg_level
        img = augment.compose(img, halo, outline_level)
    return augment.compose(img, mask, ink)


def _degrade(img: np.ndarray, r: SceneRecipe, nrng: np.random.Generator) -> np.ndarray:
    border = float(np.median(img[:, :2]))
    if nrng.random() < r.elastic_p:
        img = augment.elastic(img, nrng, r.elastic_alpha, border)
    if nrng.random() < r.rotate_p:
        img = augment.rotate(img, nrng, r.rotate_deg)
    if nrng.random() < r.perspective_p:
        img = augment.perspective(img, nrng, r.perspective)
    if nrng.random() < r.uneven_light_p:
        img = augment.uneven_light(img, nrng, r.uneven_light)
    if nrng.random() < r.motion_blur_p:
        img = augment.motion_blur(img, nrng, r.motion_blur_len)
    if nrng.random() < r.defocus_p:
        img = augment.defocus(img, nrng, r.defocus_sigma)
    if nrng.random() < r.low_res_p:
        img = augment.low_resolution(img, nrng, r.low_res_scale)
    if _chance(nrng, r.source_height_p):
        img = augment.resample_height(img, nrng, *r.source_height)
    if r.noise_sigma > 0:
        img = augment.gaussian_noise(img, nrng, r.noise_sigma)
    if _chance(nrng, r.binarize_p):
        img = augment.binarize(img, nrng)
    if _chance(nrng, r.speckle_p):
        img = augment.speckle(img, nrng, r.speckle)
    if nrng.random() < r.jpeg_p:
        img = augment.jpeg(img, nrng, *r.jpeg_quality)
    return img


def _normalised(weights) -> np.ndarray:
    w = np.asarray(list(weights), dtype=np.float64)
    return w / w.sum()
