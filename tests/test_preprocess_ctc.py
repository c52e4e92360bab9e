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
