"""The HTTP API (FastAPI): POST /ocr, POST /ocr/batch, GET /health, GET /metrics, the web page at /.

The article's response fields are kept (`success`, `text`, `time_cost_ms`, `preprocess_time_ms`,
`model_infer_time_ms`), so `curl -F "file=@test.jpg" http://127.0.0.1:5000/ocr` works as it documents. Every
failure is a JSON `{"success": false, "error": ...}` with a 4xx status; nothing the client sends is used as
a path.

Upload limits act while the body streams in, before Starlette spools it to a temporary file: each upload
route has a byte limit (`crnn.serve.uploads.BodyLimit`: a larger Content-Length is refused before any of
the body is read, a chunked body as soon as it passes the limit) and part limits (FastAPI's `form_limits`:
the multipart parser stops at the first file or field too many). Both answer 413.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, get_args

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from crnn import __version__
from crnn.data.preprocess import cleanup, preprocess
from crnn.onnx_model import read_metadata
from crnn.serve.engine import Engine
from crnn.serve.segment import CLEANUPS, MODES, split
from crnn.serve.uploads import BodyLimit, UploadError, decode_upload

STATIC = Path(__file__).resolve().parent / "static"
Mode = Literal["line", "page", "auto"]  # crnn.serve.segment.MODES, spelled out for the OpenAPI schema
Cleanup = Literal["none", "rectify", "equalize", "binarize", "article"]  # crnn.serve.segment.CLEANUPS
BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
FORM_SLACK = 64 << 10  # bytes of multipart headers and small fields allowed around the images
MAX_FIELDS = 8  # non-file form fields per request (the API has at most three)


@dataclass
class ServeConfig:
    model: str
    threads: int = 0
    cache_entries: int = 1024
    max_upload_mb: float = 10.0
    max_megapixels: float = 40.0
    max_files: int = 32
    batch_max: int = 0  # micro-batching of concurrent requests (lines per model call; 0: off)
    batch_wait_ms: float = 2.0

    @classmethod
    def from_env(cls) -> ServeConfig:
        raw = os.environ.get("CRNN_SERVE_CONFIG")
        if not raw:
            raise RuntimeError("CRNN_SERVE_CONFIG is not set; start the server with python -m crnn.serve")
        return cls(**json.loads(raw))


class Metrics:
    """Prometheus text exposition, kept by hand: requests by status, a latency histogram, cache counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_status: dict[tuple[str, int], int] = {}
        self.buckets = [0] * (len(BUCKETS_MS) + 1)
        self.count, self.total_ms = 0, 0.0

    def observe(self, path: str, status: int, ms: float) -> None:
        with self.lock:
            self.by_status[(path, status)] = self.by_status.get((path, status), 0) + 1
            self.count += 1
            self.total_ms += ms
            for i, b in enumerate(BUCKETS_MS):
                if ms <= b:
                    self.buckets[i] += 1
            self.buckets[-1] += 1

    def render(self, engine: Engine) -> str:
        out = [
            "# HELP crnn_requests_total Requests by path and status.",
            "# TYPE crnn_requests_total counter",
        ]
        for (path, status), n in sorted(self.by_status.items()):
            out.append(f'crnn_requests_total{{path="{path}",status="{status}"}} {n}')
        out += [
            "# HELP crnn_request_latency_ms Request latency in milliseconds.",
            "# TYPE crnn_request_latency_ms histogram",
        ]
        for b, n in zip(BUCKETS_MS, self.buckets):
            out.append(f'crnn_request_latency_ms_bucket{{le="{b}"}} {n}')
        out.append(f'crnn_request_latency_ms_bucket{{le="+Inf"}} {self.buckets[-1]}')
        out.append(f"crnn_request_latency_ms_sum {self.total_ms:.3f}")
        out.append(f"crnn_request_latency_ms_count {self.count}")
        s = engine.stats
        out += [
            "# TYPE crnn_cache_hits_total counter",
            f"crnn_cache_hits_total {s.cache_hits}",
            "# TYPE crnn_cache_misses_total counter",
            f"crnn_cache_misses_total {s.cache_misses}",
            "# TYPE crnn_lines_total counter",
            f"crnn_lines_total {s.lines}",
        ]
        if engine.batcher is not None:
            b = engine.batcher.stats
            out += [
                "# HELP crnn_batch_calls_total Model calls made by the micro-batcher.",
                "# TYPE crnn_batch_calls_total counter",
                f"crnn_batch_calls_total {b.calls}",
                "# TYPE crnn_batch_lines_total counter",
                f"crnn_batch_lines_total {b.items}",
            ]
        return "\n".join(out) + "\n"


