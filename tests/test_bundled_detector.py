"""The bundled text-line detector (models/det_zh_en.int8.onnx where one is shipped, else det_zh_en.onnx: the
file `make serve` reads) with the bundled recognizer, as `make serve` and
`crnn predict` use them: unseen synthetic pages (their own seed) plain, turned and warped; a rendered page
read end to end in reading order; no text, a tiny and a huge image; a single line in auto mode.

The bounds sit below what the shipped model measured (its card, models/det_zh_en.md), with room for
another CPU's rounding; a detector that lost its training, or page mode that lost the order, fails them.
"""

from __future__ import annotations

import editdistance
import numpy as np
import pytest

from crnn.command import BUNDLED_DETECTOR
from crnn.detect.boxes import reading_order
from crnn.detect.data import page_synth
from crnn.detect.detector import Detector
from crnn.detect.score import Counts, PageTruth, match, score_page
from crnn.detect.train import page_truth
from crnn.serve.engine import Engine
from crnn.serve.segment import split
from tests.conftest import ROOT, bundled_model, compose_cfg

DETECTOR = next(ROOT / "models" / n for n in BUNDLED_DETECTOR if (ROOT / "models" / n).is_file())
SEED = 4242  # neither the training stream's nor the validation pages'


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(DETECTOR, threads=2)


def synth_for(*overrides: str):
    return page_synth(compose_cfg(["experiment=det_zh_en", *overrides]), seed=SEED)


def f1_over(detector: Detector, synth, n: int = 12) -> float:
    total = Counts()
    for i in range(n):
        page = synth.page(i, synth.layouts[i % len(synth.layouts)])
        total.add(score_page(page_truth(page), [b.quad for b in detector.detect(page.image)], None, None))
    return total.as_dict()["f1"]


@pytest.mark.parametrize(
    "kind, overrides, bound",
    [
        ("plain", ["detect.pages.rotate_p=0", "detect.pages.perspective_p=0"], 0.85),
        (
            "turned 5 degrees",
            ["detect.pages.rotate_p=1", "detect.pages.rotate_deg=5", "detect.pages.perspective_p=0"],
            0.85,
        ),
        ("perspective", ["detect.pages.rotate_p=0", "detect.pages.perspective_p=1"], 0.85),
    ],
)
def test_unseen_synthetic_pages(detector, kind, overrides, bound):
    assert f1_over(detector, synth_for(*overrides)) >= bound, kind


def test_a_rendered_page_is_read_end_to_end_in_reading_order(detector):
    synth = synth_for(
        "detect.pages.rotate_p=0", "detect.pages.perspective_p=0", "detect.pages.distractor_p=0"
    )
    page = synth.page(3, "document")
    truth = page_truth(page)
    engine = Engine(str(bundled_model()), threads=2)
    crops = split(page.image, "page", detector=detector)
    texts = [r.text for r in engine.recognize([c for c, _ in crops], [b for _, b in crops])]
    found = [np.float32([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]) for _, (x, y, w, h) in crops]
    pairs = dict(match(truth.quads, found))
    assert len(pairs) >= 0.8 * len(truth.quads)
    # the reference is the order the page was drawn in (a document's columns one after the other, each top
    # to bottom), not reading_order itself, which page mode uses: a wrong order must not be its own truth
    read = sorted(pairs, key=lambda t: pairs[t])
    assert read == sorted(read), "lines read out of order"
    c = score_page(PageTruth(truth.quads, truth.texts, category="printed"), found, texts, reading_order)
    assert c.as_dict()["cer"] < 0.25
    # and the text as page mode returns it, in its order, against the lines as drawn (score_page sorts both)
    drawn, returned = "\n".join(truth.texts), "\n".join(texts)
    assert editdistance.eval(drawn, returned) / len(drawn) < 0.25


@pytest.mark.parametrize("shape", [(1, 1), (20, 20), (6000, 4500)])
def test_no_text_tiny_and_huge_images(detector, shape):
    rng = np.random.default_rng(0)
    img = np.clip(200 + rng.normal(0, 6, size=shape), 0, 255).astype(np.uint8)  # paper, no ink
    assert split(img, "page", detector=detector) == []


def test_a_single_line_in_auto_mode_is_read_whole(detector):
    synth = synth_for("detect.pages.rotate_p=0", "detect.pages.perspective_p=0")
    source = synth.source
    line = source.sample(7, scene="printed").image  # the recognizer's own kind of line image
    crops = split(line, "auto", detector=detector)
    assert len(crops) == 1 and crops[0][1] == [0, 0, line.shape[1], line.shape[0]]


