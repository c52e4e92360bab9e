"""Page mode measured on real pages: `python -m crnn.detect.evaluate experiment=det_zh_en`.

Reads a folder of whole images with every line's box and text (../shared/realdev/pages/README.md: NNNN.jpg
+ NNNN.json) with each reader of `detect.eval.readers`:

- `detector`: our detector (ONNX) -> upright crops -> the recognizer, all lines of a page in one call;
- `bundled`: the detector page mode serves today (models/, as `make serve` finds it) -> the same recognizer:
  what a new detector has to beat to replace it (scripts/ship_detector.py), measured in the same run;
- `projection`: the projection-profile splitter (crnn.serve.segment) -> the same recognizer: the baseline;
- `ppocr`: PP-OCRv4's detector + its own recognizer (the rapidocr-onnxruntime wheel, library defaults):
  the peer;
- `truth`: the page's own labelled boxes -> the same recognizer: a perfect detector, so its page CER is what
  the recognizer alone costs, and the gap to `detector` is what detection costs. Not a page reader a user
  could run; a diagnostic that says which of the two limits page mode.

Reports per source type (the pages' `level`: line / segment / word) detection precision, recall and F1 at
IoU >= 0.5, end-to-end page CER per category and over all complete pages, and latency per page (decode
excluded, everything after it included). Writes runs/<name>/detect/eval/pages.{json,md}.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from crnn.cli import StageError, stage_errors
from crnn.data.image_io import decode_image
from crnn.detect.boxes import crop_line, reading_order, row_order
from crnn.detect.score import IGNORE_TEXT, Counts, PageTruth, score_page
from crnn.lineage import sha256_file
from crnn.serve.upright import upright
from crnn.settings import RunConfig, load_run_config

READERS = ("detector", "bundled", "projection", "ppocr", "truth")


@dataclass
class RealPage:
    name: str
    path: Path
    truth: PageTruth
    level: str


def load_pages(folder: str | Path) -> list[RealPage]:
    folder = Path(folder)
    if not folder.is_dir():
        raise StageError(f"page folder {folder} does not exist")
    pages = []
    for meta in sorted(folder.glob("*.json")):
        images = [p for p in folder.glob(meta.stem + ".*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
        if not images:
            continue
        d = json.loads(meta.read_text(encoding="utf-8"))
        quads = [np.float32(ln["box"]) for ln in d["lines"]]
        keep = [i for i, ln in enumerate(d["lines"]) if ln["text"] != IGNORE_TEXT]
        truth = PageTruth(
            quads=[quads[i] for i in keep],
            texts=[d["lines"][i]["text"] for i in keep],
            ignore=[q for i, q in enumerate(quads) if i not in set(keep)],
            category=d.get("category", ""),
            complete=bool(d.get("complete", True)),
        )
        pages.append(RealPage(meta.stem, images[0], truth, d.get("level", "line")))
    if not pages:
        raise StageError(f"no NNNN.json + image pairs in {folder}")
    return pages


# ------------------------------------------------------------------------------------------ readers


class RecognizerReader:
    """Lines from a splitter, read by our recognizer in one call per page."""

    def __init__(self, model: str, threads: int, lm: str = "", second_look: bool = True) -> None:
        from crnn.predictor import SecondLook
        from crnn.serve.engine import Engine

        look = SecondLook() if second_look else None  # as served by default
        self.engine = Engine(
            model, threads=threads, decoder="lm" if lm else "greedy", lm_path=lm, second_look=look
        )
        # what reads the lines
        self.reading = (
            Path(model).name + (f" + {Path(lm).name}" if lm else "") + ("" if look else ", read once")
        )
        self.files = [model, *([lm] if lm else [])]

    def recognize(self, crops: list[np.ndarray]) -> list[str]:
        return [r.text for r in self.readings(crops)]

    def readings(self, crops: list[np.ndarray]):
        return self.engine.recognize(crops, [[0, 0, c.shape[1], c.shape[0]] for c in crops])


class DetectorReader(RecognizerReader):
    def __init__(
        self, model: str, detector: str, threads: int, label: str = "detector", lm: str = ""
    ) -> None:
        from crnn.detect.detector import Detector

        super().__init__(model, threads, lm)
        self.detector = Detector(detector, threads=threads)
        self.name = f"{label} ({Path(detector).name}) + {self.reading}"
        self.files = [detector, *self.files]

    def read(self, gray: np.ndarray, truth: PageTruth) -> tuple[list[np.ndarray], list[str]]:
        """As page mode serves it: a page upside down is read turned (crnn.serve.upright), its quads turned
        back."""
        lines = self._lines(gray)
        read = self.readings([c for c, _ in lines])
        lines, read, _ = upright(gray, lines, read, self.readings, self._lines, back=turned_quad)
        return [q for _, q in lines], [r.text for r in read]

    def _lines(self, gray: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(ln.crop, ln.quad) for ln in self.detector.lines(gray)]


def turned_quad(quad: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A quad of a page of `shape` turned half round, in the page's own coordinates: its points rolled to
    start at the text's top-left again."""
    return np.roll(np.float32([shape[1], shape[0]]) - quad, 2, axis=0)


