import numpy as np
import pytest

from crnn.charset import Charset
from crnn.ctc import beam_decode, greedy_decode
from crnn.data.preprocess import InputSpec, pad_batch, preprocess
from crnn.metrics import SceneScores, TextScore


def test_preprocess_keeps_aspect_and_normalises():
    spec = InputSpec()
    img = np.full((64, 300), 255, np.uint8)
    img[:, :10] = 0
    x = preprocess(img, spec)
    assert x.shape == (1, 32, 150) and x.dtype == np.float32
    assert x.min() == pytest.approx(-0.5) and x.max() == pytest.approx(0.5)
    colour = np.zeros((20, 40, 3), np.uint8)
    assert preprocess(colour, spec).shape == (1, 32, 64)
    assert preprocess(np.zeros((100, 2), np.uint8), spec).shape[-1] == spec.min_width
    with pytest.raises(ValueError):
        preprocess(np.zeros((0, 0), np.uint8), spec)


def test_a_spec_that_smooths_blurs_the_resized_line_and_one_that_does_not_leaves_it():
    """InputSpec.smooth is a Gaussian over the line at the model's height (the normalisation is affine, so
    blurring before or after it is the same); 0 leaves preprocess as it was."""
    import cv2

    img = np.random.default_rng(0).integers(0, 256, (64, 300), dtype=np.uint8)
    plain = preprocess(img, InputSpec())
    again = cv2.resize(img, (150, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0 - 0.5
    np.testing.assert_allclose(plain[0], again, atol=1e-6)
    smooth = preprocess(img, InputSpec(smooth=0.5))
    assert smooth.shape == plain.shape
    np.testing.assert_allclose(smooth[0], cv2.GaussianBlur(plain[0], (0, 0), 0.5), atol=1e-5)
    assert np.abs(smooth - plain).max() > 0.05  # it does blur
    for bad in (-0.1, 5.0):
        with pytest.raises(ValueError, match="input.smooth"):
            InputSpec(smooth=bad)


def test_pad_batch_replicates_last_column():
    a, b = np.zeros((1, 32, 20), np.float32), np.ones((1, 32, 30), np.float32)
    a[..., -1] = 0.25
    batch, widths = pad_batch([a, b])
    assert batch.shape == (2, 1, 32, 30) and widths.tolist() == [20, 30]
    assert np.all(batch[0, :, :, 20:] == 0.25)


def _logits(path: list[int], c: int = 4) -> np.ndarray:
    out = np.full((1, len(path), c), -5.0, np.float32)
    for t, k in enumerate(path):
        out[0, t, k] = 5.0
    return out


def test_greedy_decoding_on_hand_made_logits():
    cs = Charset.from_string("abc")
    # blank=0, a=1, b=2, c=3: "a a _ a b b _ _ c" -> "aabc"
    d = greedy_decode(_logits([1, 1, 0, 1, 2, 2, 0, 0, 3]), cs)[0]
    assert d.text == "aabc" and d.ids == [1, 1, 2, 3]
    assert 0.99 < d.confidence <= 1.0
    assert greedy_decode(_logits([0, 0, 0]), cs)[0].text == ""
    # lengths cut padded frames off
    two = np.concatenate([_logits([1, 0, 2, 2]), _logits([3, 3, 3, 3])])
    out = greedy_decode(two, cs, lengths=np.array([4, 1]))
    assert [o.text for o in out] == ["ab", "c"]


def test_beam_agrees_with_greedy_on_confident_frames_and_merges_paths():
    cs = Charset.from_string("abc")
    lg = _logits([1, 1, 0, 1, 2, 2, 0, 0, 3])
    assert beam_decode(lg, cs)[0].text == greedy_decode(lg, cs)[0].text
    # Two frames where "a" is split between a-a and a-blank: greedy says "" (blank wins each frame),
    # but the summed probability of emitting "a" is larger.
    p = np.log(np.array([[[0.4, 0.35, 0.25 / 2, 0.25 / 2], [0.4, 0.35, 0.25 / 2, 0.25 / 2]]], np.float32))
    assert greedy_decode(p, cs)[0].text == ""
    assert beam_decode(p, cs)[0].text == "a"


def test_cer_and_accuracy_on_hand_made_pairs():
    s = TextScore()
    s.add("你好世界", "你好世界")
    s.add("abc", "abd")
    s.add("", "x")  # empty label: one insertion
    s.add("12", "")  # empty prediction: two deletions
    assert s.edits == 4 and s.chars == 9
    assert s.cer == pytest.approx(4 / 9)
    assert s.acc == pytest.approx(1 / 4)
    sc = SceneScores()
    sc.add("ab", "ab", "printed")
    sc.add("ab", "a", "blurry")
    d = sc.as_dict()
    assert d["scenes"]["printed"]["cer"] == 0 and d["scenes"]["blurry"]["cer"] == 0.5
    assert d["overall"]["cer"] == 0.25


def test_scores_of_two_sets_merge_as_sums():
    a, b = SceneScores(), SceneScores()
    a.add("1234567890", "1234567890", "printed")
    b.add("12", "", "printed")
    a.merge(b)
    assert a.by_scene["printed"].cer == pytest.approx(2 / 12)  # not the mean of 0 and 1
    assert a.overall.n == 2


def _brute_confidence(logp: np.ndarray, ids: list[int]) -> float:
    """Every frame labelling that collapses to `ids`; the most probable one's first-frame probabilities."""
    import itertools

    best, conf = -np.inf, 0.0
    for path in itertools.product(range(logp.shape[1]), repeat=len(logp)):
        keep = [i for i in range(len(path)) if path[i] != 0 and (i == 0 or path[i] != path[i - 1])]
        if [path[i] for i in keep] != ids:
            continue
        score = sum(logp[i, c] for i, c in enumerate(path))
        if score > best:
            best, conf = score, float(np.exp(np.mean([logp[i, path[i]] for i in keep])))
    return conf


def test_a_line_has_the_same_confidence_whichever_decoder_reads_it():
    """Beam and LM readings report greedy's confidence (the first frame of each character along the text's
    best alignment), so a threshold means the same for every decoder; a text greedy did not choose gets it
    along its own best alignment."""
    from crnn.ctc import path_confidence

    cs = Charset.from_string("abc")
    rng = np.random.default_rng(0)
    for _ in range(20):
        lg = rng.normal(0, 2, (1, 12, 4)).astype(np.float32)
        g, b = greedy_decode(lg, cs)[0], beam_decode(lg, cs)[0]
        if b.text == g.text:
            assert b.confidence == pytest.approx(g.confidence, rel=1e-3)
    for _ in range(30):
        lg = rng.normal(0, 2, (5, 4)).astype(np.float32)
        logp = lg - np.log(np.exp(lg).sum(axis=1, keepdims=True))
        ids = rng.integers(1, 4, rng.integers(1, 4)).tolist()
        assert path_confidence(lg, ids) == pytest.approx(_brute_confidence(logp, ids), rel=1e-5)
    assert path_confidence(rng.normal(size=(2, 4)).astype(np.float32), [1, 1, 1]) == 0.0  # no alignment fits


def test_a_nan_frame_does_not_zero_the_beam_and_lm_confidence():
    """A NaN frame is skipped by every decoder; before, beam and LM readings of such a line read the text
    right and reported confidence 0 (the frame's missing candidate counted as a character)."""
    from crnn.ctc import decode
    from crnn.lm import build

    cs = Charset.from_string("ab")
    lg = np.full((1, 6, 3), -5.0, np.float32)
    for t, c in enumerate([1, 0, 2, 0, 1, 0]):
        lg[0, t, c] = 5.0
    lg[0, 3] = np.nan
    g = greedy_decode(lg, cs)[0]
    lm = build(["aba", "ab"] * 5, "ab", order=2)
    for d in (beam_decode(lg, cs)[0], decode(lg, cs, method="lm", lm=lm)[0]):
        assert d.text == g.text == "aba"
        assert d.confidence == pytest.approx(g.confidence, rel=1e-3) and d.confidence > 0.99
