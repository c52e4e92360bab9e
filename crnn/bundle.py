"""An offline training bundle: one folder that trains an experiment's model on a machine with nothing but
Python, PyTorch, NumPy, OpenCV and Pillow (an air-gapped CUDA box), and brings the checkpoint back.

    make train-bundle EXP=zh_en [RESUME=runs/zh_en/train/last.pt] [ARGS="render=real"] [DETECTOR=det_zh_en]
    python -m crnn.bundle experiment=zh_en +out=runs/zh_en/bundle +resume=... [+detector=det_zh_en
        +detector_resume=...] [overrides]

The folder holds the `crnn` package and configs, wheels of what training imports beyond those four
(Hydra, OmegaConf, lmdb, editdistance, Faker, ...) for this Python and the target's (`+pythons=3.12,3.11`),
the fonts the scenes draw with, cut to the alphabet (fontTools subsetter), the photographs of the photo
backgrounds at the size the renderer reads them, the corpus's word list (instead of the 58 MB wordfreq
package), the validation LMDB and the checkpoint to resume. `./train.sh [minutes]` inside it installs the
wheels into a temporary folder and trains (crnn/bundle_files/train.sh says how). Everything it writes is
under runs/<name>/train/; `train.resume_from=<that folder>` continues the run at home, in its MLflow run.

`+detector=<experiment>` adds the page-mode text-line detector (crnn.detect) of that experiment: it renders
its synthetic pages with the same fonts, photographs and words, so it needs nothing more than its checkpoint;
`STAGE=detect ./train.sh MINUTES` trains it there (both at once share the machine's cores, WORKERS each).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from crnn.charset import Charset, load_charset
from crnn.data.corpus import write_vocab
from crnn.distill import load_teacher
from crnn.lineage import git_commit, sha256_file
from crnn.settings import CONFIG_DIR, RunConfig, compose_run_config
from crnn.train_utils import model_config_for

ROOT = Path(__file__).resolve().parents[1]
FILES = Path(__file__).resolve().parent / "bundle_files"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "crnn-toolkit"
# What the target machine has: these and what PyTorch itself requires are never bundled.
TARGET_HAS = {"torch", "numpy", "opencv-python", "opencv-python-headless", "pillow", "crnn-toolkit"}
# Imported only when a line needs them, so not seen by importing the training stage.
LAZY = ["faker"]
LINUX = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"]


class BundleError(RuntimeError):
    """A bundle that cannot be made as asked (a wheel not found, the folder too large, ...)."""


# ------------------------------------------------------------------------------------------------ wheels


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def needed_distributions() -> dict[str, str]:
    """{distribution: installed version} of everything `python -m crnn.train` imports that the target does
    not have, found by importing it (and composing a config) in a fresh interpreter."""
    probe = (
        "import sys, json, importlib.metadata as md\n"
        "import crnn.train\n"
        + "".join(f"import {m}\n" for m in LAZY)
        + "from crnn.settings import compose_run_config\n"
        "compose_run_config(['experiment=demo'])\n"
        "pd = md.packages_distributions()\n"
        "tops = {m.split('.')[0] for m in sys.modules}\n"
        "print(json.dumps(sorted({d for t in tops for d in pd.get(t, [])})))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    dists = json.loads(out.stdout.strip().splitlines()[-1])
    torch_reqs = {
        _normal(re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0])
        for r in md.requires("torch") or []
        if "extra ==" not in r
    }
    skip = {_normal(d) for d in TARGET_HAS} | torch_reqs
    return {d: md.version(d) for d in dists if _normal(d) not in skip}


def _pip(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
    )


def _cached(dest: Path, name: str, version: str, tag: str) -> list[Path]:
    stem = _normal(name).replace("-", "_")
    return [
        w
        for w in dest.glob("*.whl")
        if _normal(w.name.split("-")[0]).replace("-", "_") == stem
        and w.name.split("-")[1] == version
        and (tag in w.name or "none-any" in w.name)
    ]


def fetch_wheel(name: str, version: str, python: str, dest: Path) -> Path:
    """The wheel of `name==version` for CPython `python` (3.12) on x86-64 Linux: the pure one when there is
    one, else the platform's; built from the source archive when PyPI has no wheel (pure packages only)."""
    tag = "cp" + python.replace(".", "")
    have = _cached(dest, name, version, tag)
    if have:
        return have[0]
    spec = f"{name}=={version}"
    base = ["download", "--no-deps", "--only-binary=:all:", "--dest", str(dest), "--python-version", python]
    tries = [
        base + ["--implementation", "py", "--abi", "none", "--platform", "any", spec],
        base
        + ["--implementation", "cp", "--abi", tag, "--abi", "abi3", "--abi", "none"]
        + [a for p in LINUX for a in ("--platform", p)]
        + [spec],
    ]
    for args in tries:
        if _pip(args).returncode == 0 and _cached(dest, name, version, tag):
            return _cached(dest, name, version, tag)[0]
    built = _pip(["wheel", "--no-deps", "--wheel-dir", str(dest), spec])
    got = [w for w in _cached(dest, name, version, tag) if w.name.endswith("-none-any.whl")]
    if built.returncode != 0 or not got:
        raise BundleError(f"no wheel of {spec} for Python {python} on x86-64 Linux: {built.stderr[-500:]}")
    return got[0]


