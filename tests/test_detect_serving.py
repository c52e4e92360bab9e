"""The detector where pages are read: its ONNX file against PyTorch, page mode through `segment.split`,
the HTTP service with --detector, and `crnn predict --detector`. The detector is the session's
`mini_detector` (it knows two rendered pages); the recognizer is the bundled one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import requests

from crnn.detect.detector import Detector
from crnn.detect.export import parity
from crnn.detect.score import match
from crnn.onnx_model import ExportError
from crnn.serve.segment import split
from tests.conftest import ROOT, browser_output_dir, bundled_model, launch_chromium
from tests.test_command import CRNN
from tests.test_serve import _ocr, _png, start_server


@pytest.fixture(scope="module")
def detector(mini_detector) -> Detector:
    return Detector(mini_detector["onnx"], threads=1)


def _kept(page) -> list:
    return [ln for ln in page.lines if not ln.ignore]


def test_onnx_matches_pytorch_on_the_pages(mini_detector):
    images = [p.image for p in mini_detector["pages"]]
    par = parity(mini_detector["model"], mini_detector["onnx"], images, mini_detector["cfg"].detect.boxes)
    assert par["max_abs_diff"] < 1e-3
    assert par["boxes"] >= 8 and par["same_boxes"] == par["boxes"] == par["onnx_boxes"]


def test_a_foreign_onnx_file_is_refused():
    with pytest.raises(ExportError, match="not a crnn-toolkit detector"):
        Detector(bundled_model())
    serve = subprocess.run(
        [
            sys.executable,
            "-m",
            "crnn.serve",
            "--model",
            str(bundled_model()),
            "--detector",
            str(bundled_model()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert serve.returncode == 2 and "not a crnn-toolkit detector" in serve.stderr


def test_a_detector_file_with_settings_from_a_newer_toolkit_is_refused_by_name(mini_detector, tmp_path):
    import onnx

    proto = onnx.load(str(mini_detector["onnx"]))
    entry = next(p for p in proto.metadata_props if p.key == "boxes")
    entry.value = json.dumps({**json.loads(entry.value), "curve_fit": True})
    newer = tmp_path / "newer.onnx"
    onnx.save(proto, str(newer))
    with pytest.raises(ExportError, match=r"newer crnn-toolkit: box settings \['curve_fit'\]"):
        Detector(newer)
    serve = subprocess.run(
        [sys.executable, "-m", "crnn.serve", "--model", str(bundled_model()), "--detector", str(newer)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert serve.returncode == 2 and "newer crnn-toolkit" in serve.stderr and "Traceback" not in serve.stderr
    assert Detector(mini_detector["onnx"]).boxes.join_overlaps  # the file as exported still reads


def test_page_mode_reads_the_detected_lines_in_reading_order(mini_detector, detector):
    page = mini_detector["pages"][0]  # a document
    crops = split(page.image, "page", detector=detector)
    truth = [ln.quad for ln in _kept(page)]
    assert abs(len(crops) - len(truth)) <= 1
    for crop, (_, _, w, h) in crops:
        assert crop.shape[1] > crop.shape[0] and w > 0 and h > 0
    found = [np.float32([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]) for _, (x, y, w, h) in crops]
    which = dict(match(truth, found))  # truth index -> crop index
    assert len(which) >= len(truth) - 1
    read = sorted(which, key=lambda t: which[t])  # truth lines in the order page mode returned them
    assert read == sorted(read)  # as the page was drawn: a document's columns in turn, each top to bottom


def test_projection_stays_an_option(mini_detector, detector):
    page = mini_detector["pages"][0]
    projected = split(page.image, "page", detector=detector, splitter="projection")
    assert [b for _, b in projected] == [b for _, b in split(page.image, "page")]
    with pytest.raises(ValueError, match="no detector"):
        split(page.image, "page", splitter="detector")


def test_auto_uses_the_detector_when_it_finds_lines(mini_detector, detector):
    page = mini_detector["pages"][0]
    assert len(split(page.image, "auto", detector=detector)) > 1
    # one line found, or none where there is ink: the image is the line, read whole
    x0, y0, x1, y1 = _ink_box(page.lines[0].quad, page.image.shape)
    line = np.ascontiguousarray(page.image[y0:y1, x0:x1])
    assert [b for _, b in split(line, "auto", detector=detector)] == [[0, 0, x1 - x0, y1 - y0]]
    # a long thin line and a faint one hold ink: read whole (a first version judged ink on the image
    # scaled to 512 px, which took the long line's strokes away, and by Otsu's 16 levels, the faint line's)
    long_line = np.full((32, 3000), 235, np.uint8)
    cv2.putText(
        long_line, "Invoice total 12.50 paid by card, thanks", (5, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2
    )
    faint = np.full((32, 600), 235, np.uint8)
    cv2.putText(faint, "a faint line of print", (5, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 215, 2)
    for img in (long_line, faint):
        assert [b for _, b in split(img, "auto")] == [[0, 0, img.shape[1], img.shape[0]]]
    # no ink at all (paper with its grain): no lines, whichever splitter, as page mode returns
    blank = np.random.default_rng(0).normal(235, 2, (64, 400)).clip(0, 255).astype(np.uint8)
    assert split(blank, "auto", detector=detector) == []
    assert split(blank, "auto") == []
    # line mode reads what it is given, and needs no splitter (crnn predict --mode line --splitter detector)
    assert [b for _, b in split(blank, "line", splitter="detector")] == [[0, 0, 400, 64]]


def _ink_box(quad: np.ndarray, shape: tuple) -> tuple[int, int, int, int]:
    """A labelled line's box with a few pixels of paper round it, clipped to the page."""
    x0, y0 = np.floor(quad.min(axis=0)).astype(int) - 4
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + 4
    return max(0, x0), max(0, y0), min(shape[1], x1), min(shape[0], y1)


