"""The OCR service for real: a uvicorn server on 127.0.0.1, real HTTP, bad uploads, page mode, the web page
in headless Chromium."""

import os
import socket
import struct
import subprocess
import sys
import time
import zlib

import cv2
import numpy as np
import pytest
import requests

from crnn.data.lmdb_io import LmdbReader
from crnn.serve.segment import segment_lines
from tests.conftest import ROOT, browser_output_dir, launch_chromium


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(chain):
    model = chain / "export" / "model.onnx"
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crnn.serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--max-upload-mb",
            "1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if requests.get(base + "/health", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("server did not start: " + proc.stdout.read().decode()[-2000:])
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


@pytest.fixture(scope="module")
def lines(tiny_data):
    r = LmdbReader(tiny_data / "data" / "train")  # lines the test model was trained on, so it reads them
    return [r.read(i) for i in range(1, 11)]


def _ocr(base, data: bytes, **form):
    return requests.post(base + "/ocr", files={"file": ("x.png", data, "image/png")}, data=form, timeout=30)


def test_health_metrics_and_page(server):
    h = requests.get(server + "/health", timeout=5).json()
    assert h["success"] and h["model"] == "model.onnx" and h["alphabet_size"] == 19
    assert h["lineage"]["stage"] == "export" and h["version"]
    assert "<title>crnn-toolkit OCR</title>" in requests.get(server + "/", timeout=5).text
    assert requests.get(server + "/openapi.json", timeout=5).json()["paths"]["/ocr"]


def test_ocr_line_answers_like_the_article_and_caches(server, lines):
    data = _png(lines[0].image)
    r = _ocr(server, data, mode="line")
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is True and len(body["text"]) == 1 and body["cached"] is False
    assert {"time_cost_ms", "preprocess_time_ms", "model_infer_time_ms"} <= set(body)
    line = body["lines"][0]
    assert 0.0 <= line["confidence"] <= 1.0 and line["box"] == [
        0,
        0,
        lines[0].image.shape[1],
        lines[0].image.shape[0],
    ]
    again = _ocr(server, data, mode="line").json()
    assert again["cached"] is True and again["text"] == body["text"]
    m = requests.get(server + "/metrics", timeout=5).text
    assert 'crnn_requests_total{path="/ocr",status="200"}' in m and "crnn_cache_hits_total 1" in m
    assert "crnn_request_latency_ms_bucket" in m


def test_batch_with_one_bad_file(server, lines):
    files = [
        ("files", ("a.png", _png(lines[1].image), "image/png")),
        ("files", ("b.txt", b"hello", "text/plain")),
    ]
    body = requests.post(server + "/ocr/batch", files=files, data={"mode": "line"}, timeout=30).json()
    assert body["success"] is True and len(body["results"]) == 2
    assert body["results"][0]["success"] and not body["results"][1]["success"]
    assert body["results"][1]["status"] == 415


def _huge_png_header() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "name,data,status",
    [
        ("empty", b"", 400),
        ("text", b"just some text", 415),
        ("html", b"<!doctype html><html><body>hi</body></html>", 415),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>', 415),
        ("truncated", None, 400),
        ("huge", None, 413),
        ("tiny", None, 422),
        ("too_big", None, 413),
    ],
)
def test_bad_uploads_are_4xx_json_and_the_worker_lives(server, lines, name, data, status):
    if name == "truncated":
        data = _png(lines[2].image)[:-40]
    elif name == "huge":
        data = _huge_png_header()
    elif name == "tiny":
        data = _png(np.zeros((1, 1), np.uint8))
    elif name == "too_big":
        data = _png(np.random.default_rng(0).integers(0, 255, (1200, 1200), dtype=np.uint8))  # > 1 MB limit
    r = _ocr(server, data)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["error"]
    assert requests.get(server + "/health", timeout=5).ok


def test_missing_or_wrong_field(server, lines):
    r = requests.post(
        server + "/ocr", files={"image": ("x.png", _png(lines[0].image), "image/png")}, timeout=10
    )
    assert r.status_code == 422 and r.json()["success"] is False and "file" in r.json()["error"]
    r = requests.post(server + "/ocr", data={"mode": "line"}, timeout=10)
    assert r.status_code == 422 and r.json()["success"] is False
    r = _ocr(server, _png(lines[0].image), mode="sideways")
    assert r.status_code == 422 and "mode" in r.json()["error"]


def _page(lines) -> tuple[np.ndarray, list[tuple[int, int]]]:
    width = max(rec.image.shape[1] for rec in lines) + 40
    rows, bands, y = [], [], 20
    page = [np.full((20, width), 255, np.uint8)]
    for rec in lines:
        img = rec.image
        # a clean white page: put each line's ink on white so the page reads as one document
        norm = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)
        if norm.mean() < 127:
            norm = 255 - norm
        row = np.full((img.shape[0], width), 255, np.uint8)
        row[:, 20 : 20 + img.shape[1]] = norm
        page += [row, np.full((16, width), 255, np.uint8)]
        bands.append((y, y + img.shape[0]))
        y += img.shape[0] + 16
        rows.append(norm)
    return np.vstack(page), bands


def test_page_mode_finds_ten_lines_in_order(server, lines):
    page, bands = _page(lines)
    found = segment_lines(page)
    assert len(found) == 10
    centres = [b[1] + b[3] / 2 for _, b in found]
    assert centres == sorted(centres)
    for (y0, y1), c in zip(bands, centres):
        assert y0 <= c <= y1
    body = _ocr(server, _png(page), mode="page").json()
    assert body["success"] and len(body["text"]) == 10
    # the same recognition as each line sent on its own (the test model is too small to read them all right)
    singles = [_ocr(server, _png(crop), mode="line").json()["text"][0] for crop, _ in found]
    assert body["text"] == singles
    auto = _ocr(server, _png(page)).json()
    assert auto["mode"] == "auto" and len(auto["text"]) == 10


def test_web_page_in_headless_chromium(server, lines, request):
    from playwright.sync_api import sync_playwright

    out = browser_output_dir(request)
    img_path = out / "upload_line.png"
    img_path.write_bytes(_png(lines[3].image))
    expected = _ocr(server, img_path.read_bytes(), mode="auto").json()["text"]
    assert expected and expected[0]  # a line the model reads
    with sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1100, "height": 700})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
        page = context.new_page()
        page.goto(server + "/")
        page.set_input_files("#picker", str(img_path))
        page.wait_for_selector(".card pre.text", timeout=20_000)
        assert page.locator(".card pre.text").first.inner_text() == "\n".join(expected)
        for key in ("original", "preprocessed"):
            assert page.locator(f"img.preview-{key}").first.evaluate("i => i.complete && i.naturalWidth > 0")
        page.locator("button.copy").first.click()
        page.wait_for_function("document.querySelector('button.copy').textContent === 'Copied'")
        assert page.evaluate("navigator.clipboard.readText()") == "\n".join(expected)
        page.screenshot(path=str(out / "serve_page.png"))
        browser.close()
    assert (out / "serve_page.png").stat().st_size > 5_000
