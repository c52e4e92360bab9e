"""Fonts from Debian packages, with a glyph-coverage check per string.

A font that lacks a glyph draws a box (tofu) or nothing, and the label would then lie about the image. So
before a string is drawn, the renderer asks `FontBank.pick` for a font whose cmap holds every character.

Besides outline fonts, the catalogue may name a needle printer's faces: X11 bitmap fonts (PCF, e.g.
xfonts-base's 5x7 to 9x15 "fixed" faces), `style: needles`, with the pixel size of their one strike (`px`).
A dot-matrix till prints from such a grid, one needle firing per pixel; sampling an outline font on a grid
does not draw its letters (a 5x7 `a`, an `e` with a flat top), so the renderer draws these faces dot by
dot (crnn.data.render).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fontTools.ttLib import TTFont
from PIL import ImageFont

FONT_PACKAGES_HINT = "run `make fonts` (installs the Debian font packages with apt-get)"


class FontError(RuntimeError):
    """No usable font for a scene or a string."""


@dataclass(frozen=True)
class FontSpec:
    name: str
    path: str
    index: int = 0
    style: str = "sans"
    px: int = 0  # a bitmap face's strike size in pixels (style `needles`); 0 for an outline font


NEEDLES = "needles"  # the style of a needle printer's bitmap face


def is_bitmap(path: str) -> bool:
    return path.endswith((".pcf", ".pcf.gz"))


@lru_cache(maxsize=None)
def font_coverage(path: str, index: int) -> frozenset[int]:
    """Code points the font maps to a glyph (read once per process)."""
    if is_bitmap(path):
        return _pcf_coverage(path)
    font = TTFont(path, fontNumber=index, lazy=True)
    try:
        return frozenset(font.getBestCmap() or {})
    finally:
        font.close()


def _pcf_coverage(path: str) -> frozenset[int]:
    """The code points of an ISO 8859-1 PCF face (its encoding table, read by Pillow's PCF parser): Latin-1
    maps byte values to the same code points."""
    import gzip
    import io

    from PIL import PcfFontFile

    raw = Path(path).read_bytes()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    font = PcfFontFile.PcfFontFile(io.BytesIO(raw), "iso8859-1")
    return frozenset(i for i, g in enumerate(font.glyph) if g is not None and i >= 32)


@lru_cache(maxsize=4096)
def load_font(path: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size=size, index=index)


def covers(spec: FontSpec, text: str) -> bool:
    cmap = font_coverage(spec.path, spec.index)
    return all(ord(c) in cmap or c == " " for c in text)


class FontBank:
    """The configured fonts that exist on this machine, looked up by name."""

    def __init__(self, specs: list[FontSpec]) -> None:
        self.all = {s.name: s for s in specs}
        self.present = {s.name: s for s in specs if Path(s.path).is_file()}
        self.missing = sorted(set(self.all) - set(self.present))

    def resolve(self, names: list[str], exclude: list[str] | tuple[str, ...] = ()) -> list[FontSpec]:
        unknown = [n for n in names if n not in self.all]
        if unknown:
            raise FontError(f"font name(s) {unknown} are not in the font catalogue (render.fonts)")
        found = [self.present[n] for n in names if n in self.present and n not in exclude]
        if not found:
            raise FontError(f"none of the fonts {names} is installed (excluding {list(exclude)}); {FONT_PACKAGES_HINT}")
        return found

    @staticmethod
    def pick(candidates: list[FontSpec], text: str, rng: random.Random) -> FontSpec | None:
        """A random font among `candidates` that has a glyph for every character, or None."""
        order = list(candidates)
        rng.shuffle(order)
        for spec in order:
            if covers(spec, text):
                return spec
        return None
