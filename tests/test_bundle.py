"""The offline training bundle, for real: built by its CLI (wheels from PyPI, fonts cut by fontTools),
unpacked elsewhere, trained 20 steps by its train.sh under a fresh interpreter that has only PyTorch,
NumPy, OpenCV and Pillow, then continued at home from what it brought back, in the same MLflow run."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crnn.models.checkpoint import load_checkpoint, sha256_file
from crnn.train_utils import load_train_state
from tests.conftest import ROOT, compose_cfg, run_module, tiny_overrides

# Latin fonts only: cutting the CJK fonts to the digits would cost minutes of fontTools parsing
FONTS = [
    "render.scenes.printed.fonts=[dejavu_sans,liberation_serif]",
    "render.scenes.signboard.fonts=[dejavu_sans_bold]",
    "render.scenes.handwritten.fonts=[comic_neue]",
    "render.scenes.blurry.fonts=[liberation_sans]",
]
MiB = 2**20


def only_torch_numpy_opencv_pillow(tmp: Path) -> Path:
    """A new venv (no pip, no site-packages of ours) that sees PyTorch (with what it requires), NumPy,
    OpenCV and Pillow only, through symbolic links to their installed files: what a bare GPU box has."""
    shim = tmp / "shim"
    shim.mkdir()
    todo, seen = ["torch", "numpy", "opencv-python-headless", "opencv-python", "pillow"], set()
    while todo:
        try:
            dist = md.distribution(todo.pop())
        except md.PackageNotFoundError:
            continue
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name in seen:
            continue
        seen.add(name)
        todo += [
            re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0] for r in dist.requires or [] if "extra ==" not in r
        ]
        base = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            wanted = not top.startswith("..") and top != "__pycache__" and (base / top).exists()
            if wanted and not (shim / top).exists():
                os.symlink(base / top, shim / top)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "shim.pth").write_text(str(shim) + "\n")
    return venv / "bin" / "python"


def mlflow_history(tmp: Path, run_id: str, key: str) -> list[int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlruns/mlflow.db")
    return sorted(m.step for m in client.get_metric_history(run_id, key))


@pytest.mark.slow
def test_bundle_trains_without_our_packages_and_the_run_continues_at_home(tiny_data, tmp_path):
    common = tiny_overrides(tmp_path, "b") + [f"data.root={tiny_data / 'data'}", "data.train=synth", *FONTS]
    common = [a for a in common if not a.startswith("mlflow.enabled")] + ["mlflow.enabled=true"]
    # at home: 4 steps, an MLflow run, last.pt
    run_module("crnn.train", common + ["train.max_steps=4", "train.val_every=4"])
    home = tmp_path / "runs/b/train"
    first = json.loads((home / "summary.json").read_text())
    assert first["mlflow_run_id"]

    # the bundle, unpacked somewhere else
    made = tmp_path / "made"
    # the run there also learns from a teacher (here the run's own best.pt), which travels with it
    teach = ["train.distill.weight=0.5", f"train.distill.teacher={home / 'best.pt'}"]
    teacher_sha = sha256_file(home / "best.pt")
    out = run_module("crnn.bundle", common + teach + [f"+out={made}", f"+resume={home / 'last.pt'}"]).stdout
    assert "MiB" in out
    manifest = json.loads((made / "manifest.json").read_text())
    assert manifest["size_bytes"] < 48 * MiB
    assert manifest["checkpoint"]["step"] == 4 and manifest["checkpoint"]["optimizer_state"]
    assert manifest["teacher"]["as"] == "init/teacher_best.pt"
    assert "train.distill.teacher=init/teacher_best.pt" in manifest["overrides"]
    assert sorted(manifest["fonts"]) == [
        "comic_neue",
        "dejavu_sans",
        "dejavu_sans_bold",
        "liberation_sans",
        "liberation_serif",
    ]
    wheels = " ".join(manifest["wheels"])
    for needed in ("hydra_core", "omegaconf", "lmdb", "editdistance", "faker", "antlr4"):
        assert needed in wheels.lower()
    assert "cp312" in wheels and "torch" not in wheels and "numpy" not in wheels
    there = tmp_path / "elsewhere"
    shutil.copytree(made, there)
    shutil.rmtree(made)  # nothing may point back into the folder it was made in

    python = only_torch_numpy_opencv_pillow(tmp_path)
    bare = subprocess.run([str(python), "-c", "import hydra"], capture_output=True)
    assert bare.returncode != 0, "the fresh interpreter must not see our environment's packages"
    env = dict(os.environ, PYTHON=str(python), BATCH="16", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        ["./train.sh", "10", "train.max_steps=24", "train.threads=1", "train.val_every=24"],
        cwd=there,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "packages installed" in proc.stdout and "5 fonts unpacked" in proc.stdout
    assert "loss curve" in proc.stdout and "img/s" in proc.stdout
    back = there / "runs/b/train"
    for f in ("last.pt", "last.state.pt", "best.pt"):
        assert (back / f).stat().st_size < 16 * MiB
    ck = load_checkpoint(back / "last.pt")
    assert ck.lineage["step"] == 24 and ck.train_state is None
    assert load_train_state(ck, back / "last.pt")["mlflow_run_id"] == first["mlflow_run_id"]
    assert ck.lineage["git_commit"] == (there / "COMMIT").read_text().strip()
    assert ck.lineage["teacher"] == "init/teacher_best.pt" and ck.lineage["teacher_sha256"] == teacher_sha
    records = [json.loads(line) for line in (back / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["step"] is not None]  # run totals (best_val_cer) have none
    assert max(steps) == 24 and min(steps) > 4

    # at home again: the run continues from what came back, in its MLflow run, with the bundle's metrics
    run_module(
        "crnn.train",
        common
        + ["train.max_steps=28", "train.val_every=28", "train.resume=true", f"train.resume_from={back}"],
    )
    again = json.loads((home / "summary.json").read_text())
    assert again["steps"] == 28 and again["mlflow_run_id"] == first["mlflow_run_id"]
    losses = mlflow_history(tmp_path, first["mlflow_run_id"], "loss")
    assert any(4 < s <= 24 for s in losses) and max(losses) == 28 and min(losses) <= 4
    # resuming from the same folder again (its step 24, so 25..28 are trained again) imports nothing twice
    run_module(
        "crnn.train", common + ["train.max_steps=28", "train.resume=true", f"train.resume_from={back}"]
    )
    imported = [s for s in mlflow_history(tmp_path, first["mlflow_run_id"], "loss") if 4 < s <= 24]
    assert imported == [s for s in losses if 4 < s <= 24]


def test_wheel_installer_picks_the_wheel_of_this_python(tmp_path):
    sys.path.insert(0, str(ROOT / "crnn" / "bundle_files"))
    try:
        from unpack import fits
    finally:
        sys.path.pop(0)
    me = f"cp{sys.version_info.major}{sys.version_info.minor}"
    other = "cp39" if me != "cp39" else "cp310"
    assert fits("hydra_core-1.3.8-py3-none-any.whl")
    assert fits(f"lmdb-3.0.0-{me}-{me}-manylinux2014_x86_64.manylinux_2_17_x86_64.whl")
    assert not fits(f"lmdb-3.0.0-{other}-{other}-manylinux2014_x86_64.whl")
    assert not fits(f"lmdb-3.0.0-{me}-{me}-win_amd64.whl")
    assert fits("thing-1.0-cp38-abi3-manylinux2014_x86_64.whl")


def test_the_word_list_file_gives_the_lines_wordfreq_gives(tmp_path):
    from dataclasses import replace

    from crnn.charset import load_charset
    from crnn.data.corpus import Corpus, write_vocab
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["experiment=zh_en", "corpus.vocab_size=5000"])
    charset = load_charset(cfg.charset)
    path = tmp_path / "vocab.json.gz"
    assert write_vocab(path, cfg.corpus, charset) == 10000
    from_file = Corpus(replace(cfg.corpus, vocab_file=str(path)), charset, seed=3)
    from_wordfreq = Corpus(cfg.corpus, charset, seed=3)
    assert [from_file.line(i) for i in range(200)] == [from_wordfreq.line(i) for i in range(200)]
    more = Corpus(replace(cfg.corpus, vocab_file=str(path), vocab_size=6000), charset, seed=3)
    with pytest.raises(ValueError, match="fewer words"):
        [more.line(i) for i in range(50)]


def test_a_resumed_run_keeps_its_source_hash_without_reading_init_from_again(tmp_path):
    """A bundle resumes zh_en_v2 without v1's file (train.init_from): lineage comes from the checkpoint."""
    from crnn.train_utils import lineage_for

    ck = load_checkpoint(ROOT / "models/snapshots/crnn_zh_en_v2.pt")
    cfg = compose_cfg(["experiment=zh_en_v2", "data.train=synth", f"train.init_from={tmp_path}/gone.pt"])
    assert lineage_for(cfg, ck)["source_sha256"] == ck.lineage["source_sha256"] != ""
    with pytest.raises(FileNotFoundError):
        lineage_for(cfg)  # a new run does read it


