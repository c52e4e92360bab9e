"""The detector as served: an ONNX Runtime session over an exported DB file, without PyTorch.

The file's metadata holds the box settings it was trained and checked with (`BoxConfig`), so the same
thresholds travel with the model; `detect` is preprocess (crnn.detect.boxes.det_input) + model + boxes,
and once more over the page's text where the first reading scaled it down (crnn.detect.boxes.zoom_region).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

from crnn.detect.boxes import Box, BoxConfig, Line, det_input, find_boxes, page_lines, zoom_region
from crnn.onnx_model import ExportError, onnx_metadata

FORMAT = "crnn-toolkit/detector-onnx/v1"
REQUIRED_KEYS = ("format", "boxes", "model_config", "lineage")


def read_detector_metadata(path: str | Path) -> dict[str, str]:
    p = Path(path)
    meta = onnx_metadata(p, "detector file")
    if meta.get("format") != FORMAT or any(k not in meta for k in REQUIRED_KEYS):
        raise ExportError(f"{p} is not a crnn-toolkit detector (metadata format {FORMAT!r} missing)")
    return meta


def box_config(saved: str, path: Path) -> BoxConfig:
    """The box settings a detector file carries. A setting this version does not know comes from a newer
    toolkit and changes which boxes the file was checked with, so it is refused by name, not dropped."""
    settings = json.loads(saved)
    unknown = sorted(set(settings) - {f.name for f in fields(BoxConfig)})
    if unknown:
        raise ExportError(
            f"{path} was exported by a newer crnn-toolkit: box settings {unknown} are unknown to this "
            "version; update the toolkit to read it"
        )
    return BoxConfig(**settings)


def saved_boxes(path: str | Path) -> BoxConfig:
    """The box settings a detector file was checked with; ExportError unless this version reads the file."""
    return box_config(read_detector_metadata(path)["boxes"], Path(path))


class Detector:
    """Finds text lines in a grayscale page: `detect(gray)` -> boxes in page pixels."""

    def __init__(self, path: str | Path, threads: int = 0, boxes: BoxConfig | None = None) -> None:
        import onnxruntime as ort

        meta = read_detector_metadata(path)
        self.path = Path(path)
        self.meta = meta
        self.boxes = boxes or box_config(meta["boxes"], self.path)
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def probability(
        self, gray: np.ndarray, boxes: BoxConfig | None = None
    ) -> tuple[np.ndarray, tuple[float, float]]:
        x, scale = det_input(gray, boxes or self.boxes)
        return self.session.run(None, {self.input_name: x})[0][0, 0], scale

    def detect(self, gray: np.ndarray) -> list[Box]:
        if gray.ndim != 2:
            raise ValueError(f"the detector reads grayscale (H, W) pages, got shape {gray.shape}")
        boxes = self._read(gray)
        region = zoom_region(boxes, gray.shape[:2], self.boxes)
        if region is None:
            return boxes
        x0, y0, x1, y1 = region
        native = replace(self.boxes, upscale_to=0)  # the region at most at the page's own pixels
        inner = self._read(np.ascontiguousarray(gray[y0:y1, x0:x1]), native)
        return [Box(b.quad + np.float32([x0, y0]), b.score) for b in inner] or boxes

    def lines(self, gray: np.ndarray) -> list[Line]:
        """The page's lines in reading order: crops to read, boxes to report (boxes.page_lines)."""
        b = self.boxes
        return page_lines(gray, self.detect(gray), b.fit_ink, b.split_rows, b.lone_glyphs, b.crop_ends)

    def _read(self, gray: np.ndarray, boxes: BoxConfig | None = None) -> list[Box]:
        boxes = boxes or self.boxes
        prob, scale = self.probability(gray, boxes)
        return find_boxes(prob, scale, gray.shape[:2], boxes)

    def info(self) -> dict:
        return {
            "path": str(self.path),
            "size_bytes": self.path.stat().st_size,
            "boxes": asdict(self.boxes),
            "lineage": json.loads(self.meta["lineage"]),
        }
