"""One decode for every path: training data (LMDB), list import and the server read the same bytes as the
same pixels (EXIF orientation applied, 16-bit scaled, palette and transparency flattened)."""

import base64
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from crnn.data.image_io import ImageDecodeError, decode_image
from crnn.data.import_list import import_list
from crnn.data.lmdb_io import WIDTH_KEY_HEIGHT, LmdbReader, LmdbWriter
from tests.conftest import bundled_model
from tests.test_serve import ocr_preview, start_server

BUNDLED = bundled_model()
ORIENTATION = 0x0112


def _stored_line() -> np.ndarray:
    """A 40 x 200 line as stored in the file, before any orientation is applied: dark text on light, with a
    gradient so a flip or rotation changes the pixels."""
    img = np.tile(np.linspace(150, 250, 200, dtype=np.float32), (40, 1)).astype(np.uint8)
    cv2.putText(img, "EXIF 6", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 0, 2, cv2.LINE_AA)
    return img


def _jpeg_with_orientation(img: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def _png16() -> tuple[bytes, np.ndarray]:
    """A 16-bit grayscale PNG spanning 0..65535, and the 8-bit image it should read as (value / 257)."""
    values = np.linspace(0, 65535, 64 * 256).round().astype(np.uint16).reshape(64, 256)
    ok, buf = cv2.imencode(".png", values)
    assert ok
    return buf.tobytes(), np.round(values / 257.0).astype(np.uint8)


def _through_lmdb(tmp_path, data: bytes) -> np.ndarray:
    with LmdbWriter(tmp_path / "lmdb") as w:
        w.add(data, "x")
    return LmdbReader(tmp_path / "lmdb").read(1).image


def _through_server(base: str, data: bytes) -> np.ndarray:
    """The image the server decoded: its preview of the original (the bundled model's spec has no clean-up,
    so the preview is the decoded upload itself, sent back as PNG)."""
    body = ocr_preview(base, data, "x.img", "application/octet-stream")
    png = base64.b64decode(body["preview"]["original"])
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert body["lines"][0]["box"] == [0, 0, img.shape[1], img.shape[0]]
    return img


@pytest.fixture(scope="module")
def server():
    proc, base = start_server(BUNDLED, "--threads", "1")
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def test_exif_orientation_is_applied_alike_in_training_and_serving(server, tmp_path):
    stored = _stored_line()
    data = _jpeg_with_orientation(stored, 6)  # 6: rotate 90 degrees clockwise to show
    lmdb_img = _through_lmdb(tmp_path, data)
    served = _through_server(server, data)
    print("LMDB path", lmdb_img.shape, "server path", served.shape)
    assert lmdb_img.shape == served.shape == (200, 40)
    assert np.array_equal(lmdb_img, served)
    upright = cv2.rotate(stored, cv2.ROTATE_90_CLOCKWISE)
    assert np.abs(lmdb_img.astype(int) - upright).mean() < 3  # JPEG loss only, not another rotation


def test_16_bit_png_is_scaled_not_clipped_everywhere(server, tmp_path):
    data, expected = _png16()
    lmdb_img = _through_lmdb(tmp_path, data)
    served = _through_server(server, data)
    for img in (decode_image(data), lmdb_img, served):
        assert img.dtype == np.uint8 and img.min() == 0 and img.max() == 255
        assert (img == 255).mean() < 0.01  # clipping would make almost every pixel white
        assert np.array_equal(img, expected)


def test_import_list_measures_the_oriented_image(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(_jpeg_with_orientation(_stored_line(), 6))
    (tmp_path / "list.txt").write_text("a.jpg\tEXIF 6\n")
    summary = import_list(tmp_path / "imgs", tmp_path / "list.txt", tmp_path / "out")
    assert summary.written == 1
    # shown 40 wide and 200 tall: 6 px wide at a height of 32
    assert LmdbReader(tmp_path / "out").widths() == [round(40 * WIDTH_KEY_HEIGHT / 200)]


def test_palette_and_transparency_are_flattened_on_white():
    rgba = np.zeros((20, 30, 4), np.uint8)  # transparent black everywhere ...
    rgba[5:15, 5:25] = (0, 0, 0, 255)  # ... but an opaque black bar
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    gray = decode_image(buf.getvalue())
    assert gray.shape == (20, 30) and gray[0, 0] == 255 and gray[10, 10] == 0
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").convert("P").save(buf, "GIF", transparency=0)
    pal = decode_image(buf.getvalue())
    assert pal.shape == (20, 30) and pal[10, 10] == 0


def test_color_comes_back_as_bgr_and_junk_is_refused():
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 200  # red in RGB
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    bgr = decode_image(buf.getvalue(), color=True)
    assert bgr.shape == (10, 12, 3) and bgr[0, 0].tolist() == [0, 0, 200]
    with pytest.raises(ImageDecodeError):
        decode_image(b"not an image")


@pytest.mark.parametrize("top", [1.0, 255.0, 65535.0])
def test_a_float_tiff_reads_by_the_range_it_is_written_in(top):
    """A TIFF of float samples (mode F) in 0..1 read all black: Pillow's conversion clips at 255 only."""
    want = np.full((40, 120), 230, np.uint8)
    want[12:28, 20:100] = 25
    buf = io.BytesIO()
    Image.fromarray(want.astype(np.float32) * (top / 255.0), "F").save(buf, "TIFF")
    assert Image.open(io.BytesIO(buf.getvalue())).mode == "F"
    assert np.abs(decode_image(buf.getvalue()).astype(int) - want).max() <= 1


def test_a_crafted_file_that_trips_the_decoder_is_a_decode_error():
    """A TIFF fuzzed from a 64 x 32 line (tests/data/fuzzed_typeerror.tif) raised TypeError from deep in
    Pillow's TIFF plugin: the server answered 500, and crnn predict lost the readable images batched with
    it."""
    data = (Path(__file__).parent / "data" / "fuzzed_typeerror.tif").read_bytes()
    with pytest.raises(ImageDecodeError, match="TypeError"):
        decode_image(data)


def test_a_lab_tiff_reads_as_its_lightness():
    """Pillow turns a LAB image into RGB but not straight into grey: a LAB TIFF upload was a 400."""
    lab = Image.new("LAB", (60, 20), (235, 128, 128))
    lab.paste((25, 128, 128), (10, 5, 50, 15))
    buf = io.BytesIO()
    lab.save(buf, "TIFF")
    gray = decode_image(buf.getvalue())
    assert gray.shape == (20, 60) and gray[10, 30] < 80 < 200 < gray[2, 2]