def test_the_detector_travels_with_its_checkpoint_and_only_with_the_fonts_it_draws_with(
    tmp_path, monkeypatch
):
    from crnn.bundle import BundleError, add_detector, bundled_fonts

    det_cfg = compose_cfg(["experiment=det_zh_en"])
    fonts = {f: {"path": f"fonts/{f}.ttf"} for f in bundled_fonts(det_cfg)}
    src = ROOT / "models/snapshots/det_zh_en.pt"
    overrides, info = add_detector("det_zh_en", str(src), tmp_path, fonts, {"p.jpg": "photos/p.jpg"})
    copied = tmp_path / "runs/det_zh_en/detect/train/last.pt"
    assert copied.read_bytes() == src.read_bytes()
    step = torch.load(src, weights_only=True)["lineage"]["step"]
    assert info["checkpoint"]["step"] == step > 0 and not info["checkpoint"]["optimizer_state"]
    assert (tmp_path / "detect_overrides.txt").read_text().split() == overrides
    assert "experiment=det_zh_en" in overrides and "detect.train.resume=true" in overrides

    assert "detect.train.init_from=null" in overrides  # a resumed run reads no other weights

    # a decay branch not started yet (none here, whatever this checkout's runs/ holds): the weights it starts
    # from travel with it, under the bundle's root
    monkeypatch.setattr("crnn.detect.train.out_dir", lambda cfg: tmp_path / "nowhere")
    overrides, info = add_detector(
        "det_zh_en_wide_decay", "", tmp_path / "d", fonts, {"p.jpg": "photos/p.jpg"}
    )
    init = compose_cfg(["experiment=det_zh_en_wide_decay"]).detect.train.init_from
    assert info["checkpoint"] == {} and f"detect.train.init_from={info['init_from']['as']}" in overrides
    assert (tmp_path / "d" / info["init_from"]["as"]).read_bytes() == (ROOT / init).read_bytes()

    fewer = dict(list(fonts.items())[1:])
    with pytest.raises(BundleError, match="lacks"):
        add_detector("det_zh_en", str(src), tmp_path / "b", fewer, {"p.jpg": "photos/p.jpg"})
    with pytest.raises(BundleError, match="photographs"):
        add_detector("det_zh_en", str(src), tmp_path / "c", fonts, {})


