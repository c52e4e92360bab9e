"""Real labelled folders as test sets: per-category normalisation, damaged folders scored not crashed,
and the evaluation stage's report over a folder with the bundled model (a real ONNX Runtime session)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from crnn.charset import load_charset
from crnn.data.folder import FolderFormatError, FolderLineDataset, is_folder_set
from crnn.data.preprocess import InputSpec
from crnn.onnx_model import OnnxBackend
from crnn.predictor import Predictor
from crnn.scoring import score_dataset
from crnn.textnorm import Normalizer
from tests.conftest import bundled_model, run_module, tiny_overrides

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def config_normalizer() -> Normalizer:
    """The rules configs/config.yaml declares (composed by the real config loader)."""
    from tests.conftest import compose_cfg

    return Normalizer(compose_cfg(["experiment=zh_en"]).eval.normalize)


@pytest.mark.parametrize(
    "scene,label,pred,equal",
    [
        ("receipt_en", "TOTAL  RM 35.80", "total rm35.80", True),  # case and spaces do not count
        ("receipt_en", "TOTAL 35.80", "TOTAL 35.8O", False),  # O for 0 still does
        ("plate_zh", "皖A·77Y12", "皖A 77Y12", True),  # separator dot and spaces
        ("plate_zh", "皖A77Y12", "皖A77Y1Z", False),
        ("printed_doc_zh", "大桶装 更划算", "大桶装更划算", True),  # spaces next to hanzi
        ("printed_doc_zh", "（正品）", "(正品)", True),  # NFKC: full-width brackets
        ("printed_doc_en", "The  cat ", "The cat", True),  # whitespace collapsed
        ("printed_doc_en", "The cat", "the cat", False),  # case counts in documents
        ("scene_en", "EXIT", "exit", True),
        ("handwriting_en", "Hello", "hello", False),
        ("printed", "ＡＢ", "AB", False),  # synthetic scenes: exact text, no rule applies
    ],
)
def test_config_normalisation_per_category(scene, label, pred, equal):
    n = config_normalizer()
    assert (n(label, scene) == n(pred, scene)) is equal


def test_normalizer_exact_key_before_glob_and_unknown_rule():
    n = Normalizer({"*_en": ["casefold"], "scene_en": ["no_spaces"]})
    assert n("A B", "scene_en") == "AB"  # the exact key wins, the glob's casefold does not apply
    assert n("A B", "doc_en") == "a b"
    assert n("A B", "other") == "A B"
    with pytest.raises(ValueError, match="unknown normalisation rule"):
        Normalizer({"x": ["nfkd"]})


def _line(text: str, path: Path, height: int = 40) -> None:
    font = ImageFont.truetype(FONT, int(height * 0.7))
    w = int(font.getlength(text)) + 16
    img = Image.new("RGB", (w, height), (250, 250, 245))
    ImageDraw.Draw(img).text((8, height * 0.12), text, font=font, fill=(20, 20, 60))
    img.save(path)


@pytest.fixture(scope="module")
def damaged_folder(tmp_path_factory) -> Path:
    """Two categories; one holds a broken image, a listed file that is missing, an out-of-alphabet label,
    an image nobody labelled and a row without a tab."""
    root = tmp_path_factory.mktemp("realfolder")
    a, b = root / "receipt_en", root / "printed_doc_zh"
    a.mkdir()
    b.mkdir()
    _line("TOTAL 12.50", a / "0.png")
    _line("CASH 20.00", a / "1.png")
    (a / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _line("unlabelled", a / "9.png")
    (a / "labels.tsv").write_bytes(  # a BOM and CRLF line ends, as spreadsheet exports write them
        "\ufeff0.png\tTOTAL 12.50\r\n1.png\tCASH 20.00\r\n2.png\tBROKEN\r\n3.png\tMISSING\r\n"
        "no tab here\r\n0.png\tTOTAL 12.5O\r\n../escape.png\tX\r\n".encode()
    )
    _line("2024", b / "0.png")
    (b / "labels.tsv").write_text("0.png\t2024\n1.png\t温度\u2028β\n", encoding="utf-8")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "labels.tsv").write_text("x.png\tx\n", encoding="utf-8")
    _line("placeholder", b / "1.png")
    return root


def test_damaged_folder_is_scored_and_counted(damaged_folder):
    model = bundled_model()
    backend = OnnxBackend(model, threads=1)
    assert is_folder_set(damaged_folder) and not is_folder_set(damaged_folder / "receipt_en" / "0.png")
    ds = FolderLineDataset(damaged_folder, backend.charset, backend.spec)
    assert len(ds) == 6  # every labelled row, readable or not
    assert ds.summary() == {
        "categories": ["printed_doc_zh", "receipt_en"],  # not the hidden folder
        "empty_categories": [],
        "missing_file": 1,
        "unreadable": 1,
        "bad_label_row": 2,  # no tab; a name outside its folder
        "duplicate_row": 1,  # the first row of 0.png is kept
        "unlabelled_image": 1,
    }
    labels = {(f.parent.name, f.name): e[2] for f, e in zip(ds.files, ds.entries)}
    assert labels[("receipt_en", "0.png")] == "TOTAL 12.50"
    assert labels[("printed_doc_zh", "1.png")] == "温度\u2028β"  # U+2028 in a label does not split it
    assert set(ds.label_stats.as_dict()["top_oov_chars"]) >= {"β"}  # kept and counted, not dropped
    preds: dict[int, str] = {}
    scores, skipped = score_dataset(Predictor(backend), ds, 8, predictions=preds)
    assert skipped["corrupt"] == 2 and scores.overall.n == 6
    assert scores.by_scene["receipt_en"].n == 4 and scores.by_scene["printed_doc_zh"].n == 2
    broken = [i for i, f in enumerate(ds.files) if f.name in ("2.png", "3.png")]
    assert all(i not in preds for i in broken)  # unreadable lines are empty predictions: full edits
    assert scores.by_scene["receipt_en"].edits >= len("BROKEN") + len("MISSING")
    total = next(i for i, f in enumerate(ds.files) if f.parent.name == "receipt_en" and f.name == "0.png")
    assert preds[total].replace(" ", "") == "TOTAL12.50"  # a clean rendered line is read


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(FolderFormatError, match="no labels.tsv"):
        FolderLineDataset(tmp_path, load_charset("digits"), InputSpec())
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "labels.tsv").write_bytes("0.png\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(FolderFormatError, match="not UTF-8"):
        FolderLineDataset(tmp_path, load_charset("digits"), InputSpec())


def test_eval_stage_reports_categories(damaged_folder, tmp_path):
    model = bundled_model()
    over = tiny_overrides(tmp_path, "real") + [
        f"eval.artifacts=['bundled={model}']",
        f"eval.test_sets=[{damaged_folder}]",
        "eval.out_dir=eval_real",
        "eval.latency_lines=2",
        "eval.threads=1",
    ]
    run_module("crnn.eval", over)
    out = tmp_path / "runs" / "real" / "eval_real"
    r = json.loads((out / "report.json").read_text())
    (m,) = r["models"]
    assert set(m["scenes"]) == {"receipt_en", "printed_doc_zh"}
    (s,) = m["sets"]
    assert s["kind"] == "folder" and s["n"] == 6
    assert s["macro_cer"] == pytest.approx(np.mean([v["cer"] for v in m["scenes"].values()]))
    assert r["test_sets"][0]["missing_file"] == 1 and r["test_sets"][0]["unreadable"] == 1
    md = (out / "report.md").read_text()
    assert "Real lines:" in md and "| receipt_en | 4 |" in md and "| macro | 2 |" in md
    page = (out / "report.html").read_text()
    # worst lines shown with their own images (温度β cannot be read right); the broken ones say so
    assert page.count("<img class='line' src='data:image/png;base64,i") >= 1
    assert "<td>(unreadable)</td><td><del>missing</del>" in page
    assert "<th>receipt_en</th>" not in page and "<td>receipt_en</td>" in page  # the real-lines table