@pytest.mark.parametrize("shape", [(1, 1), (3, 700), (4000, 3000)])
def test_blank_tiny_and_huge_images_give_no_lines(detector, shape):
    img = np.full(shape, 235, np.uint8)
    assert split(img, "page", detector=detector) == []


@pytest.fixture(scope="module")
def det_server(mini_detector):
    proc, base = start_server(bundled_model(), "--detector", str(mini_detector["onnx"]))
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def test_the_server_splits_pages_with_its_detector(mini_detector, det_server):
    page = mini_detector["pages"][0]
    assert requests.get(det_server + "/health", timeout=5).json()["detector"] == "det.onnx"
    r = _ocr(det_server, _png(page.image), mode="page")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["splitter"] == "detector" and abs(len(body["lines"]) - len(_kept(page))) <= 1
    r = _ocr(det_server, _png(page.image), mode="page", splitter="projection")
    assert r.status_code == 200 and r.json()["splitter"] == "projection"


def test_the_web_page_outlines_the_lines_it_found(mini_detector, det_server, request):
    from playwright.sync_api import sync_playwright

    out = browser_output_dir(request)
    path = out / "upload_page.png"
    path.write_bytes(_png(cv2.resize(mini_detector["pages"][0].image, None, fx=2, fy=2)))
    expected = _ocr(det_server, path.read_bytes(), mode="page").json()["lines"]
    assert len(expected) > 1
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(det_server + "/")
        page.wait_for_selector("#splitter-label:not([hidden])", timeout=10_000)
        page.select_option("#mode", "page")
        page.set_input_files("#picker", str(path))
        page.wait_for_selector(".line-boxes rect", timeout=20_000)
        assert page.locator(".line-boxes rect").count() == len(expected)
        page.screenshot(path=str(out / "page_mode.png"))
        browser.close()


def test_a_server_without_detector_refuses_splitter_detector():
    proc, base = start_server(bundled_model())
    try:
        img = np.full((40, 200), 255, np.uint8)
        r = _ocr(base, _png(img), mode="page", splitter="detector")
        assert r.status_code == 422 and "without a detector" in r.json()["error"]
        r = _ocr(base, _png(img), mode="page")
        assert r.status_code == 200 and r.json()["splitter"] == "projection"
        r = _ocr(base, _png(img), mode="line", splitter="detector")  # line mode splits nothing
        assert r.status_code == 200 and r.json()["success"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_crnn_predict_uses_the_detector(mini_detector, tmp_path):
    page = mini_detector["pages"][0]
    path = tmp_path / "page.png"
    cv2.imwrite(str(path), page.image)
    cmd = [CRNN, "predict", str(path), "--mode", "page", "--format", "json"]
    env = dict(os.environ, CRNN_DETECTOR="", OMP_NUM_THREADS="1")  # no bundled detector: only --detector
    out = subprocess.run(
        cmd + ["--detector", str(mini_detector["onnx"])],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    lines = json.loads(out.stdout)[0]["lines"]
    assert abs(len(lines) - len(_kept(page))) <= 1
    bad = subprocess.run(
        cmd + ["--splitter", "detector"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )
    assert bad.returncode == 2 and "needs a detector" in bad.stderr
    line = subprocess.run(
        [
            *cmd[:3],
            "--mode",
            "line",
            "--format",
            "json",
            "--splitter",
            "detector",
            "--detector",
            str(mini_detector["onnx"]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert line.returncode == 0, line.stderr  # was a ValueError's traceback: line mode splits nothing
    assert len(json.loads(line.stdout)[0]["lines"]) == 1
    no_detector = subprocess.run(
        [*cmd[:3], "--mode", "line", "--splitter", "detector"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert no_detector.returncode == 0, no_detector.stderr  # was refused: line mode needs no splitter
