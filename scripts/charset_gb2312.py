"""Write configs/charsets/zh_en_gb2312.txt: zh_en's 3,872 characters in their order, then the rest of
GB2312's hanzi (level 2: 3,008 less common characters, many of them in names, chemistry and medicine) and
the GB2312 symbols printed Chinese text uses (corner brackets, degree and Celsius signs, math operators,
Greek letters that do not look like Latin ones, circled numbers).

Why a standard and not a list: the characters come from GB2312 as a whole, not from the errors on any test
set, so the alphabet is not tuned on realdev. Left out on purpose: symbols that look the same as a
character already in the alphabet (ideographic space, `・`, `∶`, `′`, full-width `～` and `＄`, Greek
capitals such as `Α` that are drawn like Latin `A`, Roman numerals), kana, Cyrillic, pinyin and box drawing.

    python scripts/charset_gb2312.py            # rewrites the file; prints how many characters were added
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "charsets" / "zh_en.txt"
OUT = ROOT / "configs" / "charsets" / "zh_en_gb2312.txt"

SYMBOLS = (
    "「」『』〖〗〔〕〈〉"  # brackets of Chinese print
    "±×÷√≈≠≤≥∞∑∈∵∴°℃‰§№"  # math and units
    "☆★○●◎◇◆□■△▲※→←↑↓"  # marks of lists and signs
    "①②③④⑤⑥⑦⑧⑨⑩"
    "ΓΔΘΛΞΠΣΦΨΩαβγδεζηθικλμνξοπρστυφχψω"
)


def gb2312_level2() -> str:
    """GB2312 rows 56-87 (bytes 0xD8A1-0xF7FE): the level-2 hanzi, in the standard's radical order."""
    out = []
    for hi in range(0xD8, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                out.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                continue  # defensive: level 2 fills its 32 rows of 94
    return "".join(out)


def main() -> None:
    base = BASE.read_text(encoding="utf-8").split("\n")
    if base and base[-1] == "":
        base.pop()
    have = set(base)
    for ch in SYMBOLS:
        if ch.encode("gb2312", errors="replace") == b"?":
            raise SystemExit(f"{ch!r} is not in GB2312")
    added = [c for c in dict.fromkeys(gb2312_level2() + SYMBOLS) if c not in have]
    OUT.write_text("\n".join(base + added) + "\n", encoding="utf-8")
    print(f"{OUT.relative_to(ROOT)}: {len(base)} + {len(added)} = {len(base) + len(added)} characters")


if __name__ == "__main__":
    main()
