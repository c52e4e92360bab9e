import json
import subprocess
import sys

import cv2
import lmdb
import numpy as np
import pytest

from crnn.charset import Charset
from crnn.data.dataset import Collate, LmdbLineDataset
from crnn.data.lmdb_io import LmdbFormatError, LmdbReader, LmdbWriter, encode_image
from crnn.data.preprocess import InputSpec
from tests.conftest import ROOT


def _line(w: int = 60) -> np.ndarray:
    img = np.full((32, w), 230, np.uint8)
    cv2.putText(img, "12", (4, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 20, 2)
    return img


def test_round_trip_with_a_corrupt_entry(tmp_path):
    path = tmp_path / "db"
    with LmdbWriter(path) as w:
        w.add(encode_image(_line()), "12", scene="printed", width=60)
        w.add(b"\x89PNG\r\n\x1a\n garbage", "34", scene="blurry", width=60)  # corrupt image
        w.add(encode_image(_line(90)), "5a6", scene="signboard")  # label outside the alphabet
        w.add(encode_image(_line(80)), "78", scene="handwritten", width=80)
    r = LmdbReader(path)
    assert len(r) == 4
    assert r.labels() == ["12", "34", "5a6", "78"]
    assert r.scenes() == ["printed", "blurry", "signboard", "handwritten"]
    assert r.read(1).image.shape == (32, 60) and r.read(2).image is None

    cs = Charset.from_string("0123456789")
    ds = LmdbLineDataset([str(path)], cs, InputSpec(), oov_policy="skip")
    assert len(ds) == 3 and ds.label_stats.skipped_oov == 1
    batch = Collate(cs, hstride=4)([ds[i] for i in range(len(ds))])
    assert batch.labels == ["12", "78"] and batch.skipped["corrupt"] == 1
    assert batch.images.shape[0] == 2 and batch.target_lengths.tolist() == [2, 2]


def test_too_long_labels_are_skipped_and_counted(tmp_path):
    path = tmp_path / "db"
    with LmdbWriter(path) as w:
        w.add(encode_image(_line(20)), "1111111", width=20)  # 5 frames cannot hold 7 repeated digits
        w.add(encode_image(_line(60)), "12", width=60)
    cs = Charset.from_string("0123456789")
    ds = LmdbLineDataset([str(path)], cs, InputSpec())
    batch = Collate(cs, hstride=4)([ds[0], ds[1]])
    assert batch.labels == ["12"] and batch.skipped["too_long"] == 1


def test_foreign_or_broken_lmdb_is_named(tmp_path):
    with pytest.raises(LmdbFormatError, match="not an LMDB"):
        LmdbReader(tmp_path)
    env = lmdb.open(str(tmp_path / "x"))
    with env.begin(write=True) as txn:
        txn.put(b"image-000000001", b"")
    env.close()
    with pytest.raises(LmdbFormatError, match="num-samples"):
        LmdbReader(tmp_path / "x")


def test_make_lmdb_on_a_folder_with_broken_files(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), _line())
    cv2.imwrite(str(root / "b.jpg"), _line(80))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.png").write_text("<svg></svg>")
    lines = [
        "a.png\t12",
        "b.jpg\t2024-01-02",
        "broken.png\t9",
        "empty.jpg\t8",
        "text.png\t7",
        "missing.png\t6",
        "no tab here",
        "\t5",
        "../outside.png\t4",
        "a.png\t",
    ]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "db"
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/make_lmdb.py",
            "--root",
            str(root),
            "--list",
            str(tmp_path / "list.txt"),
            "--out",
            str(out),
            "--scene",
            "printed",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    s = json.loads((out / "import_summary.json").read_text())
    assert s["lines"] == 10 and s["written"] == 2
    assert s["unreadable_image"] == 3 and s["missing_file"] == 1 and s["bad_line"] == 4
    r = LmdbReader(out)
    assert r.labels() == ["12", "2024-01-02"] and r.scenes() == ["printed", "printed"]
    assert r.widths() == [60, 80]


def test_one_lmdb_per_scene_takes_the_folder_name(tmp_path):
    path = tmp_path / "blurry"
    with LmdbWriter(path) as w:
        w.add(encode_image(_line()), "12")  # no scene- key, as other tools write them
    ds = LmdbLineDataset([str(path)], Charset.from_string("0123456789"), InputSpec(), default_scene="blurry")
    assert ds.scenes() == ["blurry"]
