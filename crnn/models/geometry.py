"""Model geometry that needs no framework: how many CTC frames a line of a given width yields.

Kept apart from crnn.models.crnn so that the ONNX serving path never imports PyTorch.
"""

from __future__ import annotations


def output_length(width: int, hstride: int) -> int:
    """Frames for an input `width` px wide (ceil-mode pools)."""
    return -(-int(width) // hstride)