class ProjectionReader(RecognizerReader):
    def __init__(self, model: str, threads: int, lm: str = "") -> None:
        super().__init__(model, threads, lm)
        self.name = f"projection splitter + {self.reading}"

    def read(self, gray: np.ndarray, truth: PageTruth) -> tuple[list[np.ndarray], list[str]]:
        from crnn.serve.segment import split

        crops = split(gray, "page")
        read = self.readings([c for c, _ in crops])
        crops, read, _ = upright(gray, crops, read, self.readings, partial(split, mode="page"))
        quads = [np.float32([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]) for _, (x, y, w, h) in crops]
        return quads, [r.text for r in read]


class TruthBoxReader(RecognizerReader):
    """The labelled boxes, cropped as the detector's are: page CER with detection taken out."""

    def __init__(self, model: str, threads: int, lm: str = "") -> None:
        super().__init__(model, threads, lm)
        self.name = f"truth boxes + {self.reading}"

    def read(self, gray: np.ndarray, truth: PageTruth) -> tuple[list[np.ndarray], list[str]]:
        quads = [truth.quads[i] for i in reading_order(truth.quads)]
        return quads, self.recognize([crop_line(gray, q) for q in quads])


class PpocrPageReader:
    """PP-OCR's own pipeline (detector, angle classifier, recognizer) at the library's defaults."""

    def __init__(self) -> None:
        from crnn.peers import _import_rapidocr

        self.engine = _import_rapidocr().RapidOCR()
        self.name = "PP-OCRv4 det + rec (rapidocr-onnxruntime defaults)"

    def read(self, gray: np.ndarray, truth: PageTruth) -> tuple[list[np.ndarray], list[str]]:
        import cv2

        result, _ = self.engine(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
        result = result or []
        return [np.float32(r[0]) for r in result], [str(r[1]) for r in result]


def served_detector(cfg: RunConfig) -> Path:
    """The file page mode would serve: the INT8 detector when crnn.detect.quantize kept one, else FP32."""
    int8 = cfg.stage_dir("detect") / "quantize" / "detector.int8.onnx"
    return int8 if int8.is_file() else cfg.stage_dir("detect") / "export" / "detector.onnx"


def make_reader(name: str, cfg: RunConfig):
    from dataclasses import replace

    from crnn.command import default_detector, default_lm, default_model

    ev = cfg.detect.eval
    lm = "" if ev.lm == "none" else ev.lm or default_lm(ev.recognizer or None) or ""
    ev = replace(ev, recognizer=ev.recognizer or default_model())
    if name == "detector":
        return DetectorReader(ev.recognizer, ev.detector or str(served_detector(cfg)), ev.threads, lm=lm)
    if name == "bundled":
        shipped = default_detector()
        if shipped is None:
            raise StageError("detect.eval.readers names `bundled`, but models/ has no detector: leave it out")
        return DetectorReader(ev.recognizer, shipped, ev.threads, label="bundled detector", lm=lm)
    if name == "projection":
        return ProjectionReader(ev.recognizer, ev.threads, lm)
    if name == "ppocr":
        return PpocrPageReader()
    if name == "truth":
        return TruthBoxReader(ev.recognizer, ev.threads, lm)
    raise StageError(f"detect.eval.readers: unknown reader {name!r}; known: {list(READERS)}")


# ------------------------------------------------------------------------------------------ scoring


@dataclass
class ReaderResult:
    name: str
    by_level: dict[str, Counts] = field(default_factory=dict)
    by_category: dict[str, Counts] = field(default_factory=dict)
    complete: Counts = field(default_factory=Counts)
    incomplete: Counts = field(default_factory=Counts)  # pages listing only some lines: recall, pair CER
    overall: Counts = field(default_factory=Counts)
    files: dict[str, str] = field(default_factory=dict)  # what was read with: path -> sha256
    seconds: list[float] = field(default_factory=list)
    pages: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        ms = np.array(self.seconds) * 1000
        return {
            "reader": self.name,
            "levels": {k: v.as_dict() for k, v in self.by_level.items()},
            "categories": {k: v.as_dict() for k, v in self.by_category.items()},
            "overall": self.overall.as_dict(),
            "complete_pages": self.complete.as_dict(),
            "incomplete_pages": self.incomplete.as_dict(),
            "files": self.files,
            "latency_ms": {
                "p50": float(np.percentile(ms, 50)),
                "p95": float(np.percentile(ms, 95)),
                "mean": float(ms.mean()),
            },
            "pages": self.pages,
        }


def evaluate_reader(reader, pages: list[RealPage]) -> ReaderResult:
    res = ReaderResult(reader.name, files={p: sha256_file(p) for p in getattr(reader, "files", [])})
    reader.read(decode_image(pages[0].path.read_bytes()), pages[0].truth)  # warm-up
    for page in tqdm(pages, desc=reader.name[:30], leave=False):
        gray = decode_image(page.path.read_bytes())
        t0 = time.perf_counter()
        quads, texts = reader.read(gray, page.truth)
        res.seconds.append(time.perf_counter() - t0)
        c = score_page(page.truth, quads, texts, row_order)
        res.by_level.setdefault(page.level, Counts()).add(c)
        res.overall.add(c)
        if page.truth.complete:
            res.by_category.setdefault(page.truth.category, Counts()).add(c)
            res.complete.add(c)
        else:
            res.incomplete.add(c)
        res.pages.append(
            {"page": page.name, "level": page.level, **c.as_dict(), "ms": res.seconds[-1] * 1000}
        )
    return res


def markdown(results: list[dict], folder: str) -> str:
    out = [
        f"# Page mode on {folder}",
        "",
        "| reader | level | P | R | F1 | matched / truth / predicted | boxes of 1-2 characters: R (of) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for lvl, v in [*r["levels"].items(), ("all pages", r["overall"])]:
            out.append(
                f"| {r['reader']} | {lvl} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | "
                f"{v['matched']} / {v['truth']} / {v['predicted']} | "
                f"{v.get('short_recall', 0.0):.3f} ({v.get('short_truth', 0)}) |"
            )
    out += [
        "",
        "| reader | page CER by category (complete pages) | all complete pages | listed lines of incomplete "
        "pages: recall, CER | p50 / p95 ms per page |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        cats = ", ".join(f"{k} {v['cer']:.3f}" for k, v in r["categories"].items())
        lat, cer, inc = r["latency_ms"], r["complete_pages"]["cer"], r["incomplete_pages"]
        pair = inc.get("pair_cer", inc["cer"])  # a report from before pair_cer held it in cer
        out.append(
            f"| {r['reader']} | {cats} | {cer:.3f} | {inc['recall']:.3f}, {pair:.3f} | "
            f"{lat['p50']:.0f} / {lat['p95']:.0f} |"
        )
    return "\n".join(out) + "\n"


def run(cfg: RunConfig) -> list[dict]:
    ev = cfg.detect.eval
    pages = load_pages(ev.pages)
    results = []
    for name in ev.readers:
        reader = make_reader(name, cfg)
        results.append({"key": name, **evaluate_reader(reader, pages).summary()})
    out = cfg.stage_dir("detect") / ev.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "pages.json").write_text(json.dumps(results, indent=2))
    (out / "pages.md").write_text(markdown(results, ev.pages))
    return results


@hydra.main(config_path="../../configs", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    with stage_errors():
        cfg = load_run_config(dcfg)
        results = run(cfg)
    print(markdown(results, cfg.detect.eval.pages))


if __name__ == "__main__":
    main()
