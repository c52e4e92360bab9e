"""Two models read the same lines: which lines each reads better, and whether the difference is chance.

A category's CER moves by a few errors between two good models; on 40 lines a one-error change is a
2-point swing on a short word. Comparing CERs alone calls every such swing a loss. Pairing the lines (the
same image read by both) turns the question into a randomisation test: if neither model were better, each
line's difference in edits would be as likely to have the other sign. The exact sign-flip test on those
differences weighs how much worse a line got, not only whether it did (with every difference one edit it
is the sign test). The replacement gate (scripts/ship_model.py) refuses a category only where the
candidate's extra edits are unlikely to be chance. With 4 or fewer lines that differ no category can be
refused (the smallest chance is 1/16): too few lines to tell.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

LINES_FILE = "lines.jsonl"  # written by the evaluation stage beside report.json: one line per model and line


@dataclass
class Paired:
    """One category's lines that both models read: the candidate's edit difference on each line that
    differs (positive: the candidate makes more edits)."""

    n: int = 0
    diffs: list[int] = field(default_factory=list)

    @property
    def better(self) -> int:
        return sum(d < 0 for d in self.diffs)

    @property
    def worse(self) -> int:
        return sum(d > 0 for d in self.diffs)

    @property
    def p_worse(self) -> float:
        """One-sided exact sign-flip test: the chance of as many extra edits or more, if neither model
        were better (ties carry no information and are left out)."""
        return sign_flip_p(self.diffs)


def sign_flip_p(diffs: list[int]) -> float:
    """P(sum of the differences with random signs >= their observed sum), exactly: the distribution of
    the sum is built difference by difference over integers (a few hundred values, any number of lines)."""
    counts = {0: 1}
    for d in (abs(x) for x in diffs if x):
        nxt: dict[int, int] = {}
        for s, c in counts.items():
            nxt[s + d] = nxt.get(s + d, 0) + c
            nxt[s - d] = nxt.get(s - d, 0) + c
        counts = nxt
    observed = sum(diffs)
    return sum(c for s, c in counts.items() if s >= observed) / sum(counts.values())


def line_key(record: dict) -> tuple[str, str]:
    """A line's identity across models: its set and its file (folder sets) or index (LMDB sets)."""
    return str(record.get("set", "")), str(record.get("file", record.get("index", "")))


def read_lines(path: Path) -> dict[str, dict[tuple[str, str], dict]]:
    """The evaluation's per-line records, by model name, then by line key. Raises ValueError on a line
    recorded twice for one model (two models evaluated under one name)."""
    out: dict[str, dict[tuple[str, str], dict]] = {}
    with open(path, encoding="utf-8") as f:
        for row in f:
            if row.strip():
                rec = json.loads(row)
                lines = out.setdefault(rec["model"], {})
                if line_key(rec) in lines:
                    raise ValueError(f"{path}: {rec['model']} read {line_key(rec)} twice")
                lines[line_key(rec)] = rec
    return out


def pair(
    cand: dict[tuple[str, str], dict], inc: dict[tuple[str, str], dict], set_path: str
) -> dict[str, Paired]:
    """Per category of the set at `set_path`: lines both models read, and the candidate's edits minus the
    other's on each. Raises ValueError when the two did not read the same lines (a paired test needs every
    line twice)."""
    where = str(Path(set_path))  # the records hold the path as the dataset resolved it: no trailing "/"
    keys = {k for k in cand if k[0] == where}
    other = {k for k in inc if k[0] == where}
    if not keys or keys != other:
        raise ValueError(f"the two models read different lines of {where}: {len(keys)} against {len(other)}")
    out: dict[str, Paired] = {}
    for k in sorted(keys):
        p = out.setdefault(cand[k]["scene"], Paired())
        p.n += 1
        if cand[k]["edits"] != inc[k]["edits"]:
            p.diffs.append(cand[k]["edits"] - inc[k]["edits"])
    return out
