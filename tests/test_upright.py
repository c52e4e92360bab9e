"""A page upside down is read the right way up (crnn.serve.upright): the rule on given confidences, then
the bundled detector and recognizer as `make serve` and `crnn predict` use them, on rendered pages turned
half round (their own seed)."""

from __future__ import annotations

import json
import os
import subprocess

import cv2
import numpy as np
import pytest

from crnn.serve.upright import UPRIGHT_SAMPLE, upside_down
from tests.conftest import ROOT, bundled_model, compose_cfg
from tests.test_bundled_detector import DETECTOR
from tests.test_command import CRNN
from tests.test_serve import _ocr, _png, start_server


class Reader:
    """Confidences of crops read turned, by crop width (the rule reads the longest lines); counts calls."""

    def __init__(self, by_width: dict[int, float]) -> None:
        self.by_width, self.calls = by_width, 0

    def __call__(self, crops: list[np.ndarray]) -> list[float]:
        self.calls += 1
        return [self.by_width[c.shape[1]] for c in crops]


def _crops(n: int) -> list[np.ndarray]:
    return [np.zeros((32, 100 + 10 * i), np.uint8) for i in range(n)]


def test_the_rule_turns_a_page_only_when_most_of_its_lines_read_surely_turned():
    crops = _crops(5)
    turned_sure = Reader({c.shape[1]: 0.95 for c in crops})
    assert upside_down(crops, [0.5] * 5, turned_sure) and turned_sure.calls == 1
    # a page that reads surely is not read again
    sure = Reader({c.shape[1]: 0.99 for c in crops})
    assert not upside_down(crops, [0.95] * 5, sure) and sure.calls == 0
    # one line is no vote
    one = Reader({100: 0.99})
    assert not upside_down(crops[:1], [0.2], one) and one.calls == 0
    # surer turned, but unsure: a blurry scene reads badly both ways and is left as it is
    assert not upside_down(crops, [0.4] * 5, Reader({c.shape[1]: 0.6 for c in crops}))
    # surer on only half the lines
    half = {c.shape[1]: (0.95 if i % 2 else 0.1) for i, c in enumerate(crops)}
    assert not upside_down(crops, [0.5] * 5, Reader(half))
    # only the longest lines are read again
    many = _crops(UPRIGHT_SAMPLE + 4)
    longest = Reader({c.shape[1]: 0.95 for c in many[-UPRIGHT_SAMPLE:]})  # a short one would be a KeyError
    assert upside_down(many, [0.5] * len(many), longest)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> list[tuple[np.ndarray, str]]:
    """(upright page, layout) of three layouts, drawn from their own seed."""
    from crnn.detect.data import page_synth

    synth = page_synth(compose_cfg(["experiment=det_zh_en"]), seed=5)
    return [
        (synth.page(i, layout).image, layout) for i, layout in enumerate(["document", "receipt", "table"])
    ]


@pytest.fixture(scope="module")
def server():
    proc, base = start_server(bundled_model(), "--detector", str(DETECTOR))
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def _turned_back(box: list[int], shape: tuple) -> list[int]:
    x, y, w, h = box
    return [shape[1] - x - w, shape[0] - y - h, w, h]


def test_the_server_reads_a_page_upside_down_as_it_reads_it_upright(server, pages):
    for image, layout in pages:
        upright = _ocr(server, _png(image), mode="page").json()
        turned = _ocr(server, _png(np.ascontiguousarray(image[::-1, ::-1])), mode="page").json()
        assert len(upright["lines"]) >= 5, layout
        assert turned["text"] == upright["text"], layout  # read the right way up, in the upright order
        # boxes in the upload's own (turned) coordinates
        assert [ln["box"] for ln in turned["lines"]] == [
            _turned_back(ln["box"], image.shape) for ln in upright["lines"]
        ], layout
        # line mode reads the image as given
        line = _ocr(server, _png(np.ascontiguousarray(image[::-1, ::-1])), mode="line").json()
        assert len(line["lines"]) == 1


def test_crnn_predict_reads_a_page_upside_down_as_it_reads_it_upright(pages, tmp_path):
    image = pages[0][0]
    cv2.imwrite(str(tmp_path / "up.png"), image)
    cv2.imwrite(str(tmp_path / "down.png"), np.ascontiguousarray(image[::-1, ::-1]))
    out = subprocess.run(
        [
            CRNN,
            "predict",
            str(tmp_path / "up.png"),
            str(tmp_path / "down.png"),
            "--mode",
            "page",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, CRNN_DETECTOR=str(DETECTOR), OMP_NUM_THREADS="1"),
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    up, down = json.loads(out.stdout)
    assert [ln["text"] for ln in down["lines"]] == [ln["text"] for ln in up["lines"]] and len(
        up["lines"]
    ) >= 5
    assert [ln["box"] for ln in down["lines"]] == [_turned_back(ln["box"], image.shape) for ln in up["lines"]]
