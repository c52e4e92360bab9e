"""Turning untrusted upload bytes into a grayscale image, or a 4xx with a reason.

Limits are checked before the full decode: the byte size first, then the pixel count from the header alone
(Pillow reads only the header on open), so a 20-byte PNG that claims 100,000 x 100,000 pixels never
allocates them. Only raster formats are accepted: an SVG or HTML file is not an image here. The pixels are
decoded by `crnn.data.image_io`, the decoder of the training data, so an upload reads as it trained.

Before any of that, `BodyLimit` (ASGI middleware) refuses a request body over its route's limit while it
streams in, so an oversize upload is never spooled to disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crnn.data.image_io import ImageDecodeError, ImageTooLargeError, decoder_pixel_limit, open_image, to_array

# MPO is a JPEG with more images after the first (a phone's HDR gain map, a camera's preview or depth image):
# Pillow names many phone photos so, and the first image is the photo
ALLOWED_FORMATS = {"PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP", "GIF"}


@dataclass
class UploadError(Exception):
    status: int
    message: str


def decode_upload(data: bytes, max_bytes: int, max_pixels: int, min_side: int = 8) -> np.ndarray:
    """Grayscale uint8 pixels of an upload, decoded as training data is (`crnn.data.image_io`), or an
    UploadError with the 4xx status and the reason."""
    if not data:
        raise UploadError(400, "the file is empty")
    if len(data) > max_bytes:
        raise UploadError(413, f"the file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    try:
        img = open_image(data)
    except ImageTooLargeError:  # the decoder's own guard, before the header is handed back
        limit = min(max_pixels, decoder_pixel_limit() or max_pixels)
        raise UploadError(413, f"the image claims more pixels than the {_mp(limit)} limit") from None
    except ImageDecodeError:
        raise UploadError(415, "not a supported image (PNG, JPEG, BMP, TIFF, WebP or GIF)") from None
    if img.format not in ALLOWED_FORMATS:
        raise UploadError(415, f"{img.format} images are not accepted")
    w, h = img.size
    if w * h > max_pixels:
        raise UploadError(413, f"the image is {w}x{h} = {_mp(w * h)}; the limit is {_mp(max_pixels)}")
    if min(w, h) < min_side:
        raise UploadError(422, f"the image is {w}x{h}; a text line needs at least {min_side} px on each side")
    try:
        return to_array(img)
    except ImageDecodeError:
        raise UploadError(400, "the image is truncated or corrupt") from None


def _mp(pixels: int) -> str:
    """Megapixels as a person reads them (40 MP, 0.5 MP, 1.04 MP): three figures, so an image just over the
    limit does not read as equal to it."""
    return f"{pixels / 1e6:.3g} MP" if pixels < 1e9 else f"{pixels / 1e6:.0f} MP"


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes its route's limit. An HTTPException, so FastAPI's body
    parsing passes it on to the app's handler (JSON 413) instead of calling it a malformed body (400)."""

    def __init__(self, path: str, limit: int, note: str) -> None:
        super().__init__(413, f"the request body is over the {limit / 1e6:.1f} MB {path} accepts{note}")


class BodyLimit:
    """Pure ASGI middleware: refuses a request body over its route's byte limit while it streams in.

    Starlette spools a multipart upload to a temporary file before the endpoint runs, so a limit checked
    in the endpoint comes after the whole body was read and stored. Here a Content-Length over the limit
    is refused before any of the body is read, and a body without one (chunked) as soon as the bytes
    received pass the limit. `limits` maps a path to its byte limit; other paths are passed through.
    """

    def __init__(self, app: ASGIApp, limits: dict[str, int], note: str = "") -> None:
        self.app, self.limits, self.note = app, limits, note

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limits.get(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        too_large = BodyTooLarge(scope["path"], limit, self.note)
        declared = Headers(scope=scope).get("content-length", "")
        received = 0

        async def counted() -> Message:
            nonlocal received
            if declared.isdigit() and int(declared) > limit:
                raise too_large
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large
            return message

        await self.app(scope, counted, send)
