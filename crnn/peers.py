"""Other recognisers ("peers") read the same lines as our models, in-process, so one report compares them.

Each peer loads its model once (`make_peer`) and then reads one line image per `read` call, like our own
predictor does, so the evaluator times and scores peers with the same loop as our models: the latency is
recognition only, not a process start or a model load per line. Nothing here imports PyTorch, so
evaluating peers (or serving beside them) never pays for it.

- `ppocr`: PP-OCR's recognizer (PP-OCRv4 rec) through the `rapidocr-onnxruntime` wheel, which ships the
  ONNX files inside it and runs offline on ONNX Runtime. Recognizer only: no detection, no angle classifier,
  since a test line is already cropped.
- `tesseract`: Debian's libtesseract 5 through its C API (ctypes, no Python dependency), chi_sim+eng (or
  whichever is installed), page segmentation mode 7 (one line).

A peer object is not thread-safe; make one per thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import weakref
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from crnn.charset import Charset

PEERS = ("ppocr", "tesseract")

# Whitelists up to this size are honoured (the demo's digits and marks); given the 3,800 characters of
# `zh_en`, Tesseract 5.3 returns an empty string for every line (measured), so beyond this size none is set.
WHITELIST_MAX = 256

TESSERACT_LANGS = ("chi_sim", "eng")
TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
)
PSM_SINGLE_LINE = 7
TESSERACT_INSTALL = (
    "`make tesseract` installs it (apt-get install tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-eng)"
)

RAPIDOCR_DIST = "rapidocr-onnxruntime"
RAPIDOCR_VERSION = "1.4.4"
# Installed without its dependencies because it requires `opencv-python`, which would shadow our
# `opencv-python-headless` (both provide `cv2`); these are the ones it really imports.
RAPIDOCR_INSTALL = (
    f"pip install --no-deps {RAPIDOCR_DIST}=={RAPIDOCR_VERSION} && pip install pyclipper shapely PyYAML six"
)


class PeerError(RuntimeError):
    """A peer that cannot run here: what is missing and how to install it."""


class Peer(Protocol):
    name: str

    def info(self) -> dict:
        """{"format": human-readable description, "path": model file(s), "size_bytes": model size}."""
        ...

    def read(self, image: np.ndarray) -> str:
        """Text of one line image (uint8, HxW gray or HxWx3 BGR); whitespace collapsed, stripped."""
        ...


def make_peer(name: str, charset: Charset, threads: int = 1) -> Peer:
    """The named peer with its model loaded, limited to `threads` compute threads.

    `charset` is our model's alphabet: Tesseract is restricted to it when it is small (see WHITELIST_MAX);
    PP-OCR has its own fixed alphabet and ignores it.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if name == "ppocr":
        return PpocrPeer(threads)
    if name == "tesseract":
        return TesseractPeer(charset, threads)
    raise PeerError(f"unknown peer {name!r}; known: {list(PEERS)}")


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def _check_image(image: np.ndarray) -> np.ndarray:
    """The line as a C-contiguous uint8 array, HxW or HxWx3; anything else is the caller's bug."""
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"a peer reads uint8 HxW or HxWx3 images, got {image.dtype} {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image {image.shape}")
    return np.ascontiguousarray(image)


# --- ppocr --------------------------------------------------------------------------------------------


class PpocrPeer:
    """PP-OCR's recognizer through RapidOCR on ONNX Runtime, `threads` intra-op threads, 1 inter-op.

    RapidOCR's public class is used (not its internal TextRecognizer) so a newer wheel keeps working; its
    constructor also loads the detector and angle classifier (about 5 MB, never run here).
    """

    name = "ppocr"

    def __init__(self, threads: int = 1) -> None:
        rapidocr = _import_rapidocr()
        # RapidOCR copies the global thread counts into each ONNX Runtime session's options. It ignores
        # a count above os.cpu_count() (ONNX Runtime then picks its own), so the count is clamped here.
        threads = min(threads, os.cpu_count() or 1)
        self.threads = threads
        self.model_path = _rapidocr_rec_model(rapidocr)
        self.engine = rapidocr.RapidOCR(
            use_det=False,
            use_cls=False,
            use_rec=True,
            print_verbose=False,
            rec_model_path=str(self.model_path),
            intra_op_num_threads=threads,
            inter_op_num_threads=1,
        )
        self.version = metadata.version(RAPIDOCR_DIST)

    def info(self) -> dict:
        found = re.search(r"PP-OCRv\d+", self.model_path.name)
        model = f"{found.group(0)} rec" if found else self.model_path.stem
        s = "" if self.threads == 1 else "s"
        return {
            "format": f"peer ({model} via {RAPIDOCR_DIST} {self.version}, {self.threads} thread{s})",
            "path": str(self.model_path),
            "size_bytes": self.model_path.stat().st_size,
        }

    def read(self, image: np.ndarray) -> str:
        # A gray image is expanded to BGR by RapidOCR itself; a 3-channel array is taken as BGR.
        result, _ = self.engine(_check_image(image), use_det=False, use_cls=False, use_rec=True)
        if not result:
            return ""
        return collapse_whitespace(str(result[0][0]))


