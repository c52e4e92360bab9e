"""`crnn predict`: text out of image files, folders, globs or standard input, with the bundled model.

The same parts as the server: `crnn.data.image_io` decodes (EXIF orientation, 16-bit, transparency),
`crnn.serve.segment.split` cuts pages into lines, the shared `Predictor` reads them. Images are read in
groups of `--batch`, and all the lines of a group go to the predictor in one call, which sorts them by
width into model batches; results come back in input order.

A file that cannot be read (missing, empty, not an image, truncated) is reported on standard error and
counted; the run goes on. The exit status is 1 only when no input at all could be read, 2 for bad options.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from crnn.ctc import DECODERS
from crnn.data.image_io import ImageDecodeError, decode_image
from crnn.serve.segment import MODES, SPLITTERS, split
from crnn.serve.upright import turnable, upright

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pbm", ".pgm", ".ppm")
FORMATS = ("text", "json", "csv", "tsv")
STDIN = "-"
GLOB_CHARS = set("*?[")


class OptionError(ValueError):
    """A setting that cannot work (mode, decoder, format, batch, an --out that cannot be written)."""


@dataclass
class Result:
    path: str
    lines: list[dict]  # {"text", "confidence", "box": [x, y, w, h]} top to bottom

    @property
    def text(self) -> str:
        return "\n".join(ln["text"] for ln in self.lines)


@dataclass
class Tally:
    images: int = 0
    lines: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    seconds: float = 0.0


def expand_inputs(args: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Image paths in the order given: a folder's images sorted (recursively), a glob's matches sorted.

    Returns the paths and the (argument, why) of arguments that name nothing readable as input, which the
    caller reports like unreadable files. Files named explicitly are kept whatever their extension (the
    decoder decides); inside folders and globs only image extensions count.
    """
    paths: list[str] = []
    missing: list[tuple[str, str]] = []
    for arg in args:
        if arg == STDIN:
            if STDIN in paths:
                missing.append((arg, "standard input is given more than once (it can be read once)"))
            else:
                paths.append(STDIN)
        elif os.path.isdir(arg):
            found = sorted(
                str(p) for p in Path(arg).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                missing.append((arg, "a folder with no image files"))
            paths.extend(found)
        elif os.path.exists(arg):
            paths.append(arg)
        elif GLOB_CHARS & set(arg):
            found = sorted(
                p
                for p in glob.glob(arg, recursive=True)
                if os.path.isfile(p) and Path(p).suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                missing.append((arg, "no such file, and no image file matches it as a pattern"))
            paths.extend(found)
        else:
            missing.append((arg, "no such file or folder"))
    return paths, missing


def read_bytes(path: str) -> bytes:
    if path == STDIN:
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def load(path: str):
    """Grayscale uint8 pixels of one input; ImageDecodeError or OSError when it cannot be read."""
    data = read_bytes(path)
    if not data:
        raise ImageDecodeError("empty file")
    return decode_image(data)


def chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def recognise(
    predictor,
    paths: list[str],
    mode: str,
    batch: int,
    tally: Tally,
    progress,
    detector=None,
    splitter: str = "",
) -> Iterator[Result]:
    """Results per readable path, in order; unreadable ones are counted in `tally` and skipped."""

    def cut(page):
        return split(page, mode, detector=detector, splitter=splitter)

    for group in chunks(paths, batch):
        pages: list[tuple] = []  # (grayscale image, its crops and boxes)
        readable: list[str] = []
        for path in group:
            try:
                gray = load(path)
            except (ImageDecodeError, OSError) as e:
                tally.unreadable.append((path, str(e)))
                progress.update(1)
                continue
            pages.append((gray, cut(gray)))
            readable.append(path)
        crops = [c for _, page in pages for c, _ in page]
        decoded = predictor(crops) if crops else []  # every image's lines in one call: batched by width
        lines: list[list[dict]] = []
        for gray, page in pages:
            read, decoded = decoded[: len(page)], decoded[len(page) :]
            if turnable(mode):  # an image upside down is read the right way up (crnn.serve.upright)
                page, read, _ = upright(gray, page, read, predictor, cut)
            tally.lines += len(page)
            lines.append(
                [
                    {"text": d.text, "confidence": round(d.confidence, 4), "box": b}
                    for (_, b), d in zip(page, read)
                ]
            )
        tally.images += len(readable)
        progress.update(len(readable))
        for path, ls in zip(readable, lines):
            yield Result(path, ls)


def shown(path: str, text_format: bool = False) -> str:
    """A path as the results write it, one way for every name, as `ls -b` writes names: a backslash
    doubled, and a byte that is not UTF-8 (a file system allows any, which Python holds as a lone
    surrogate) written \\xNN. Written raw, such a name stopped the run half-way with a JSON array that
    looked complete. In the text format, where a tab ends the path, a tab, newline or carriage return in a
    name is escaped too (\\t, \\n, \\r)."""
    out = path.replace("\\", "\\\\").encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if text_format:
        out = out.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return out


class Writer:
    """Writes results as they come, in one of FORMATS; JSON is one array, closed at the end."""

    def __init__(self, out: TextIO, fmt: str, many: bool) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        self.out, self.fmt, self.many, self.count = out, fmt, many, 0
        if fmt in ("csv", "tsv"):
            self.rows = csv.writer(out, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
            self.rows.writerow(["path", "line", "text", "confidence", "x", "y", "w", "h"])
        elif fmt == "json":
            out.write("[")

    def write(self, r: Result) -> None:
        if self.fmt == "json":
            out = {"path": shown(r.path), "text": r.text, "lines": r.lines}
            self.out.write(("," if self.count else "") + "\n" + json.dumps(out, ensure_ascii=False))
        elif self.fmt == "text":
            for ln in r.lines:
                self.out.write(f"{shown(r.path, True)}\t{ln['text']}\n" if self.many else f"{ln['text']}\n")
        else:
            for i, ln in enumerate(r.lines):
                self.rows.writerow([shown(r.path), i, ln["text"], ln["confidence"], *ln["box"]])
        self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "]\n")
        self.out.flush()


def no_progress():
    class Silent:
        def update(self, n: int) -> None: ...
        def close(self) -> None: ...

    return Silent()


def check_options(mode: str, decoder: str, fmt: str, batch: int) -> None:
    if mode not in MODES:
        raise OptionError(f"mode must be one of {MODES}, got {mode!r}")
    if decoder not in DECODERS:
        raise OptionError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if fmt not in FORMATS:
        raise OptionError(f"format must be one of {FORMATS}, got {fmt!r}")
    if batch < 1:
        raise OptionError(f"batch must be at least 1, got {batch}")


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same path, a symbolic link to it, or a hard link."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): the paths themselves decide
        return Path(a).resolve() == Path(b).resolve()


def open_out(path: str | None) -> TextIO:
    """Standard output, or the file (opened only once everything else is known to work)."""
    if path in (None, STDIN):
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8", newline="")
    except OSError as e:
        raise OptionError(f"cannot write --out {path}: {e.strerror}") from None


def report(tally: Tally, err: TextIO) -> None:
    for path, why in tally.unreadable:
        print(f"crnn predict: cannot read {shown(path)}: {why}", file=err)
    rate = tally.lines / tally.seconds if tally.seconds > 0 else 0.0
    print(
        f"crnn predict: {tally.images} images, {tally.lines} lines in {tally.seconds:.2f} s "
        f"({rate:.0f} lines/s), {len(tally.unreadable)} unreadable",
        file=err,
    )


def run(
    inputs: list[str],
    model: str,
    mode: str = "auto",
    decoder: str = "greedy",
    fmt: str = "text",
    out: str | None = None,
    batch: int = 32,
    threads: int = 0,
    show_progress: bool | None = None,
    err: TextIO | None = None,
    detector: str | None = None,
    splitter: str = "",
    lm: str | None = None,
    second_look: bool = True,
    plates: bool = True,
) -> Tally:
    """Read `inputs` with `model`, write results to the file `out` (standard output when None), report on
    `err` (standard error). Options and the model are checked before `out` is opened, so a mistake never
    empties an earlier results file; the report is printed even when the run stops half-way. `detector`
    (an ONNX file) finds the lines of pages unless `splitter` is "projection"; `lm` (a character LM file)
    is what decoder "lm" reads with; `second_look` and `plates` read as the server does (crnn.predictor)."""
    from crnn.formats import SERVED_FORMATS
    from crnn.onnx_model import OnnxBackend
    from crnn.predictor import Predictor, SecondLook

    check_options(mode, decoder, fmt, batch)
    if splitter and splitter not in SPLITTERS:
        raise OptionError(f"splitter must be one of {SPLITTERS}, got {splitter!r}")
    if splitter == "detector" and not detector and mode != "line":  # line mode splits nothing
        raise OptionError("--splitter detector needs a detector model (--detector, or the bundled one)")
    if decoder == "lm" and not lm:
        raise OptionError("--decoder lm needs a character LM (--lm, or the bundled one)")
    err = err if err is not None else sys.stderr
    backend = OnnxBackend(model, threads=threads)
    char_lm = None
    if decoder == "lm":
        from crnn.lm import LMFormatError, load_lm_for

        try:
            char_lm = load_lm_for(lm, backend.charset.fingerprint(), model)
        except LMFormatError as e:
            raise OptionError(f"--lm: {e}") from None
    look = SecondLook() if second_look else None
    predictor = Predictor(
        backend,
        decoder=decoder,
        max_batch=32,
        lm=char_lm,
        second_look=look,
        formats=SERVED_FORMATS if plates else (),
    )
    det = None
    if detector and splitter != "projection" and mode != "line":
        from crnn.detect.detector import Detector

        det = Detector(detector, threads=threads)
    paths, missing = expand_inputs(inputs)
    if out not in (None, STDIN) and any(same_file(out, p) for p in paths if p != STDIN):
        raise OptionError(f"--out {out} is one of the inputs: it would be emptied before it is read")
    tally = Tally(unreadable=list(missing))
    stream = open_out(out)
    if show_progress is None:
        show_progress = err.isatty() and len(paths) > 1
    if show_progress:
        from tqdm import tqdm

        progress = tqdm(total=len(paths), unit="img", file=err, dynamic_ncols=True)
    else:
        progress = no_progress()
    writer = Writer(stream, fmt, many=len(paths) + len(missing) > 1)
    t0 = time.perf_counter()
    try:
        for result in recognise(predictor, paths, mode, batch, tally, progress, det, splitter):
            writer.write(result)
    finally:
        tally.seconds = time.perf_counter() - t0
        progress.close()
        try:
            writer.close()
        finally:
            if stream is not sys.stdout:
                stream.close()
            report(tally, err)
    return tally
