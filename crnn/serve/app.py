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
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal, get_args

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from crnn import __version__
from crnn.ctc import DECODERS
from crnn.data.preprocess import clean_line, preprocess
from crnn.formats import SERVED_FORMATS
from crnn.onnx_model import read_metadata
from crnn.predictor import SecondLook
from crnn.serve.cache import ResultCache
from crnn.serve.engine import Engine
from crnn.serve.metrics import MetricsMiddleware, ServeMetrics
from crnn.serve.segment import MODES, PAGE_CLEANUPS, SPLITTERS, split
from crnn.serve.uploads import BodyLimit, UploadError, decode_upload
from crnn.serve.upright import turnable, upright

STATIC = Path(__file__).resolve().parent / "static"
Mode = Literal["line", "page", "auto"]  # crnn.serve.segment.MODES, spelled out for the OpenAPI schema
PageCleanup = Literal["none", "equalize", "binarize", "rectify", "article"]  # segment.PAGE_CLEANUPS
Decoder = Literal["greedy", "beam", "lm"]  # crnn.ctc.DECODERS
Splitter = Literal["detector", "projection"]  # segment.SPLITTERS
FORM_SLACK = 64 << 10  # bytes of multipart headers and small fields allowed around the images
MAX_FIELDS = 8  # non-file form fields per request (the API has at most three)


@dataclass
class ServeConfig:
    model: str
    threads: int = 0
    cache_mb: float = 16.0  # the result cache's limit in MB of stored answers (0: off); ~25k line answers
    max_upload_mb: float = 10.0
    max_megapixels: float = 40.0
    max_files: int = 32
    batch_max: int = 0  # micro-batching of concurrent requests (lines per model call; 0: off)
    batch_wait_ms: float = 2.0
    decoder: str = "greedy"  # the default CTC decoder; a request may ask for another (form field)
    lm: str = ""  # the character LM file of decoder lm (crnn.lm_build; "": no lm decoder)
    detector: str = ""  # the text-line detector's ONNX file for page mode ("": the projection splitter)
    second_look: bool = True  # doubtful lines read again blurred (crnn.predictor.SecondLook)
    formats: bool = True  # readings that look like a plate held to its grammar (crnn.formats.SERVED_FORMATS)

    @classmethod
    def from_env(cls) -> ServeConfig:
        raw = os.environ.get("CRNN_SERVE_CONFIG")
        if not raw:
            raise RuntimeError("CRNN_SERVE_CONFIG is not set; start the server with python -m crnn.serve")
        return cls(**json.loads(raw))