def _import_rapidocr() -> Any:
    try:
        import rapidocr_onnxruntime
    except ImportError as e:
        raise PeerError(
            f"eval.peers has ppocr but {RAPIDOCR_DIST} does not import ({e}); install it into the venv "
            f"with: {RAPIDOCR_INSTALL}"
        ) from None
    return rapidocr_onnxruntime


def _rapidocr_rec_model(rapidocr: Any) -> Path:
    """The recognizer's ONNX file named by the wheel's own config.yaml (inside the installed package)."""
    from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
    from rapidocr_onnxruntime.utils import read_yaml

    path = Path(rapidocr.__file__).parent / read_yaml(DEFAULT_CFG_PATH)["Rec"]["model_path"]
    if not path.is_file():
        raise PeerError(f"{RAPIDOCR_DIST} lacks its recognizer model {path}; reinstall: {RAPIDOCR_INSTALL}")
    return path


# --- tesseract ----------------------------------------------------------------------------------------


class TesseractPeer:
    """Tesseract 5 in-process through libtesseract's C API; the model loads once, in `__init__`.

    Threads: libtesseract runs its LSTM with OpenMP (`#pragma omp parallel ... num_threads(N)`), which
    ignores OMP_NUM_THREADS and omp_set_num_threads; only OMP_THREAD_LIMIT caps it, and libgomp reads that
    once, when it is loaded. So the first TesseractPeer sets OMP_THREAD_LIMIT=threads in the environment
    before loading the library, and every peer checks libgomp's limit afterwards: if libgomp was already
    loaded with another limit (another library, or a peer with other threads in this process), it raises
    PeerError instead of timing a different configuration. Export OMP_THREAD_LIMIT before starting Python
    to be independent of load order. Note the environment variable is then inherited by child processes.
    """

    name = "tesseract"

    def __init__(self, charset: Charset, threads: int = 1) -> None:
        self.threads = threads
        self.datapath, self.langs = tessdata()
        self.lib = load_libtesseract(threads)
        self.handle = self.lib.TessBaseAPICreate()
        if not self.handle:
            raise PeerError("TessBaseAPICreate returned NULL (out of memory?)")
        # Frees the handle when the peer is garbage-collected, if close() was not called.
        self._finalizer = weakref.finalize(self, _end_tesseract, self.lib, self.handle)
        langs = "+".join(self.langs).encode()
        if self.lib.TessBaseAPIInit3(self.handle, str(self.datapath).encode(), langs) != 0:
            self.close()
            raise PeerError(f"Tesseract could not load {'+'.join(self.langs)} from {self.datapath}")
        self.lib.TessBaseAPISetPageSegMode(self.handle, PSM_SINGLE_LINE)
        # The command line tool prints its diagnostics ("Estimating resolution as ...") to stderr, which
        # the old subprocess peer swallowed; in-process they would interleave with the progress bar.
        self._set("debug_file", os.devnull)
        self.whitelist = tesseract_whitelist(charset)
        if self.whitelist:
            self._set("tessedit_char_whitelist", self.whitelist)
        self.version = self.lib.TessVersion().decode()

    def _set(self, variable: str, value: str) -> None:
        if not self.lib.TessBaseAPISetVariable(self.handle, variable.encode(), value.encode("utf-8")):
            raise PeerError(f"Tesseract rejected the variable {variable}")

    def info(self) -> dict:
        files = [self.datapath / f"{lang}.traineddata" for lang in self.langs]
        s = "" if self.threads == 1 else "s"
        listed = "whitelist of our alphabet" if self.whitelist else "no whitelist"
        return {
            "format": f"peer (Tesseract {self.version} {'+'.join(self.langs)} via libtesseract, psm 7, "
            f"{listed}, {self.threads} thread{s})",
            "path": ", ".join(str(f) for f in files),
            "size_bytes": sum(f.stat().st_size for f in files),
        }

    def read(self, image: np.ndarray) -> str:
        if not self.handle:
            raise PeerError("this Tesseract peer was closed")
        image = _check_image(image)
        if image.ndim == 3:
            image = np.ascontiguousarray(image[:, :, ::-1])  # Tesseract's 3-byte pixels are RGB
        h, w = image.shape[:2]
        bpp = 1 if image.ndim == 2 else 3
        self.lib.TessBaseAPISetImage(self.handle, image.ctypes.data, w, h, bpp, w * bpp)
        text_ptr = self.lib.TessBaseAPIGetUTF8Text(self.handle)
        try:
            text = ctypes.string_at(text_ptr).decode("utf-8", errors="replace") if text_ptr else ""
        finally:
            if text_ptr:
                self.lib.TessDeleteText(text_ptr)
            self.lib.TessBaseAPIClear(self.handle)  # drop this line's image and results, keep the model
        return collapse_whitespace(text)

    def close(self) -> None:
        """Free the model now rather than at garbage collection; the peer cannot read afterwards."""
        self._finalizer()
        self.handle = None

    def __enter__(self) -> TesseractPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tesseract_whitelist(charset: Charset) -> str:
    """Our alphabet, so Tesseract is scored on the same task; empty (no whitelist) when the alphabet is
    larger than WHITELIST_MAX, because a large whitelist empties Tesseract's output.

    The space stays in when the alphabet has it: Tesseract 5's LSTM treats the space as a character, and a
    whitelist without it drops every word space ("2024-06-01 35.80" reads "2024-06-0135.80", measured with
    the command line tool as well)."""
    whitelist = "".join(charset.chars)
    return whitelist if len(whitelist.replace(" ", "")) <= WHITELIST_MAX else ""


