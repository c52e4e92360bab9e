import json

from crnn import train_utils
from crnn.data import synth
from crnn.data.lmdb_io import LmdbReader
from crnn.data.render import SCENES
from tests.conftest import compose_cfg, tiny_overrides


def test_data_stage_writes_every_scene_to_val_and_test_and_reuses(tiny_data):
    for split, n in (("train", 256), ("val", 64), ("test", 32)):
        r = LmdbReader(tiny_data / "data" / split)
        assert len(r) == n
        meta = json.loads((tiny_data / "data" / split / "meta.json").read_text())
        assert meta["complete"] and meta["num_samples"] == n
        if split != "train":
            assert sorted(set(r.scenes())) == sorted(SCENES)
            assert all(v == n // 4 for v in meta["scenes"].values())
        assert all(w is not None and w > 0 for w in r.widths())
    metas = synth.run(compose_cfg(tiny_overrides(tiny_data)))
    assert all(m.get("reused") for m in metas.values())


def test_changed_config_renders_again(tmp_path):
    over = tiny_overrides(tmp_path) + [
        "data.splits.train.size=8",
        "data.splits.val.size=4",
        "data.splits.test.size=4",
    ]
    synth.run(compose_cfg(over))
    metas = synth.run(compose_cfg(over + ["data.splits.val.seed=99"]))
    assert metas["train"].get("reused") and not metas["val"].get("reused")
    assert len(LmdbReader(tmp_path / "data" / "val")) == 4


def test_fingerprints_change_with_what_decides_the_lines(tmp_path):
    """The rendered splits' and the training stream's fingerprints follow the alphabet, the split's seed,
    its excluded fonts and its re-crop share; an unchanged config keeps them."""
    alpha = tmp_path / "alpha.txt"
    alpha.write_text("".join(c + "\n" for c in "0123456789-"), encoding="utf-8")
    base = tiny_overrides(tmp_path)

    def prints(extra: list[str]) -> tuple[str, str]:
        cfg = compose_cfg(base + ["data.train=synth", *extra])
        return synth.split_fingerprint(cfg, cfg.data.splits["train"]), train_utils.data_fingerprint(cfg)

    ref = prints([])
    assert prints([]) == ref
    for change in (
        [f"charset={alpha}"],
        ["data.splits.train.seed=99"],
        ["+data.splits.train.exclude_fonts=[noto_serif_sc]"],
        ["+data.splits.train.recrop_p=0.3"],
    ):
        split_fp, stream_fp = prints(change)
        assert split_fp != ref[0], change
        assert stream_fp != ref[1], change
    assert prints(["seed=5"])[1] != ref[1]  # the run seed moves the stream (not a rendered split)
    assert prints(["data.splits.train.size=9"])[1] == ref[1]  # an endless stream has no size