def _png_b64(img: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", img)
    return base64.b64encode(buf.tobytes()).decode() if ok else ""


def create_app(cfg: ServeConfig) -> FastAPI:
    if (
        get_args(Mode) != MODES
        or get_args(PageCleanup) != PAGE_CLEANUPS
        or get_args(Decoder) != DECODERS
        or get_args(Splitter) != SPLITTERS
    ):
        raise RuntimeError("the API's mode/cleanup options are out of step with crnn.serve.segment")
    engine = Engine(
        cfg.model,
        threads=cfg.threads,
        batch_max=cfg.batch_max,
        batch_wait_ms=cfg.batch_wait_ms,
        decoder=cfg.decoder,
        lm_path=cfg.lm,
        second_look=SecondLook() if cfg.second_look else None,
        formats=SERVED_FORMATS if cfg.formats else (),
    )
    meta = read_metadata(cfg.model)
    detector = None
    if cfg.detector:
        from crnn.detect.detector import Detector

        detector = Detector(cfg.detector, threads=cfg.threads)
    cache = ResultCache(int(cfg.cache_mb * 1e6))
    metrics = ServeMetrics(cache, engine)
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
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.routes)  # outermost: sees every 413

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", []))
        field = "'files' (one part per image)" if request.url.path == "/ocr/batch" else "'file'"
        return error(
            422, f"{where}: {first.get('msg', 'invalid request')} (send the image as multipart field {field})"
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if _is_part_limit(exc):  # Starlette reports a part too many as a 400
            most = 1 if request.url.path == "/ocr" else cfg.max_files
            return error(
                413, f"{exc.detail} ({request.url.path} takes at most {most} image{'s' * (most > 1)})"
            )
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def on_bug(_: Request, exc: Exception) -> JSONResponse:  # no traceback leaks to the client
        return error(500, f"internal error: {type(exc).__name__}")

    def run_one(
        data: bytes, mode: str, preview: bool, page_cleanup: str, decoder: str | None, splitter: str | None
    ) -> dict:
        t0 = time.perf_counter()
        decoder = decoder or cfg.decoder
        if decoder not in engine.decoders:
            raise UploadError(422, "decoder=lm: this server runs without a character LM (start it with --lm)")
        splitter = splitter or ("detector" if detector is not None else "projection")
        if mode == "line":
            splitter = None  # line mode splits nothing: its answer names no splitter
        if splitter == "detector" and detector is None:
            raise UploadError(
                422, "splitter=detector: this server runs without a detector (start it with --detector)"
            )
        options = {
            "mode": mode,
            "preview": preview,
            "cleanup": page_cleanup,
            "decoder": decoder,
            "splitter": splitter,
        }
        key = ResultCache.key(data, options)
        hit = cache.get(key)
        if hit is not None:
            took = round((time.perf_counter() - t0) * 1000, 3)  # this request's: nothing was read again
            return {
                **hit,
                "cached": True,
                "time_cost_ms": took,
                "preprocess_time_ms": 0.0,
                "model_infer_time_ms": 0.0,
            }
        gray = decode_upload(data, max_bytes, max_pixels)
        crops = split(gray, mode, page_cleanup, detector, splitter)
        t1 = time.perf_counter()
        lines = engine.recognize([c for c, _ in crops], [b for _, b in crops], decoder)
        turned, resplit = False, [0.0]  # a turned page's second split is preprocessing, not the model's
        if turnable(mode, page_cleanup):  # a page upside down is read the right way up (crnn.serve.upright)

            def split_turned(page: np.ndarray):
                t = time.perf_counter()
                out = split(page, mode, page_cleanup, detector, splitter)
                resplit[0] += time.perf_counter() - t
                return out

            crops, lines, turned = upright(
                gray,
                crops,
                lines,
                lambda cs: engine.recognize(cs, [[0, 0, 0, 0]] * len(cs), decoder),
                split_turned,
            )
        t2 = time.perf_counter()
        body = {
            "success": True,
            "text": [ln.text for ln in lines],
            "lines": [
                {"text": ln.text, "confidence": ln.confidence, "box": b} for ln, (_, b) in zip(lines, crops)
            ],
            "mode": mode,
            "cleanup": page_cleanup,
            "decoder": decoder,
            "splitter": splitter,
            "turned": turned,  # read turned half round: it came upside down
            "time_cost_ms": round((t2 - t0) * 1000, 3),
            "preprocess_time_ms": round((t1 - t0 + resplit[0]) * 1000, 3),
            "model_infer_time_ms": round((t2 - t1 - resplit[0]) * 1000, 3),
            "cached": False,
        }
        if preview:
            shown = clean_line(gray, engine.spec.cleanup)  # what the model's own line clean-up makes of it
            x = preprocess(gray, engine.spec)[0]
            model_view = np.clip((x * engine.spec.std + engine.spec.mean) * 255, 0, 255).astype(np.uint8)
            body["preview"] = {"original": _png_b64(shown), "preprocessed": _png_b64(model_view)}
        cache.put(key, body)
        return body

    @app.post("/ocr", form_limits={"max_files": 1, "max_fields": MAX_FIELDS})
    def ocr(
        file: Annotated[UploadFile, File()],
        mode: Annotated[Mode, Form()] = "auto",
        preview: Annotated[int, Form(ge=0, le=1)] = 0,
        page_cleanup: Annotated[PageCleanup, Form(alias="cleanup")] = "none",
        decoder: Annotated[Decoder | None, Form()] = None,
        splitter: Annotated[Splitter | None, Form()] = None,
    ) -> JSONResponse:
        data = file.file.read(max_bytes + 1)
        try:
            return JSONResponse(run_one(data, mode, bool(preview), page_cleanup, decoder, splitter))
        except UploadError as e:
            return error(e.status, e.message)

    @app.post(
        "/ocr/batch",
        form_limits={"max_files": cfg.max_files, "max_fields": MAX_FIELDS},
    )
    def ocr_batch(
        files: Annotated[list[UploadFile], File()],
        mode: Annotated[Mode, Form()] = "auto",
        page_cleanup: Annotated[PageCleanup, Form(alias="cleanup")] = "none",
        decoder: Annotated[Decoder | None, Form()] = None,
        splitter: Annotated[Splitter | None, Form()] = None,
    ) -> JSONResponse:
        t0 = time.perf_counter()
        results = []
        for f in files:
            try:
                results.append(
                    {
                        "filename": os.path.basename(f.filename or ""),
                        **run_one(f.file.read(max_bytes + 1), mode, False, page_cleanup, decoder, splitter),
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
        # none read: the files' own status when they share one (all too large: 413), else 400
        failed = {r["status"] for r in results if not r["success"]}
        return JSONResponse(
            {"success": ok, "results": results, "time_cost_ms": round((time.perf_counter() - t0) * 1000, 3)},
            status_code=200 if ok else failed.pop() if len(failed) == 1 else 400,
        )

    @app.get("/health")
    def health() -> dict:
        return {
            "success": True,
            "status": "ok",
            "model": engine.name,
            "detector": detector.path.name if detector is not None else None,
            "decoder": cfg.decoder,
            "lm": Path(cfg.lm).name if cfg.lm else None,
            "second_look": asdict(engine.second_look) if engine.second_look else None,
            "formats": engine.predictor.applied_formats,
            "alphabet_size": len(engine.charset.chars),
            "input": engine.spec.as_dict(),
            "lineage": json.loads(meta["lineage"]),
            "version": __version__,
            "load_seconds": round(engine.load_seconds, 3),
        }

    @app.get("/metrics")
    def prom() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

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
