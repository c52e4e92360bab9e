"""Text formats a line can be held to: when a reading looks like a Chinese licence plate, the line is decoded
again over its CTC frames as the most probable text that *is* one.

Why: a plate has a fixed grammar (GA 36: a province's hanzi, a letter, then five alphanumerics, six on a
new energy plate (D or F first and four digits last, or five digits then D or F), or four and a class
hanzi such as 学 or 警; no I or O after the province), and a blurred photograph of one is read best by
letting that grammar choose among the characters the network finds likely, as licence-plate readers do.
Unconstrained, the network drops a faint province (`A·B9B89`), reads the separating dot as a letter, or
ends on a stray colon (`皖A·S897E:`). The grammar applies only when the line's own reading already looks
like a plate (`looks_like`): it starts with a province or has a plate's dot near its start, it is a
plate's length, and all but one of its other characters are a plate's. On 2,700 synthetic lines of every
other scene no reading looked like one (scripts/plate_format.py).

`best_reading` is exact: a Viterbi search over the CTC alignments of every text the grammar accepts, the
grammar being a small graph of character classes (`Grammar`), so the answer is the single most probable
alignment of a valid plate, with the blank-and-repeat rules of CTC.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from crnn.charset import Charset
from crnn.ctc import log_softmax

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O on a plate (they read as 1 and 0)
DIGITS = "0123456789"
PLATE_ALNUM = PLATE_LETTERS + DIGITS
PLATE_CLASSES = "学警港澳挂领"  # a class hanzi in a serial's last place: learner, police, Hong Kong, ...
PLATE_SEPARATORS = "· "  # the dot painted after the issuing office's letter, or a space read for it
NEG = -1e30


@dataclass(frozen=True)
class Node:
    """One character of a format: any of `chars`, after any node in `after` (0: the start)."""

    chars: str
    after: tuple[int, ...]


@dataclass(frozen=True)
class Grammar:
    """A format as a graph of character classes: node i + 1 is nodes[i]; a text is accepted when its
    characters walk from the start to a node in `ends`."""

    name: str
    nodes: tuple[Node, ...]
    ends: tuple[int, ...]


def plate_grammar() -> Grammar:
    """Province, letter, an optional separator, then five alphanumerics, or four and a class hanzi, or a
    new-energy plate's six as GA 36-2018 writes them: D or F (electric or hybrid), a letter or digit and
    four digits on a small car, five digits then D or F on a large one. Any six alphanumerics let a
    reading keep a stray seventh character (`皖AMA8M90`), which no plate has."""
    start = (2, 3)  # after the issuing office's letter or the separator
    nodes = [Node(PROVINCES, (0,)), Node(PLATE_LETTERS, (1,)), Node(PLATE_SEPARATORS, (2,))]
    nodes += [Node(PLATE_ALNUM, start)] + [Node(PLATE_ALNUM, (k,)) for k in range(4, 8)]  # 4-8: five
    nodes += [Node(PLATE_CLASSES, (7,))]  # 9: four and a class hanzi
    nodes += [Node("DF", start), Node(PLATE_ALNUM, (10,))]  # 10-15: D or F, one more, four digits
    nodes += [Node(DIGITS, (k,)) for k in range(11, 15)]
    nodes += [Node(DIGITS, start)] + [Node(DIGITS, (k,)) for k in range(16, 20)]  # 16-21: five digits,
    nodes += [Node("DF", (20,))]  # then D or F
    return Grammar("plate_zh", tuple(nodes), ends=(8, 9, 15, 21))


def looks_like_plate(text: str) -> bool:
    """Whether a reading looks like a plate that the grammar may correct: 6 to 10 characters once spaces
    are dropped, a province and a plate's letter first or a plate's dot second to fourth, and at most one
    of the others outside a plate's letters and digits. A province-initial word before a number (`京东2024`,
    `新年2025`, `宁德300750`) is not one: a word's second character is a hanzi, not a letter."""
    t = text.replace(" ", "")
    if not 6 <= len(t) <= 10 or not ((t[0] in PROVINCES and t[1] in PLATE_LETTERS) or "·" in t[1:4]):
        return False
    rest = [c for i, c in enumerate(t) if c != "·" and not (i == 0 and c in PROVINCES)]
    return sum(c not in PLATE_ALNUM for c in rest) <= 1


