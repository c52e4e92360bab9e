"""The `crnn` command (also `python -m crnn`): one entry point over the toolkit's stages and library.

    crnn predict IMAGES...          text out of files, folders, globs or - (standard input)
    crnn info MODEL                 alphabet, input, lineage, size, ops of an exported model
    crnn serve [--model M]          the HTTP service and web page
    crnn train|prune|export|quantize|eval [hydra overrides]   the pipeline's stages

The stage subcommands are thin: they hand their arguments to the stage's own Hydra entry point, exactly as
`python -m crnn.train experiment=zh_en train.max_steps=100` would, so every override works the same way and
`crnn train --help` is Hydra's help with the resolved config. Commands that read images use the bundled
model (`models/crnn_zh_en.int8.onnx`, else `models/crnn_zh_en.onnx`) unless --model or $CRNN_MODEL names one.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path

from crnn import __version__

STAGES = {
    "train": ("crnn.train", "train a model (Hydra overrides, e.g. experiment=zh_en train.max_steps=2000)"),
    "prune": ("crnn.prune", "prune a trained checkpoint's channels and fine-tune it"),
    "export": ("crnn.export", "export a checkpoint to ONNX with metadata and a parity check"),
    "quantize": ("crnn.quantize", "quantize an exported model to INT8, kept only where it qualifies"),
    "eval": ("crnn.eval", "CER and latency per scene type and per model, with peers"),
}
BUNDLED = ("crnn_zh_en.int8.onnx", "crnn_zh_en.onnx")
BUNDLED_DETECTOR = ("det_zh_en.int8.onnx", "det_zh_en.onnx")
BUNDLED_LM = "crnn_zh_en.lm.npz"
EXAMPLES = """examples:
  crnn predict line.png
  crnn predict scans/ --format csv --out results.csv
  crnn predict 'photos/*.jpg' --mode page --format json
  cat line.png | crnn predict -
  crnn info models/crnn_zh_en.onnx
  crnn serve --port 5000
  crnn train experiment=demo train.max_steps=200
"""


class NoModelError(FileNotFoundError):
    pass


def models_dir() -> Path:
    """The checkout's models/ (the package is installed editable from it, as `make install` does)."""
    return Path(__file__).resolve().parent.parent / "models"


# Everything models/ serves, together: the recognizer (INT8 and FP32), its character LM and the detector
MODELS_BUDGET_MB = 15.0


def served_files(folder: Path) -> list[Path]:
    """What a server may load from a models/ folder: every ONNX file and character LM in it (a model shipped
    under another name counts too, on the safe side); the training snapshots under snapshots/ are not
    served."""
    return sorted([*folder.glob("*.onnx"), *folder.glob("*.lm.npz")])


def served_bytes(folder: Path, files: dict[Path, Path] | None = None, removed: tuple[Path, ...] = ()) -> int:
    """The bytes `folder` would serve once `files` (source -> destination in `folder`) are copied in and
    `removed` deleted: what the budget (MODELS_BUDGET_MB) is checked on before a stage ships a file."""
    files = files or {}
    replaced = {p.resolve() for p in [*files.values(), *removed]}
    kept = [p for p in served_files(folder) if p.resolve() not in replaced]
    return sum(p.stat().st_size for p in kept) + sum(src.stat().st_size for src in files)


def within_budget(
    folder: Path, files: dict[Path, Path], max_mb: float, what: str, removed: tuple[Path, ...] = ()
) -> None:
    """StageError unless everything `folder` would serve with `files` copied in (`what`: what a stage ships)
    and `removed` deleted, the other models and the LM beside them included, fits in `max_mb`. Checked by
    every stage that ships into models/ before it copies anything."""
    from crnn.cli import StageError

    total_mb = served_bytes(folder, files, removed) / 1e6
    if total_mb > max_mb:
        raise StageError(
            f"{folder} would serve {total_mb:.1f} MB with {what} (models and LM); at most {max_mb:g} MB "
            "may be shipped (+max_mb)"
        )


def default_model() -> str:
    """$CRNN_MODEL, else the bundled model of the checkout the package runs from, else of the current
    folder's models/ (a wheel installed with `pip install .` does not carry the models)."""
    env = os.environ.get("CRNN_MODEL")
    if env:
        return env
    places = [models_dir(), Path.cwd() / "models"]
    for folder in places:
        for name in BUNDLED:
            if (folder / name).is_file():
                return str(folder / name)
    raise NoModelError(
        f"no model given and no bundled model ({' or '.join(BUNDLED)}) in {' or '.join(map(str, places))}: "
        "pass --model FILE.onnx or set CRNN_MODEL"
    )


def default_detector() -> str | None:
    """$CRNN_DETECTOR ("" turns it off), else the bundled text-line detector of the checkout or of ./models,
    else None (page mode then uses the projection splitter)."""
    env = os.environ.get("CRNN_DETECTOR")
    if env is not None:
        return env or None
    for folder in (models_dir(), Path.cwd() / "models"):
        for name in BUNDLED_DETECTOR:
            if (folder / name).is_file():
                return str(folder / name)
    return None


def default_lm(model: str | None) -> str | None:
    """$CRNN_LM ("" turns it off), else the bundled character LM when the bundled model reads (`model`
    None, or a bundled file named), as `make serve` pairs them (an LM is built for one alphabet and tuned
    with one model), else None (greedy decoding)."""
    env = os.environ.get("CRNN_LM")
    if env is not None:
        return env or None
    model = model or os.environ.get("CRNN_MODEL")
    for folder in (models_dir(), Path.cwd() / "models"):
        bundled = {(folder / name).resolve() for name in BUNDLED}
        if (folder / BUNDLED_LM).is_file() and (model is None or Path(model).resolve() in bundled):
            return str(folder / BUNDLED_LM)
    return None


