"""Upload limits act while the body streams in: a body over the limit (declared or chunked) and a batch with
one file too many get a 413 JSON error before the rest is sent, and the server stays healthy.

The client here is a raw socket, so the test controls what is sent and can read the answer before the
body is complete: a server that waits for the whole body never answers these requests in time.
"""

import http.client
import json
import select
import socket
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import requests

from crnn.serve.app import ServeConfig
from tests.conftest import bundled_model
from tests.test_serve import start_server

BUNDLED = bundled_model()
BOUNDARY = "test-boundary-7f3a"
MAX_FILES = ServeConfig.max_files  # the server below runs with the default
WAIT_S = 10  # a server that rejects while streaming answers in milliseconds


@pytest.fixture(scope="module")
def server():
    proc, base = start_server(BUNDLED, "--threads", "1", "--max-upload-mb", "1")
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _part(name: str, filename: str, data: bytes) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
    return head.encode() + b"Content-Type: image/png\r\n\r\n" + data + b"\r\n"


def _connect(base: str) -> socket.socket:
    url = urlsplit(base)
    return socket.create_connection((url.hostname, url.port), timeout=WAIT_S)


def _head(base: str, path: str, extra: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {urlsplit(base).netloc}"]
    lines += [f"Content-Type: multipart/form-data; boundary={BOUNDARY}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(sock: socket.socket) -> tuple[int, dict]:
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, json.loads(resp.read())


def _send_part_then_wait(base: str, path: str, declared: int, sent: bytes) -> tuple[int, dict, float]:
    """Declare a Content-Length, send only `sent` of the body, and wait for the answer."""
    t0 = time.perf_counter()
    with _connect(base) as sock:
        sock.sendall(_head(base, path, {"Content-Length": str(declared)}) + sent)
        status, body = _answer(sock)
    return status, body, time.perf_counter() - t0


def _stream_chunked(base: str, path: str, pieces: list[bytes]) -> tuple[int, dict, int]:
    """Send `pieces` as chunks (no Content-Length), stopping as soon as an answer arrives; (status, body,
    bytes sent)."""
    with _connect(base) as sock:
        sock.sendall(_head(base, path, {"Transfer-Encoding": "chunked"}))
        sent = 0
        for piece in [*pieces, b""]:  # an empty chunk ends the body
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: stop sending
            try:
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        status, body = _answer(sock)
    return status, body, sent


def _healthy(base: str) -> bool:
    return requests.get(base + "/health", timeout=5).ok


def test_a_body_declared_far_over_the_limit_gets_413_before_it_is_sent(server):
    prefix = _part("file", "big.png", bytes(64 << 10))  # 64 KiB of the 50 MB it claims
    status, body, seconds = _send_part_then_wait(server, "/ocr", 50_000_000, prefix)
    print(f"declared 50 MB, sent 64 KiB: {status} after {seconds * 1000:.0f} ms: {body}")
    assert status == 413 and body["success"] is False and "MB" in body["error"]
    assert _healthy(server)


def test_a_chunked_body_streaming_past_the_limit_is_cut_off(server):
    head = _part("file", "big.png", b"")[:-2]  # the part's headers; 50 chunks of 1 MB of its data follow
    pieces = [head] + [bytes(1_000_000)] * 50 + [f"\r\n--{BOUNDARY}--\r\n".encode()]
    total = sum(map(len, pieces))
    status, body, sent = _stream_chunked(server, "/ocr", pieces)
    print(f"chunked, no length: {status} after {sent / 1e6:.1f} MB of {total / 1e6:.0f} MB: {body}")
    assert status == 413 and body["success"] is False and body["error"]
    assert sent < total  # answered while the body was still coming
    assert _healthy(server)


def test_a_batch_with_one_file_too_many_gets_413_at_that_part(server):
    parts = [_part("files", f"{i}.png", b"x") for i in range(MAX_FILES + 1)]
    rest = _part("files", "last.png", b"x") + f"--{BOUNDARY}--\r\n".encode()
    sent = b"".join(parts)
    status, body, seconds = _send_part_then_wait(server, "/ocr/batch", len(sent) + len(rest), sent)
    print(f"{MAX_FILES + 1} parts sent, the rest held back: {status} after {seconds * 1000:.0f} ms: {body}")
    assert status == 413 and body["success"] is False and str(MAX_FILES) in body["error"]
    assert _healthy(server)


def test_a_whole_batch_of_max_files_plus_one_gets_413(server):
    files = [("files", (f"{i}.png", b"x", "image/png")) for i in range(MAX_FILES + 1)]
    r = requests.post(server + "/ocr/batch", files=files, data={"mode": "line"}, timeout=30)
    assert r.status_code == 413 and r.json()["success"] is False
    assert _healthy(server)
