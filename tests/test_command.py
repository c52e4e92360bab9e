"""The `crnn` command, run as users run it: the installed console script and `python -m crnn`, on real
image files, the test chain's real ONNX models and real ONNX Runtime."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from crnn.data.lmdb_io import LmdbReader
from crnn.data.pages import compose_page
from crnn.metrics import TextScore
from crnn.onnx_model import OnnxBackend
from crnn.predictor import Predictor, SecondLook
from crnn.serve.segment import segment_lines
from tests.conftest import ROOT

CRNN = shutil.which("crnn", path=str(Path(sys.executable).parent))  # this venv's, never another install's
assert CRNN, "the crnn console script is not installed in this environment (make install)"


def crnn(*args: str, stdin: bytes | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # pages split by projection here (these tests pin its boxes); the detector's page mode is tested in
    # test_detect_serving.py and with the bundled detector in test_bundled_detector.py
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", CRNN_DETECTOR="")
    return subprocess.run(
        [CRNN, *args], input=stdin, capture_output=True, cwd=cwd, env=env, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def model(chain) -> str:
    return str(chain / "export" / "model.onnx")


@pytest.fixture(scope="module")
def records(tiny_data):
    r = LmdbReader(tiny_data / "data" / "train")  # lines the chain's model was trained on: it reads them
    return [r.read(i) for i in range(1, 9)]


@pytest.fixture(scope="module")
def folder(records, tmp_path_factory) -> tuple[Path, list[Path]]:
    """8 good lines (two in a subfolder, one as JPEG), a truncated PNG, an empty file, a text file named
    .jpg, and a README the folder walk must not even try."""
    d = tmp_path_factory.mktemp("imgs")
    (d / "sub").mkdir()
    good = []
    for i, rec in enumerate(records):
        p = d / ("sub" if i >= 6 else "") / (f"{i:02d}.jpg" if i == 3 else f"{i:02d}.png")
        ok, data = cv2.imencode(p.suffix, rec.image, [cv2.IMWRITE_JPEG_QUALITY, 98])
        p.write_bytes(data.tobytes())
        good.append(p)
    png = (d / "00.png").read_bytes()
    (d / "03b_broken.png").write_bytes(png[: len(png) // 2])
    (d / "04b_empty.png").write_bytes(b"")
    (d / "05b_notes.jpg").write_text("not an image\n")
    (d / "05c_fuzzed.tif").write_bytes((ROOT / "tests" / "data" / "fuzzed_typeerror.tif").read_bytes())
    (d / "README.txt").write_text("skipped by extension\n")
    return d, sorted(good, key=str)


def test_a_folder_with_bad_files_is_read_in_order_and_the_bad_ones_counted(model, folder, records):
    d, good = folder
    r = crnn("predict", str(d), "--model", model, "--format", "json")
    assert r.returncode == 0, r.stderr.decode()
    results = json.loads(r.stdout)
    assert [x["path"] for x in results] == [str(p) for p in good]  # sorted walk, subfolder included
    err = r.stderr.decode()
    for bad in ("03b_broken.png", "04b_empty.png", "05b_notes.jpg", "05c_fuzzed.tif"):
        assert f"cannot read {d / bad}" in err
    assert "README" not in err and "8 images, 8 lines" in err and "4 unreadable" in err and "lines/s" in err
    # the same text as the library's predictor reading the decoded images (doubtful lines a second time,
    # blurred, as crnn predict does by default), and close to the labels
    pred = Predictor(OnnxBackend(model), second_look=SecondLook())
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in good]
    assert [x["text"] for x in results] == [dec.text for dec in pred(images)]
    score = TextScore()
    labels = {f"{i:02d}": rec.label for i, rec in enumerate(records)}
    for x in results:
        score.add(labels[Path(x["path"]).stem], x["text"])
        (line,) = x["lines"]
        assert 0 < line["confidence"] <= 1 and line["box"][2:] == list(cv2.imread(x["path"]).shape[1::-1])
    assert score.cer < 0.2


@pytest.mark.parametrize("fmt, delimiter", [("csv", ","), ("tsv", "\t")])
def test_csv_and_tsv_parse_and_keep_input_order(model, folder, tmp_path, fmt, delimiter):
    d, good = folder
    out = tmp_path / f"out.{fmt}"
    # explicit files in a chosen order (not sorted), then a glob
    order = [good[5], good[0], good[3]]
    r = crnn(
        "predict",
        *map(str, order),
        str(d / "sub" / "*.png"),
        "--model",
        model,
        "--format",
        fmt,
        "--out",
        str(out),
        "--batch",
        "2",
    )
    assert r.returncode == 0, r.stderr.decode()
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8")), delimiter=delimiter))
    assert [row["path"] for row in rows] == [str(p) for p in order + good[6:]]
    assert all(row["line"] == "0" and float(row["confidence"]) > 0 for row in rows)
    assert r.stdout == b""  # everything went to --out


def test_standard_input_reads_like_the_file(model, folder):
    _, good = folder
    from_file = crnn("predict", str(good[1]), "--model", model)
    from_stdin = crnn("predict", "-", "--model", model, stdin=good[1].read_bytes())
    assert from_file.returncode == from_stdin.returncode == 0
    assert from_stdin.stdout == from_file.stdout and from_file.stdout.strip()


def test_nothing_readable_exits_1_and_bad_options_exit_2(model, folder, tmp_path):
    d, _ = folder
    r = crnn("predict", str(d / "04b_empty.png"), str(tmp_path / "missing.png"), "--model", model)
    assert r.returncode == 1 and b"0 images" in r.stderr and b"no such file" in r.stderr
    r = crnn("predict", str(d), "--model", str(tmp_path / "nope.onnx"))
    assert r.returncode == 2 and b"does not exist" in r.stderr and b"Traceback" not in r.stderr
    r = crnn("predict", str(d), "--model", model, "--format", "xml")
    assert r.returncode == 2


def test_stdin_twice_a_bad_out_and_bad_options_never_lose_a_results_file(model, folder, tmp_path):
    _, good = folder
    r = crnn("predict", "-", "-", "--model", model, stdin=good[1].read_bytes())
    assert r.returncode == 0 and r.stdout.strip() and b"more than once" in r.stderr
    results = tmp_path / "results.csv"
    results.write_text("earlier results\n")
    for bad in (["--batch", "0"], ["--model", str(tmp_path / "nope.onnx")]):
        r = crnn("predict", str(good[0]), "--model", model, "--out", str(results), *bad)
        assert r.returncode == 2 and b"Traceback" not in r.stderr
        assert results.read_text() == "earlier results\n"  # checked before the file was opened
    r = crnn("predict", str(good[0]), "--model", model, "--out", str(tmp_path / "no" / "dir.csv"))
    assert r.returncode == 2 and b"cannot write --out" in r.stderr and b"Traceback" not in r.stderr
    victim = tmp_path / "victim.png"
    victim.write_bytes(good[0].read_bytes())
    r = crnn("predict", str(victim), "--model", model, "--out", str(victim))
    assert r.returncode == 2 and b"one of the inputs" in r.stderr
    assert victim.read_bytes() == good[0].read_bytes()  # was emptied before it was read
    os.link(victim, tmp_path / "hard.png")  # another name of the same file
    r = crnn("predict", str(victim), "--model", model, "--out", str(tmp_path / "hard.png"))
    assert r.returncode == 2 and b"one of the inputs" in r.stderr
    assert victim.read_bytes() == good[0].read_bytes()


def test_a_file_name_that_is_not_utf8_is_written_escaped_in_every_format(model, folder, tmp_path):
    """Linux file names are bytes: `lat` + 0xE9 + `.png` stopped a run half-way (UnicodeEncodeError), its
    JSON array closed as if complete. It is written `lat\\xe9.png`, and a name holding those four
    characters `lat\\\\xe9.png` (a backslash doubled, as `ls -b` writes it), so the two are told apart."""
    _, good = folder
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/lat\xe9.png"))
    literal = tmp_path / "lat\\xe9.png"
    for p in (odd, literal):
        p.write_bytes(good[0].read_bytes())
    for fmt in ("json", "text", "csv"):
        out = tmp_path / f"out.{fmt}"
        r = crnn("predict", str(odd), str(literal), "--model", model, "--format", fmt, "--out", str(out))
        assert r.returncode == 0, r.stderr.decode()
        written = out.read_text(encoding="utf-8")
        if fmt == "csv":
            paths = [row["path"] for row in csv.DictReader(io.StringIO(written))]
        elif fmt == "json":
            paths = [x["path"] for x in json.loads(written)]
        else:
            paths = [line.split("\t")[0] for line in written.splitlines()]
        assert [p.rsplit("/", 1)[1] for p in paths] == ["lat\\xe9.png", "lat\\\\xe9.png"], fmt


def test_a_glob_takes_only_images(model, folder):
    d, good = folder
    r = crnn("predict", str(d / "*"), "--model", model, "--format", "tsv")
    assert r.returncode == 0
    assert b"README" not in r.stderr  # the pattern matched README.txt, which is not an image name
    paths = [line.split("\t")[0] for line in r.stdout.decode().splitlines()[1:]]
    assert paths == sorted(str(p) for p in good if p.parent == d)


def test_page_mode_reads_a_rendered_page_top_to_bottom(model, records, tmp_path):
    page, bands = compose_page([rec.image for rec in records])
    path = tmp_path / "page.png"
    cv2.imwrite(str(path), page)
    r = crnn("predict", str(path), "--model", model, "--mode", "page", "--format", "json")
    assert r.returncode == 0, r.stderr.decode()
    (result,) = json.loads(r.stdout)
    lines = result["lines"]
    assert len(lines) == len(records)
    assert [ln["box"] for ln in lines] == [b for _, b in segment_lines(page)]
    for (y0, y1), ln in zip(bands, lines):
        assert y0 <= ln["box"][1] + ln["box"][3] / 2 <= y1
    # each line's text is the predictor's reading of that crop (the test model reads page crops at CER
    # 0.3-0.7, see test_serve.PAGE_CER, so the labels bound the order loosely)
    crops = [crop for crop, _ in segment_lines(page)]
    backend = OnnxBackend(model)
    assert [ln["text"] for ln in lines] == [
        d.text for d in Predictor(backend, second_look=SecondLook())(crops)
    ]
    once = crnn(
        "predict", str(path), "--model", model, "--mode", "page", "--format", "json", "--no-second-look"
    )
    assert [ln["text"] for ln in json.loads(once.stdout)[0]["lines"]] == [
        d.text for d in Predictor(backend)(crops)
    ]
    score = TextScore()
    for rec, ln in zip(records, lines):
        score.add(rec.label, ln["text"])
    assert score.cer < 0.85
    auto = crnn("predict", str(path), "--model", model)  # auto: several lines found, so page mode
    assert auto.stdout.decode().splitlines() == [ln["text"] for ln in lines]


def test_info_describes_fp32_and_int8_models(chain):
    fp32 = crnn("info", str(chain / "export" / "model.onnx"), "--json")
    assert fp32.returncode == 0, fp32.stderr.decode()
    info = json.loads(fp32.stdout)
    assert info["precision"] == "fp32" and info["quantized_ops"] == 0
    assert info["alphabet_size"] + 1 == info["num_classes"] and info["input_spec"]["height"] == 32
    assert info["lineage"]["stage"] == "export" and info["ops"]["Conv"] >= 7 and info["ops"]["LSTM"] >= 1
    assert set(info["inputs"]) == {"image", "widths"}
    int8_path = chain / "quantize" / "candidates" / "static_qdq.onnx"
    int8 = crnn("info", str(int8_path))
    assert int8.returncode == 0, int8.stderr.decode()
    text = int8.stdout.decode()
    assert "precision      int8" in text and "int8" in text.split("weights")[1]
    assert crnn("info", str(ROOT / "README.md")).returncode == 2


def test_python_dash_m_and_stage_pass_through():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "crnn", "--help"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "predict" in r.stdout and "quantize" in r.stdout
    # a stage's --help is Hydra's own, with the config groups: the arguments reach the stage untouched
    r = crnn("export", "--help")
    assert r.returncode == 0 and b"experiment: " in r.stdout and b"model: " in r.stdout
    r = crnn("serve", "--help")  # the bundled model is the default, so --model is optional
    assert r.returncode == 0 and b"usage: crnn serve" in r.stdout and b"crnn_zh_en" in r.stdout
