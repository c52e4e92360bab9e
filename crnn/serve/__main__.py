"""Start the OCR service:  python -m crnn.serve --model runs/demo/quantize/model.int8.onnx [--port 5000]

Binds 127.0.0.1 unless --host says otherwise; --workers N starts N processes, each with its own ONNX
Runtime session (threads per session: --threads, default all cores divided among the workers) and result
cache; their metrics are summed at /metrics through prometheus_client's multiprocess files, in a temporary
folder removed when the server stops (or PROMETHEUS_MULTIPROC_DIR when set).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict

import uvicorn

from crnn.serve.app import ServeConfig


def main(
    argv: list[str] | None = None,
    default_model: str | None = None,
    prog: str | None = None,
    default_detector: str | None = None,
    default_lm: str | None = None,
) -> int:
    """`default_model`, `default_detector`, `default_lm`: what serves when --model / --detector / --lm is not
    given (`crnn serve` passes the bundled ones)."""
    ap = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--model",
        required=default_model is None,
        default=default_model,
        help="an ONNX file exported by crnn-toolkit (FP32 or INT8)"
        + (f"; default {default_model}" if default_model else ""),
    )
    ap.add_argument(
        "--detector",
        default=default_detector or "",
        help="the text-line detector's ONNX file for page mode (crnn.detect.export); without it page mode "
        "uses the projection splitter" + (f"; default {default_detector}" if default_detector else ""),
    )
    ap.add_argument(
        "--lm",
        default=default_lm or "",
        help="a character LM file (python -m crnn.lm_build) for decoder lm, the default decoder when given"
        + (f"; default {default_lm}" if default_lm else ""),
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads per worker")
    ap.add_argument(
        "--cache-mb", type=float, default=16.0, help="result cache limit, MB of stored answers (0: off)"
    )
    ap.add_argument("--max-upload-mb", type=float, default=10.0)
    ap.add_argument("--max-megapixels", type=float, default=40.0)
    ap.add_argument("--max-files", type=int, default=32, help="images per /ocr/batch request")
    ap.add_argument(
        "--batch-max",
        type=int,
        default=0,
        help="micro-batch the lines of concurrent requests, at most this many per model call (0: off)",
    )
    ap.add_argument("--batch-wait-ms", type=float, default=2.0, help="how long a request waits for others")
    ap.add_argument(
        "--second-look",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read lines of low confidence again blurred and keep the surer reading (dot-matrix print)",
    )
    ap.add_argument(
        "--plates",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold readings that look like a Chinese licence plate to a plate's grammar (crnn.formats)",
    )
    ap.add_argument(
        "--decoder",
        choices=["greedy", "beam", "lm"],
        default=None,
        help="default CTC decoder (a request may choose with the form field 'decoder'); default lm with an "
        "--lm, else greedy",
    )
    a = ap.parse_args(argv)
    if not os.path.isfile(a.model):
        print(
            f"error: model {a.model} does not exist (make demo builds runs/demo/quantize/model.int8.onnx)",
            file=sys.stderr,
        )
        return 2
    if a.detector:
        from crnn.detect.detector import saved_boxes
        from crnn.onnx_model import ExportError

        if _unreadable("--detector", saved_boxes, a.detector, ExportError):
            return 2
    if a.lm:
        from crnn.charset import Charset
        from crnn.lm import LMFormatError, load_lm_for
        from crnn.onnx_model import read_metadata

        fp = Charset.from_string(read_metadata(a.model)["charset"]).fingerprint()
        if _unreadable("--lm", lambda p: load_lm_for(p, fp, a.model), a.lm, LMFormatError):
            return 2
    decoder = a.decoder or ("lm" if a.lm else "greedy")
    if decoder == "lm" and not a.lm:
        print("error: --decoder lm needs --lm <file> (python -m crnn.lm_build makes one)", file=sys.stderr)
        return 2
    threads = a.threads or max(1, (os.cpu_count() or 1) // max(1, a.workers))
    cfg = ServeConfig(
        model=os.path.abspath(a.model),
        threads=threads,
        cache_mb=a.cache_mb,
        max_upload_mb=a.max_upload_mb,
        max_megapixels=a.max_megapixels,
        max_files=a.max_files,
        batch_max=a.batch_max,
        batch_wait_ms=a.batch_wait_ms,
        decoder=decoder,
        lm=os.path.abspath(a.lm) if a.lm else "",
        detector=os.path.abspath(a.detector) if a.detector else "",
        second_look=a.second_look,
        formats=a.plates,
    )
    os.environ["CRNN_SERVE_CONFIG"] = json.dumps(asdict(cfg))
    shared = None
    if a.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # each worker is a process: their metrics go to shared files that a scrape sums (crnn.serve.metrics)
        shared = tempfile.mkdtemp(prefix="crnn-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    try:
        uvicorn.run(
            "crnn.serve.app:app_from_env",
            factory=True,
            host=a.host,
            port=a.port,
            workers=a.workers,
            log_level="warning",
        )
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
    return 0


def _unreadable(option: str, read, path: str, error: type[Exception]) -> bool:
    """Whether the file an option names fails its reader (said on standard error): the server would
    otherwise start its workers and die in each of them."""
    try:
        read(path)
    except error as e:
        print(f"error: {option}: {e}", file=sys.stderr)
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())
