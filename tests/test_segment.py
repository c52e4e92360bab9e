"""Page segmentation on drawn pages: deskew straightens tilts of either sign and no line is lost."""

import json

import cv2
import numpy as np
import pytest
import requests

from crnn.serve.segment import PAGE_CLEANUPS, deskew, rect_tilt, segment_lines, split
from tests.conftest import bundled_model
from tests.test_serve import start_server

TEXTS = ("Invoice 2024-07 total 1,234.50", "Shipped to 88 Harbour Road", "Call 555-0100 for help")


def _page() -> np.ndarray:
    """Three dark text lines on white, drawn with OpenCV's own font (no renderer involved)."""
    page = np.full((320, 640), 255, np.uint8)
    for i, text in enumerate(TEXTS):
        cv2.putText(page, text, (60, 110 + 60 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 0, 2, cv2.LINE_AA)
    return page


def _rotate(img: np.ndarray, deg: float) -> np.ndarray:
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)


def _profile_angle(img: np.ndarray) -> float:
    """The tilt of the text rows, measured independently of deskew: the rotation (within +-12 degrees, in
    steps of 0.25) that makes the horizontal ink projection sharpest (largest variance of the row sums)."""
    ink = 255.0 - img.astype(np.float32)
    best, best_score = 0.0, -1.0
    for deg in np.arange(-12, 12.01, 0.25):
        score = float(_rotate_f(ink, deg).sum(axis=1).var())
        if score > best_score:
            best, best_score = float(deg), score
    return -best  # rotating by -tilt straightens a page tilted by tilt


def _rotate_f(img: np.ndarray, deg: float) -> np.ndarray:
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)


def test_the_drawn_page_is_straight_and_has_three_lines():
    page = _page()
    assert abs(_profile_angle(page)) <= 0.25
    assert len(segment_lines(page)) == 3
    assert abs(_profile_angle(_rotate(page, 5))) == pytest.approx(5, abs=0.5)  # the measure sees tilts


@pytest.mark.parametrize("tilt", [-8, -5, -2, 2, 5, 8])
def test_deskew_straightens_both_signs(tilt):
    tilted = _rotate(_page(), tilt)
    assert abs(_profile_angle(tilted) - tilt) <= 0.5
    straight, applied = deskew(tilted)
    residual = _profile_angle(straight)
    print(f"tilt {tilt:+d}: deskew applied {applied:+.2f}, residual {residual:+.2f} degrees")
    assert abs(residual) <= 0.75
    assert applied == pytest.approx(-tilt, abs=0.75)
    assert len(segment_lines(tilted)) == 3


@pytest.mark.parametrize(
    "rect_angle,tilt", [(85, -5), (5, 5), (-5, -5), (-85, 5), (90, 0), (-90, 0), (0, 0), (45, 45), (46, -44)]
)
def test_rect_tilt_reads_either_opencv_convention(rect_angle, tilt):
    assert rect_tilt(rect_angle) == pytest.approx(tilt)


def test_one_name_per_clean_up_idea():
    """Line clean-up (the model's input spec) and page clean-up (the server's option) are named apart; the
    page options are the line ones plus the page-only steps, and the spec field stays `cleanup` (it is in
    every shipped model's metadata)."""
    from crnn.data.preprocess import LINE_CLEANUPS, InputSpec, clean_line
    from crnn.serve.segment import PAGE_CLEANUPS

    assert LINE_CLEANUPS == ("none", "equalize", "binarize")
    assert set(PAGE_CLEANUPS) == {*LINE_CLEANUPS, "rectify", "article"}
    page = _page()
    assert clean_line(page, "none") is page
    assert set(np.unique(clean_line(page, "binarize"))) <= {0, 255}
    spec = InputSpec(cleanup="binarize")
    assert InputSpec(**spec.as_dict()) == spec
    with pytest.raises(ValueError, match="input.cleanup"):
        InputSpec(cleanup="rectify")  # a page step is not a line clean-up


def test_page_clean_up_options_split_a_page():
    page = _page()
    for option in PAGE_CLEANUPS:
        crops = split(page, "page", option)
        assert len(crops) == 3, option
    assert set(np.unique(split(page, "page", "article")[0][0])) <= {0, 255}  # article binarises each line
    with pytest.raises(ValueError, match="sharpen"):
        split(page, "page", "sharpen")


@pytest.fixture(scope="module")
def server():
    proc, base = start_server(bundled_model(), "--threads", "1")
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def test_the_http_field_keeps_its_public_name(server):
    schema = requests.get(server + "/openapi.json", timeout=5).json()
    assert "cleanup" in json.dumps(schema["components"]["schemas"])
    png = cv2.imencode(".png", _page())[1].tobytes()
    for option in PAGE_CLEANUPS:
        r = requests.post(
            server + "/ocr",
            files={"file": ("p.png", png)},
            data={"mode": "page", "cleanup": option},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["cleanup"] == option and len(r.json()["text"]) == 3
    bad = requests.post(
        server + "/ocr", files={"file": ("p.png", png)}, data={"cleanup": "sharpen"}, timeout=30
    )
    assert bad.status_code == 422 and "cleanup" in bad.json()["error"]
