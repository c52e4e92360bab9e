"""The bundled default model (models/crnn_zh_en.*): shipped within its size budget, traceable to its runs,
and reading held-out lines as well as its model card says."""

import json

import pytest

from crnn.charset import Charset, load_charset
from crnn.command import MODELS_BUDGET_MB, served_bytes, served_files
from crnn.data.source import SynthSource
from crnn.metrics import SceneScores
from crnn.onnx_model import read_metadata
from crnn.serve.engine import Engine
from tests.conftest import ROOT, bundled_model, compose_cfg

MODELS = ROOT / "models"
FP32 = MODELS / "crnn_zh_en.onnx"
SHIPPED = sorted(MODELS.glob("crnn_zh_en*.onnx"))  # FP32, and INT8 where a recipe qualified


def test_shipped_files_and_lineage():
    assert FP32.is_file(), "make ship EXP=zh_en writes it"
    # the whole budget: recognizer, detector and LM together (the training snapshots are not served)
    assert served_bytes(MODELS) / 1e6 <= MODELS_BUDGET_MB
    assert {p.name for p in served_files(MODELS)} >= {p.name for p in SHIPPED}
    card = (MODELS / "README.md").read_text()
    assert "crnn_zh_en" in card and "## Known weaknesses" in card
    alphabets = set()
    for path in SHIPPED:
        meta = read_metadata(path)
        chars = Charset.from_string(meta["charset"]).chars
        alphabets.add(tuple(chars))
        # the bundled model reads at least every character of zh_en (a larger alphabet, as v3's, may ship)
        assert set(load_charset("zh_en").chars) <= set(chars)
        lineage = json.loads(meta["lineage"])
        assert lineage.get("git_commit") and lineage.get("mlflow_run_id")
    assert len(alphabets) == 1, "the INT8 and FP32 files read different alphabets"


@pytest.fixture(scope="module")
def held_out():
    """The first 48 lines of the zh_en test split (its own corpus seed, held-out fonts included), drawn
    again by the renderer: the same lines the shipped evaluation scored."""
    cfg = compose_cfg(["experiment=zh_en"])
    split = cfg.data.splits["test"]
    src = SynthSource(cfg.corpus, cfg.render, load_charset(cfg.charset), seed=split.seed)
    return [src.sample(i, balanced=True) for i in range(48)]


def test_reads_held_out_lines_as_its_card_says(held_out):
    report = json.loads((MODELS / "crnn_zh_en.eval.json").read_text())
    served = bundled_model()
    row = next(
        m for m in report["models"] if m["name"] == ("int8_onnx" if "int8" in served.name else "fp32_onnx")
    )
    engine = Engine(str(served), threads=1)
    got = engine.recognize([s.image for s in held_out], [[0, 0, 0, 0]] * len(held_out))
    scores = SceneScores()
    for s, r in zip(held_out, got):
        scores.add(s.label, r.text, s.scene)
        assert 0.0 <= r.confidence <= 1.0
    reported = row["overall"]["cer"]
    # 48 lines against 1200: allow sampling noise, not a different model
    assert scores.overall.cer <= max(2 * reported, reported + 0.08), (scores.overall.cer, reported)


def test_the_bundled_lm_belongs_to_the_bundled_model_and_its_figures():
    """models/crnn_zh_en.lm.npz (make ship-lm) was built for the bundled model's alphabet and tuned with the
    very file that serves, and the real-line figures make regress-real checks are its reading: a model
    shipped without its LM (or the LM left beside another model) fails here."""
    from crnn.lineage import sha256_file
    from crnn.lm import load_lm

    lm_file = MODELS / "crnn_zh_en.lm.npz"
    baseline = json.loads((MODELS / "crnn_zh_en.realdev.json").read_text())["models"][0]
    if not lm_file.is_file():
        assert baseline.get("decoder", "greedy") != "lm", "the real-line figures were read with an LM"
        pytest.skip("no character LM is bundled")
    lm = load_lm(lm_file)
    served = bundled_model()
    assert (
        lm.meta["charset_fingerprint"] == Charset.from_string(read_metadata(served)["charset"]).fingerprint()
    )
    assert lm.meta["tuned_on"]["recognizer_sha256"] == sha256_file(served)
    assert baseline["decoder"] == "lm" and baseline["lm_sha256"] == sha256_file(lm_file)
    assert baseline["sha256"] == sha256_file(served)
    assert lm_file in served_files(MODELS)
    assert "## Decoding: the character LM" in (MODELS / "README.md").read_text()