def bundle_wheels(out: Path, pythons: list[str]) -> list[str]:
    dists = needed_distributions()
    cache = CACHE / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    (out / "wheels").mkdir()
    names = set()
    for name, version in sorted(dists.items()):
        for py in pythons:
            w = fetch_wheel(name, version, py, cache)
            if w.name not in names:
                shutil.copy2(w, out / "wheels" / w.name)
                names.add(w.name)
    return sorted(names)


# ------------------------------------------------------------------------------------------------- fonts


def subset_font(path: str, index: int, charset: Charset, dest: Path) -> Path:
    """The font face cut to the alphabet (and the space), hinting and layout kept so that it draws the
    alphabet as the whole font does; cached by font file, face and alphabet. Written xz-compressed beside
    `dest` (train.sh unpacks it); returns the path the unpacked font will have."""
    import logging

    from fontTools import subset
    from fontTools.ttLib import TTFont

    from crnn.data.fonts import is_bitmap

    logging.getLogger("fontTools.subset").setLevel(logging.ERROR)  # "FFTM NOT subset": tables it drops

    src = Path(path)
    if is_bitmap(path):  # a needle face: a few kB of Latin-1 pixels, nothing to cut; travels as plain PCF
        return _xz_copy(src, dest.with_name(dest.name + ".pcf"))
    key = hashlib.sha256(
        f"{src.resolve()}|{src.stat().st_size}|{src.stat().st_mtime_ns}|{index}|"
        f"{charset.fingerprint()}".encode()
    ).hexdigest()[:16]
    font = TTFont(path, fontNumber=index, lazy=True)
    ext = ".otf" if "CFF " in font or "CFF2" in font else ".ttf"
    font.close()
    cached = CACHE / "fonts" / f"{key}{ext}"
    if not cached.is_file():
        opts = subset.Options()
        opts.layout_features = ["*"]
        opts.name_IDs = ["*"]
        opts.notdef_outline = True
        opts.hinting = True
        sub = subset.Subsetter(opts)
        sub.populate(text="".join(charset.chars) + " ")
        font = TTFont(path, fontNumber=index)
        sub.subset(font)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        font.save(tmp)
        os.replace(tmp, cached)
    return _xz_copy(cached, dest.with_suffix(ext))


def _xz_copy(src: Path, dest: Path) -> Path:
    """`src` (gunzipped if it is gzipped) written xz-compressed as `dest`.xz (train.sh unpacks it); returns
    `dest`."""
    import gzip

    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rb") as f, lzma.open(dest.with_name(dest.name + ".xz"), "wb", preset=6) as dst:
        shutil.copyfileobj(f, dst)  # fonts are most of a bundle's bytes; xz takes 40 % off CJK ones
    return dest


def bundled_fonts(cfg: RunConfig) -> list[str]:
    """The fonts training draws with: every scene's (its plates' letter and digit faces too, and the needle
    faces of a scene that prints with them), less the ones the train split keeps out."""
    split = cfg.data.splits.get("train")
    excluded = set(split.exclude_fonts) if split else set()
    used = {
        f
        for s in cfg.render.scenes.values()
        for f in [*s.fonts, *s.serial_fonts, *(s.needle_fonts if s.needle_p > 0 else [])]
    } - excluded
    return sorted(f for f in used if Path(cfg.render.fonts[f]["path"]).is_file())


