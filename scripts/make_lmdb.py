"""Make an LMDB (deep-text-recognition-benchmark format) from a folder and a `path<TAB>label` list.

    python scripts/make_lmdb.py --root images/ --list labels.txt --out data/mine/train [--scene printed]

Broken files and bad lines are skipped and counted; the summary is printed and saved beside the LMDB.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crnn.data.import_list import import_list


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="folder the list's paths are relative to")
    ap.add_argument("--list", required=True, help="file of `path<TAB>label` lines")
    ap.add_argument("--out", required=True, help="LMDB folder to write")
    ap.add_argument("--scene", default=None, help="scene type to record for every sample")
    a = ap.parse_args(argv)
    if not Path(a.list).is_file():
        print(f"error: list file {a.list} does not exist", file=sys.stderr)
        return 2
    if Path(a.out).exists() and any(Path(a.out).iterdir()):
        print(f"error: {a.out} already exists and is not empty; choose another --out", file=sys.stderr)
        return 2
    summary = import_list(a.root, a.list, a.out, a.scene)
    d = summary.as_dict()
    (Path(a.out) / "import_summary.json").write_text(json.dumps(d, indent=2, ensure_ascii=False))
    print(json.dumps(d, indent=2, ensure_ascii=False))
    return 0 if summary.written else 1


if __name__ == "__main__":
    sys.exit(main())
