"""A page upside down is read the right way up (crnn.serve.upright): the rule on given confidences, then
the bundled detector and recognizer as `make serve` and `crnn predict` use them, on rendered pages turned
half round (their own seed)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from crnn.serve.upright import UPRIGHT_SAMPLE, upright, upside_down
from tests.conftest import ROOT, bundled_model, compose_cfg
from tests.test_bundled_detector import DETECTOR
from tests.test_command import CRNN
from tests.test_serve import _ocr, _png, start_server


@dataclass
class Reading:
    text: str
    confidence: float


class Reader:
    """Readings of crops read turned, by crop width (the rule reads the longest lines); counts calls."""

    def __init__(self, by_width: dict[int, float], text: str = "read") -> None:
        self.by_width, self.text, self.calls = by_width, text, 0

    def __call__(self, crops: list[np.ndarray]) -> list[Reading]:
        self.calls += 1
        return [Reading(self.text, self.by_width[c.shape[1]]) for c in crops]


def _crops(n: int) -> list[np.ndarray]:
    return [np.zeros((32, 100 + 10 * i), np.uint8) for i in range(n)]


def _as_read(confidences: list[float]) -> list[Reading]:
    return [Reading("garbled", c) for c in confidences]


def test_the_rule_turns_a_page_only_when_most_of_its_lines_read_surely_turned():
    crops = _crops(5)
    turned_sure = Reader({c.shape[1]: 0.95 for c in crops})
    assert upside_down(crops, _as_read([0.5] * 5), turned_sure) and turned_sure.calls == 1
    # a page that reads surely is not read again
    sure = Reader({c.shape[1]: 0.99 for c in crops})
    assert not upside_down(crops, _as_read([0.95] * 5), sure) and sure.calls == 0
    # one line is no vote
    one = Reader({100: 0.99})
    assert not upside_down(crops[:1], _as_read([0.2]), one) and one.calls == 0
    # surer turned, but unsure: a blurry scene reads badly both ways and is left as it is
    assert not upside_down(crops, _as_read([0.4] * 5), Reader({c.shape[1]: 0.6 for c in crops}))
    # surer on only half the lines, or by too little
    half = {c.shape[1]: (0.95 if i % 2 else 0.1) for i, c in enumerate(crops)}
    assert not upside_down(crops, _as_read([0.5] * 5), Reader(half))
    assert not upside_down(crops, _as_read([0.75] * 5), Reader({c.shape[1]: 0.8 for c in crops}))
    # CTC's all-blank path is sure of nothing: crops read as nothing turned are no vote for turning
    assert not upside_down(crops, _as_read([0.5] * 5), Reader({c.shape[1]: 1.0 for c in crops}, text=""))
    # only the longest lines are read again
    many = _crops(UPRIGHT_SAMPLE + 4)
    longest = Reader({c.shape[1]: 0.95 for c in many[-UPRIGHT_SAMPLE:]})  # a short one would be a KeyError
    assert upside_down(many, _as_read([0.5] * len(many)), longest)


def test_a_turn_is_kept_only_when_the_turned_page_reads_surer():
    gray = np.zeros((200, 300), np.uint8)
    crops = [(c, [0, 10 * i, c.shape[1], 32]) for i, c in enumerate(_crops(5))]
    as_read = _as_read([0.5] * 5)
    lines = [
        (np.zeros((32, 120), np.uint8), [10, 20, 120, 32]),
        (np.zeros((32, 140), np.uint8), [10, 60, 140, 32]),
    ]
    widths = {c.shape[1]: 0.95 for c, _ in crops} | {120: 0.9, 140: 0.9}
    got, read, turned = upright(gray, crops, as_read, Reader(widths), lambda page: lines)
    assert turned and [b for _, b in got] == [[170, 148, 120, 32], [150, 108, 140, 32]]
    assert [r.confidence for r in read] == [0.9, 0.9]
    worse = widths | {120: 0.3, 140: 0.3}  # the page split again reads worse than it came: left as it came
    assert upright(gray, crops, as_read, Reader(worse), lambda page: lines) == (crops, as_read, False)
    assert upright(gray, crops, as_read, Reader(widths), lambda page: []) == (crops, as_read, False)


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
        assert turned["turned"] and not upright["turned"], layout


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
