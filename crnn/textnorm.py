"""Text normalisation before scoring, declared per scene or category in config (`eval.normalize`).

Real test sets label what a reader would accept, not every glyph's code point: a receipt's "TOTAL" and
"total" are the same reading by SROIE's convention, a plate's separator dot is decoration, full-width and
half-width punctuation are one character to a person. Scoring applies the same rules to label and
prediction, so a rule can never make a wrong reading right, only equal readings equal.

Rules, applied in the order listed:
  nfkc        Unicode NFKC (full-width forms, compatibility ideographs)
  whitespace  runs of whitespace to one space, stripped
  cjk_spaces  drop spaces next to a CJK character (Chinese text has no word spaces)
  casefold    case-insensitive comparison
  no_spaces   drop every space
  drop:<cs>   drop each of the characters <cs>
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence

_CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_SPACE = re.compile(rf"(?<=[{_CJK}]) +| +(?=[{_CJK}])")


def _drop(chars: str) -> Callable[[str], str]:
    table = str.maketrans("", "", chars)
    return lambda s: s.translate(table)


RULES: dict[str, Callable[[str], str]] = {
    "nfkc": lambda s: unicodedata.normalize("NFKC", s),
    "whitespace": lambda s: " ".join(s.split()),
    "cjk_spaces": lambda s: _CJK_SPACE.sub("", s),
    "casefold": str.casefold,
    "no_spaces": lambda s: s.replace(" ", ""),
}


def rule(name: str) -> Callable[[str], str]:
    if name.startswith("drop:") and len(name) > 5:
        return _drop(name[5:])
    if name not in RULES:
        raise ValueError(f"unknown normalisation rule {name!r}; known: {[*RULES, 'drop:<chars>']}")
    return RULES[name]


class Normalizer:
    """Rules per scene name: an exact key wins, else the first glob key that matches, else no change."""

    def __init__(self, table: Mapping[str, Sequence[str]] | None = None) -> None:
        self.table = {k: list(v) for k, v in (table or {}).items()}
        self._fns = {k: [rule(r) for r in v] for k, v in self.table.items()}  # unknown rules fail here
        self._cache: dict[str, list[Callable[[str], str]]] = {}

    def rules_for(self, scene: str | None) -> list[str]:
        key = self._key(scene or "")
        return list(self.table[key]) if key is not None else []

    def _key(self, scene: str) -> str | None:
        if scene in self.table:
            return scene
        return next((k for k in self.table if fnmatch.fnmatchcase(scene, k)), None)

    def __call__(self, text: str, scene: str | None) -> str:
        s = scene or ""
        fns = self._cache.get(s)
        if fns is None:
            key = self._key(s)
            fns = self._cache[s] = self._fns[key] if key is not None else []
        for fn in fns:
            text = fn(text)
        return text