def bundle_fonts(cfg: RunConfig, charset: Charset, out: Path) -> dict[str, dict]:
    (out / "fonts").mkdir()
    moved = {}
    for name in bundled_fonts(cfg):
        spec = cfg.render.fonts[name]
        f = subset_font(spec["path"], int(spec.get("index", 0)), charset, out / "fonts" / name)
        moved[name] = {
            "path": f"fonts/{f.name}",
            "index": 0,
            "from": spec["path"],
            "face": spec.get("index", 0),
        }
    return moved


# ------------------------------------------------------------------------------------------------ photos


def photos_needed(cfg: RunConfig) -> bool:
    return any(s.backgrounds.get("photo", 0) > 0 for s in cfg.render.scenes.values())


def bundle_photos(cfg: RunConfig, out: Path) -> dict[str, str]:
    """The photographs as the renderer reads them (`read_photo`), stored gray at twice that size, so that
    its half-size decoding gives the same picture, at a fraction of the bytes."""
    import cv2

    from crnn.data.render import photo_paths, read_photo

    if not photos_needed(cfg):
        return {}
    (out / "photos").mkdir()
    moved = {}
    for path in photo_paths(cfg.render.photos):
        img = read_photo(path)
        if img is None:
            continue
        img = cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
        dest = out / "photos" / (Path(path).stem + ".jpg")
        cv2.imwrite(str(dest), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        moved[path] = f"photos/{dest.name}"
    return moved


def rewrite_render_configs(out: Path, fonts: dict[str, dict], photos: dict[str, str]) -> None:
    """configs/render/*.yaml of the bundle pointing at its own fonts and photographs (relative paths: the
    bundle trains from its own folder)."""
    for p in sorted((out / "configs" / "render").glob("*.yaml")):
        d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        for name, spec in (d.get("fonts") or {}).items():
            if name in fonts:
                spec["path"], spec["index"] = fonts[name]["path"], 0
        if d.get("photos"):
            d["photos"] = [photos.get(ph, ph) for ph in d["photos"]]
        head = f"# {p.name} of the checkout, with the paths of this bundle's fonts and photographs\n"
        p.write_text(head + yaml.safe_dump(d, allow_unicode=True, sort_keys=False), encoding="utf-8")


# -------------------------------------------------------------------------------- code, data, checkpoint


def copy_code(out: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "static")
    shutil.copytree(ROOT / "crnn", out / "crnn", ignore=ignore)
    shutil.copytree(CONFIG_DIR, out / "configs", ignore=shutil.ignore_patterns("*.md"))
    for f in ("train.sh", "unpack.py"):
        shutil.copy2(FILES / f, out / f)


def copy_val(cfg: RunConfig, out: Path) -> list[str]:
    paths = []
    for i, p in enumerate(cfg.data.val_paths()):
        if not (Path(p) / "data.mdb").is_file():
            raise BundleError(f"validation LMDB {p} does not exist: run `make data EXP=...` first")
        rel = f"data/{cfg.name}/val" + (str(i) if i else "")
        shutil.copytree(p, out / rel)
        paths.append(rel)
    return paths


def copy_checkpoint(cfg: RunConfig, resume: str, out: Path) -> dict:
    """The checkpoint to resume as runs/<name>/train/last.pt (+ last.state.pt) of the bundle; a file with
    its state inside (written before the split) is split, so that each part travels under 16 MiB."""
    from crnn.models.checkpoint import atomic_torch_save, load_checkpoint, save_checkpoint
    from crnn.train_utils import STATE_FORMAT, load_train_state, state_path

    if not resume:
        return {}
    src = Path(resume)
    ck = load_checkpoint(src)
    state = load_train_state(ck, src)
    dest = out / "runs" / cfg.name / "train" / "last.pt"
    save_checkpoint(replace(ck, train_state=None), dest)
    if state is not None:
        atomic_torch_save({"format": STATE_FORMAT, **state}, state_path(dest))
    best = src.with_name("best.pt")
    if best.is_file():
        shutil.copyfile(best, dest.with_name("best.pt"))
    return {
        "from": str(src),
        "sha256": sha256_file(src),
        "step": ck.lineage.get("step"),
        "optimizer_state": state is not None,
    }


def copy_init(path: str | None, out: Path, prefix: str = "") -> str:
    """A checkpoint the run reads besides its own (train.init_from of a new fine-tuning run, the teacher of
    train.distill) travels along as init/<prefix><file>; returns that path ("" when there is none)."""
    if not path:
        return ""
    src = Path(path)
    (out / "init").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out / "init" / f"{prefix}{src.name}")
    return f"init/{prefix}{src.name}"


