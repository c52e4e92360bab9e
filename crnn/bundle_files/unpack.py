"""Unpack a training bundle, with the standard library only (no pip there): its wheels into a folder for
PYTHONPATH, its xz-compressed fonts next to themselves.

A wheel is a zip of what site-packages receives; its name says which Pythons and machines it is for
(name-version-python-abi-platform.whl). For each project the one wheel that fits this interpreter is
unpacked (files under <name>.data/purelib or platlib go to the top, other .data parts are not needed to
import). Usage: python3 unpack.py WHEEL_DIR TARGET_DIR [FONT_DIR]
"""

from __future__ import annotations

import lzma
import os
import platform
import shutil
import sys
import zipfile
from pathlib import Path


def fits(filename: str) -> bool:
    py, abi, plat = filename[: -len(".whl")].split("-")[-3:]
    me = f"cp{sys.version_info.major}{sys.version_info.minor}"
    minor = sys.version_info.minor
    cp_minors = [int(t[3:]) for t in py.split(".") if t.startswith("cp3") and t[3:].isdigit()]
    # cp3X-abi3 wheels run on CPython 3.X and later
    py_ok = any(t == me or t in ("py3", "py2") for t in py.split(".")) or (
        abi == "abi3" and any(m <= minor for m in cp_minors)
    )
    abi_ok = abi in ("none", me, "abi3")
    plat_ok = plat == "any" or (
        sys.platform.startswith("linux") and platform.machine() in plat and "linux" in plat
    )
    return py_ok and abi_ok and plat_ok


def install(wheel: Path, target: Path) -> int:
    n = 0
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            parts = name.split("/")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                parts = parts[2:]
            if not parts or name.endswith("/"):
                continue
            out = target.joinpath(*parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
            n += 1
    return n


def unpack_fonts(font_dir: Path) -> int:
    """fonts/<name>.ttf.xz -> fonts/<name>.ttf, once (the bundle travels with its fonts compressed)."""
    n = 0
    for packed in sorted(font_dir.glob("*.xz")):
        out = packed.with_suffix("")
        if not out.is_file():
            tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")  # two trainings may start at once
            with lzma.open(packed) as src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(out)
            n += 1
    return n


def main(wheel_dir: str, target_dir: str, font_dir: str = "") -> None:
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    by_project: dict[str, list[Path]] = {}
    for w in sorted(Path(wheel_dir).glob("*.whl")):
        by_project.setdefault(w.name.split("-")[0].lower().replace("_", "-"), []).append(w)
    missing = []
    for project, wheels in sorted(by_project.items()):
        fitting = [w for w in wheels if fits(w.name)]
        if not fitting:
            missing.append(f"{project} ({', '.join(w.name for w in wheels)})")
            continue
        install(fitting[0], target)
    if missing:
        sys.exit(
            f"[bundle] no wheel fits Python {platform.python_version()} on {platform.machine()} for: "
            + "; ".join(missing)
            + ". Build the bundle with this Python listed: make train-bundle ... PYTHONS=3.x"
        )
    print(f"[bundle] {len(by_project)} packages installed into {target}")
    if font_dir:
        print(f"[bundle] {unpack_fonts(Path(font_dir))} fonts unpacked")


if __name__ == "__main__":
    main(*sys.argv[1:4])
