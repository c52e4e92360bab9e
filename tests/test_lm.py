"""The character LM (crnn.lm), the beam search that adds it (crnn.ctc), the stage that builds and tunes it
(crnn.lm_build), and the ways a user reaches it: eval artifacts, crnn predict, the HTTP service."""

import json
import math

import cv2
import numpy as np
import pytest
import requests

from crnn.charset import Charset
from crnn.ctc import beam_decode, decode, frame_candidates, greedy_decode
from crnn.lm import EOS, Fusion, LMFormatError, build, load_lm
from crnn.predictor import Predictor
from tests.conftest import run_module, tiny_overrides
from tests.test_serve import _ocr, _png, start_server

WORDS = ["the", "their", "there", "these", "then", "them", "tie", "tier", "hit", "rice"]
ALPHABET = "".join(sorted(set("".join(WORDS)))) + " "


def _lm(min_count: int = 1):
    lines = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(3)) for i in range(200)]
    return build(lines, ALPHABET, order=4, discount=0.75, min_count=min_count)


@pytest.mark.parametrize("min_count", [1, 3])
def test_the_lm_is_a_distribution_after_every_context(min_count):
    """Pruned or not, P(. | h) sums to one over the alphabet and the line's end, seen context or not."""
    lm = _lm(min_count)
    for history in ["", "t", "th", "the", " th", "xyz", "zz e", "rice th"]:
        total = sum(lm.prob(c, history) for c in ALPHABET + EOS)
        assert total == pytest.approx(1.0, abs=1e-9), history
    assert lm.prob("e", "th") > 10 * lm.prob("c", "th")  # "the..." is common, "thc" never seen