@dataclass(frozen=True)
class Format:
    name: str
    grammar: Grammar
    looks_like: Callable[[str], bool]  # whether a reading may be held to it
    # ... and the held reading is kept only when its alignment is at most this many nats less probable than
    # the best path's: on synthetic plates the grammar's corrections cost at most 4.7 nats, while ordinary
    # text that looks like a plate (`沪A股600519`) is 15 to 40 below (scripts/plate_format.py)
    max_gap: float = 8.0

    @functools.cached_property  # the trigger's source is parsed once per format
    def fingerprint(self) -> str:
        """What the format holds a reading to and when, in 12 hex digits: reports record it beside the
        format's name, so figures read under another version of the same format (a grammar made stricter, a
        trigger that takes other readings) are not taken for this one's (crnn.regress.how_read; such a
        change ships with make ship-reading). The trigger counts by its code (`code_print`)."""
        trigger = code_print(self.looks_like)
        return hashlib.sha256(repr((self.grammar, self.max_gap, trigger)).encode()).hexdigest()[:12]


def code_print(fn: Callable) -> str:
    """A function's code as its syntax tree, its docstring left out: the same on every machine and Python
    version that parses it alike (bytecode is not), and unmoved by comments, layout or a docstring reworded.
    Without source at hand (a lambda typed at a prompt, a partial), its name."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return getattr(fn, "__qualname__", type(fn).__name__)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


FORMATS = {"plate_zh": Format("plate_zh", plate_grammar(), looks_like_plate)}
SERVED_FORMATS = ("plate_zh",)  # what serving, `crnn predict` and evaluation hold readings to by default


def formats_by_name(names: tuple[str, ...] | list[str]) -> tuple[Format, ...]:
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ValueError(f"unknown text formats {unknown}; known: {sorted(FORMATS)}")
    return tuple(FORMATS[n] for n in names)


def held_reading(frames: np.ndarray, fmt: Format, charset: Charset) -> list[int] | None:
    """The class ids of the most probable reading of a line's (T, C) logits that `fmt` accepts; None when
    none fits its frames or the best is more than `fmt.max_gap` nats less probable than the best path (the
    line is not what the format describes). Frames that are not finite are skipped, as the decoders skip
    them."""
    frames = np.asarray(frames, np.float32)
    logp = log_softmax(frames[np.isfinite(frames).all(axis=-1)])
    found = best_reading(logp, fmt.grammar, charset)
    if found is None or float(logp.max(axis=-1).sum()) - found[1] > fmt.max_gap:
        return None
    return found[0]


def writable(grammar: Grammar, charset: Charset) -> bool:
    """Whether the alphabet holds a character of every node: a format it cannot write is not applied (a
    digits-only model never reads a plate)."""
    return all(any(c in charset for c in node.chars) for node in grammar.nodes)


@dataclass(frozen=True)
class _States:
    """A grammar's character states in one flat array: state s reads class `cid[s]` as node `node[s]`'s
    character; a node's states are a contiguous run from `starts[k - 1]`; `pred[:, s]` are the nodes
    its node follows (K + 1 pads: a node that is never reached)."""

    cid: np.ndarray
    node: np.ndarray
    starts: np.ndarray
    pred: np.ndarray
    ends: tuple[int, ...]


@functools.lru_cache(maxsize=16)
def _states(grammar: Grammar, charset: Charset) -> _States | None:
    """Built once per grammar and alphabet (every plate line a server reads uses the same); None when the
    alphabet cannot write the grammar (`writable`)."""
    if not writable(grammar, charset):
        return None
    ids = [[charset.encode(c)[0] for c in n.chars if c in charset] for n in grammar.nodes]
    k_all, p_all = len(ids), max(len(n.after) for n in grammar.nodes)
    cid = np.array([c for group in ids for c in group], np.int64)
    node = np.array([k + 1 for k, group in enumerate(ids) for _ in group], np.int64)
    starts = np.cumsum([0] + [len(g) for g in ids[:-1]])
    after = np.full((k_all + 1, p_all), k_all + 1, np.int64)
    for k, n in enumerate(grammar.nodes):
        after[k + 1, : len(n.after)] = n.after
    return _States(cid, node, starts, after[node].T, grammar.ends)


def best_reading(logp: np.ndarray, grammar: Grammar, charset: Charset) -> tuple[list[int], float] | None:
    """The class ids of the most probable CTC alignment, over a line's (T, C) log-probabilities (class 0
    the blank), whose text the grammar accepts, and that alignment's log-probability; None when the line
    has too few frames for any (or the alphabet cannot write the grammar: `writable`).

    A Viterbi search over `blank[k]` (node k's character read, then blanks; k = 0: nothing read yet) and
    one state per (node, character) being read: a state stays, or is entered from a blank of a node it
    follows, or from a character of such a node that is not its own (CTC collapses repeats, so the same
    character twice needs a blank between). Each frame is a fixed number of array operations over all
    states at once (a plate line: about 1 ms)."""
    st = _states(grammar, charset)
    if st is None:
        return None
    k_all, n = len(grammar.nodes), len(st.cid)
    blank = np.full(k_all + 2, NEG)  # index k_all + 1: a node that is never reached
    blank[0] = 0.0
    char = np.full(n, NEG)
    pos = np.arange(n)
    blank_from = np.full((len(logp), k_all + 1), -1, np.int64)
    char_code = np.zeros((len(logp), n), np.int64)  # 0: stayed; else the state or blank it came from
    top = np.tile(np.array([[NEG], [-1], [NEG], [-1]]), (1, k_all + 2))
    for t, f in enumerate(logp):
        best1, arg1, best2, arg2 = _top_two(char, st, top)
        arg1, arg2 = arg1.astype(np.int64), arg2.astype(np.int64)
        new_blank = blank.copy()
        new_blank[1 : k_all + 1] = np.maximum(blank[1 : k_all + 1], best1[1:-1])
        blank_from[t, 1:] = np.where(best1[1:-1] > blank[1 : k_all + 1], arg1[1:-1], -1)
        new_blank[: k_all + 1] += f[0]
        # per state: stay, or a blank of a node it follows (-1 - k), or that node's best other character
        cands, codes = [char], [np.zeros(n, np.int64)]
        for p in st.pred:
            cands.append(blank[p])
            codes.append(-1 - p)
            other = st.cid[np.maximum(arg1[p], 0)] != st.cid
            cands.append(np.where(other, best1[p], best2[p]))
            codes.append(1 + np.where(other, arg1[p], arg2[p]))
        cands, codes = np.stack(cands), np.stack(codes)
        pick = cands.argmax(axis=0)
        char = cands[pick, pos] + f[st.cid]
        char_code[t] = codes[pick, pos]
        blank = new_blank
    return _trace(blank, char, blank_from, char_code, st)


def _top_two(char: np.ndarray, st: _States, out: np.ndarray) -> np.ndarray:
    """Per node, into `out` (4, K + 2): the best and second-best state's value and index (rows 0-3); node
    0 and the never-reached K + 1 stay NEG / -1."""
    idx = np.arange(len(char))
    out[0, 1:-1] = np.maximum.reduceat(char, st.starts)
    out[1, 1:-1] = np.minimum.reduceat(np.where(char == out[0, st.node], idx, len(char)), st.starts)
    rest = char.copy()
    rest[out[1, 1:-1].astype(np.int64)] = NEG
    out[2, 1:-1] = np.maximum.reduceat(rest, st.starts)
    out[3, 1:-1] = np.minimum.reduceat(np.where(rest == out[2, st.node], idx, len(char)), st.starts)
    return out


def _trace(blank, char, blank_from, char_code, st: _States) -> tuple[list[int], float] | None:
    best, state = NEG, None  # state: ("b", node) or ("c", state index)
    for k in st.ends:
        if blank[k] > best:
            best, state = float(blank[k]), ("b", k)
        here = np.flatnonzero(st.node == k)
        if len(here) and char[here].max() > best:
            best, state = float(char[here].max()), ("c", int(here[np.argmax(char[here])]))
    if state is None or best <= NEG / 2:
        return None
    out = []
    for t in range(len(blank_from) - 1, -1, -1):
        kind, i = state
        if kind == "b":
            src = int(blank_from[t, i])
            state = ("c", src) if src >= 0 else state
            continue
        code = int(char_code[t, i])
        if code == 0:  # the character went on from the frame before
            continue
        out.append(int(st.cid[i]))  # it started on this frame
        state = ("b", -1 - code) if code < 0 else ("c", code - 1)
    return out[::-1], best
