"""The text-line detector's parts: polygon geometry, synthetic pages, DB targets, boxes, reading order,
scoring, a detector that learns a handful of pages, and the training stage with resume."""

from __future__ import annotations

import functools
import json
import shutil
import signal
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from crnn.detect.boxes import (
    Box,
    BoxConfig,
    crop_line,
    det_input,
    det_normalize,
    find_boxes,
    fit_to_ink,
    join_overlapping,
    lengthened,
    lines_turn,
    page_lines,
    read_scale,
    reading_order,
    row_bands,
    row_order,
    split_rows,
    upright,
    zoom_region,
)
from crnn.detect.data import crop_sample, page_synth
from crnn.detect.model import build_detector
from crnn.detect.pages import LAYOUTS
from crnn.detect.polygons import area, offset, quad_size, rect_iou, shrink_distance
from crnn.detect.score import Counts, PageTruth, score_page
from crnn.detect.targets import TargetConfig, make_targets
from tests.conftest import ROOT, compose_cfg, run_module, signal_once_saved


def rect(x0, y0, x1, y1) -> np.ndarray:
    return np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


@pytest.fixture(scope="module")
def synth():
    return page_synth(compose_cfg(["experiment=det_zh_en"]), seed=3)


# ------------------------------------------------------------------------------------------- geometry


def test_offset_moves_every_edge_of_a_rectangle_by_the_distance():
    r = rect(10, 20, 110, 40)
    np.testing.assert_allclose(offset(r, 3), rect(7, 17, 113, 43), atol=1e-4)
    np.testing.assert_allclose(offset(r, -4), rect(14, 24, 106, 36), atol=1e-4)
    assert offset(r, -10.5) is None  # deeper than half the height: nothing left


def test_offset_of_a_turned_quad_keeps_its_shape_and_orientation():
    c, s = np.cos(0.3), np.sin(0.3)
    q = rect(0, 0, 80, 16) @ np.float32([[c, s], [-s, c]]) + 50
    grown = offset(q, 2)
    assert area(grown) > area(q) > 0
    assert area(offset(q, -2)) < area(q)


# ------------------------------------------------------------------------------------------- pages


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_draws_lines_with_boxes_and_texts_inside_the_page(synth, layout):
    page = synth.page(7, layout)
    h, w = page.image.shape
    assert page.image.dtype == np.uint8 and page.layout == layout
    kept = [ln for ln in page.lines if not ln.ignore]
    assert kept, f"{layout}: no readable line"
    for ln in kept:
        assert ln.text.strip()
        assert (
            (ln.quad >= -0.5).all() and (ln.quad[:, 0] <= w + 0.5).all() and (ln.quad[:, 1] <= h + 0.5).all()
        )
        x0, y0 = np.floor(ln.quad.min(axis=0)).astype(int)
        x1, y1 = np.ceil(ln.quad.max(axis=0)).astype(int)
        inside = page.image[max(0, y0) : y1, max(0, x0) : x1].astype(np.float32)
        assert inside.std() > 8, f"{layout}: the box of {ln.text!r} holds no ink"


def test_receipts_open_with_a_heading_and_headings_print_double_height():
    """Real receipts open with the shop's name, large, bold or printed double height, above address lines
    set nearly touching; a detector that never saw such headings merges them with the next line or misses
    them (`TAX INVOICE` in a condensed double-height face)."""
    import random

    from crnn.detect.pages import Canvas

    cfg = compose_cfg(
        ["experiment=det_zh_en", "detect.pages.receipt_header_p=1", "detect.pages.rotate_p=0"]
        + ["detect.pages.perspective_p=0"]
    )
    synth = page_synth(cfg, seed=21)
    headed = 0
    for i in range(8):
        lines = [ln for ln in synth.page(i, "receipt").lines if not ln.ignore]
        heights = [float(ln.quad[3, 1] - ln.quad[0, 1]) for ln in lines]
        first = min(lines, key=lambda ln: float(ln.quad[0, 1]))
        headed += float(first.quad[3, 1] - first.quad[0, 1]) > 1.4 * float(np.median(heights))
    assert headed >= 7, "receipts do not open with a heading"  # 1 of 8 does with receipt_header_p=0
    c = Canvas(synth, random.Random(0), np.random.default_rng(0), 0, "receipt")
    spec = c.font("TAX INVOICE")
    plain = c.draw("TAX INVOICE", spec, 20, 10, 10, ink=255)  # on the blank canvas
    tall = c.draw("TAX INVOICE", spec, 20, 10, 100, ink=255, stretch=2.0)
    height = lambda ln: float(ln.quad[2, 1] - ln.quad[0, 1])  # noqa: E731
    width = lambda ln: float(ln.quad[1, 0] - ln.quad[0, 0])  # noqa: E731
    assert width(tall) == width(plain) and 1.8 < height(tall) / height(plain) < 2.2
    ink_rows = np.flatnonzero((c.img[:, 10:400] > 0).any(axis=1))
    assert ink_rows.max() - 100 > 1.8 * (ink_rows[ink_rows < 90].max() - 10)  # the ink is stretched too


def _stacked_lone_digits(lines) -> int:
    """Lone digits with another lone digit in the same column one row below (within 1.8 line heights)."""
    digits = [ln.quad for ln in lines if not ln.ignore and len(ln.text) == 1 and ln.text.isdigit()]
    stacked = 0
    for q in digits:
        h, cx, top = float(q[3, 1] - q[0, 1]), float(q[:, 0].mean()), float(q[0, 1])
        below = [float(o[0, 1]) - top for o in digits if abs(float(o[:, 0].mean()) - cx) < 0.5 * h]
        stacked += any(0.5 * h < d < 1.8 * h for d in below)
    return stacked


def test_receipts_draw_item_tables_whose_lone_digits_stack_in_columns():
    """Real receipts list items with columns of lone digits (quantity, discount count) row over row, which
    the detector read as one vertical line of digits; `receipt_items` draws such tables, each digit its own
    box, and leaves receipts as they were at 0."""
    flat = ["experiment=det_zh_en", "detect.pages.rotate_p=0", "detect.pages.perspective_p=0"]
    tables = page_synth(compose_cfg(flat + ["detect.pages.receipt_items=3"]), seed=5)
    plain = page_synth(compose_cfg(flat + ["detect.pages.receipt_items=0"]), seed=5)
    assert sum(_stacked_lone_digits(tables.page(i, "receipt").lines) for i in range(6)) >= 30
    assert sum(_stacked_lone_digits(plain.page(i, "receipt").lines) for i in range(6)) <= 2


def test_ads_banners_and_scenes_can_carry_a_line_turned_a_quarter_at_their_side():
    """Real product ads print a line up their side (`ODM OEM`), which no layout drew: the wider detector
    broke it into sideways pieces. `side_line_p` draws one, reading up or down, near the left or right
    edge and clear of the other lines, its box starting at the text's top-left so that the crop warped
    upright is a line; at 0 the pages are those of earlier runs."""
    from crnn.detect.boxes import crop_line
    from crnn.detect.polygons import rect_iou

    flat = ["experiment=det_zh_en", "detect.pages.rotate_p=0", "detect.pages.perspective_p=0"]
    side = page_synth(compose_cfg(flat + ["detect.pages.side_line_p=1"]), seed=5)
    plain, before = (page_synth(compose_cfg(flat + o), seed=5) for o in (["detect.pages.side_line_p=0"], []))
    ups = downs = 0
    for i in range(12):
        page = side.page(i, ["ad", "banner", "scene"][i % 3])
        for ln in page.lines:
            run = ln.quad[1] - ln.quad[0]
            if abs(run[1]) < 3 * abs(run[0]):
                continue
            ups, downs = ups + (run[1] < 0), downs + (run[1] > 0)
            cx = float(ln.quad[:, 0].mean())
            assert min(cx, page.image.shape[1] - cx) < 0.1 * page.image.shape[1] + float(np.abs(run).max())
            crop = crop_line(page.image, ln.quad)
            assert crop.shape[1] > 1.5 * crop.shape[0]
            assert all(rect_iou(ln.quad, o.quad) == 0 for o in page.lines if o is not ln)
    assert ups >= 2 and downs >= 2
    for i in range(6):
        a, b = (
            plain.page(i, ["ad", "banner", "scene"][i % 3]),
            before.page(i, ["ad", "banner", "scene"][i % 3]),
        )
        np.testing.assert_array_equal(a.image, b.image)
        assert [ln.text for ln in a.lines] == [ln.text for ln in b.lines]