def test_the_lm_file_round_trips_and_bad_files_say_so(tmp_path):
    lm = _lm(2)
    lm.meta["charset_fingerprint"] = "abc"
    path = tmp_path / "lm.npz"
    lm.save(path)
    back = load_lm(path)
    assert back.order == lm.order and back.fusion == lm.fusion and back.meta == lm.meta
    for history in ["", "th", "rice t"]:
        for c in ALPHABET + EOS:
            assert back.prob(c, history) == pytest.approx(lm.prob(c, history), rel=1e-6)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(LMFormatError, match="not a readable"):
        load_lm(tmp_path / "bad.npz")
    with pytest.raises(LMFormatError, match="does not exist"):
        load_lm(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", header=np.frombuffer(b'{"format": "x"}', np.uint8))
    with pytest.raises(LMFormatError, match="not a crnn-toolkit character LM"):
        load_lm(tmp_path / "other.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    z = dict(np.load(path))  # a damaged header: fusion weights that are not numbers
    z["header"] = np.frombuffer(
        json.dumps({"format": "crnn-toolkit/char-lm/v1", "order": 4, "fusion": {"alpha": "x"}}).encode(),
        np.uint8,
    )
    np.savez(tmp_path / "fusion.npz", **z)
    for bad in ("empty.npz", "array.npz", "fusion.npz"):  # each a clear error, never a traceback
        with pytest.raises(LMFormatError):
            load_lm(tmp_path / bad)


def _ambiguous_logits(cs: Charset, text: str, doubtful: int, other: str, p_other: float) -> np.ndarray:
    """Frames that spell `text` (each character, then a blank), character `doubtful` shared with `other`."""
    frames = []
    for i, ch in enumerate(text):
        f = np.full(cs.num_classes, 1e-4)
        if i == doubtful:
            f[cs.encode(ch)[0]], f[cs.encode(other)[0]] = 1 - p_other, p_other
        else:
            f[cs.encode(ch)[0]] = 1.0
        frames.append(f / f.sum())
        blank = np.full(cs.num_classes, 1e-4)
        blank[0] = 1.0
        frames.append(blank / blank.sum())
    return np.log(np.array(frames, np.float32))[None]


def test_the_lm_reads_the_spelling_the_pixels_leave_open():
    cs = Charset.from_string(ALPHABET)
    lm = _lm()
    logits = _ambiguous_logits(cs, "thcir", 2, "e", 0.4)  # the pixels lean to a misspelling
    assert greedy_decode(logits, cs)[0].text == "thcir"
    assert beam_decode(logits, cs)[0].text == "thcir"  # no LM: the same
    fused = decode(logits, cs, method="lm", lm=lm)[0]
    assert fused.text == "their"
    assert 0 < fused.confidence < 1  # the recognizer's own probability of that reading
    # no doubt in the pixels (e at 1e-4, more than PRUNE_NATS below c): the LM is never asked
    clear = _ambiguous_logits(cs, "thcir", 2, "e", 1e-4)
    assert decode(clear, cs, method="lm", lm=lm)[0].text == "thcir"
    # a weaker LM weight leaves the pixels' 60:40 reading
    assert decode(logits, cs, method="lm", lm=lm.with_fusion(Fusion(0.01, 0.0, 8)))[0].text == "thcir"
    with pytest.raises(ValueError, match="needs a character LM"):
        decode(logits, cs, method="lm")
    broken = logits.copy()
    broken[0, 3] = np.nan  # a frame with no finite class says nothing: the rest still reads
    assert decode(broken, cs, method="lm", lm=lm)[0].text == "their"


def test_frame_candidates_keep_each_frames_close_classes_as_log_probabilities():
    logits = np.array([[5.0, 4.0, -10.0, 4.5], [0.0, 9.0, 8.5, -1.0]], np.float32)
    top, vals = frame_candidates(logits, 2)
    lsm = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert sorted(top[0].tolist()) == [0, 3] and sorted(top[1].tolist()) == [1, 2]  # the 2 best of 3 close
    for f in range(2):
        for j, v in zip(top[f], vals[f]):
            assert v == pytest.approx(lsm[f, j], abs=1e-5)
    top, vals = frame_candidates(np.array([[0.0, -20.0, -30.0]], np.float32), 4)
    assert top[0].tolist() == [0, -1, -1] and math.isinf(vals[0, 1])  # far classes are not candidates


def test_predictor_refuses_decoder_lm_without_an_lm(chain):
    from crnn.onnx_model import OnnxBackend

    backend = OnnxBackend(chain / "export" / "model.onnx", threads=1)
    with pytest.raises(ValueError, match="needs a character LM"):
        Predictor(backend, decoder="lm")


@pytest.fixture(scope="module")
def tuned_lm(chain, tiny_data):
    """The LM stage run for real on the tiny chain: its corpus, its validation lines, its FP32 file."""
    tmp = chain.parent.parent
    run_module(
        "crnn.lm_build",
        tiny_overrides(tmp, "c")
        + [
            f"data.root={tiny_data / 'data'}",
            "lm.lines=3000",
            "lm.min_count=2",
            "lm.alpha=[0.0,0.3,5.0]",
            "lm.beta=[0.0,1.0]",
            f"lm.model={chain / 'export' / 'model.onnx'}",
        ],
    )
    return chain / "lm"


def test_the_lm_stage_builds_from_the_corpus_and_keeps_the_best_weights(tuned_lm, chain):
    report = json.loads((tuned_lm / "report.json").read_text())
    lm = load_lm(tuned_lm / "lm.npz")
    assert len(report["grid"]) == 6 and report["val_lines"] == 64
    best = min(report["grid"], key=lambda r: (round(r["cer"], 6), r["alpha"], r["beta"]))
    assert (lm.fusion.alpha, lm.fusion.beta) == (best["alpha"], best["beta"])
    assert report["chosen_cer"] == best["cer"] and lm.fusion.alpha != 5.0  # a 5x LM drowns the pixels
    huge = next(r for r in report["grid"] if r["alpha"] == 5.0 and r["beta"] == 0.0)
    assert huge["cer"] > best["cer"]
    assert lm.meta["corpus_lines"] == 3000 and lm.meta["tuned_on"]["lines"] == 64
    from crnn.onnx_model import OnnxBackend

    charset = OnnxBackend(chain / "export" / "model.onnx", threads=1).charset
    assert lm.meta["charset_fingerprint"] == charset.fingerprint()
    assert set(lm.unigram) == set(charset.chars) | {EOS}


def test_eval_reads_a_model_with_its_lm_beside_it_without(tuned_lm, chain, tiny_data):
    tmp = chain.parent.parent
    model = chain / "export" / "model.onnx"
    run_module(
        "crnn.eval",
        tiny_overrides(tmp, "c")
        + [
            f"data.root={tiny_data / 'data'}",
            "eval.out_dir=eval_lm",
            "eval.latency_lines=2",
            "eval.threads=1",
            f"eval.artifacts=['plain={model}','fused={model}+{tuned_lm / 'lm.npz'}']",
        ],
    )
    report = json.loads((chain / "eval_lm" / "report.json").read_text())
    by = {m["name"]: m for m in report["models"]}
    assert by["plain"]["decoder"] == "greedy" and "lm" not in by["plain"]
    assert (
        by["fused"]["decoder"] == "lm"
        and by["fused"]["lm_fusion"]["alpha"] == load_lm(tuned_lm / "lm.npz").fusion.alpha
    )
    assert by["fused"]["sha256"] == by["plain"]["sha256"]  # the same recognizer file, read two ways
    other = _lm()
    other.meta["charset_fingerprint"] = "another alphabet"
    other.save(tuned_lm.parent / "eval_other.npz")
    with pytest.raises(AssertionError, match="another alphabet"):  # said by the stage, before any worker
        run_module(
            "crnn.eval",
            tiny_overrides(tmp, "c")
            + [
                f"data.root={tiny_data / 'data'}",
                f"eval.artifacts=['{model}+{tuned_lm.parent / 'eval_other.npz'}']",
            ],
        )


def test_the_service_offers_decoder_lm_only_with_an_lm(tuned_lm, chain, tiny_data):
    from crnn.data.lmdb_io import LmdbReader

    line = _png(LmdbReader(tiny_data / "data" / "train").read(3).image)
    model = chain / "export" / "model.onnx"
    proc, base = start_server(model, "--lm", str(tuned_lm / "lm.npz"))
    try:
        h = requests.get(base + "/health", timeout=5).json()
        assert h["decoder"] == "lm" and h["lm"] == "lm.npz"  # an LM given: it reads by default
        fused = _ocr(base, line, mode="line").json()
        greedy = _ocr(base, line, mode="line", decoder="greedy").json()
        assert fused["decoder"] == "lm" and greedy["decoder"] == "greedy"
        assert fused["success"] and len(fused["text"]) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    other = _lm()
    other.meta["charset_fingerprint"] = "another alphabet"
    other.save(tuned_lm.parent / "other_alphabet.npz")
    import subprocess
    import sys

    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "crnn.serve",
            "--model",
            str(model),
            "--lm",
            str(tuned_lm.parent / "other_alphabet.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "another alphabet" in refused.stderr  # at start, not in each worker
    proc, base = start_server(model)
    try:
        r = _ocr(base, line, mode="line", decoder="lm")
        assert r.status_code == 422 and "without a character LM" in r.json()["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_predict_reads_with_the_lm_and_refuses_one_of_another_alphabet(tuned_lm, chain, tiny_data, tmp_path):
    import io

    from crnn.data.lmdb_io import LmdbReader
    from crnn.predict import OptionError, run

    img = tmp_path / "line.png"
    cv2.imwrite(str(img), LmdbReader(tiny_data / "data" / "train").read(3).image)
    model = str(chain / "export" / "model.onnx")
    out = tmp_path / "out.json"
    lm = str(tuned_lm / "lm.npz")
    tally = run(
        [str(img)], model, mode="line", decoder="lm", fmt="json", out=str(out), lm=lm, err=io.StringIO()
    )
    assert tally.images == 1 and out.read_text().strip()
    other = _lm()
    other.meta["charset_fingerprint"] = "another alphabet"
    other.save(tmp_path / "other.npz")
    with pytest.raises(OptionError, match="another alphabet"):
        run([str(img)], model, mode="line", decoder="lm", lm=str(tmp_path / "other.npz"), err=io.StringIO())
    with pytest.raises(OptionError, match="needs a character LM"):
        run([str(img)], model, mode="line", decoder="lm", err=io.StringIO())


def test_crnn_predict_refuses_an_lm_that_its_decoder_would_not_read(tuned_lm, chain, capsys):
    from crnn.command import main

    model, lm = str(chain / "export" / "model.onnx"), str(tuned_lm / "lm.npz")
    assert main(["predict", "-", "--model", model, "--decoder", "greedy", "--lm", lm]) == 2
    assert "--lm is read by --decoder lm only" in capsys.readouterr().err


def test_ship_lm_gates_the_lm_like_a_new_model_and_rewrites_the_baseline(
    tuned_lm, chain, tiny_data, tmp_path
):
    """make ship-lm: refused for an LM tuned with another file or a run that did not read the bundled file
    both ways; shipped (here with +force where the tiny model's real lines decide against it) with the LM
    reading as the new real-line baseline and the card's LM section."""
    import shutil
    import subprocess
    import sys

    from crnn.lineage import sha256_file
    from tests.conftest import ROOT
    from tests.test_eval import _real_folder

    tmp = chain.parent.parent
    over = tiny_overrides(tmp, "c") + [f"data.root={tiny_data / 'data'}"]
    out = tmp_path / "models"
    out.mkdir()
    served = out / "crnn_zz.onnx"
    shutil.copyfile(chain / "export" / "model.onnx", served)  # the very file the LM was tuned with
    (out / "README.md").write_text("# crnn_zz: the bundled model\n")
    folder = _real_folder(tiny_data, tmp_path / "real")
    lm = tuned_lm / "lm.npz"
    ship = [sys.executable, str(ROOT / "scripts" / "ship_lm.py"), *over, f"+out={out}", "+as=zz", f"+lm={lm}"]

    def evaluate(artifacts: str) -> None:
        sets = f"eval.test_sets=[{tiny_data / 'data' / 'test'},{folder}]"
        run_module(
            "crnn.eval",
            over + ["eval.out_dir=eval_real", "eval.threads=1", "eval.latency_lines=2", sets, artifacts],
        )

    def shipped(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(ship + list(extra), capture_output=True, text=True, cwd=ROOT)

    try:
        evaluate(f"eval.artifacts=['bundled={served}']")
        plain_only = shipped()
        assert plain_only.returncode == 2 and "did not read the served file with this LM" in plain_only.stderr
        evaluate(f"eval.artifacts=['bundled={served}','bundled_lm={served}+{lm}']")
        gated = shipped()
        assert gated.returncode == 0 or "the LM may not ship" in gated.stderr, gated.stderr[-2000:]
        if gated.returncode == 2:
            assert not (out / "crnn_zz.lm.npz").exists()
            assert shipped("+force=true").returncode == 0
        assert sha256_file(out / "crnn_zz.lm.npz") == sha256_file(lm)
        base = json.loads((out / "crnn_zz.realdev.json").read_text())["models"][0]
        assert base["decoder"] == "lm" and base["lm_sha256"] == sha256_file(lm)
        assert base["sha256"] == sha256_file(served) and base["sets"][0]["path"] == str(folder)
        card = (out / "README.md").read_text()
        assert card.startswith("# crnn_zz") and card.count("## Decoding: the character LM") == 1
        assert shipped("+force=true").returncode == 0  # again: the card's section replaced, not added
        assert (out / "README.md").read_text().count("## Decoding: the character LM") == 1
        with served.open("ab") as f:  # another bundled file: the LM was not tuned with it
            f.write(b"another model")
        other = shipped()
        assert other.returncode == 2 and "tuned with another file" in other.stderr
    finally:
        shutil.rmtree(chain / "eval_real", ignore_errors=True)  # the chain's run stays as other tests know it