def test_page_evaluation_splits_what_detection_costs_from_what_recognition_costs(tmp_path):
    """`crnn.detect.evaluate` on a folder in the realdev pages' format (image + boxes and texts): the truth
    reader crops the labelled boxes, so it matches every line and its page CER is the recognizer's alone.
    Each result names its reader's key, which the detector's card is built from."""
    import json

    import cv2

    from crnn.detect.evaluate import run

    synth = synth_for(  # pages of the size a scan or photo has: training's small ones draw 10 px receipts
        "detect.pages.long_side=[1600,1600]",
        "detect.pages.rotate_p=0",
        "detect.pages.perspective_p=0",
        "detect.pages.distractor_p=0",
    )
    folder = tmp_path / "pages"
    folder.mkdir()
    for i, layout in enumerate(["document", "receipt"]):
        page = synth.page(i, layout)
        cv2.imwrite(str(folder / f"{i:04d}.png"), page.image)
        lines = [
            {"box": ln.quad.round().astype(int).tolist(), "text": "###" if ln.ignore else ln.text}
            for ln in page.lines
        ]
        meta = {"category": "printed_doc_zh", "level": "line", "complete": True, "lines": lines}
        (folder / f"{i:04d}.json").write_text(json.dumps(meta, ensure_ascii=False))
    cfg = compose_cfg(
        [
            "experiment=det_zh_en",
            f"runs_dir={tmp_path}/runs",
            f"detect.eval.pages={folder}",
            "detect.eval.readers=[detector,truth,bundled]",
            f"detect.eval.detector={DETECTOR}",
            f"detect.eval.recognizer={bundled_model()}",
        ]
    )
    det, truth, bundled = run(cfg)
    assert (det["key"], truth["key"], bundled["key"]) == ("detector", "truth", "bundled")
    assert bundled["reader"].startswith("bundled detector") and bundled["files"] == det["files"]
    assert truth["reader"].startswith("truth boxes")
    t = truth["complete_pages"]
    assert t["matched"] == t["truth"] == t["predicted"] >= 10
    assert t["cer"] < 0.1, "the bundled recognizer misreads clean rendered lines"
    assert det["complete_pages"]["matched"] >= 0.8 * t["truth"]
    saved = json.loads((tmp_path / "runs" / "det_zh_en" / "detect" / "eval" / "pages.json").read_text())
    assert [r["key"] for r in saved] == ["detector", "truth", "bundled"]


def test_calibration_writes_the_grid_point_with_the_best_f1_into_the_file(tmp_path):
    """detect-calibrate on the bundled detector exported into a run: every grid point scored on the same
    held-out synthetic pages, the best written into the file's metadata (a fresh Detector reads it) with
    the table in its lineage, the rest of the metadata untouched, the chosen boxes scoring what the report
    says; the run's INT8 file quantized before is removed (it holds the old settings); a shipped file is
    refused."""
    import json
    import shutil

    from crnn.detect import calibrate
    from crnn.detect.boxes import BoxConfig
    from crnn.detect.detector import read_detector_metadata
    from crnn.onnx_model import ExportError

    overrides = [
        "experiment=det_zh_en",
        f"runs_dir={tmp_path}/runs",
        "mlflow.enabled=false",
        "detect.calibrate.pages=6",
        "detect.calibrate.unclip_scale=[0.5,0.8,1.3]",
        "detect.calibrate.box_thresh=[0.6]",
        "detect.calibrate.threads=1",
    ]
    cfg = compose_cfg(overrides)
    path, int8 = calibrate.export_file(cfg), cfg.stage_dir("detect") / "quantize" / "detector.int8.onnx"
    for p in (path, int8):
        p.parent.mkdir(parents=True)
        shutil.copyfile(DETECTOR, p)
    before = read_detector_metadata(path)
    report = calibrate.run(cfg)
    rows = report["grid"]
    assert [r["boxes"]["unclip_scale"] for r in rows] == [0.5, 0.8, 1.3]
    # boxes grown back further are taller: the measured heights follow the grid
    assert rows[0]["height_ratio"] < rows[1]["height_ratio"] < rows[2]["height_ratio"]
    top = max(round(r["f1"], 3) for r in rows)
    tied = [r for r in rows if round(r["f1"], 3) == top]
    assert report["chosen"] in tied
    assert all(abs(report["chosen"]["height_ratio"] - 1) <= abs(r["height_ratio"] - 1) for r in tied)

    after = read_detector_metadata(path)
    chosen = BoxConfig(**report["chosen"]["boxes"])
    assert Detector(path).boxes == chosen
    lineage = json.loads(after["lineage"])
    assert lineage["calibration"]["chosen"] == report["chosen"]
    was = json.loads(before["lineage"])  # the shipped file may carry a calibration of its own
    assert {k: v for k, v in lineage.items() if k != "calibration"} == {
        k: v for k, v in was.items() if k != "calibration"
    }
    assert after["model_config"] == before["model_config"] and after["format"] == before["format"]
    # the report's figures are what the rewritten file finds on those pages
    again = calibrate.score_boxes(calibrate.read_maps(Detector(path, threads=1), cfg), chosen)
    assert again == {k: report["chosen"][k] for k in again}
    assert not int8.exists()
    with pytest.raises(ExportError, match="shipped file"):
        calibrate.run(compose_cfg([*overrides, f"detect.calibrate.detector={DETECTOR}"]))


