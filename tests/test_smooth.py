"""crnn.smooth (make smooth): input smoothing chosen for a trained model's files on rendered validation lines,
written into copies of the files, which every reader then preprocesses with."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from crnn.data.preprocess import preprocess
from crnn.lineage import sha256_file
from crnn.onnx_model import OnnxBackend, read_metadata
from crnn.predictor import Predictor
from crnn.serve.engine import Engine
from crnn.smooth import write_smoothed
from tests.conftest import run_module, tiny_overrides


def test_the_smooth_stage_keeps_the_sigma_that_reads_validation_lines_best(chain, tiny_data):
    """The real stage on the tiny chain's files: every sigma of the grid read, the best kept (a blur of 3 px
    on 32-px lines is never it), written into a copy whose lineage names the sweep and its source, the
    source left as it was."""
    tmp = chain.parent.parent
    sources = [
        p for p in (chain / "export" / "model.onnx", chain / "quantize" / "model.int8.onnx") if p.is_file()
    ]
    before = {p: sha256_file(p) for p in sources}
    run_module(
        "crnn.smooth",
        tiny_overrides(tmp, "c")
        + [
            f"data.root={tiny_data / 'data'}",
            "smooth.lines=24",
            "smooth.grid=[0.0,0.5,3.0]",
            "smooth.threads=1",
        ],
    )
    report = json.loads((chain / "smooth" / "report.json").read_text())
    assert report["lines"] == 24 and [f["model"] for f in report["files"]] == [str(p) for p in sources]
    for f, src in zip(report["files"], sources):
        assert sha256_file(src) == before[src]
        grid = {r["sigma"]: r for r in f["grid"]}
        assert sorted(grid) == [0.0, 0.5, 3.0]
        best = min(f["grid"], key=lambda r: (r["edits"], r["sigma"]))
        assert f["chosen"] == best and best["sigma"] != 3.0 and grid[3.0]["cer"] > best["cer"]
        meta = read_metadata(f["out"])
        assert json.loads(meta["input_spec"]).get("smooth", 0.0) == best["sigma"]  # stored only when set
        lineage = json.loads(meta["lineage"])
        assert lineage["smooth"]["source_sha256"] == before[src] and lineage["smooth"]["lines"] == 24
        assert lineage["stage"] == json.loads(read_metadata(src)["lineage"])["stage"]  # the rest kept


def test_a_file_that_smooths_is_read_smoothed_by_the_engine(chain, tmp_path):
    """The sigma in a file's input spec reaches serving through the one preprocessing function: the engine
    over the copy reads a line as the plain file reads that line blurred."""
    src = chain / "export" / "model.onnx"
    copy = tmp_path / "model.onnx"
    write_smoothed(src, copy, 1.5, {"sigma": 1.5})
    rng = np.random.default_rng(0)
    lines = [rng.integers(0, 256, (32, w), dtype=np.uint8) for w in (60, 140, 300)]
    served = Engine(str(copy), threads=1)
    assert served.spec.smooth == 1.5
    got = [r.text for r in served.recognize(lines, [[0, 0, 1, 1]] * len(lines))]
    plain = OnnxBackend(src, threads=1)
    blurred = Predictor(plain).read_inputs([preprocess(x, replace(plain.spec, smooth=1.5)) for x in lines])
    assert got == [d.text for d in blurred]
    x = lines[1]  # and the blurred input is not the plain one: the comparison above is not vacuous
    assert np.abs(preprocess(x, served.spec) - preprocess(x, plain.spec)).max() > 0.1