def tessdata() -> tuple[Path, list[str]]:
    """The tessdata folder holding chi_sim and/or eng, and which of them it holds.

    TESSDATA_PREFIX wins when set, as it does for the tesseract command."""
    prefix = os.environ.get("TESSDATA_PREFIX")
    dirs = [Path(prefix), Path(prefix) / "tessdata"] if prefix else []
    for d in [*dirs, *map(Path, TESSDATA_DIRS)]:
        langs = [lang for lang in TESSERACT_LANGS if (d / f"{lang}.traineddata").is_file()]
        if langs:
            return d, langs
    searched = ", ".join(str(d) for d in [*dirs, *map(Path, TESSDATA_DIRS)])
    raise PeerError(
        f"eval.peers has tesseract but no chi_sim or eng traineddata is installed (searched {searched}); "
        + TESSERACT_INSTALL
    )


def load_libtesseract(threads: int) -> ctypes.CDLL:
    """libtesseract with its C API typed, OpenMP capped at `threads` (see TesseractPeer)."""
    if not _libgomp_loaded():
        os.environ["OMP_THREAD_LIMIT"] = str(threads)
    name = ctypes.util.find_library("tesseract") or "libtesseract.so.5"
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        raise PeerError(
            f"eval.peers has tesseract but libtesseract does not load ({e}); " + TESSERACT_INSTALL
        ) from None
    _check_thread_limit(threads)
    _declare_tesseract_api(lib)
    return lib


def _libgomp_loaded() -> bool:
    try:
        return "libgomp.so.1" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def _check_thread_limit(threads: int) -> None:
    try:
        gomp = ctypes.CDLL("libgomp.so.1")  # already loaded by libtesseract: the same instance
    except OSError:
        return  # a build without OpenMP runs one thread anyway
    limit = gomp.omp_get_thread_limit()
    if limit != threads:
        raise PeerError(
            f"Tesseract would run up to {limit} OpenMP threads, not {threads}: libgomp was loaded before "
            f"the peer could set OMP_THREAD_LIMIT; run with OMP_THREAD_LIMIT={threads} in the environment"
        )


def _declare_tesseract_api(lib: ctypes.CDLL) -> None:
    """Argument and result types of the C API calls used (ctypes would otherwise truncate pointers)."""
    p, i, s = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    signatures = {
        "TessVersion": ([], s),
        "TessBaseAPICreate": ([], p),
        "TessBaseAPIInit3": ([p, s, s], i),
        "TessBaseAPISetPageSegMode": ([p, i], None),
        "TessBaseAPISetVariable": ([p, s, s], i),
        "TessBaseAPISetImage": ([p, p, i, i, i, i], None),
        "TessBaseAPIGetUTF8Text": ([p], p),
        "TessDeleteText": ([p], None),
        "TessBaseAPIClear": ([p], None),
        "TessBaseAPIEnd": ([p], None),
        "TessBaseAPIDelete": ([p], None),
    }
    for fn, (args, res) in signatures.items():
        f = getattr(lib, fn)
        f.argtypes, f.restype = args, res


def _end_tesseract(lib: ctypes.CDLL, handle: int) -> None:
    lib.TessBaseAPIEnd(handle)
    lib.TessBaseAPIDelete(handle)