def test_a_bundle_carries_the_faces_of_plate_letters_and_digits():
    """Plates draw their letters and digits in `serial_fonts`, a list of its own: a face only there must
    travel too, or the bundle's machine drops it and renders other plates than this machine for a seed."""
    from crnn.bundle import bundled_fonts

    cfg = compose_cfg(["experiment=zh_en_v2"])
    serial = set(cfg.render.scenes["plate"].serial_fonts)
    only_serial = serial - {f for s in cfg.render.scenes.values() for f in s.fonts}
    assert only_serial  # routed_gothic_narrow: otherwise this test would not tell
    assert serial <= set(bundled_fonts(cfg))


def test_a_bundle_carries_the_needle_faces_a_recipe_prints_with_and_they_unpack_whole(tmp_path):
    """A needle face (an X11 bitmap font) cannot be subset by fontTools: it travels whole, only when a scene
    prints with it (needle_p > 0), and unpacks to the file the renderer reads on the bundle's machine."""
    import gzip
    import importlib.util

    from crnn.bundle import bundle_fonts, bundled_fonts
    from crnn.charset import load_charset
    from crnn.data.fonts import font_coverage

    plain = compose_cfg(["experiment=zh_en_v2"])
    needles = set(plain.render.scenes["receipt"].needle_fonts)
    assert needles and not needles & set(bundled_fonts(plain))  # needle_p 0: they stay home
    cfg = compose_cfg(["experiment=zh_en_v2_needles"])
    installed = {f for f in needles if Path(cfg.render.fonts[f]["path"]).is_file()}
    if not installed:
        pytest.skip("xfonts-base is not installed (make fonts)")
    assert installed <= set(bundled_fonts(cfg))

    name = sorted(installed)[0]
    cfg.render.scenes = {"receipt": cfg.render.scenes["receipt"]}
    cfg.render.scenes["receipt"].fonts, cfg.render.scenes["receipt"].needle_fonts = [], [name]
    moved = bundle_fonts(cfg, load_charset(cfg.charset), tmp_path)
    spec = importlib.util.spec_from_file_location("unpack", ROOT / "crnn/bundle_files/unpack.py")
    unpack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(unpack)
    assert unpack.unpack_fonts(tmp_path / "fonts") == 1
    face = tmp_path / moved[name]["path"]
    assert face.suffix == ".pcf"  # unzipped: the bundle's machine needs no gzip support in FreeType
    assert face.read_bytes() == gzip.decompress(Path(cfg.render.fonts[name]["path"]).read_bytes())
    assert font_coverage(str(face), 0) == font_coverage(cfg.render.fonts[name]["path"], 0)


def test_make_train_bundle_takes_a_detector_only_when_asked():
    """`make train-bundle EXP=...` alone bundled the served detector *file* as a detector experiment
    (DETECTOR was also the file `make serve` reads), and failed in Hydra; DETECTOR=det_zh_en still adds it."""
    env = {k: v for k, v in os.environ.items() if k not in ("DETECTOR", "PAGE_DETECTOR", "MAKEFLAGS")}

    def dry(*args: str) -> str:
        proc = subprocess.run(
            ["make", "-n", "--no-print-directory", "train-bundle", "EXP=zh_en_v2", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.replace("\\\n", " ").splitlines()  # the recipe's continued lines, joined
        return next(ln for ln in lines if "crnn.bundle" in ln)

    assert "+detector=" not in dry()
    assert "+detector=det_zh_en " in dry("DETECTOR=det_zh_en")
    serve = subprocess.run(
        ["make", "-n", "--no-print-directory", "serve"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    bundled = next(
        (
            ROOT / "models" / n
            for n in ("det_zh_en.int8.onnx", "det_zh_en.onnx")
            if (ROOT / "models" / n).is_file()
        ),
        None,
    )
    if bundled is not None:
        assert f"--detector models/{bundled.name}" in serve.stdout
