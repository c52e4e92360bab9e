"""The text-line detector: a small DB (differentiable binarization) network that finds the lines of a page,
so page mode reads photos, ads and receipts and not only clean screenshots.

It has the recognizer's stages in its own sub-package, one module per job:

- `pages`: synthetic pages (lines of every render recipe laid out as documents, receipts, ads, scenes,
  screens and tables, then rotated, warped and degraded), each with every line's box and text;
- `targets`, `model`, `loss`: DB's shrunk-text and threshold maps, the network, its loss;
- `boxes`: probability map -> rotated line boxes, upright crops, reading order (shared by every reader);
- `train`: `python -m crnn.detect.train experiment=det_zh_en` (MLflow, resume, checkpoints with lineage);
- `score`: detection precision/recall/F1 and end-to-end page CER, as ../shared/realdev/pages scores them.
"""