def _png_b64(img: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", img)
    return base64.b64encode(buf.tobytes()).decode() if ok else ""


def create_app(cfg: ServeConfig) -> FastAPI:
    if get_args(Mode) != MODES or get_args(Cleanup) != CLEANUPS:
        raise RuntimeError("the API's mode/cleanup options are out of step with crnn.serve.segment")
    engine = Engine(
        cfg.model,
        threads=cfg.threads,
        cache_entries=cfg.cache_entries,
        batch_max=cfg.batch_max,
        batch_wait_ms=cfg.batch_wait_ms,
    )
    meta = read_metadata(cfg.model)
    metrics = Metrics()
    app = FastAPI(
        title="crnn-toolkit OCR",
        version=__version__,
        description="Text-line recognition with a CRNN served by ONNX Runtime.",
    )
    max_bytes = int(cfg.max_upload_mb * 1e6)
    max_pixels = int(cfg.max_megapixels * 1e6)

    body_limits = {"/ocr": max_bytes + FORM_SLACK, "/ocr/batch": cfg.max_files * max_bytes + FORM_SLACK}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"success": False, "error": message}, status_code=status)

    note = f" ({cfg.max_upload_mb:g} MB per image, {cfg.max_files} images per batch)"
    app.add_middleware(BodyLimit, limits=body_limits, note=note)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", []))
        return error(
            422, f"{where}: {first.get('msg', 'invalid request')} (send the image as multipart field 'file')"
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if _is_part_limit(exc):  # Starlette reports a part too many as a 400
            return error(413, f"{exc.detail} ({request.url.path} takes at most {cfg.max_files} images)")
        return error(exc.status_code, str(exc.detail))

    @app.middleware("http")
    async def count(request: Request, call_next):
        t0 = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as e:  # a bug must not kill the worker or leak a traceback
            response = error(500, f"internal error: {type(e).__name__}")
        metrics.observe(request.url.path, response.status_code, (time.perf_counter() - t0) * 1000)
        return response

    def run_one(data: bytes, mode: str, preview: bool, clean: str) -> dict:
        t0 = time.perf_counter()
        options = {"mode": mode, "preview": preview, "cleanup": clean}
        key = engine.cache_key(data, options)
        hit = engine.cache_get(key)
        if hit is not None:
            return {**hit, "cached": True, "time_cost_ms": round((time.perf_counter() - t0) * 1000, 3)}
        gray = decode_upload(data, max_bytes, max_pixels)
        crops = split(gray, mode, clean)
        t1 = time.perf_counter()
        lines = engine.recognize([c for c, _ in crops], [b for _, b in crops])
        t2 = time.perf_counter()
        body = {
            "success": True,
            "text": [ln.text for ln in lines],
            "lines": [{"text": ln.text, "confidence": ln.confidence, "box": ln.box} for ln in lines],
            "mode": mode,
            "cleanup": clean,
            "time_cost_ms": round((t2 - t0) * 1000, 3),
            "preprocess_time_ms": round((t1 - t0) * 1000, 3),
            "model_infer_time_ms": round((t2 - t1) * 1000, 3),
            "cached": False,
        }
        if preview:
            shown = cleanup(gray, engine.spec.cleanup)
            x = preprocess(gray, engine.spec)[0]
            model_view = np.clip((x * engine.spec.std + engine.spec.mean) * 255, 0, 255).astype(np.uint8)
            body["preview"] = {"original": _png_b64(shown), "preprocessed": _png_b64(model_view)}
        engine.cache_put(key, body)
        return body

    @app.post("/ocr", form_limits={"max_files": 1, "max_fields": MAX_FIELDS})
    def ocr(
        file: Annotated[UploadFile, File()],
        mode: Annotated[Mode, Form()] = "auto",
        preview: Annotated[int, Form(ge=0, le=1)] = 0,
        cleanup: Annotated[Cleanup, Form()] = "none",
    ) -> JSONResponse:
        data = file.file.read(max_bytes + 1)
        try:
            return JSONResponse(run_one(data, mode, bool(preview), cleanup))
        except UploadError as e:
            return error(e.status, e.message)

    @app.post(
        "/ocr/batch",
        form_limits={"max_files": cfg.max_files, "max_fields": MAX_FIELDS},
    )
    def ocr_batch(
        files: Annotated[list[UploadFile], File()],
        mode: Annotated[Mode, Form()] = "auto",
        cleanup: Annotated[Cleanup, Form()] = "none",
    ) -> JSONResponse:
        t0 = time.perf_counter()
        results = []
        for f in files:
            try:
                results.append(
                    {
                        "filename": os.path.basename(f.filename or ""),
                        **run_one(f.file.read(max_bytes + 1), mode, False, cleanup),
                    }
                )
            except UploadError as e:
                results.append(
                    {
                        "filename": os.path.basename(f.filename or ""),
                        "success": False,
                        "error": e.message,
                        "status": e.status,
                    }
                )
        ok = any(r["success"] for r in results)
        return JSONResponse(
            {"success": ok, "results": results, "time_cost_ms": round((time.perf_counter() - t0) * 1000, 3)},
            status_code=200 if ok else 400,
        )

    @app.get("/health")
    def health() -> dict:
        return {
            "success": True,
            "status": "ok",
            "model": engine.name,
            "alphabet_size": len(engine.charset.chars),
            "input": engine.spec.as_dict(),
            "lineage": json.loads(meta["lineage"]),
            "version": __version__,
            "load_seconds": round(engine.load_seconds, 3),
        }

    @app.get("/metrics")
    def prom() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(engine), media_type="text/plain; version=0.0.4")

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


def _is_part_limit(exc: StarletteHTTPException) -> bool:
    """Whether Starlette's multipart parser stopped at a file or field over `form_limits`."""
    return isinstance(exc.__context__, MultiPartException) and str(exc.detail).startswith("Too many")


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers (the config travels in an environment variable)."""
    return create_app(ServeConfig.from_env())
