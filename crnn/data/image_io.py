"""Image bytes to a NumPy array, one way for every path: LMDB training data, list import and the server.

Two decoders used to disagree: OpenCV (the LMDB path) applied a JPEG's EXIF orientation and shifted
16-bit samples to 8 bits, while Pillow (the server) ignored the orientation and clipped 16-bit samples to
255. So a phone photo stored sideways trained upright and was served sideways, and a 16-bit scan came out
white. Here: EXIF orientation applied, 16-bit samples scaled by the value range (/257, so 65535 -> 255),
palette images expanded, transparency flattened onto white (as a browser shows it), first frame only.

`open_image` reads only the header, so a caller can check the format and the pixel count before
`to_array` decodes the pixels (the server does).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}  # "I": 32-bit ints, as Pillow reads 16-bit PNGs
ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
THROUGH_RGB = {"LAB", "HSV"}  # modes Pillow turns into RGB but not straight into grey (a LAB TIFF read 400)


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can read, or its pixel data is truncated or corrupt."""


class ImageTooLargeError(ImageDecodeError):
    """The header claims more pixels than Pillow's decompression-bomb limit."""


def decoder_pixel_limit() -> int | None:
    """The most pixels `open_image` reads a header of: Pillow refuses more than twice its
    MAX_IMAGE_PIXELS as a decompression bomb (None: its guard is off)."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * int(Image.MAX_IMAGE_PIXELS)


def open_image(data: bytes) -> Image.Image:
    """The image with only its header read (format, size, mode); pixels are decoded by `to_array`."""
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(str(e)) from None
    except UnidentifiedImageError:  # its message names a BytesIO object, which tells a user nothing
        raise ImageDecodeError("not a readable image: no image format Pillow knows") from None
    except MemoryError:
        raise
    except Exception as e:  # untrusted bytes: a crafted file raises what a plugin did not expect
        raise ImageDecodeError(f"not a readable image: {type(e).__name__}: {e}") from None


def to_array(img: Image.Image, color: bool = False) -> np.ndarray:
    """uint8 pixels of an opened image, upright: grayscale (H, W), or BGR (H, W, 3) with `color`."""
    try:  # Pillow decoding untrusted bytes: a crafted file raises what a plugin did not expect
        img = ImageOps.exif_transpose(img)
        img.load()
    except MemoryError:
        raise
    except Exception as e:  # a fuzzed TIFF raised TypeError from deep in the TIFF plugin: a 500
        raise ImageDecodeError(f"the image is truncated or corrupt: {type(e).__name__}: {e}") from None
    try:  # our own conversions: only what bad pixel data raises is the image's fault
        img = _flatten(_eight_bit(img))
        if color:
            return np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])
        if img.mode in THROUGH_RGB:
            img = img.convert("RGB")
        return np.ascontiguousarray(np.asarray(img.convert("L")))
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageDecodeError(f"the image is truncated or corrupt: {e}") from None


def decode_image(data: bytes, color: bool = False) -> np.ndarray:
    """uint8 grayscale (H, W), or BGR with `color`, of encoded image bytes; ImageDecodeError otherwise."""
    return to_array(open_image(data), color)


def _eight_bit(img: Image.Image) -> Image.Image:
    """16-bit samples scaled to 0..255 by value / 257; Pillow's own conversion clips them at 255. Float
    samples (a TIFF's mode F) by the range they are written in: 0..1 (Pillow read those all black), 0..255,
    or 16-bit's 0..65535."""
    if img.mode not in SIXTEEN_BIT_MODES and img.mode != "F":
        return img
    wide = np.nan_to_num(np.asarray(img).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    scale = 1 / 257.0  # 16-bit samples, and floats written in 16-bit's range
    if img.mode == "F":
        top = float(wide.max()) if wide.size else 0.0
        scale = 255.0 if top <= 1.0 else 1.0 if top <= 255 else scale
    return Image.fromarray(np.rint(np.clip(wide * scale, 0, 255)).astype(np.uint8), "L")


def _flatten(img: Image.Image) -> Image.Image:
    """Palette expanded and any transparency composited onto white; other modes as they are."""
    transparent = img.mode in ALPHA_MODES or "transparency" in img.info
    if not transparent:
        return img.convert("RGB") if img.mode == "P" else img
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")
