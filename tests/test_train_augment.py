"""On-the-fly training augmentation (train.augment): labels kept, pixels a pure function of (seed, epoch,
index) across loader workers and resumes, the whole ink kept, never applied to validation; a real small
LMDB on disk and a real (tiny) training run."""

from contextlib import closing
from dataclasses import replace

import cv2
import numpy as np
import pytest

from crnn.charset import load_charset
from crnn.config import ConfigError, from_dict
from crnn.data.dataset import AugmentedLines, LmdbLineDataset
from crnn.data.lmdb_io import LmdbReader, LmdbWriter, encode_image
from crnn.data.preprocess import preprocess
from crnn.data.train_augment import AugmentConfig, AugOp, LineAugmenter, default_ops
from crnn.train import train, validation_set
from crnn.train_utils import train_data
from tests.conftest import compose_cfg, tiny_overrides

N_LINES = 40


def _line(text: str, rng: np.random.Generator) -> np.ndarray:
    """A printed line of digits: dark ink on light paper, or light on dark."""
    scale = float(rng.uniform(0.7, 1.0))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    pad = int(rng.integers(2, 10))
    img = np.full((h + base + 2 * pad, w + 2 * pad), int(rng.integers(180, 250)), np.uint8)
    cv2.putText(img, text, (pad, pad + h), cv2.FONT_HERSHEY_SIMPLEX, scale, int(rng.integers(0, 60)), 2)
    return 255 - img if rng.random() < 0.2 else img


@pytest.fixture(scope="module")
def lmdb_dir(tmp_path_factory):
    """A real LMDB of N_LINES digit lines, written as scripts/make_lmdb.py writes a user's lines."""
    path = tmp_path_factory.mktemp("aug") / "lines"
    rng = np.random.default_rng(0)
    with LmdbWriter(path) as w:
        for _ in range(N_LINES):
            text = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(3, 12))))
            img = _line(text, rng)
            w.add(encode_image(img), text, "printed", width=round(img.shape[1] * 32 / img.shape[0]))
    return path


def _cfg(tmp_path, lmdb_dir, *extra):
    return compose_cfg(
        tiny_overrides(tmp_path)
        + [
            f"data.train_lmdb=[{lmdb_dir}]",
            f"data.val_lmdb=[{lmdb_dir}]",
            "train.batch_size=8",
            "train.bucket_pool=2",
            "train.augment.enabled=true",
            "train.augment.p=1.0",
            *extra,
        ]
    )


def _batches(cfg, start: int, n: int, workers: int = 0) -> list:
    cfg = replace(cfg, train=replace(cfg.train, num_workers=workers))
    data = train_data(cfg, load_charset(cfg.charset), cfg.model.hstride, start)
    with closing(data.batches(start)) as batches:
        return [next(batches) for _ in range(n)]


def _stored(lmdb_dir, cfg, charset) -> dict[str, list[np.ndarray]]:
    """label -> the preprocessed stored images with that label."""
    out: dict[str, list[np.ndarray]] = {}
    reader = LmdbReader(lmdb_dir)
    for i in range(1, len(reader) + 1):
        rec = reader.read(i)
        out.setdefault(rec.label, []).append(preprocess(rec.image, cfg.input))
    return out


def test_training_lines_are_augmented_and_keep_their_labels(lmdb_dir, tmp_path):
    cfg = _cfg(tmp_path, lmdb_dir)
    charset = load_charset(cfg.charset)
    plain = LmdbLineDataset([str(lmdb_dir)], charset, cfg.input)
    aug = AugmentedLines(plain, LineAugmenter(cfg.train.augment, cfg.input.height, cfg.seed))
    changed = 0
    for i in range(len(plain)):
        a, p = aug[(0, i)], plain[i]
        assert (a.label, a.scene) == (p.label, p.scene)
        assert a.x.shape[-2] == cfg.input.height
        changed += a.x.shape != p.x.shape or not np.array_equal(a.x, p.x)
    assert changed >= 0.9 * len(plain), changed
    # through the real loader: every line of an epoch once, with its own label, none stored as is
    stored = _stored(lmdb_dir, cfg, charset)
    batches = _batches(cfg, 0, 5)  # 40 lines, batches of 8: one epoch
    labels = [lab for b in batches for lab in b.labels]
    assert sorted(labels) == sorted(it.label for it in plain)
    same = 0
    for b in batches:
        for x, w, lab in zip(b.images, b.widths, b.labels, strict=True):
            x = x[:, :, : int(w)].numpy()
            same += any(s.shape == x.shape and np.array_equal(s, x) for s in stored[lab])
    assert same <= 0.1 * len(labels), same