def overrides_for(cfg: RunConfig, args: list[str], val: list[str]) -> list[str]:
    """The Hydra overrides train.sh runs with: the bundle's own, then the ones it was made with."""
    train_dir = f"runs/{cfg.name}/train"
    own = [
        "data.train=synth",
        f"data.val_lmdb=[{','.join(val)}]",
        "corpus.vocab_file=corpus/vocab.json.gz",
        "runs_dir=runs",
        "mlflow.enabled=false",
        f"mlflow.metrics_file={train_dir}/metrics.jsonl",
        "train.resume=true",
        "train.resume_from=null",
        "train.device=auto",
        "train.amp=true",
        "train.keep_heap=false",
        "train.save_minutes=5",
        "train.stream_pool=4",
    ]
    drop = {
        "runs_dir",
        "data.root",
        "data.val_lmdb",
        "mlflow.tracking_uri",
        "mlflow.artifact_root",
        "train.resume_from",
        "train.init_from",
        "train.distill.teacher",
    }
    return [a for a in args if a.split("=", 1)[0].lstrip("+~") not in drop] + own


def add_detector(
    experiment: str, resume: str, out: Path, fonts: dict[str, dict], photos: dict[str, str]
) -> tuple[list[str], dict]:
    """The detector of `experiment` in the bundle: its checkpoint (and optimizer state, when beside it) as
    runs/<name>/detect/train/last.pt, and the overrides `STAGE=detect ./train.sh` runs with. Its pages are
    drawn with the recognizer's fonts and photographs, which the bundle already holds; a detector that
    needs others is refused rather than trained on substitutes."""
    from crnn.detect.train import load_detector, out_dir, state_file

    cfg, _ = compose_run_config([f"experiment={experiment}"])
    missing = sorted(set(bundled_fonts(cfg)) - set(fonts))
    if photos_needed(cfg) and not photos:
        missing.append("the photographs")
    if missing:
        raise BundleError(f"detector {experiment} draws with {', '.join(missing)}, which this bundle lacks")
    src = Path(resume) if resume else out_dir(cfg)  # default: where that experiment's training left off
    src = src / "last.pt" if src.is_dir() else src
    ckpt = {}
    dest = out / "runs" / cfg.name / "detect" / "train" / "last.pt"
    if resume or src.is_file():
        _, ck = load_detector(src)  # refuses what is not a detector checkpoint
        dest.parent.mkdir(parents=True)
        shutil.copyfile(src, dest)
        if state_file(src).is_file():
            shutil.copyfile(state_file(src), state_file(dest))
        ckpt = {
            "from": str(src),
            "sha256": sha256_file(src),
            "step": ck["lineage"].get("step"),
            "optimizer_state": state_file(src).is_file(),
        }
    # a new branch (detect.train.init_from) starts there from the weights it names, which travel along;
    # a run that is resumed never reads them again
    init = copy_init(cfg.detect.train.init_from, out, "det_") if not ckpt else ""
    overrides = [
        f"experiment={experiment}",
        "corpus.vocab_file=corpus/vocab.json.gz",
        "runs_dir=runs",
        "mlflow.enabled=false",
        f"mlflow.metrics_file=runs/{cfg.name}/detect/train/metrics.jsonl",
        "detect.train.resume=true",
        "detect.train.resume_from=null",
        f"detect.train.init_from={init or 'null'}",
        "detect.train.device=auto",
        "detect.train.save_minutes=5",
    ]
    (out / "detect_overrides.txt").write_text("\n".join(overrides) + "\n", encoding="utf-8")
    info = {"experiment": experiment, "overrides": overrides, "checkpoint": ckpt}
    if init:
        info["init_from"] = {"from": cfg.detect.train.init_from, "as": init}
    return overrides, info