def test_a_small_web_image_is_read_scaled_up(detector):
    """A page saved at a few hundred pixels (a web image, a thumbnail) holds lines smaller than the detector
    was taught; read at `upscale_to` (crnn.detect.boxes.read_scale) it finds them."""
    from dataclasses import replace

    import cv2

    synth = synth_for()
    own_scale = Detector(DETECTOR, threads=2, boxes=replace(detector.boxes, upscale_to=0))
    scaled, unscaled = Counts(), Counts()
    for i in range(14):
        page = synth.page(i, synth.layouts[i % len(synth.layouts)])
        f = 400 / max(page.image.shape)
        small = cv2.resize(page.image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / page.image.shape[1], small.shape[0] / page.image.shape[0]
        truth = page_truth(page)
        k = np.float32([fx, fy])
        truth = PageTruth(
            [q * k for q in truth.quads], truth.texts, [q * k for q in truth.ignore], truth.category
        )
        for det, total in ((detector, scaled), (own_scale, unscaled)):
            total.add(score_page(truth, [b.quad for b in det.detect(small)], None, None))
    assert detector.boxes.upscale_to >= 640
    a, b = scaled.as_dict()["f1"], unscaled.as_dict()["f1"]
    assert a >= 0.85 and a >= b + 0.02, (a, b)


def test_a_receipt_on_a_large_scan_is_read_again_over_its_text(detector):
    """A page magnified 3 times (a 600 dpi scan) on a sheet 2.5 times its size reaches the network with
    lines a few pixels tall; read again over the text (crnn.detect.boxes.zoom_region) it is found as a page
    of its own size is (scripts/scan_pages.py, 100 pages: F1 0.951 against 0.892 read once)."""
    from dataclasses import replace

    import cv2

    synth = synth_for()
    once = Detector(DETECTOR, threads=2, boxes=replace(detector.boxes, zoom_gain=0))
    zoomed, single = Counts(), Counts()
    for i in range(8):
        page = synth.page(i, "receipt" if i % 2 else synth.layouts[i % len(synth.layouts)])
        big = cv2.resize(page.image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
        h, w = big.shape
        scan = np.full((int(h * 2.5), int(w * 2.5)), 240, np.uint8)
        scan[h : 2 * h, w // 2 : w // 2 + w] = big
        t = page_truth(page)
        shift = np.float32([w // 2, h])
        truth = PageTruth(
            [q * 3 + shift for q in t.quads], t.texts, [q * 3 + shift for q in t.ignore], t.category
        )
        for det, total in ((detector, zoomed), (once, single)):
            total.add(score_page(truth, [b.quad for b in det.detect(scan)], None, None))
    assert detector.boxes.zoom_gain > 1
    a, b = zoomed.as_dict()["f1"], single.as_dict()["f1"]
    assert a >= 0.85 and a >= b + 0.03, (a, b)


def test_single_lines_are_read_whole_in_auto_mode_as_often_as_at_their_own_scale(detector):
    """Scaling small pages up must not scale a line up: its text, already as tall as the image, would grow
    past what the detector saw and auto mode would split it (148 of 180 read whole against 157)."""
    from dataclasses import replace

    own_scale = Detector(DETECTOR, threads=2, boxes=replace(detector.boxes, upscale_to=0))
    source = synth_for("detect.pages.rotate_p=0", "detect.pages.perspective_p=0").source
    lines = [source.sample(i, scene=s).image for s in source.scenes for i in range(100, 120)]
    whole = sum(len(split(line, "auto", detector=detector)) == 1 for line in lines)
    whole_own = sum(len(split(line, "auto", detector=own_scale)) == 1 for line in lines)
    assert whole >= whole_own, (whole, whole_own)