def test_same_seed_and_key_give_the_same_pixels_whatever_the_workers(lmdb_dir, tmp_path):
    cfg = _cfg(tmp_path, lmdb_dir)
    img = LmdbReader(lmdb_dir).read(3).image
    a = LineAugmenter(cfg.train.augment, 32, seed=5)
    b = LineAugmenter(cfg.train.augment, 32, seed=5)
    assert np.array_equal(a(img, (1, 2)), b(img, (1, 2)))
    others = [LineAugmenter(cfg.train.augment, 32, seed=6)(img, (1, 2)), a(img, (2, 2)), a(img, (1, 3))]
    for o in others:  # another seed, epoch or index: another image
        assert o.shape != a(img, (1, 2)).shape or not np.array_equal(o, a(img, (1, 2)))
    # the loader: 0 or 2 workers, and a run resumed at step 7 (epoch 1, batch 2), see the same batches
    alone = _batches(cfg, 0, 10)
    shared = _batches(cfg, 0, 10, workers=2)
    resumed = _batches(cfg, 7, 3)
    for x, y in zip(alone, shared, strict=True):
        assert x.labels == y.labels and np.array_equal(x.images, y.images)
    for x, y in zip(alone[7:], resumed, strict=True):
        assert x.labels == y.labels and np.array_equal(x.images, y.images)
    # epoch 1 augments the lines of epoch 0 anew
    first = {lab: x for b in alone[:5] for x, lab in zip(b.images, b.labels, strict=True)}
    second = {lab: x for b in alone[5:] for x, lab in zip(b.images, b.labels, strict=True)}
    assert any(not np.array_equal(first[k], second[k]) for k in first.keys() & second.keys())
    # another run seed: other pixels for the same lines
    reseeded = _batches(replace(cfg, seed=1), 0, 5)
    pix = {lab: x for b in reseeded for x, lab in zip(b.images, b.labels, strict=True)}
    assert sum(not np.array_equal(first[k], pix[k]) for k in first.keys() & pix.keys()) >= 0.9 * len(pix)


def test_validation_reads_the_stored_pixels(lmdb_dir, tmp_path):
    cfg = _cfg(tmp_path, lmdb_dir)
    assert cfg.train.augment.enabled
    charset = load_charset(cfg.charset)
    val = validation_set(cfg, charset)
    stored = _stored(lmdb_dir, cfg, charset)
    for i in range(len(val)):
        it = val[i]
        assert any(s.shape == it.x.shape and np.array_equal(s, it.x) for s in stored[it.label])
    # and with augmentation off, training reads the stored pixels too (the default changes nothing)
    off = _batches(_cfg(tmp_path, lmdb_dir, "train.augment.enabled=false"), 0, 1)[0]
    for x, w, lab in zip(off.images, off.widths, off.labels, strict=True):
        x = x[:, :, : int(w)].numpy()
        assert any(s.shape == x.shape and np.array_equal(s, x) for s in stored[lab])


def _marks(h: int = 32, w: int = 200) -> np.ndarray:
    """Paper with five ink blobs: one in each corner, touching two edges, and a bar in the middle."""
    img = np.full((h, w), 230, np.uint8)
    for y, x in ((0, 0), (0, w - 5), (h - 5, 0), (h - 5, w - 5)):
        img[y : y + 5, x : x + 5] = 20
    img[8:24, 90:110] = 20
    return img


def test_geometry_never_cuts_ink_and_crop_may_touch_it():
    ops = {k: AugOp(0.0, v.range) for k, v in default_ops().items()}
    for name in ("stretch", "distort", "perspective", "rotate"):
        ops[name] = AugOp(1.0, ops[name].range)
    ops["rotate"].range = [-3.0, 3.0]
    ops["crop"] = AugOp(1.0, [0.0, 0.0])  # frame the ink exactly
    aug = LineAugmenter(AugmentConfig(enabled=True, p=1.0, ops=ops), 32, seed=0)
    img = _marks()
    for k in range(40):
        out = aug(img, (0, k))
        ink = (out < 125).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(ink)
        assert n - 1 == 5, f"key {k}: {n - 1} ink blobs of 5 left"
        assert stats[1:, cv2.CC_STAT_AREA].min() >= 4, f"key {k}: a blob was cut"
        edge = out < 160  # differs from the paper by more than a third of the contrast: the ink box's rule
        assert edge[0].any() and edge[-1].any() and edge[:, 0].any() and edge[:, -1].any(), k
    wide = dict(ops, crop=AugOp(1.0, [0.3, 0.3]))  # margins of 0.3 ink heights: no ink on the border
    out = LineAugmenter(AugmentConfig(enabled=True, p=1.0, ops=wide), 32, seed=0)(img, (0, 0))
    ink = out < 160
    assert not (ink[0].any() or ink[-1].any() or ink[:, 0].any() or ink[:, -1].any())


def test_config_names_unknown_ops_and_bad_ranges():
    with pytest.raises(ConfigError, match=r"unknown op\(s\) \['sharpen'\]"):
        from_dict(AugmentConfig, {"ops": {"sharpen": {"p": 0.5, "range": [1, 2]}}})
    with pytest.raises(ConfigError, match=r"ops\.blur\.range must be \[low, high\]"):
        from_dict(AugmentConfig, {"ops": {"blur": {"p": 0.5, "range": [2.0]}}})


def test_tiny_training_run_with_augmentation(lmdb_dir, tmp_path):
    cfg = _cfg(
        tmp_path,
        lmdb_dir,
        "train.keep_heap=false",
        "train.max_steps=3",
        "train.val_every=3",
        "train.val_max_lines=8",
        "train.num_workers=1",
    )
    s = train(cfg)
    assert s["steps"] == 3 and s["labels"]["kept"] == N_LINES
    assert np.isfinite(s["loss_first"]) and np.isfinite(s["loss_last"])
    assert s["final"]["val"]["overall"]["n"] == 8
