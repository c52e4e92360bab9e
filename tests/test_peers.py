"""Peers read rendered lines in-process: PP-OCR through the rapidocr wheel, Tesseract through libtesseract.

Each peer test skips, saying what to install, where its wheel, library or traineddata is absent. Tesseract's
OpenMP thread limit can only be set before libgomp loads; in the whole suite PyTorch has loaded it by the
time these run, so its in-process tests skip there and `test_the_tesseract_cases_pass_in_a_fresh_process`
runs them again in a process started with OMP_THREAD_LIMIT=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import editdistance
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from crnn.charset import Charset, load_charset
from crnn.peers import PEERS, PeerError, make_peer, tesseract_whitelist

LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
EN_LINE = "INVOICE 2024-06-01 TOTAL 35.80"
ZH_LINE = "北京市朝阳区"


def render(text: str, font: Path, size: int = 32) -> np.ndarray:
    """Black text on white, 8 px margins, uint8 gray: a clean printed line."""
    if not font.is_file():
        pytest.skip(f"font {font} is missing (make fonts installs it)")
    f = ImageFont.truetype(str(font), size)
    left, top, right, bottom = f.getbbox(text)
    img = Image.new("L", (right - left + 16, bottom - top + 16), 255)
    ImageDraw.Draw(img).text((8 - left, 8 - top), text, font=f, fill=0)
    return np.asarray(img)


def cer(label: str, pred: str) -> float:
    return editdistance.eval(label, pred) / len(label)


def peer_or_skip(name: str, charset: Charset):
    try:
        return make_peer(name, charset, threads=1)
    except PeerError as e:
        pytest.skip(f"{name} is not available here: {e}")


@pytest.fixture(scope="module")
def zh_en() -> Charset:
    return load_charset("zh_en")


@pytest.fixture(scope="module")
def ppocr(zh_en):
    pytest.importorskip(
        "rapidocr_onnxruntime", reason="rapidocr-onnxruntime is not installed (crnn.peers.RAPIDOCR_INSTALL)"
    )
    return peer_or_skip("ppocr", zh_en)


@pytest.fixture(scope="module")
def tesseract(zh_en):
    return peer_or_skip("tesseract", zh_en)


def test_unknown_peer_raises_peer_error(zh_en):
    with pytest.raises(PeerError, match="unknown peer 'nope'.*ppocr.*tesseract"):
        make_peer("nope", zh_en)
    assert PEERS == ("ppocr", "tesseract")


@pytest.mark.parametrize("name", PEERS)
def test_peer_reads_a_printed_english_line(name, request):
    peer = request.getfixturevalue(name)
    gray = render(EN_LINE, LATIN_FONT)
    assert cer(EN_LINE, peer.read(gray)) <= 0.1
    bgr = np.repeat(gray[:, :, None], 3, axis=2)
    assert cer(EN_LINE, peer.read(bgr)) <= 0.1


@pytest.mark.parametrize("name", PEERS)
def test_peer_reads_a_printed_chinese_line(name, request):
    peer = request.getfixturevalue(name)
    assert cer(ZH_LINE, peer.read(render(ZH_LINE, CJK_FONT))) <= 0.1


@pytest.mark.parametrize("name", PEERS)
def test_peer_output_is_collapsed_and_blank_lines_read_empty(name, request):
    peer = request.getfixturevalue(name)
    text = peer.read(render("A  B", LATIN_FONT, size=40))
    assert text == " ".join(text.split())
    assert peer.read(np.full((40, 200), 255, np.uint8)) == ""


@pytest.mark.parametrize("name", PEERS)
def test_peer_info_names_its_model_file(name, request):
    info = request.getfixturevalue(name).info()
    assert info["format"].startswith("peer (") and "1 thread" in info["format"]
    paths = [Path(p) for p in info["path"].split(", ")]
    assert all(p.is_file() for p in paths)
    assert info["size_bytes"] == sum(p.stat().st_size for p in paths) > 1_000_000


def test_ppocr_runs_one_onnx_runtime_thread(ppocr):
    assert "PP-OCRv4 rec via rapidocr-onnxruntime" in ppocr.info()["format"]
    options = ppocr.engine.text_rec.session.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1


def test_tesseract_whitelist_only_for_small_alphabets(zh_en):
    digits = load_charset("digits")
    assert tesseract_whitelist(digits) == "".join(digits.chars) and " " in digits.chars
    assert tesseract_whitelist(zh_en) == ""  # a 3,800-character whitelist empties Tesseract's output


def test_tesseract_restricted_to_digits_reads_digits(tesseract):
    peer = peer_or_skip("tesseract", load_charset("digits"))
    assert "whitelist of our alphabet" in peer.info()["format"]
    assert peer.read(render("2024-06-01 35.80", LATIN_FONT)) == "2024-06-01 35.80"
    peer.close()
    with pytest.raises(PeerError, match="closed"):
        peer.read(render("1", LATIN_FONT))


def test_tesseract_refuses_a_thread_count_it_cannot_honour(tesseract, zh_en):
    # libgomp is loaded with OMP_THREAD_LIMIT=1 by now; a 2-thread peer in this process would run 1.
    with pytest.raises(PeerError, match="OMP_THREAD_LIMIT=2"):
        make_peer("tesseract", zh_en, threads=2)


def test_peers_import_neither_torch_nor_limit_threads_late():
    """eval's peer path must not import PyTorch; and Tesseract's OpenMP limit is set before libgomp loads."""
    code = (
        "import sys, os; import numpy as np; from crnn.charset import load_charset; import crnn.peers as p\n"
        "assert 'torch' not in sys.modules\n"
        "try:\n    p.make_peer('tesseract', load_charset('digits'))\n"
        "except p.PeerError as e:\n    print('SKIP', e); raise SystemExit(0)\n"
        "print(os.environ['OMP_THREAD_LIMIT'], 'torch' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    if out.stdout.startswith("SKIP"):
        pytest.skip(out.stdout)
    assert out.stdout.split() == ["1", "False"]


def test_the_tesseract_cases_pass_in_a_fresh_process():
    if os.environ.get("CRNN_PEER_CHILD"):
        pytest.skip("this is that process")
    if "torch" not in sys.modules:
        pytest.skip("PyTorch is not loaded here: the Tesseract cases ran in this process")
    env = dict(os.environ, OMP_THREAD_LIMIT="1", CRNN_PEER_CHILD="1")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-rs",
        __file__,
        "-k",
        "tesseract and not fresh_process",
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=600, cwd=Path(__file__).parents[1]
    )
    tail = out.stdout[-3000:]
    assert out.returncode == 0, tail
    assert "libgomp was loaded" not in tail, tail  # the very thing this process is started to avoid
    if "is not available here" in tail:
        pytest.skip("Tesseract is not installed: " + tail.strip().splitlines()[-1])
    assert " passed" in tail and "skipped" not in tail.splitlines()[-1], tail
