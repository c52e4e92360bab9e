"""Generate the committed alphabets in configs/charsets/.

zh_en: GB2312 level 1 (3755 hanzi, rows 0xB0-0xD7 of the gb2312 codec), printable ASCII, and the common
full-width punctuation of Chinese documents. digits: what dates, amounts and phone numbers need.
Run: python scripts/make_charset.py  (the outputs are committed; the script says how they were made).
"""

from __future__ import annotations

import string
from pathlib import Path

FULLWIDTH_PUNCT = "，。、；：？！“”‘’（）《》【】—…·￥％"
DIGITS_EXTRA = "-./:,+%¥ "


def gb2312_level1() -> list[str]:
    """GB2312 level 1 occupies rows 16-55 (lead bytes 0xB0-0xD7); row 55 stops at 0xD7F9."""
    chars = []
    for lead in range(0xB0, 0xD8):
        for trail in range(0xA1, 0xFF):
            try:
                ch = bytes([lead, trail]).decode("gb2312")
            except UnicodeDecodeError:
                continue
            chars.append(ch)
    return chars


def write_charset(path: Path, chars: list[str]) -> None:
    seen: set[str] = set()
    unique = [c for c in chars if not (c in seen or seen.add(c))]
    # One character per line; the space gets its own line (readers strip only the newline).
    path.write_text("".join(c + "\n" for c in unique), encoding="utf-8")
    print(f"{path}: {len(unique)} characters")


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "configs" / "charsets"
    out.mkdir(parents=True, exist_ok=True)
    hanzi = gb2312_level1()
    assert len(hanzi) == 3755, len(hanzi)
    ascii_printable = [chr(c) for c in range(0x20, 0x7F)]
    write_charset(out / "zh_en.txt", hanzi + ascii_printable + list(FULLWIDTH_PUNCT))
    write_charset(out / "digits.txt", list(string.digits) + list(DIGITS_EXTRA))


if __name__ == "__main__":
    main()