# ------------------------------------------------------------------------------------------------- build


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build_bundle(
    args: list[str],
    out: Path,
    resume: str,
    pythons: list[str],
    max_mib: float,
    detector: str = "",
    detector_resume: str = "",
) -> dict:
    cfg, _ = compose_run_config(args)
    charset = load_charset(cfg.charset)
    # a teacher that cannot teach this model fails here, not on the machine the bundle goes to
    cpu = torch.device("cpu")
    load_teacher(cfg.train.distill, charset, model_config_for(cfg, charset), cfg.input, cpu, "train")
    t0 = time.time()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    copy_code(out)
    fonts = bundle_fonts(cfg, charset, out)
    photos = bundle_photos(cfg, out)
    rewrite_render_configs(out, fonts, photos)
    (out / "corpus").mkdir()
    words = write_vocab(out / "corpus" / "vocab.json.gz", cfg.corpus, charset)
    val = copy_val(cfg, out)
    ckpt = copy_checkpoint(cfg, resume, out)
    init = copy_init(cfg.train.init_from, out) if not resume else ""
    teacher = copy_init(cfg.train.distill.teacher, out, "teacher_") if cfg.train.distill.weight > 0 else ""
    det = add_detector(detector, detector_resume, out, fonts, photos)[1] if detector else {}
    wheels = bundle_wheels(out, pythons)
    overrides = overrides_for(cfg, args, val) + ([f"train.init_from={init}"] if init else [])
    overrides += [f"train.distill.teacher={teacher}"] if teacher else []
    (out / "overrides.txt").write_text("\n".join(overrides) + "\n", encoding="utf-8")
    commit = git_commit()
    (out / "COMMIT").write_text(commit + "\n")
    manifest = {
        "experiment": cfg.name,
        "made_with": args,
        "overrides": overrides,
        "git_commit": commit,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "pythons": pythons,
        "wheels": wheels,
        "fonts": fonts,
        "photos": photos,
        "vocab_words": words,
        "val": val,
        "checkpoint": ckpt,
        "init_from": {"from": cfg.train.init_from, "as": init} if init else {},
        "teacher": {"from": cfg.train.distill.teacher, "as": teacher} if teacher else {},
        "detector": det,
        "build_s": round(time.time() - t0, 1),
    }
    size = folder_size(out)
    manifest["size_bytes"] = size + 4096  # the manifest itself, roughly
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    if size > max_mib * 2**20:
        raise BundleError(f"{out} is {size / 2**20:.1f} MiB, over +max_mib={max_mib}: fewer fonts or photos")
    return manifest


OWN_ARGS = ("out", "resume", "pythons", "max_mib", "detector", "detector_resume")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    own = {
        a[1:].split("=", 1)[0]: a.split("=", 1)[1]
        for a in argv
        if a.startswith("+") and "=" in a and a[1:].split("=", 1)[0] in OWN_ARGS
    }
    args = [a for a in argv if not (a.startswith("+") and a[1:].split("=", 1)[0] in OWN_ARGS)]
    cfg, _ = compose_run_config(args)
    out = Path(own.get("out") or cfg.stage_dir("bundle"))
    resume = own.get("resume", "")
    if not resume and (cfg.stage_dir("train") / "last.pt").is_file():
        resume = str(cfg.stage_dir("train") / "last.pt")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    pythons = sorted({p.strip() for p in own.get("pythons", "3.12").split(",") if p.strip()} | {here})
    try:
        m = build_bundle(
            args,
            out,
            resume,
            pythons,
            float(own.get("max_mib", 48)),
            own.get("detector", ""),
            own.get("detector_resume", ""),
        )
    except BundleError as e:
        sys.exit(f"[bundle] {e}")
    print(
        f"[bundle] {out}: {m['size_bytes'] / 2**20:.1f} MiB in {m['build_s']} s; {len(m['fonts'])} fonts, "
        f"{len(m['photos'])} photos, {len(m['wheels'])} wheels for Python {', '.join(pythons)}, "
        f"{m['vocab_words']} words, resume: {m['checkpoint'].get('from', 'none (a new run)')}"
        + (
            f"; detector {m['detector']['experiment']} from "
            f"{m['detector']['checkpoint'].get('from', 'none (a new run)')}"
            if m["detector"]
            else ""
        )
    )
    print(
        f"[bundle] there: ./train.sh MINUTES; back here: make train EXP=... "
        f'ARGS="train.resume=true train.resume_from=<bundle>/runs/{cfg.name}/train"'
    )


if __name__ == "__main__":
    main()