def test_ink_rows_label_a_line_by_its_own_ink_on_the_same_page():
    """label_rows=ink: each line's box keeps its columns and spans the rows its ink covers (an upper-case
    receipt row is its cap height, as SROIE labels it), on the very page the font's rows label."""
    import random

    import cv2

    from crnn.detect.pages import Canvas

    flat = ["experiment=det_zh_en", "detect.pages.rotate_p=0", "detect.pages.perspective_p=0"]
    font = page_synth(compose_cfg(flat), seed=21).page(3, "receipt")
    synth = page_synth(compose_cfg([*flat, "detect.pages.label_rows=ink"]), seed=21)
    ink = synth.page(3, "receipt")
    np.testing.assert_array_equal(font.image, ink.image)
    assert [ln.text for ln in font.lines] == [ln.text for ln in ink.lines]
    for a, b in zip(font.lines, ink.lines):
        np.testing.assert_allclose(a.quad[:, 0], b.quad[:, 0])
        assert a.quad[0, 1] - 0.5 <= b.quad[0, 1] and b.quad[2, 1] <= a.quad[2, 1] + 0.5
    height = lambda lines: sum(float(ln.quad[2, 1] - ln.quad[0, 1]) for ln in lines)  # noqa: E731
    assert height(ink.lines) < 0.8 * height(font.lines)
    c = Canvas(synth, random.Random(0), np.random.default_rng(0), 0, "receipt")
    spec = c.font("TOTAL RM")
    line = c.draw("TOTAL RM", spec, 30, 10, 10, ink=255)  # on the blank canvas
    rows = np.flatnonzero(c.img[:, 10:300].max(axis=1) > 64)
    assert (line.ink[0, 1], line.ink[2, 1]) == (rows[0], rows[-1] + 1)
    assert line.ink[2, 1] - line.ink[0, 1] < 0.8 * (line.quad[2, 1] - line.quad[0, 1])
    turned = c.draw("TOTAL RM", spec, 30, 10, 120, ink=255, angle=10.0)  # turned together
    for q in (turned.quad, turned.ink):
        e = q[1] - q[0]
        assert np.degrees(np.arctan2(-e[1], e[0])) == pytest.approx(10.0, abs=0.5)
    t = np.radians(10.0)
    down = (line.ink[0] - line.quad[0]) @ np.float32([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    np.testing.assert_allclose(turned.ink[0] - turned.quad[0], down, atol=1.5)
    # turned and warped with the whole page, the ink rows stay inside the font's
    warp = ["experiment=det_zh_en", "detect.pages.rotate_p=1", "detect.pages.perspective_p=1"]
    a = page_synth(compose_cfg(warp), seed=22).page(1, "receipt")
    b = page_synth(compose_cfg([*warp, "detect.pages.label_rows=ink"]), seed=22).page(1, "receipt")
    assert a.image.shape == b.image.shape and height(b.lines) < 0.8 * height(a.lines)
    inside = [
        cv2.pointPolygonTest(p.quad, (float(x), float(y)), True)
        for p, q in zip(a.lines, b.lines)
        for x, y in q.quad
    ]
    assert min(inside) > -1.0
    with pytest.raises(ValueError, match="label_rows"):
        page_synth(compose_cfg([*flat, "detect.pages.label_rows=tight"]), seed=21)


def test_a_page_is_a_function_of_its_index(synth):
    a, b = synth.page(11), synth.page(11)
    np.testing.assert_array_equal(a.image, b.image)
    assert [ln.text for ln in a.lines] == [ln.text for ln in b.lines]
    assert not np.array_equal(synth.page(12).image.shape, a.image.shape) or not np.array_equal(
        synth.page(12).image, a.image
    )


def test_the_batch_stream_is_a_function_of_the_batch_index():
    """A resumed run (start=k) gets batch k of the uninterrupted stream, with any number of workers."""
    from torch.utils.data import DataLoader

    from crnn.detect.data import PageBatches

    cfg = compose_cfg(
        [
            "experiment=det_zh_en",
            "detect.train.batch_size=2",
            "detect.train.size=64",
            "detect.pages.long_side=[96,128]",
        ]
    )
    ref = PageBatches(cfg, 0, seed=5)
    want = [ref.batch(b)[0] for b in range(4)]
    loader = DataLoader(PageBatches(cfg, 1, seed=5), batch_size=None, num_workers=2)
    got = [x for (x, _), _ in zip(loader, range(3))]
    for w, g in zip(want[1:], got):
        torch.testing.assert_close(w, g)
    assert not torch.equal(want[0], want[1])


def test_a_crop_ignores_the_lines_it_cuts(synth):
    page = synth.page(5, "document")
    img, quads, ignore = crop_sample(page, 128, (1.5, 1.5), np.random.default_rng(0))
    assert img.shape == (128, 128)
    inside = (quads.min(axis=1) >= 0).all(axis=1) & (quads.max(axis=1) <= 128).all(axis=1)
    assert ignore[~inside].all()
    assert (~inside).any(), "a 1.5x page in a crop should cut some lines"


# ------------------------------------------------------------------------------------------- targets, boxes


def test_targets_then_boxes_give_back_the_lines():
    """The postprocess grows each kernel back by the rule the targets shrank it with."""
    quads = [rect(20, 30, 220, 52), rect(40, 80, 300, 120), rect(30, 150, 90, 162)]
    t = make_targets(np.stack(quads), np.zeros(3, bool), 200, 320, TargetConfig())
    boxes = find_boxes(t["prob"], (1.0, 1.0), (200, 320), BoxConfig())
    assert len(boxes) == 3
    for q in quads:
        assert max(rect_iou(q, b.quad) for b in boxes) > 0.85


def test_a_line_whose_kernel_breaks_at_a_space_comes_back_as_one_box():
    """A probability dip inside a line (a wide word space) cuts its kernel; the two pieces grow back into
    each other's glyphs and are one line, while two segments of one row with a gap between them, and two
    lines set close above one another, stay apart."""
    line, left, right = rect(20, 30, 300, 54), rect(20, 90, 120, 114), rect(150, 90, 300, 114)
    above, below = rect(20, 140, 300, 160), rect(20, 162, 300, 182)  # 2 px apart
    quads = [line, left, right, above, below]
    t = make_targets(np.stack(quads), np.zeros(len(quads), bool), 200, 320, TargetConfig())
    prob = t["prob"].copy()
    prob[:60, 158:162] = 0  # the kernel of `line` breaks for 4 px
    apart = find_boxes(prob, (1.0, 1.0), (200, 320), BoxConfig(join_overlaps=False))
    assert len(apart) == 6, "the dip did not cut the kernel: the test does not test the join"
    boxes = find_boxes(prob, (1.0, 1.0), (200, 320), BoxConfig())
    assert len(boxes) == 5
    for q in quads:
        assert max(rect_iou(q, b.quad) for b in boxes) > 0.8


def _draw_kernel(prob: np.ndarray, centre, size, deg: float, level: float = 1.0) -> None:
    cv2.fillPoly(prob, [np.int32(np.round(cv2.boxPoints((centre, size, deg))))], level)


@pytest.mark.parametrize("page_deg", [0.0, 8.0, -8.0])
def test_a_lone_digit_is_boxed_at_the_pages_turn_not_on_its_corner(page_deg):
    """A near-round kernel (a lone `0` in a receipt's quantity column) has no direction of its own: its
    minimum-area rectangle came out turned 40 degrees off its row, so the crop read the digit on its corner
    (a real receipt's `0` was read `C`). It now takes the turn of the page's lines: lines turned a little
    either way of it (which OpenCV reports a quarter turn apart) agree on it, and specks below the box
    threshold do not vote. A short word turned on its own keeps its turn."""
    prob = np.zeros((200, 320), np.float32)
    for k, dy in enumerate((-60, -30, 30, 60)):
        _draw_kernel(prob, (130.0, 100.0 + dy), (150.0, 6.0), page_deg + (0.7 if k % 2 else -0.7))
    for k in range(6):  # noise kernels turned 45 degrees, under the box threshold
        _draw_kernel(prob, (20.0 + 14 * k, 185.0), (8.0, 3.0), 45.0, level=0.4)
    cv2.ellipse(prob, (60, 100), (5, 4), page_deg + 40, 0, 360, 1.0, -1)  # a lone digit's round kernel
    _draw_kernel(prob, (285.0, 100.0), (28.0, 20.0), page_deg + 20)  # a short word turned on its own
    boxes = find_boxes(prob, (1.0, 1.0), (200, 320), BoxConfig())
    assert len(boxes) == 6

    def turn(b) -> float:
        top = b.quad[1] - b.quad[0]
        return float(np.degrees(np.arctan2(top[1], top[0])))

    (lone,) = [b for b in boxes if abs(b.quad[:, 0].mean() - 60) < 5]
    assert turn(lone) == pytest.approx(page_deg, abs=1)
    assert np.ptp(lone.quad[:, 0]) < 26  # a square around the digit, not a diamond
    (word,) = [b for b in boxes if abs(b.quad[:, 0].mean() - 285) < 5]
    assert turn(word) == pytest.approx(page_deg + 20, abs=2)


def _spin(q: np.ndarray, deg: float, about=None) -> np.ndarray:
    about = q.mean(axis=0) if about is None else np.float32(about)
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return ((q - about) @ np.float32([[c, s], [-s, c]]) + about).astype(np.float32)


def turned(x0, y0, x1, y1, deg) -> np.ndarray:
    return _spin(rect(x0, y0, x1, y1), deg, (0.0, 0.0))


@pytest.mark.parametrize("deg", [0, 10, -44, -46, 90])
def test_pieces_of_one_line_join_at_any_angle(deg):
    """Pieces of one turned line (rising at 45 degrees, where the corner order flips, or vertical, where a
    long piece is turned and a short one is not) join; their corner order does not decide it."""
    from crnn.detect.boxes import _text_quad

    long_piece = _text_quad(turned(0, 0, 150, 20, deg))
    short_piece = turned(140, 0, 190, 20, deg)
    short_piece = _text_quad(_spin(short_piece, 1.0))  # turned 1 degree more, about its own centre
    joined = join_overlapping([Box(long_piece, 0.9), Box(short_piece, 0.8)])
    assert len(joined) == 1
    assert rect_iou(joined[0].quad, turned(0, 0, 190, 20, deg)) > 0.8


def test_a_tall_box_beside_two_stacked_lines_does_not_chain_them():
    stacked = [Box(rect(40, 0, 300, 20), 0.9), Box(rect(40, 28, 300, 48), 0.9)]
    assert len(join_overlapping(stacked + [Box(rect(0, 0, 60, 50), 0.9)])) == 3


def test_boxes_grown_past_the_targets_join_only_beyond_the_extra_growth():
    """Two segments 4 px apart, each grown 3 px further than the targets' distance, overlap by 2 px: apart
    at that scale's slack; two pieces overlapping by 12 px still join."""
    apart = [Box(rect(0, 0, 103, 20), 0.9), Box(rect(101, 0, 200, 20), 0.9)]
    assert len(join_overlapping(apart)) == 1
    assert len(join_overlapping(apart, slack=0.3)) == 2
    assert len(join_overlapping([Box(rect(0, 0, 110, 20), 0.9), Box(rect(98, 0, 200, 20), 0.9)], 0.3)) == 1


def test_pieces_join_across_paper_only_under_the_gap_asked_for():
    """scripts/join_gaps.py's measurement: two pieces of one 20 px row 6 px apart (0.3 heights) join with a
    gap of 0.35, not 0.25 nor by default; a piece 6 px apart on the next row never does."""
    pieces = [Box(rect(0, 0, 100, 20), 0.9), Box(rect(106, 0, 200, 20), 0.9)]
    assert len(join_overlapping(pieces)) == 2
    assert len(join_overlapping(pieces, gap=0.25)) == 2
    (joined,) = join_overlapping(pieces, gap=0.35)
    assert rect_iou(joined.quad, rect(0, 0, 200, 20)) > 0.95
    below = [Box(rect(0, 0, 100, 20), 0.9), Box(rect(106, 26, 200, 46), 0.9)]
    assert len(join_overlapping(below, gap=0.35)) == 2


def test_targets_mask_ignored_lines_and_keep_apart_close_ones():
    close = [rect(10, 10, 200, 30), rect(10, 32, 200, 52)]  # 2 px apart
    t = make_targets(
        np.stack(close + [rect(10, 70, 100, 90)]), np.array([False, False, True]), 100, 220, TargetConfig()
    )
    assert t["prob"][30:33, 50].max() == 0, "kernels of neighbouring lines touch"
    assert t["prob_mask"][80, 50] == 0 and t["prob"][80, 50] == 0
    assert (
        t["thresh_mask"][10, 50] == 1 and t["thresh"].min() >= 0.3 - 1e-6 and t["thresh"].max() <= 0.7 + 1e-6
    )
    d = shrink_distance(close[0], 0.4)
    assert 3 < d < 10


def test_small_kernels_weigh_more_in_the_probability_loss():
    """With small_weight > 1 a lone ':' (a kernel of a few px^2) counts up to small_weight times a word's
    pixels in the BCE, so missing it costs more than before; at the default (1) nothing changes."""
    import torch

    from crnn.detect.loss import balanced_bce

    quads = np.stack([rect(10, 10, 210, 30), rect(230, 10, 234, 22)])  # a word, a colon 4 x 12 px
    plain = make_targets(quads, np.zeros(2, bool), 60, 260, TargetConfig())
    weighted = make_targets(quads, np.zeros(2, bool), 60, 260, TargetConfig(small_weight=4.0))
    assert (plain["prob_weight"] == 1).all()
    assert weighted["prob"][16, 232] == 1, "the colon has no kernel: the test does not test its weight"
    assert 3.0 < weighted["prob_weight"][16, 232] <= 4.0 and weighted["prob_weight"][20, 100] == 1.0
    assert (weighted["prob_weight"][weighted["prob"] == 0] == 1).all()

    def colon_share(t) -> float:
        """The loss when the colon alone is missed, over the loss when the word alone is missed."""
        g = {k: torch.from_numpy(v)[None, None] for k, v in t.items()}
        miss = {}
        for name, cols in (("colon", slice(225, 240)), ("word", slice(0, 220))):
            pred = g["prob"].clone() * 0.98 + 0.01
            pred[..., cols] = 0.01
            miss[name] = balanced_bce(pred, g["prob"], g["prob_mask"], weight=g["prob_weight"]).item()
        return miss["colon"] / miss["word"]

    assert colon_share(weighted) > 3 * colon_share(plain)
    g = {k: torch.from_numpy(v)[None, None] for k, v in plain.items()}
    pred = torch.rand(g["prob"].shape, generator=torch.Generator().manual_seed(0)) * 0.98 + 0.01
    old = balanced_bce(pred, g["prob"], g["prob_mask"])  # what it was before weights: all ones, none
    assert balanced_bce(pred, g["prob"], g["prob_mask"], weight=g["prob_weight"]).item() == pytest.approx(
        old.item()
    )
    bce = -(g["prob"] * pred.log() + (1 - g["prob"]) * (1 - pred).log())
    n_pos = int(g["prob"].sum())
    hardest = bce[g["prob"] == 0].sort(descending=True).values[: 3 * n_pos]
    assert old.item() == pytest.approx(
        (bce[g["prob"] == 1].sum() + hardest.sum()).item() / (n_pos + 3 * n_pos), rel=1e-4
    )


def test_short_boxes_are_counted_apart():
    word, colon, qty = rect(10, 10, 210, 30), rect(230, 10, 234, 22), rect(250, 10, 262, 30)
    truth = PageTruth(quads=[word, colon, qty], texts=["TOTAL", ":", "1 2"], ignore=[], category="receipt")
    only_word = score_page(truth, [word], None, None).as_dict()
    assert (only_word["short_matched"], only_word["short_truth"], only_word["short_recall"]) == (0, 2, 0.0)
    total = Counts()
    total.add(score_page(truth, [word, qty + 1], None, None))
    total.add(score_page(truth, [colon], None, None))
    assert total.as_dict()["short_recall"] == 2 / 4 and total.as_dict()["recall"] == 3 / 6


def test_a_turned_box_is_cropped_upright():
    page = np.full((200, 300), 255, np.uint8)
    page[90:110, 50:250] = 0  # a dark bar, then turned by 20 degrees
    m = np.float32([[np.cos(0.35), -np.sin(0.35), 80], [np.sin(0.35), np.cos(0.35), -40]])
    import cv2

    turned = cv2.warpAffine(page, m, (300, 200), borderValue=255)
    quad = cv2.transform(rect(50, 90, 250, 110)[None], m)[0]
    crop = crop_line(turned, quad)
    assert crop.shape[1] > 4 * crop.shape[0]
    assert crop[3:-3, 5:-5].mean() < 40


def test_det_input_scales_down_to_max_side_in_multiples_of_32():
    x, (sx, sy) = det_input(np.zeros((2000, 700), np.uint8), BoxConfig(max_side=960))
    assert x.shape[:3] == (1, 1, 960) and x.shape[3] in (320, 352) and sx < 1 and sy < 1
    x, _ = det_input(np.zeros((50, 90), np.uint8), BoxConfig(max_side=960, upscale_to=0))
    assert x.shape[2] % 32 == 0 and x.shape[3] % 32 == 0 and x.shape[3] <= 96


def test_a_small_page_is_read_scaled_up_to_upscale_to_and_its_boxes_come_back_in_its_pixels():
    boxes = BoxConfig(max_side=960, upscale_to=720)
    assert read_scale(430, 323, boxes) == pytest.approx(720 / 430)
    assert read_scale(720, 500, boxes) == 1.0 and read_scale(800, 900, boxes) == 1.0
    assert read_scale(4000, 1000, boxes) == pytest.approx(960 / 4000)
    capped = BoxConfig(max_side=480, upscale_to=720)
    assert read_scale(200, 130, capped) == pytest.approx(2.4)  # max_side caps
    assert read_scale(32, 450, boxes) == 1.0 and read_scale(127, 300, boxes) == 1.0  # a line keeps its scale
    x, (sx, sy) = det_input(np.zeros((430, 323), np.uint8), boxes)
    assert x.shape[2:] == (704, 544) and sx > 1.6 and sy > 1.6  # 720 rounds to 704 (half to even), 541 to 544
    # a probability map at the input's size: its box comes back in the page's pixels
    prob = np.zeros(x.shape[2:], np.float32)
    prob[200:240, 100:400] = 1.0
    (box,) = find_boxes(prob, (sx, sy), (430, 323), boxes)
    cx, cy = box.quad.mean(axis=0)
    assert abs(cx - 250 / sx) < 2 and abs(cy - 220 / sy) < 2
    assert float(np.ptp(box.quad[:, 0])) > 300 / sx and float(np.ptp(box.quad[:, 1])) > 40 / sy


def test_zoom_region_is_the_text_of_a_page_read_scaled_down_when_reading_it_again_gains_resolution():
    cfg = BoxConfig(max_side=960, zoom_gain=1.5)
    receipt = [
        Box(rect(1600, 1500 + 80 * i, 3000, 1560 + 80 * i), 0.9) for i in range(20)
    ]  # a third of a scan
    x0, y0, x1, y1 = zoom_region(receipt, (7016, 4961), cfg)
    assert (x0, y0) == (1600 - 120, 1500 - 120) and (x1, y1) == (3000 + 120, 1500 + 80 * 19 + 60 + 120)
    assert read_scale(y1 - y0, x1 - x0, cfg) / read_scale(7016, 4961, cfg) > 2
    # text that fills the page, a page read at its own scale, a region that gains too little: one reading
    filling = [Box(rect(100, 100 + 300 * i, 4800, 160 + 300 * i), 0.9) for i in range(23)]
    assert zoom_region(filling, (7016, 4961), cfg) is None
    assert zoom_region(receipt[:3], (960, 960), cfg) is None
    most = [Box(rect(300, 300 + 70 * i, 2700, 350 + 70 * i), 0.9) for i in range(20)]
    assert zoom_region(most, (2000, 3000), cfg) is None  # 960 / 2600 against 960 / 3000: 1.5 is not reached
    # a page not scaled down has nothing to give back, whatever the gain asks
    assert zoom_region(receipt[:3], (900, 700), BoxConfig(max_side=960, zoom_gain=1.0)) is None
    assert zoom_region(receipt, (7016, 4961), BoxConfig(max_side=960, zoom_gain=0)) is None
    assert zoom_region([], (7016, 4961), cfg) is None
    # never read larger than the page's own pixels: a small region of a 1500 px page gains 1500 / 960 at most
    x0, y0, x1, y1 = zoom_region([Box(rect(700, 700, 800, 720), 0.9)], (1500, 1500), cfg)
    assert (x1 - x0, y1 - y0) == (180, 100)


def test_training_crops_draw_a_small_page_at_the_scale_inference_reads_it():
    cfg = compose_cfg(["experiment=det_zh_en", "detect.pages.long_side=[400,400]"])
    page = page_synth(cfg, seed=5).page(0)
    h, w = page.image.shape
    line = max(page.lines, key=lambda ln: float(np.ptp(ln.quad[:, 0])))
    boxes = BoxConfig(max_side=960, upscale_to=720)
    _, quads, _ = crop_sample(page, 1024, (1.0, 1.0), np.random.default_rng(0), boxes)
    drawn = max(float(np.ptp(q[:, 0])) for q in quads)
    assert drawn == pytest.approx(float(np.ptp(line.quad[:, 0])) * 720 / max(h, w), rel=0.02)


def test_a_box_is_reported_narrowed_to_its_lines_ink():
    """fit_to_ink on synthetic pages drawn twice, labelled by the font's rows and by the ink's: the font-row
    boxes, fitted, cover the ink labels (mean IoU over 0.85, against under 0.75 as they are), on turned and
    warped pages, dark ink and light, photos behind."""
    font_synth = page_synth(compose_cfg(["experiment=det_zh_en"]), seed=31)
    ink_synth = page_synth(compose_cfg(["experiment=det_zh_en", "detect.pages.label_rows=ink"]), seed=31)
    before, after = [], []
    for i in range(12):
        font, ink = font_synth.page(i), ink_synth.page(i)
        for a, b in zip(font.lines, ink.lines):
            if a.ignore:
                continue
            crop, m = upright(font.image, a.quad)
            before.append(rect_iou(a.quad, b.quad))
            after.append(rect_iou(fit_to_ink(crop, m, a.quad), b.quad))
    assert len(after) > 100
    assert np.mean(before) < 0.75 and np.mean(after) > 0.85


def test_ink_is_found_light_on_dark_and_a_crop_without_ink_keeps_its_box():
    import cv2

    page = np.full((120, 400), 30, np.uint8)  # light print on a dark sign
    cv2.putText(page, "EXIT 24", (40, 75), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 230, 3)
    rows, cols = np.flatnonzero((page > 128).any(axis=1)), np.flatnonzero((page > 128).any(axis=0))
    box = rect(20, 20, 380, 100)
    crop, m = upright(page, box)
    fitted = fit_to_ink(crop, m, box)
    assert abs(fitted[0, 1] - rows[0]) <= 1 and abs(fitted[2, 1] - (rows[-1] + 1)) <= 1
    assert abs(fitted[0, 0] - cols[0]) <= 1 and abs(fitted[1, 0] - (cols[-1] + 1)) <= 1  # blank ends trimmed
    blank = np.random.default_rng(0).normal(128, 3, (120, 400)).clip(0, 255).astype(np.uint8)
    crop, m = upright(blank, box)
    np.testing.assert_array_equal(fit_to_ink(crop, m, box), box)


def _drawn(lines, paper=None, ink=20):
    """A page of cv2-drawn lines ((baseline y, text, scale, thickness)), the ink's rows of each line."""
    import cv2

    rows = []
    letters = np.zeros((200, 520), np.uint8)
    for y, text, scale, thick in lines:
        one = np.zeros_like(letters)
        cv2.putText(one, text, (20, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick)
        rows.append(np.flatnonzero(one.any(axis=1)))
        letters |= one
    page = np.where(letters > 0, ink, 245 if paper is None else paper).astype(np.uint8)
    return page, rows


def _fit_rows(page, box):
    crop, m = upright(page, box)
    fitted = fit_to_ink(crop, m, box)
    return float(fitted[0, 1]), float(fitted[2, 1])


def test_a_box_reaching_into_tight_neighbours_on_grey_paper_fits_its_own_line():
    """Three lines set tight on a grey photographed receipt, the middle line's box reaching into both
    neighbours' letters: the fit keeps the middle line with its descenders, not all three."""
    paper = np.random.default_rng(5).normal(150, 30, (200, 520)).clip(0, 255)
    lines = [
        (70, "ADVANCO COMPANY", 0.9, 2),
        (100, "Company Reg. No. : 725186-V", 0.9, 2),
        (130, "NO 183, JALAN", 0.9, 2),
    ]
    page, rows = _drawn(lines, paper, ink=40)
    top, bottom = _fit_rows(page, rect(10, 63, 510, 118))
    assert abs(top - rows[1][0]) <= 2 and abs(bottom - (rows[1][-1] + 1)) <= 2


def test_a_box_on_a_tilted_receipt_fits_its_line_not_the_next_lines_capitals():
    """The page turned 2.5 degrees and the box turned 2 (the detector's angle is never exact), its edge
    through the middle bars of the row below's capitals: their top bars come into the crop as a piece of
    rows that no edge cuts, the stems under them thin enough to part it from the cut bars. The fit is the
    top line's ink, not both lines' (realdev's receipt 0003, photographed 2 degrees off)."""
    page, rows = _drawn([(70, "ADVANCO COMPANY", 0.9, 2), (100, "EFEF FEFE EEFF", 0.9, 2)])
    ink_h = float(rows[0][-1] + 1 - rows[0][0])
    tilted = cv2.warpAffine(
        page, cv2.getRotationMatrix2D((260.0, 100.0), 2.5, 1.0), (520, 200), borderValue=245
    )
    box = cv2.transform(rect(60, 44, 380, 90)[None], cv2.getRotationMatrix2D((260.0, 100.0), 2.0, 1.0))[0]
    crop, m = upright(tilted, box)
    assert quad_size(fit_to_ink(crop, m, box))[1] <= ink_h + 2


def test_a_box_over_two_touching_lines_fits_the_one_it_is_centred_on():
    """No blank row between them: one line's descenders run into the next line's capitals."""
    page, rows = _drawn([(70, "gypsy jumping quay", 0.9, 2), (95, "HELLO THERE", 0.9, 2)])
    assert not set(range(rows[0][-1] + 1, rows[1][0])) - set(np.concatenate(rows))  # touching
    top, bottom = _fit_rows(page, rect(5, 66, 510, 100))
    assert abs(top - rows[1][0]) <= 1 and abs(bottom - (rows[1][-1] + 1)) <= 1


def test_a_short_line_under_a_dense_one_fits_itself_not_its_neighbour():
    page, rows = _drawn([(70, "WWWWWWWWWWWWWWWWWWWWW", 0.9, 3), (100, "Tel", 0.9, 2)])
    top, bottom = _fit_rows(page, rect(10, 60, 510, 110))
    assert abs(top - rows[1][0]) <= 1 and abs(bottom - (rows[1][-1] + 1)) <= 1


def test_a_glyph_of_separate_strokes_fits_whole():
    """三 and = have blank rows between their strokes: the fit spans all of them, not the fullest one."""
    import cv2

    page = np.full((200, 520), 245, np.uint8)
    for y in (60, 74, 90):  # three strokes of a 三, a line of them
        for x in range(20, 400, 60):
            cv2.rectangle(page, (x, y), (x + 40, y + 3), 20, -1)
    cv2.rectangle(page, (30, 64), (32, 66), 20, -1)  # a speck: not a stroke
    top, bottom = _fit_rows(page, rect(10, 48, 410, 106))
    assert (top, bottom) == (60.0, 94.0)


def test_a_fit_far_smaller_than_its_box_is_not_believed():
    """Faint grey text beside a black bar: Otsu takes the text for paper and the bar for ink, and a fit
    onto the bar is a sixth of the box: the box is kept."""
    import cv2

    page, _ = _drawn([(100, "faint text here", 0.9, 2)], ink=190)
    cv2.rectangle(page, (330, 85), (510, 92), 0, -1)  # a black bar beside it
    box = rect(10, 65, 510, 115)
    crop, m = upright(page, box)
    np.testing.assert_array_equal(fit_to_ink(crop, m, box), box)
    assert fit_to_ink(crop, m, box, min_fit=0)[2, 1] < 95  # what it would have fitted: the bar's rows


def test_a_vertical_line_is_fitted_along_its_own_rows():
    """A line turned a quarter (its quad from the text's top-left, the first edge down the page): the fit
    is the upright line's fit turned alike, corners in the same order."""
    page, rows = _drawn([(100, "VERTICAL 42", 0.9, 2)])
    box = rect(10, 70, 300, 115)
    crop, m = upright(page, box)
    flat = fit_to_ink(crop, m, box)
    turned = np.ascontiguousarray(np.rot90(page, -1))  # clockwise: (x, y) -> (h - 1 - y, x)
    to_turned = lambda q: np.stack([page.shape[0] - 1 - q[:, 1], q[:, 0]], axis=1).astype(np.float32)  # noqa: E731
    crop2, m2 = upright(turned, to_turned(box))
    np.testing.assert_allclose(fit_to_ink(crop2, m2, to_turned(box)), to_turned(flat), atol=1.0)
    assert abs(flat[0, 1] - rows[0][0]) <= 1 and abs(flat[2, 1] - (rows[0][-1] + 1)) <= 1


def test_a_tall_heading_box_fitted_to_its_ink_no_longer_swallows_the_next_row():
    """A heading's font-row box (nearly three times its ink here) reaches past the next row's centre, so the
    row sweep put the address line (further left) before the shop's name. Narrowed to its ink, the heading is
    its own row; page mode still reads the detector's boxes."""
    import cv2

    page = np.full((220, 600), 245, np.uint8)
    cv2.putText(page, "LIGHTROOM GALLERY", (150, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.4, 20, 3)  # ink rows 51-79
    cv2.putText(page, "NO 28 JALAN", (60, 117), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 20, 2)  # ink rows 103-116
    heading, address = rect(140, 30, 590, 110), rect(50, 92, 260, 124)
    boxes = [Box(heading, 0.9), Box(address, 0.9)]
    assert reading_order([heading, address]) == [1, 0]
    lines = page_lines(page, boxes, ends=0.0)
    np.testing.assert_array_equal(lines[0].crop, crop_line(page, heading))  # heading first, read as detected
    np.testing.assert_array_equal(lines[1].crop, crop_line(page, address))
    assert lines[0].quad[2, 1] - lines[0].quad[0, 1] < 30
    unfitted = page_lines(page, boxes, fit_ink=False)
    np.testing.assert_array_equal(unfitted[0].quad, address)


def test_a_line_is_read_past_its_box_ends_and_reported_by_its_box():
    """The detector's box stops at the ink of a line's first and last glyph, and the recognizer drops a glyph
    that touches the crop's edge: the crop runs on over the page past each end by BoxConfig.crop_ends of the
    box's height (a glyph the box cut short is read whole), while the box reported stays the line's ink."""
    import cv2

    page = np.full((120, 400), 245, np.uint8)
    cv2.putText(page, "TOTAL", (100, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 20, 2)
    ink = np.argwhere(page < 128)
    (y0, x0), (y1, x1) = ink.min(axis=0), ink.max(axis=0) + 1
    box = rect(x0, y0 - 6, x1, y1 + 6)  # the detector's box: ink-tight at its ends, font rows across
    h = float(y1 + 6 - (y0 - 6))
    ends = BoxConfig.crop_ends
    assert ends > 0
    (line,) = page_lines(page, [Box(box, 0.9)])
    assert abs(line.crop.shape[1] - round((x1 - x0) + 2 * ends * h)) <= 1 and line.crop.shape[0] == round(h)
    run_on = int(ends * h)
    assert (line.crop[:, : run_on - 1] > 200).all() and (line.crop[:, -(run_on - 1) :] > 200).all()  # paper
    np.testing.assert_array_equal(line.crop, crop_line(page, lengthened(box, ends)))
    assert line.quad[0, 0] == x0 and line.quad[1, 0] == x1  # reported: the ink, not the crop
    turned = np.float32([[0, 10], [100, 10], [100, 30], [0, 30]]) @ np.float32([[0, 1], [-1, 0]])
    longer = lengthened(turned, 0.5)  # along the text whatever its turn: 10 px more at each end
    assert np.allclose(np.linalg.norm(longer[1] - longer[0]), 120) and np.allclose(
        longer[1] - longer[2], turned[1] - turned[2]
    )
    (plain,) = page_lines(page, [Box(box, 0.9)], ends=0.0)
    np.testing.assert_array_equal(plain.crop, crop_line(page, box))


def _receipt_rows():
    """A receipt's rows set apart, two of them (GST SR 6% over Amt. Excl. GST) under one box, as the detector
    boxed them on a real receipt read at 0.43 scale; the others each under their own."""
    page, rows = _drawn(
        [
            (40, "CASH 20.00", 0.7, 2),
            (80, "GST SR 6% 5.64", 0.7, 2),
            (104, "Amt. Excl. GST 94.16", 0.7, 2),
            (150, "CHANGE 9.55", 0.7, 2),
        ]
    )
    own = [rect(10, r[0] - 5, 400, r[-1] + 6) for r in rows]
    merged = rect(10, rows[1][0] - 5, 400, rows[2][-1] + 6)
    return page, rows, [Box(own[0], 0.9), Box(merged, 0.9), Box(own[3], 0.9)]


def test_a_box_over_two_printed_rows_is_read_as_two_lines():
    page, rows, boxes = _receipt_rows()
    lines = page_lines(page, boxes)
    assert len(lines) == 4  # one line per printed row, in reading order
    for line, r in zip(lines, rows):
        assert abs(line.quad[0, 1] - r[0]) <= 1 and abs(line.quad[2, 1] - (r[-1] + 1)) <= 1
        assert line.crop.shape[0] < 2 * (r[-1] + 1 - r[0])  # the crop holds its own row, not both
    cut = split_rows(page, boxes)[1:3]
    assert cut[0].quad[0, 1] == boxes[1].quad[0, 1] and cut[1].quad[2, 1] == boxes[1].quad[2, 1]
    assert cut[0].quad[2, 1] == cut[1].quad[0, 1]  # cut halfway across the paper between the rows
    assert rows[1][-1] < cut[0].quad[2, 1] < rows[2][0]
    assert len(page_lines(page, boxes, split=False)) == 3  # as detected


def test_a_lone_glyph_whose_strokes_have_paper_between_them_is_not_cut():
    """A tall box around 二, 吕 or a colon: bands of ink with paper between them, but each one glyph or
    thinner than a line's ink: a glyph, not rows."""
    import cv2

    two = np.full((76, 70), 245, np.uint8)  # 二: two strokes, thinner than a line's ink
    two[12:18, 12:58], two[52:58, 8:62] = 20, 20
    mouths = np.full((76, 70), 245, np.uint8)  # 吕: 口 over 口, each a line's height and as wide as tall
    cv2.rectangle(mouths, (20, 8), (48, 34), 20, 3)
    cv2.rectangle(mouths, (16, 42), (52, 70), 20, 3)
    colon = np.full((76, 40), 245, np.uint8)  # a colon's two dots
    colon[10:24, 12:26], colon[48:62, 12:26] = 20, 20
    for glyph in (two, mouths, colon):
        assert row_bands(glyph, line_h=38) == []
    pair = np.full((76, 70), 245, np.uint8)  # the same paper over two rows of two glyphs each: cut
    for y in (8, 42):
        cv2.rectangle(pair, (8, y), (30, y + 26), 20, 3)
        cv2.rectangle(pair, (38, y), (60, y + 26), 20, 3)
    assert len(row_bands(pair, line_h=38)) == 2
    assert row_bands(np.full((76, 300), 245, np.uint8), line_h=38) == []  # no ink at all


def test_rows_cut_by_the_box_edge_or_with_small_print_between_them_are_not_cut():
    """Two rows of two glyphs each are cut apart (as above), but not when one of them touches the crop's
    edge (a neighbour's ink the box reached into), nor when small print lies between them (a cut halfway
    would run through it)."""
    import cv2

    def page(rows, small=None, h=120):
        crop = np.full((h, 90), 245, np.uint8)
        for y0, y1 in rows:
            cv2.rectangle(crop, (8, y0), (36, y1), 20, 3)
            cv2.rectangle(crop, (46, y0), (74, y1), 20, 3)
        for x in range(10, 70, 8) if small else ():  # small print: 3-px strokes
            crop[small[0] : small[1], x : x + 3] = 20
        return crop

    assert row_bands(page([(8, 34), (86, 112)]), line_h=34) == [(0, 60), (60, 120)]
    assert row_bands(page([(0, 34), (86, 112)]), line_h=34) == []  # the top row runs off the crop
    assert row_bands(page([(8, 34), (86, 112)], small=(52, 61)), line_h=34) == []


def test_no_line_box_of_synthetic_pages_is_cut_and_boxes_over_two_lines_are(synth):
    """The labelled line boxes of synthetic pages (every layout) each hold one line: none is cut. A box
    drawn over two neighbouring lines (one above the other, sharing most of their width, apart by less
    than half a line) is cut in two often (64 % over 100 pages: scripts/split_rows.py); lines that touch
    or a lone glyph are left whole."""

    lines = pairs = both = 0
    for i in range(16):
        page = synth.page(i)
        quads = [ln.quad for ln in page.lines if not ln.ignore]
        if len(quads) < 2:
            continue
        line_h = float(np.median([quad_size(q)[1] for q in quads]))
        for q in quads:
            lines += 1
            assert row_bands(upright(page.image, q)[0], line_h) == [], (i, page.layout)
        for a in quads:
            for b in quads:
                ah, gap = float(np.ptp(a[:, 1])), float(b[:, 1].min() - a[:, 1].max())
                shared = min(a[:, 0].max(), b[:, 0].max()) - max(a[:, 0].min(), b[:, 0].min())
                if 0 <= gap < 0.5 * ah and shared > 0.5 * min(np.ptp(a[:, 0]), np.ptp(b[:, 0])):
                    d = 0.04 * ah  # grown as the detector's boxes are
                    (x0, y0) = np.minimum(a.min(0), b.min(0)) - d
                    (x1, y1) = np.maximum(a.max(0), b.max(0)) + d
                    pairs += 1
                    both += len(row_bands(upright(page.image, rect(x0, y0, x1, y1))[0], line_h)) == 2
    assert lines > 200 and pairs > 30
    assert both >= 0.4 * pairs, (both, pairs)  # 86 of 158 here


def _item_table(glyph=None):
    """A receipt's item table drawn with cv2: names, a column of lone quantities, prices; the boxes a
    detector that missed the quantities would give (names and prices only)."""
    import cv2

    page = np.full((240, 560), 245, np.uint8)
    boxes, cells = [], []
    for k, (name, qty, price) in enumerate(
        [("BREAD", "2", "3.50"), ("MILK", "3", "12.90"), ("EGGS", "5", "7.20"), ("TEA", "7", "4.00")]
    ):
        y = 50 + 45 * k
        for x, text in ((20, name), (400, price)):
            cv2.putText(page, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 20, 2)
            (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.9, 2)
            boxes.append(Box(rect(x - 4, y - h - 5, x + w + 4, y + 6), 0.9))
        if glyph is None:
            cv2.putText(page, qty, (260, y), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 20, 2)
        else:
            glyph(page, 260, y)
        cells.append((260, y))
    return page, boxes, cells


def test_lone_digits_in_a_table_column_the_detector_missed_are_read_too():
    from crnn.detect.glyphs import glyph_crop, lone_glyphs

    page, boxes, cells = _item_table()
    quads = [b.quad for b in boxes]
    inks = [fit_to_ink(*upright(page, q), q) for q in quads]
    found = lone_glyphs(page, quads, inks)
    assert len(found) == 4
    for q, (x, y) in zip(sorted(found, key=lambda q: q[0, 1]), cells):
        assert (
            q[0, 0] <= x + 2 and q[1, 0] >= x + 12 and q[0, 1] <= y - 18 and q[2, 1] >= y - 1
        )  # the digit's cell
        assert q[0, 0] >= x - 4 and q[1, 0] <= x + 20 and q[0, 1] >= y - 24 and q[2, 1] <= y + 2  # no more
        c = glyph_crop(q)  # read with paper all round
        assert (
            c[0, 0] < q[0, 0] - 4
            and c[1, 0] > q[1, 0] + 4
            and c[0, 1] < q[0, 1] - 4
            and c[2, 1] > q[2, 1] + 4
        )
    lines = page_lines(page, boxes)
    assert len(lines) == 12 and len(page_lines(page, boxes, glyphs=False)) == 8
    xs = [float(ln.quad[:, 0].mean()) for ln in lines]
    for row in range(4):  # row by row: the name, its quantity, its price
        name, qty, price = xs[3 * row : 3 * row + 3]
        assert name < 150 and 255 < qty < 285 and price > 400


def test_lone_digits_are_found_where_they_are_on_a_large_page_read_scaled_down():
    """The same table three times larger, at an offset on a large page: its components are found at a
    reduced scale (a line's ink over GLYPH_READ_HEIGHT) and mapped back to the page's pixels."""
    import cv2

    from crnn.detect.glyphs import lone_glyphs

    small, boxes, cells = _item_table()
    page = np.full((1600, 2400), 245, np.uint8)
    k, (ox, oy) = 3, (700, 500)
    page[oy : oy + 3 * small.shape[0], ox : ox + 3 * small.shape[1]] = cv2.resize(
        small, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST
    )
    quads = [b.quad * k + np.float32([ox, oy]) for b in boxes]
    found = sorted(
        lone_glyphs(page, quads, [fit_to_ink(*upright(page, q), q) for q in quads]), key=lambda q: q[0, 1]
    )
    assert len(found) == 4
    for q, (x, y) in zip(found, cells):
        x, y = ox + k * x, oy + k * y
        assert q[0, 0] <= x + 6 and q[1, 0] >= x + 36 and q[0, 1] <= y - 54 and q[2, 1] >= y - 3


def test_bullets_a_lone_digit_and_a_digit_off_every_row_are_not_glyphs():
    """A column of bullets (as wide as tall), one digit with no other in its column, and digits on rows
    where no line was found are not read as glyphs."""
    import cv2

    from crnn.detect.glyphs import lone_glyphs

    def found(page, boxes):
        quads = [b.quad for b in boxes]
        return lone_glyphs(page, quads, [fit_to_ink(*upright(page, q), q) for q in quads])

    page, boxes, _ = _item_table(lambda p, x, y: cv2.circle(p, (x + 8, y - 9), 9, 20, -1))
    assert found(page, boxes) == []
    page, boxes, cells = _item_table(lambda p, x, y: None)
    cv2.putText(page, "3", (260, cells[1][1]), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 20, 2)
    assert found(page, boxes) == []
    page, boxes, _ = _item_table()
    assert found(page, boxes[:2]) == []  # only the first row was found: the other digits are off every row


def _form(colons=True, grain=0.0, colon_ink=20):
    """A form's fields as a receipt prints them: labels, a column of lone colons (two fields left empty),
    two values; the boxes a detector that missed the colons would give. `grain`: the paper's noise (grey
    levels)."""
    import cv2

    page = np.full((260, 520), 235, np.uint8)
    rng = np.random.default_rng(0)
    if grain:
        noise = cv2.GaussianBlur(rng.normal(0, grain, page.shape), (0, 0), 1.2)
        page = np.clip(page + noise, 0, 255).astype(np.uint8)
    boxes, cells = [], []
    for k, (label, value) in enumerate(
        [("CODE", "300-C0001"), ("NAME", "CASH"), ("ADDRESS", ""), ("", ""), ("", ""), ("GST NO.", "")]
    ):
        y = 40 + 36 * k
        for x, text in ((20, label), (230, value)):
            if text:
                cv2.putText(page, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 20, 2)
                (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.8, 2)
                boxes.append(Box(rect(x - 4, y - h - 5, x + w + 4, y + 6), 0.9))
        if colons:
            cv2.putText(page, ":", (200, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, colon_ink, 2)
        cells.append((200, y))
    return page, boxes, cells


def test_a_column_of_lone_colons_is_read_as_glyphs_in_their_cells():
    """A form's empty fields leave lone colons, two of them on rows with nothing else: each is found as its
    character's cell (a line's height, standing on the baseline), read with the page's lines."""
    from crnn.detect.glyphs import lone_glyphs

    page, boxes, cells = _form()
    quads = [b.quad for b in boxes]
    found = sorted(
        lone_glyphs(page, quads, [fit_to_ink(*upright(page, q), q) for q in quads]), key=lambda q: q[0, 1]
    )
    assert len(found) == 6
    for q, (x, y) in zip(found, cells):
        dots = np.flatnonzero((page[y - 20 : y + 2, x - 4 : x + 16] < 128).any(axis=0)) + x - 4
        assert (
            q[0, 0] <= dots[0] and q[1, 0] >= dots[-1] + 1 and abs(q[2, 1] - y) <= 2
        )  # the dots, on the baseline
        assert 14 <= q[2, 1] - q[0, 1] <= 22  # as tall as the capitals beside it (17 px), not the dots (10)
    assert len(page_lines(page, boxes)) == len(boxes) + 6


def test_the_papers_grain_and_a_colon_beside_its_word_are_not_lone_colons():
    from crnn.detect.glyphs import lone_glyphs

    def found(page, boxes):
        quads = [b.quad for b in boxes]
        return lone_glyphs(page, quads, [fit_to_ink(*upright(page, q), q) for q in quads])

    assert found(*_form(colons=False, grain=12.0)[:2]) == []  # grain has dots too, fainter than print
    assert len(found(*_form(grain=12.0)[:2])) == 6  # ... the colons among it are still found
    page, boxes, _ = _form()
    cv2.putText(page, "X", (212, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 20, 2)  # a letter right beside one
    assert len(found(page, boxes)) == 5
    assert found(*_form(colon_ink=170)[:2]) == []  # pale dots beside dark print: not print
    page, boxes, _ = _form(colons=False)
    for yy in range(20, 240, 9):  # a vertical dotted rule: dots over dots, each pair shaped like a colon
        cv2.circle(page, (204, yy), 2, 20, -1)
    assert found(page, boxes) == []


def test_lone_colons_are_found_on_a_large_scan_read_scaled_down():
    """The form three times larger: its components are read at a reduced scale, its colons still found."""
    from crnn.detect.glyphs import lone_glyphs

    small, boxes, cells = _form()
    page = cv2.resize(small, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)
    quads = [b.quad * 3 for b in boxes]
    found = sorted(
        lone_glyphs(page, quads, [fit_to_ink(*upright(page, q), q) for q in quads]), key=lambda q: q[0, 1]
    )
    assert len(found) == 6
    for q, (_, y) in zip(found, cells):
        assert abs(q[2, 1] - 3 * y) <= 6 and 42 <= q[2, 1] - q[0, 1] <= 66


def test_no_glyph_is_added_where_every_line_of_a_synthetic_page_has_its_box(synth):
    """Every labelled line of synthetic pages (every layout, distractors included) given as a box: nothing
    left is a glyph in a column (none on 140 pages of two seeds when this was written)."""
    from crnn.detect.glyphs import lone_glyphs

    for i in range(20):
        page = synth.page(i)
        quads = [ln.quad for ln in page.lines]
        if len(quads) < 2:
            continue
        assert (
            lone_glyphs(page.image, quads, [fit_to_ink(*upright(page.image, q), q) for q in quads]) == []
        ), i


# ------------------------------------------------------------------------------------------- reading order


def test_rows_read_left_to_right_top_to_bottom():
    quads = [rect(200, 10, 260, 30), rect(10, 12, 100, 30), rect(10, 50, 100, 70)]
    assert row_order(quads) == [1, 0, 2]


def test_receipt_columns_that_pair_up_are_read_as_rows():
    items = [rect(10, 20 + 30 * i, 150, 40 + 30 * i) for i in range(6)]
    prices = [rect(300, 20 + 30 * i, 340, 40 + 30 * i) for i in range(6)]
    order = reading_order(items + prices)
    assert order == [k for i in range(6) for k in (i, 6 + i)]


@pytest.mark.parametrize("turn", [-3.0, -1.5, 3.0])
def test_a_turned_receipts_rows_are_read_as_printed(turn):
    """A receipt photographed a few degrees off: each row's price at its right end sits higher or lower by
    the turn than its item, by more than half a row, so rows as the boxes lie mix neighbouring rows (the
    realdev scorer's sweep does: row_order); the boxes turned upright first read item, price, row by row.
    Straight boxes are ordered as they lie."""
    items = [rect(10, 20 + 22 * i, 250, 38 + 22 * i) for i in range(8)]
    prices = [rect(480, 20 + 22 * i, 520, 38 + 22 * i) for i in range(8)]
    rows = [k for i in range(8) for k in (i, 8 + i)]
    a = np.radians(turn)
    r = np.float32([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    turned = [q @ r.T for q in items + prices]
    assert lines_turn(turned) == pytest.approx(turn, abs=1e-3)
    assert row_order(turned) != rows
    assert reading_order(turned) == rows
    assert reading_order(items + prices) == row_order(items + prices) == rows


def test_lines_turned_each_their_own_way_leave_the_page_as_it_lies():
    """A sign turned 15 degrees above two straight rows (a scene): the lines do not agree on a turn, so
    the page is ordered as it lies; turning it by the sign's weight (7 degrees) read each row's right line
    first (a fresh-eyes review's find). A box that is not four points has no direction and is left out."""
    a = np.radians(15)
    r = np.float32([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    sign = (rect(50, 100, 650, 160) - np.float32([350, 130])) @ r.T + np.float32([350, 130])
    straight = [
        rect(20, 300, 200, 320),
        rect(400, 290, 600, 310),
        rect(20, 400, 160, 420),
        rect(420, 410, 560, 430),
    ]
    quads = [sign, *straight]
    assert lines_turn(quads) == 0.0
    assert reading_order(quads) == row_order(quads) == [0, 1, 2, 3, 4]
    assert lines_turn([np.zeros((2, 2), np.float32), rect(0, 0, 100, 10)]) == 0.0


def test_two_text_columns_with_the_same_leading_are_read_one_after_the_other():
    left = [rect(10, 20 + 30 * i, 150 - 9 * i, 40 + 30 * i) for i in range(6)]
    right = [rect(200, 20 + 30 * i, 330 - 7 * i, 40 + 30 * i) for i in range(6)]
    assert reading_order(left + right) == list(range(12))


def test_independent_text_columns_are_read_one_after_the_other():
    left = [rect(10, 20 + 30 * i, 150, 40 + 30 * i) for i in range(6)]
    right = [rect(200, 35 + 41 * i, 340, 55 + 41 * i) for i in range(5)]  # its own leading
    order = reading_order(left + right)
    assert order == list(range(11))


# ------------------------------------------------------------------------------------------- scoring


def test_scoring_counts_matches_ignores_and_page_edits():
    truth = PageTruth(
        quads=[rect(0, 0, 100, 20), rect(0, 30, 100, 50)],
        texts=["AB C", "xyz"],
        ignore=[rect(200, 0, 260, 20)],
        category="receipt_en",
    )
    pred = [rect(2, 1, 98, 21), rect(205, 2, 255, 18), rect(0, 100, 50, 120)]
    c = score_page(truth, pred, ["abc", "junk", "q"], row_order)
    d = c.as_dict()
    assert (c.matched, c.predicted, c.truth) == (1, 2, 2)  # the one inside ### is dropped
    assert d["precision"] == 0.5 and d["recall"] == 0.5
    # truth "abc\nxyz" (receipt: case-folded, no spaces) against "abc\nq": 3 edits over 6 characters
    assert (c.edits, c.chars) == (3, 6)
    truth.complete = False  # only some lines listed: recall, and the matched pairs' CER
    c = score_page(truth, pred, ["abc", "junk", "q"], row_order)
    assert (c.matched, c.predicted, c.truth) == (1, 0, 2) and (c.edits, c.chars) == (0, 0)
    assert (c.pair_edits, c.pair_chars) == (0, 3)  # kept apart from complete pages' page CER
    total = Counts()
    total.add(c)
    total.add(
        score_page(PageTruth([rect(0, 0, 9, 9)], ["a"]), [rect(0, 0, 9, 9), rect(50, 0, 59, 9)], None, None)
    )
    assert total.as_dict()["precision"] == 0.5 and total.as_dict()["recall"] == 2 / 3


def test_complete_and_partly_listed_pages_are_summed_apart():
    """A complete page's page CER and a partly listed page's pair CER are two figures: summed together they
    gave an `overall` CER that was neither (the realdev pages README reports them apart)."""
    whole = PageTruth([rect(0, 0, 100, 20)], ["abcd"], category="scene_en")
    listed = PageTruth([rect(0, 0, 100, 20)], ["wxyz"], category="scene_en", complete=False)
    total = Counts()
    total.add(score_page(whole, [rect(0, 0, 100, 20)], ["abcx"], row_order))
    total.add(score_page(listed, [rect(0, 0, 100, 20)], ["qqqq"], row_order))
    d = total.as_dict()
    assert (d["cer"], d["edits"], d["chars"]) == (0.25, 1, 4)
    assert (d["pair_cer"], d["pair_edits"], d["pair_chars"]) == (1.0, 4, 4)


def test_the_sweep_breaks_a_tie_of_centre_x_by_text():
    """The README's sweep sorts each row's (x, text) pairs: two boxes of one row with the same centre x
    (one a little lower) read in the order of their texts on both sides, whatever order they came in."""
    upper, lower = rect(0, 0, 100, 20), rect(0, 5, 100, 25)
    assert row_order([upper, lower], ["b", "a"]) == [1, 0]
    assert row_order([upper, lower]) == [0, 1]  # without texts: top first, as before
    truth = PageTruth([upper, lower], ["b", "a"], category="scene_en")
    c = score_page(truth, [upper, lower], ["a", "b"], row_order)  # each read as the other's label
    assert (c.edits, c.chars) == (0, 2)  # both sides "a\nb" (taken top first, "b\na" against "a\nb")
    wrapped = score_page(truth, [upper, lower], ["a", "b"], functools.partial(row_order))
    assert wrapped.edits == 0  # the sweep passed wrapped still takes the texts


# ------------------------------------------------------------------------------------------- learning


def test_the_detector_learns_a_handful_of_pages(mini_detector):
    """Two rendered pages, 150 steps: the trained network finds their lines again (the loss, the targets
    and the postprocess agree with each other)."""
    from crnn.detect.train import page_truth

    model, pages = mini_detector["model"], mini_detector["pages"]
    found = truth = matched = 0
    for page in pages:
        x = torch.from_numpy(det_normalize(page.image)[None, None])
        with torch.no_grad():
            prob = model(x)[0, 0].numpy()
        pred = [b.quad for b in find_boxes(prob, (1.0, 1.0), page.image.shape, BoxConfig())]
        c = score_page(page_truth(page), pred, None, None)
        found, truth, matched = found + c.predicted, truth + c.truth, matched + c.matched
    assert truth >= 8
    assert matched / truth > 0.8 and matched / max(found, 1) > 0.8


def test_the_stages_train_resume_export_and_quantize(tmp_path):
    """The CLI trains 3 steps; resumed in-process it goes on to 5 (same MLflow run, history kept); export
    checks parity and writes the box settings; quantize measures INT8 against FP32 and decides."""
    from crnn.detect import export, quantize
    from crnn.detect.detector import Detector
    from crnn.detect.train import setup, train
    from crnn.train_utils import warmup_cosine

    common = [
        "experiment=det_zh_en",
        f"runs_dir={tmp_path}/runs",
        "mlflow.enabled=true",
        f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
        f"mlflow.artifact_root={tmp_path}/mlruns/artifacts",
        "detect.train.batch_size=2",
        "detect.train.size=128",
        "detect.train.val_pages=2",
        "detect.train.val_every=3",
        "detect.train.log_every=1",
        "detect.train.num_workers=0",
        "detect.train.threads=1",
        "detect.pages.long_side=[160,200]",
        "detect.export.parity_pages=2",
        "detect.quantize.calibration_pages=2",
        "detect.quantize.threads=1",
    ]
    run_module("crnn.detect.train", common + ["detect.train.max_steps=3"])
    out = tmp_path / "runs" / "det_zh_en" / "detect" / "train"
    assert {"last.pt", "last.state.pt", "best.pt", "summary.json"} <= {p.name for p in out.iterdir()}
    first = torch.load(out / "last.state.pt", weights_only=False)["mlflow_run_id"]
    cfg = compose_cfg(common + ["detect.train.max_steps=5", "detect.train.resume=true"])
    summary = train(cfg)
    assert summary["steps"] == 5 and [h["step"] for h in summary["history"]] == [3, 5]
    assert torch.load(out / "last.state.pt", weights_only=False)["mlflow_run_id"] == first
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["lineage"]["step"] == 5 and ck["lineage"]["git_commit"]
    # no scheduler state is kept: a resumed run's rate is the schedule's at its step
    assert "scheduler" not in torch.load(out / "last.state.pt", weights_only=False)
    _, _, sched, state = setup(cfg, torch.device("cpu"), lambda _m: None)
    t = cfg.detect.train
    assert state["step"] == 5 and state["rewarm_from"] is None
    assert sched.get_last_lr()[0] == pytest.approx(t.lr * warmup_cosine(5, t.warmup_steps, t.max_steps))

    report = export.run(cfg)
    assert report["parity"]["max_abs_diff"] < 1e-3 and report["macs_640"] > 0
    det = Detector(report["onnx"])
    assert det.boxes == cfg.detect.boxes and det.info()["lineage"]["step"] in (3, 5)
    strict = compose_cfg(common + ["detect.quantize.f1_budget_points=-100"])  # INT8 must gain 1.0 F1: never
    q = quantize.run(strict)
    assert (
        not q["kept"]
        and "less accurate" in q["decision"]
        and q["int8"]["size_bytes"] < q["fp32"]["size_bytes"]
    )
    assert not (out.parent / "quantize" / "detector.int8.onnx").exists()
    # calibration pages are fed at the scale the file serves them: its saved box settings, not the config's
    from dataclasses import replace

    from crnn.detect.calibrate import rewrite_boxes

    def long_side() -> int:
        return max(max(it["image"].shape[2:]) for it in quantize.calibration(cfg, Path(report["onnx"])).items)

    assert long_side() >= cfg.detect.boxes.upscale_to  # 160-200 px pages scaled up, as the config says
    rewrite_boxes(Path(report["onnx"]), replace(cfg.detect.boxes, upscale_to=0), {})
    assert long_side() <= 224  # at their own scale (padded to a multiple of 32), as the file now says


def test_the_int8_detector_is_kept_only_faster_and_as_accurate_and_then_served(tmp_path):
    """The decision the quantize stage takes on its measured figures (the stage test above can only reach
    "not kept": which file is faster on a machine is not the test's to choose), and the file page mode
    serves once INT8 is kept."""
    from crnn.detect.evaluate import served_detector
    from crnn.detect.quantize import decide

    fp32 = {"ms_p50": 20.0, "f1": 0.950}
    assert decide(fp32, {"ms_p50": 17.0, "f1": 0.948}, 0.5) == (True, "kept: faster and as accurate")
    assert decide(fp32, {"ms_p50": 17.0, "f1": 0.940}, 0.5) == (False, "less accurate than FP32: not kept")
    assert decide(fp32, {"ms_p50": 21.0, "f1": 0.960}, 0.5) == (False, "slower than FP32: not kept")
    assert decide(fp32, {"ms_p50": 20.0, "f1": 0.900}, 0.5) == (
        False,
        "slower and less accurate than FP32: not kept",
    )
    cfg = compose_cfg(["experiment=det_zh_en", f"runs_dir={tmp_path}/runs"])
    export_dir = cfg.stage_dir("detect") / "export"
    export_dir.mkdir(parents=True)
    (export_dir / "detector.onnx").write_bytes(b"fp32")
    assert served_detector(cfg) == export_dir / "detector.onnx"
    kept = cfg.stage_dir("detect") / "quantize" / "detector.int8.onnx"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"int8")
    assert served_detector(cfg) == kept


def test_ctrl_c_stops_the_detector_run_politely(tmp_path):
    """SIGINT to the whole group (loader worker too): the run validates, saves and writes summary.json."""
    over = [
        "experiment=det_zh_en",
        f"runs_dir={tmp_path}/runs",
        "mlflow.enabled=false",
        "detect.train.batch_size=2",
        "detect.train.size=128",
        "detect.train.val_pages=2",
        "detect.train.val_every=2",
        "detect.train.log_every=1",
        "detect.train.num_workers=1",
        "detect.train.threads=1",
        "detect.train.max_steps=100000",
        "detect.pages.long_side=[160,200]",
    ]
    out = tmp_path / "runs" / "det_zh_en" / "detect" / "train"
    cmd = [sys.executable, "-m", "crnn.detect.train", *over]
    status, text = signal_once_saved(cmd, out / "last.pt", signal.SIGINT, group=True)
    assert status == 128 + signal.SIGINT.value, text[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] == "SIGINT received" and 2 <= summary["steps"] < 100000
    assert summary["history"][-1]["step"] == summary["steps"]  # validated where it stopped
    assert torch.load(out / "last.pt", weights_only=True)["lineage"]["step"] == summary["steps"]


def test_what_a_bundle_brought_back_joins_the_run_at_home(tmp_path):
    """`detect.train.resume_from=<back>`: the best.pt and the metrics of the run there come home, into the
    MLflow run there started, once, even when nothing is left to train (this failed: no folder, no
    summary.json, best.pt and the metrics left behind)."""
    from crnn.detect.train import train
    from tests.test_bundle import mlflow_history

    small = [
        "experiment=det_zh_en",
        "detect.train.batch_size=2",
        "detect.train.size=128",
        "detect.train.val_pages=2",
        "detect.train.val_every=2",
        "detect.train.log_every=1",
        "detect.train.num_workers=0",
        "detect.train.threads=1",
        "detect.pages.long_side=[160,200]",
        "detect.train.max_steps=2",
    ]
    home = [
        f"runs_dir={tmp_path}/home",
        "mlflow.enabled=true",
        f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
        f"mlflow.artifact_root={tmp_path}/mlruns/artifacts",
    ]
    train(compose_cfg(small + home + ["detect.train.max_steps=1"]))  # the MLflow run starts at home
    run = torch.load(tmp_path / "home/det_zh_en/detect/train/last.state.pt", weights_only=False)
    there = tmp_path / "there/det_zh_en/detect/train"  # the bundle: no MLflow, a metrics file
    there.parent.mkdir(parents=True)
    train(
        compose_cfg(
            small
            + [
                f"runs_dir={tmp_path}/there",
                "mlflow.enabled=false",
                f"mlflow.metrics_file={there}/metrics.jsonl",
            ]
            + [f"detect.train.resume_from={tmp_path}/home/det_zh_en/detect/train"]
        )
    )
    shutil.rmtree(tmp_path / "home")  # a fresh machine at home
    for _ in range(2):
        summary = train(compose_cfg(small + home + [f"detect.train.resume_from={there}"]))
        out = tmp_path / "home/det_zh_en/detect/train"
        assert summary["steps"] == 2 and (out / "summary.json").is_file()
        for name in ("best.pt", "last.pt", "last.state.pt"):
            assert (out / name).read_bytes() == (there / name).read_bytes()
        assert mlflow_history(tmp_path, run["mlflow_run_id"], "val_f1") == [1, 2]  # 2 there, imported once


def test_a_resume_puts_the_optimizer_moments_on_the_device_of_the_parameters(tmp_path):
    """The state is saved from one device and resumed on another (CPU at home, CUDA in a bundle): the
    moments must follow the parameters, or the first step fails (it did on a GPU). `meta` stands in for
    the other device here."""
    from crnn.detect.train import make_optimizer, save, setup

    cfg = compose_cfg(["experiment=det_zh_en", f"runs_dir={tmp_path}", "detect.train.resume=true"])
    model = build_detector(cfg.detect.model)
    opt, sched = make_optimizer(model, cfg)
    model(torch.zeros(1, 1, 64, 64))["prob"].mean().backward()
    opt.step()
    sched.step()
    state = {"step": 1, "best_f1": 0.5, "mlflow_run_id": "", "history": []}
    save(cfg, "last.pt", model, opt, state, {"stage": "detect.train"})

    model, opt, _, state = setup(cfg, torch.device("meta"), lambda m: None)
    assert state["step"] == 1 and state["best_f1"] == 0.5
    moments = [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.dim()]
    assert moments and all(t.device.type == "meta" for t in moments)
    assert all(p.device.type == "meta" for p in model.parameters())


def test_a_detector_resumed_from_weights_alone_warms_its_rate_up_again(tmp_path):
    """The shipped snapshot holds weights only: fresh moments start at a small rate, ramp up over
    warmup_steps into the cosine, and the ramp's start travels in the state to the next resume."""
    from crnn.detect.train import make_optimizer, save, setup
    from crnn.train_utils import warmup_cosine

    over = ["experiment=det_zh_en", f"runs_dir={tmp_path}", "detect.train.resume=true"]
    cfg = compose_cfg(over + ["detect.train.warmup_steps=100"])
    model = build_detector(cfg.detect.model)
    opt, sched = make_optimizer(model, cfg)
    state = {"step": 3000, "best_f1": 0.9, "mlflow_run_id": "", "history": []}
    save(cfg, "last.pt", model, opt, state, {"stage": "detect.train"})
    (tmp_path / "det_zh_en/detect/train/last.state.pt").unlink()  # weights alone, as in the snapshot

    _, opt, sched, state = setup(cfg, torch.device("cpu"), lambda m: None)
    full = cfg.detect.train.lr * warmup_cosine(3000, 100, cfg.detect.train.max_steps)
    assert state["rewarm_from"] == 3000 and sched.get_last_lr()[0] == pytest.approx(full / 100)
    for _ in range(50):
        opt.step()
        sched.step()
    state["step"] = 3050
    save(cfg, "last.pt", model, opt, state, {"stage": "detect.train"})
    _, _, sched, state = setup(cfg, torch.device("cpu"), lambda m: None)  # with its state this time
    assert state["rewarm_from"] == 3000
    ramp = cfg.detect.train.lr * warmup_cosine(3050, 100, cfg.detect.train.max_steps) * 51 / 100
    assert sched.get_last_lr()[0] == pytest.approx(ramp)


def test_a_resumed_detector_keeps_the_base_rate_its_run_started_with(tmp_path):
    """As the recognizer (and as a loaded scheduler state did): the rate at the resumed step is the schedule's
    at that step times the run's own base rate, not a `detect.train.lr` changed since (this resumed at the
    new rate when the scheduler was first rebuilt instead of loaded)."""
    from crnn.detect.train import make_optimizer, save, setup
    from crnn.train_utils import warmup_cosine

    over = ["experiment=det_zh_en", f"runs_dir={tmp_path}", "detect.train.resume=true"]
    cfg = compose_cfg(over + ["detect.train.lr=0.002"])
    model = build_detector(cfg.detect.model)
    opt, sched = make_optimizer(model, cfg)
    save(cfg, "last.pt", model, opt, {"step": 700, "best_f1": 0.5, "mlflow_run_id": "", "history": []}, {})
    _, _, sched, state = setup(compose_cfg(over + ["detect.train.lr=0.01"]), torch.device("cpu"), print)
    t = cfg.detect.train
    assert state["step"] == 700
    assert sched.get_last_lr()[0] == pytest.approx(0.002 * warmup_cosine(700, t.warmup_steps, t.max_steps))


def test_a_decay_branch_starts_a_new_run_from_another_runs_weights(tmp_path):
    """`detect.train.init_from`: the weights of a long run at a high rate, in a new run at step 0 with its own
    schedule (warm-up, then cosine over its own horizon) and pages its source has not trained on; the source
    is in the lineage of what the branch saves, and stays there on its resumes (with or without the optimizer
    state), which continue the branch rather than read the source again."""
    from crnn.cli import StageError
    from crnn.detect.train import (
        first_page_batch,
        load_detector,
        make_optimizer,
        save,
        setup,
        state_file,
        train,
    )

    main_run = ["experiment=det_zh_en", f"runs_dir={tmp_path}", "mlflow.enabled=false"]
    cfg = compose_cfg(main_run)
    model = build_detector(cfg.detect.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    opt, _ = make_optimizer(model, cfg)
    save(cfg, "last.pt", model, opt, {"step": 9000, "best_f1": 0.9, "mlflow_run_id": "", "history": []}, {})
    source = tmp_path / "det_zh_en/detect/train"  # a run's folder: its last.pt
    tiny = [
        "detect.train.batch_size=2",
        "detect.train.size=128",
        "detect.train.val_pages=2",
        "detect.train.val_every=2",
        "detect.train.num_workers=0",
        "detect.train.threads=1",
        "detect.pages.long_side=[160,200]",
    ]
    branch = (
        main_run + tiny + ["name=branch", f"detect.train.init_from={source}", "detect.train.max_steps=400"]
    )

    new, opt, sched, state = setup(compose_cfg(branch), torch.device("cpu"), lambda m: None)
    assert state["step"] == 0 and state["best_f1"] == -1.0 and not opt.state  # fresh moments
    assert state["init_from"]["step"] == 9000 and state["init_from"]["path"] == str(source / "last.pt")
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), model.state_dict().values()))
    t = compose_cfg(branch).detect.train
    assert sched.get_last_lr()[0] == pytest.approx(t.lr / t.warmup_steps)  # its own warm-up
    assert first_page_batch(state) == 9000  # the pages after its source's
    other = ["experiment=det_zh_en_wide", f"runs_dir={tmp_path}", f"detect.train.init_from={source}"]
    with pytest.raises(StageError, match="init_from"):  # another network's weights: a clear error
        setup(compose_cfg(other), torch.device("cpu"), print)

    assert train(compose_cfg(branch + ["detect.train.max_steps=2"]))["steps"] == 2
    out = tmp_path / "branch/detect/train"
    for name in ("last.pt", "best.pt"):
        assert load_detector(out / name)[1]["lineage"]["init_from"]["step"] == 9000
    from crnn.detect import export
    from crnn.detect.detector import Detector

    report = export.run(compose_cfg(branch + ["detect.export.parity_pages=1"]))
    assert report["init_from"]["step"] == 9000  # the card says where the branch started (ship_detector.py)
    assert Detector(report["onnx"]).info()["lineage"]["init_from"]["step"] == 9000
    (source / "last.pt").unlink()  # a resume continues the branch: the source is not read again
    resumed = branch + ["detect.train.resume=true"]
    _, _, _, state = setup(compose_cfg(resumed), torch.device("cpu"), print)
    assert state["step"] == 2 and state["init_from"]["step"] == 9000 and first_page_batch(state) == 9002
    state_file(out / "last.pt").unlink()  # weights alone: the lineage still names the source
    _, _, _, state = setup(compose_cfg(resumed), torch.device("cpu"), print)
    assert state["step"] == 2 and state["init_from"]["step"] == 9000


def test_shipping_needs_the_detector_to_beat_the_projection_splitter():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship_detector", ROOT / "scripts" / "ship_detector.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)

    def reader(name, line_f1, seg_f1, cer):
        return {
            "reader": name,
            "levels": {"line": {"f1": line_f1}, "segment": {"f1": seg_f1}},
            "complete_pages": {"cer": cer},
        }

    proj = reader("projection splitter + m.onnx", 0.2, 0.25, 0.6)
    better = ship.by_reader([reader("detector (d.onnx) + m.onnx", 0.8, 0.7, 0.3), proj])
    assert ship.check_better(better) == []
    worse = ship.by_reader([reader("detector (d.onnx) + m.onnx", 0.8, 0.2, 0.7), proj])
    assert len(ship.check_better(worse)) == 2


def test_shipping_a_new_detector_needs_it_to_beat_the_bundled_one_in_the_same_run():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship_detector", ROOT / "scripts" / "ship_detector.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)

    def reader(key, sha, line_f1, seg_f1, cer):
        return {
            "key": key,
            "reader": key,
            "files": {"det.onnx": sha},
            "levels": {"line": {"f1": line_f1}, "segment": {"f1": seg_f1}},
            "complete_pages": {"cer": cer},
        }

    old = reader("bundled", "old", 0.92, 0.86, 0.130)
    new = ship.by_reader([reader("detector", "new", 0.915, 0.90, 0.100), old])
    assert ship.check_replaces(new, "new") == []  # 0.005 of line F1 lost, within the budget
    lower_cer_less_f1 = ship.by_reader([reader("detector", "new", 0.90, 0.90, 0.100), old])
    assert ship.check_replaces(lower_cer_less_f1, "new") == [
        "line F1 0.900 < the bundled detector's 0.920 - 0.01"
    ]
    no_gain = ship.by_reader([reader("detector", "new", 0.95, 0.90, 0.130), old])
    assert ship.check_replaces(no_gain, "new") == ["page CER 0.130 >= the bundled detector's 0.130"]
    same_file = ship.by_reader([reader("detector", "old", 0.90, 0.80, 0.2), old])
    assert ship.check_replaces(same_file, "old") == []  # a new card for the file models/ holds
    assert "lacks the bundled detector" in ship.check_replaces(ship.by_reader([new["detector"]]), "new")[0]


def test_the_size_budget_counts_every_served_file_not_the_training_snapshots(tmp_path):
    """The 15 MB are what models/ serves together: the recognizer, its LM and the detector. Each ship stage
    counted only its own kind of file (ship_model the two recognizer files, ship_detector the ONNX files)."""
    from crnn.command import served_bytes

    out, run = tmp_path / "models", tmp_path / "run"
    (out / "snapshots").mkdir(parents=True)
    run.mkdir()
    (out / "snapshots" / "crnn.pt").write_bytes(b"x" * 5000)
    (out / "crnn_zh_en.onnx").write_bytes(b"x" * 300)
    (out / "crnn_zh_en.int8.onnx").write_bytes(b"x" * 70)
    (out / "crnn_zh_en.lm.npz").write_bytes(b"x" * 200)
    (out / "det_zh_en.onnx").write_bytes(b"x" * 100)  # replaced by the new one
    (run / "detector.onnx").write_bytes(b"x" * 40)
    assert served_bytes(out) == 670
    assert served_bytes(out, {run / "detector.onnx": out / "det_zh_en.onnx"}) == 610
    assert served_bytes(out, {}, (out / "crnn_zh_en.int8.onnx",)) == 600  # FP32 alone then serves


def test_record_writes_the_served_detectors_figures_again_only_from_a_run_that_read_the_served_files(
    tmp_path, capsys
):
    """`+record=true` rewrites models/det_zh_en.pages.json and the card's real-page section, keeping the
    card's head, from a detect-eval run that read the files served now; the committed figures had been
    measured behind a recognizer and LM no longer served. A run that read another file is refused."""
    import importlib.util

    from crnn.cli import StageError
    from crnn.lineage import sha256_file

    spec = importlib.util.spec_from_file_location("ship_detector", ROOT / "scripts" / "ship_detector.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    out = tmp_path / "models"
    out.mkdir()
    served = [out / "det_zh_en.onnx", out / "crnn_zh_en.int8.onnx", out / "crnn_zh_en.lm.npz"]
    for p in served:
        p.write_bytes(f"the served {p.name}".encode())
    (out / "det_zh_en.md").write_text(
        "# det_zh_en\n\n| parameters | 155,378 |\n\n## Real pages (old)\n\n| old |\n"
    )
    level = {"f1": 0.9, "precision": 0.92, "recall": 0.88}
    bundled = {
        "key": "bundled",
        "reader": "bundled detector (det_zh_en.onnx) + m.onnx",
        "levels": {"line": level, "segment": level, "word": {"f1": 0.49, "precision": 0.42, "recall": 0.59}},
        "categories": {
            "receipt_en": {"cer": 0.07},
            "scene_en": {"cer": 0.649},
            "printed_doc_zh": {"cer": 0.063},
        },
        "complete_pages": {"cer": 0.075},
        "latency_ms": {"p50": 151.0, "p95": 281.0},
        "files": {str(p): sha256_file(p) for p in served},
    }
    ship.record(out, "det_zh_en", [bundled], tmp_path / "pages.json", "pages/")
    card = (out / "det_zh_en.md").read_text()
    assert card.startswith("# det_zh_en\n\n| parameters | 155,378 |") and "| old |" not in card
    assert (
        "| 0.900 (0.92 / 0.88) | 0.900 (0.92 / 0.88) | 0.490 (0.42 / 0.59) | 0.070 | 0.063 | 0.649 | 0.075 "
        "| 151 / 281 |" in card
    )
    assert json.loads((out / "det_zh_en.pages.json").read_text())[0]["key"] == "bundled"
    files = bundled["files"]
    for other in (
        {**files, str(served[0]): "another detector"},
        {**files, "/elsewhere/other.lm.npz": "an LM not served"},  # read more than is served
        {k: v for k, v in files.items() if not k.endswith(".lm.npz")},  # read without the served LM
    ):
        with pytest.raises(StageError, match="did not read the files"):
            ship.record(out, "det_zh_en", [{**bundled, "files": other}], tmp_path / "pages.json", "pages/")


def test_a_detector_of_any_experiment_ships_under_the_name_page_mode_loads(tmp_path):
    """A wider or decayed run (experiment det_zh_en_wide_decay) replaces the bundled detector: it was
    written to models/det_zh_en_wide_decay.onnx, which nothing serves."""
    import importlib.util

    from crnn.command import BUNDLED_DETECTOR

    spec = importlib.util.spec_from_file_location("ship_detector", ROOT / "scripts" / "ship_detector.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    run, out = tmp_path / "runs/det_zh_en_wide_decay/detect", tmp_path / "models"
    files, served = ship.shipped_files(run, out, ship.SERVED_AS, {"kept": False})
    assert served == run / "export/detector.onnx" and {d.name for d in files.values()} == {"det_zh_en.onnx"}
    assert all(d.name in BUNDLED_DETECTOR for d in files.values())
    files, served = ship.shipped_files(run, out, ship.SERVED_AS, {"kept": True})
    assert served == run / "quantize/detector.int8.onnx"
    assert {d.name for d in files.values()} == set(BUNDLED_DETECTOR)


def test_unclip_distance_inverts_the_shrink():
    from crnn.detect.boxes import unclip_distance

    for w, h in [(200, 22), (40, 40), (600, 12)]:
        d = shrink_distance(rect(0, 0, w, h), 0.4)
        assert unclip_distance(w - 2 * d, h - 2 * d, 0.4) == pytest.approx(d, rel=1e-6)


def test_the_card_names_the_box_settings_and_their_calibration(tmp_path, monkeypatch):
    """The card's box settings are the served file's, and say whether crnn.detect.calibrate chose them."""
    import json

    import onnx

    from crnn.detect.detector import read_detector_metadata
    from crnn.onnx_model import set_metadata

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import ship_detector as ship

    src = ROOT / "models" / "det_zh_en.onnx"  # shipped after `make detect-calibrate`
    meta = read_detector_metadata(src)
    boxes, lineage = json.loads(meta["boxes"]), json.loads(meta["lineage"])
    row = ship.boxes_row(src)
    assert row.startswith(f"| box settings | unclip {boxes['unclip_scale']:g}, box threshold")
    assert f"chosen by `make detect-calibrate` on {lineage['calibration']['pages']} synthetic pages" in row
    model = onnx.load(str(src))
    del lineage["calibration"]
    set_metadata(model, {**meta, "lineage": json.dumps(lineage)})
    onnx.save(model, str(tmp_path / "plain.onnx"))
    assert "joined: the config's, not calibrated; a page scaled down" in ship.boxes_row(
        tmp_path / "plain.onnx"
    )
    assert "overlapping pieces of a row joined" in row  # a file from before the key joins, as it is served
    set_metadata(model, {**meta, "boxes": json.dumps({**boxes, "join_overlaps": False})})
    onnx.save(model, str(tmp_path / "apart.onnx"))
    assert "pieces not joined" in ship.boxes_row(tmp_path / "apart.onnx")
    assert "smaller pages scaled up to 640 px" in row  # a file from before the key scales up, as it is served
    set_metadata(model, {**meta, "boxes": json.dumps({**boxes, "upscale_to": 0})})
    onnx.save(model, str(tmp_path / "own.onnx"))
    assert "long side at most 960 px, overlapping" in ship.boxes_row(tmp_path / "own.onnx")
    assert "read again over its text when that gives it 1.5 times" in row  # from before the key, as served
    set_metadata(model, {**meta, "boxes": json.dumps({**boxes, "zoom_gain": 0})})
    onnx.save(model, str(tmp_path / "once.onnx"))
    assert "read again" not in ship.boxes_row(tmp_path / "once.onnx")
    assert (
        "boxes reported narrowed to the rows and end columns their ink covers" in row
    )  # from before the key, as served
    set_metadata(model, {**meta, "boxes": json.dumps({**boxes, "fit_ink": False})})
    onnx.save(model, str(tmp_path / "loose.onnx"))
    assert "narrowed" not in ship.boxes_row(tmp_path / "loose.onnx")
    assert "cut into its rows" in row  # from before the key, as served
    set_metadata(model, {**meta, "boxes": json.dumps({**boxes, "split_rows": False})})
    onnx.save(model, str(tmp_path / "whole.onnx"))
    assert "cut into its rows" not in ship.boxes_row(tmp_path / "whole.onnx")
    assert "lone glyphs in table columns" in row  # from before the key, as served
    set_metadata(model, {**meta, "boxes": json.dumps({**boxes, "lone_glyphs": False})})
    onnx.save(model, str(tmp_path / "boxed.onnx"))
    assert "lone glyphs" not in ship.boxes_row(tmp_path / "boxed.onnx")