def build_parser() -> argparse.ArgumentParser:
    from crnn.ctc import DECODERS
    from crnn.predict import FORMATS
    from crnn.serve.segment import MODES, SPLITTERS

    ap = argparse.ArgumentParser(
        prog="crnn",
        description="crnn-toolkit: read text lines with a CRNN, and train, compress, export and serve it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--version", action="version", version=f"crnn-toolkit {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "predict",
        help="read text from images",
        description="Read the text of images: files, folders (recursive), globs, or - for standard input. "
        "Results come in input order; unreadable files are reported on standard error and skipped.",
        epilog="exit status: 0 when at least one input was read, 1 when none could be, 2 for bad options",
    )
    p.add_argument("inputs", nargs="+", metavar="PATH", help="image file, folder, glob, or - (stdin)")
    p.add_argument("--model", help="ONNX model (default: the bundled one, or $CRNN_MODEL)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="line: each image is one line; page: split into lines; auto: page when it finds several",
    )
    p.add_argument(
        "--detector",
        help="text-line detector ONNX for page mode (default: the bundled one, or $CRNN_DETECTOR)",
    )
    p.add_argument(
        "--splitter",
        choices=SPLITTERS,
        default="",
        help="how page mode finds lines: detector (default when one is available) or projection",
    )
    p.add_argument(
        "--decoder",
        choices=DECODERS,
        default=None,
        help="CTC decoding (beam: prefix beam search; lm: beam search with the character LM); default lm "
        "when an LM is at hand, else greedy",
    )
    p.add_argument(
        "--lm",
        help="character LM file for --decoder lm (default: the bundled one when the bundled model reads, "
        "or $CRNN_LM)",
    )
    p.add_argument(
        "--second-look",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read lines of low confidence again blurred and keep the surer reading (dot-matrix print)",
    )
    p.add_argument(
        "--plates",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold readings that look like a Chinese licence plate to a plate's grammar (crnn.formats)",
    )
    p.add_argument("--format", choices=FORMATS, default="text", dest="fmt", help="output format")
    p.add_argument("--out", help="write results to this file (default: standard output)")
    p.add_argument("--batch", type=int, default=32, help="images read and recognised together")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (default: all cores)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on when standard error is a terminal)",
    )

    p = sub.add_parser(
        "info",
        help="describe an exported model",
        description="What an exported ONNX model "
        "is: alphabet, input, architecture, lineage, size, ops and weight precision.",
    )
    p.add_argument("model", nargs="?", help="ONNX file (default: the bundled model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("serve", help="start the HTTP service", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    for name, (_, text) in STAGES.items():
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
    return ap


def cmd_predict(a: argparse.Namespace) -> int:
    from crnn.predict import OptionError, run

    if a.lm and a.decoder and a.decoder != "lm":  # it would be loaded and never read
        raise OptionError(f"--lm is read by --decoder lm only, not by --decoder {a.decoder}: drop one")
    lm = a.lm or default_lm(a.model)
    tally = run(
        a.inputs,
        a.model or default_model(),
        mode=a.mode,
        decoder=a.decoder or ("lm" if lm else "greedy"),
        fmt=a.fmt,
        out=a.out,
        batch=a.batch,
        threads=a.threads,
        show_progress=a.progress,
        detector=a.detector or default_detector(),
        splitter=a.splitter,
        lm=lm,
        second_look=a.second_look,
        plates=a.plates,
    )
    return 0 if tally.images else 1


def cmd_info(a: argparse.Namespace) -> int:
    import json

    from crnn.model_info import describe_model, format_info

    info = describe_model(a.model or default_model())
    print(json.dumps(info, indent=2, ensure_ascii=False) if a.json else format_info(info))
    return 0


def cmd_serve(args: list[str]) -> int:
    from crnn.serve.__main__ import main as serve_main

    try:
        model = default_model()
    except NoModelError:
        model = None  # then --model is required, and argparse says so
    named = [x.split("=", 1)[1] for x in args if x.startswith("--model=")]
    named += [args[i + 1] for i, x in enumerate(args[:-1]) if x == "--model"]
    return serve_main(
        args,
        default_model=model,
        prog="crnn serve",
        default_detector=default_detector(),
        default_lm=default_lm(named[-1] if named else None),
    )


def cmd_stage(name: str, args: list[str]) -> int:
    """Run a stage's Hydra entry point with these overrides, as `python -m crnn.<stage>` does."""
    module = STAGES[name][0]
    argv = sys.argv
    sys.argv = [f"crnn {name}", *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if isinstance(e.code, str):  # sys.exit("message"): Python prints it and exits 1; so do we
            print(e.code, file=sys.stderr)
            return 1
        return 0 if e.code is None else e.code
    finally:
        sys.argv = argv
    return 0


def main(argv: list[str] | None = None) -> int:
    from crnn.onnx_model import ExportError
    from crnn.predict import OptionError

    argv = list(sys.argv[1:] if argv is None else argv)
    # pass-through commands keep every argument, --help included, for the stage's own parser
    if argv and (argv[0] in STAGES or argv[0] == "serve"):
        try:
            return cmd_serve(argv[1:]) if argv[0] == "serve" else cmd_stage(argv[0], argv[1:])
        except NoModelError as e:
            print(f"crnn: error: {e}", file=sys.stderr)
            return 2
    a = build_parser().parse_args(argv)
    try:
        if a.command == "predict":
            return cmd_predict(a)
        return cmd_info(a)
    except (NoModelError, ExportError, OptionError) as e:
        print(f"crnn {a.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `crnn predict dir | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def main_exit() -> None:
    """The console script: `crnn ...`."""
    sys.exit(main())
