"""Pruning, fusion, export and quantization on real models, real line images and real ONNX Runtime."""

import contextlib
import io
import json
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from crnn.charset import load_charset
from crnn.cli import stage_errors
from crnn.data.lmdb_io import LmdbReader
from crnn.data.preprocess import InputSpec, pad_batch, preprocess
from crnn.data.source import train_stream_source
from crnn.models.checkpoint import load_checkpoint, sha256_file
from crnn.models.complexity import count_macs
from crnn.models.crnn import CRNN, ConvBNReLU, DepthwiseSeparable, ModelConfig
from crnn.models.fuse import fuse_model, is_fused
from crnn.onnx_model import read_metadata
from crnn.prune import PruneError, conv_blocks, prune_to_widths, widths_for_target
from crnn.quantize import CalibrationReader, qualifies
from crnn.settings import PruneConfig
from tests.conftest import compose_cfg, tiny_overrides

CFG = ModelConfig(channels=[16, 32, 48, 48, 64, 64, 80], lstm_hidden=32, lstm_layers=2, num_classes=20)
MOBILE = ModelConfig(**{**CFG.as_dict(), "block": "dwsep"})


def _real_lines(tiny_data, n=12):
    r = LmdbReader(tiny_data / "data" / "val")
    return [r.read(i).image for i in range(1, n + 1)]


def _randomise_bn(model: CRNN) -> CRNN:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for b in model.modules():
            if not isinstance(b, ConvBNReLU):
                continue
            bn = b[1]
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.1)
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
    return model.eval()


@pytest.mark.parametrize("cfg", [CFG, MOBILE], ids=["conv", "dwsep"])
def test_pruning_dead_channels_changes_nothing(cfg):
    """Channels whose output is always zero carry no information: pruning exactly those must leave the
    output unchanged, which checks that the next conv's inputs (a depthwise half's channels) and the
    LSTM's columns follow."""
    torch.manual_seed(0)
    model = _randomise_bn(CRNN(cfg))
    widths = [8, 16, 40, 24, 48, 32, 56]
    with torch.no_grad():
        for b, w in zip(conv_blocks(model), widths):
            conv, bn = b[0], b[1]
            dead = torch.randperm(conv.out_channels)[: conv.out_channels - w]
            conv.weight[dead] = 0.0
            bn.bias[dead] = -1.0  # ReLU(0 * scale - 1) = 0 whatever the input
        # a dwsep model's next depthwise half turns those zeros into a constant ReLU(BN(0)) > 0 for some
        # channels (random BN): pruning must keep what that constant contributed
        if cfg.block == "dwsep":
            assert any(
                float(torch.relu(m[0][1].bias - m[0][1].running_mean * m[0][1].weight).max()) > 0.05
                for m in model.features
                if isinstance(m, DepthwiseSeparable)
            )
    pruned = prune_to_widths(model, widths, "l1").eval()
    assert pruned.cfg.block == cfg.block
    assert pruned.cfg.channels == widths
    assert pruned.rnn.weight_ih_l0.shape[1] == widths[-1]
    assert pruned.rnn.weight_ih_l0_reverse.shape[1] == widths[-1]
    for w in (16, 77, 320):
        x = torch.randn(3, 1, 32, w)
        with torch.no_grad():
            assert torch.allclose(model(x), pruned(x), atol=1e-5)


def test_widths_for_target_meets_the_macs_target():
    p = PruneConfig(target_macs_ratio=0.5, round_to=8, min_channels=8, skip_layers=[0])
    w = widths_for_target(CFG, 0.5 * count_macs(CFG), p)
    assert w[0] == CFG.channels[0]
    assert all(x % 8 == 0 and x >= 8 for x in w)
    macs = count_macs(ModelConfig(**{**CFG.as_dict(), "channels": w}))
    assert macs <= 0.5 * count_macs(CFG)
    assert macs > 0.35 * count_macs(CFG)  # the widest widths that fit, not just any
    with pytest.raises(PruneError, match="cannot be met"):
        widths_for_target(CFG, 0.01 * count_macs(CFG), p)


@pytest.mark.parametrize("cfg", [CFG, MOBILE], ids=["conv", "dwsep"])
def test_fusion_equals_the_unfused_model_on_real_lines(tiny_data, cfg):
    model = _randomise_bn(CRNN(cfg))
    fused = fuse_model(model)
    assert is_fused(fused) and not is_fused(model)
    batch, _ = pad_batch([preprocess(img, InputSpec()) for img in _real_lines(tiny_data)])
    x = torch.from_numpy(batch)
    with torch.no_grad():
        assert float((model(x) - fused(x)).abs().max()) < 1e-4


def test_pruned_checkpoint_reloads_from_its_own_config(chain):
    train_ck = load_checkpoint(chain / "train" / "best.pt")
    ck = load_checkpoint(chain / "prune" / "pruned.pt")
    report = json.loads((chain / "prune" / "report.json").read_text())
    assert ck.model_config.channels == report["after"]["channels"]
    assert ck.model_config.channels[0] == train_ck.model_config.channels[0]  # skip_layers=[0]
    assert all(c % 8 == 0 for c in ck.model_config.channels)
    assert report["macs_removed"] >= 0.4
    assert ck.lineage["source_sha256"] and ck.lineage["stage"] == "prune"
    # the fine-tuning learnt from the unpruned model (prune.distill.teacher "" = the source)
    assert (
        ck.lineage["teacher_sha256"]
        == ck.lineage["source_sha256"]
        == sha256_file(chain / "train" / "best.pt")
    )
    assert report["distill"]["teacher"] == str(chain / "train" / "best.pt")
    model = ck.build_model().eval()
    for w in (16, 200, 999):
        with torch.no_grad():
            assert model(torch.zeros(2, 1, 32, w)).shape == (2, -(-w // 4), ck.charset.num_classes)
    assert set(report["after"]["val"]["scenes"]) == {"printed", "signboard", "handwritten", "blurry"}


def test_export_metadata_checker_and_parity(chain, tiny_data):
    path = chain / "export" / "model.onnx"
    onnx.checker.check_model(onnx.load(str(path)))
    meta = read_metadata(path)
    ck = load_checkpoint(chain / "prune" / "pruned.pt")
    assert meta["charset"] == ck.charset.as_string()
    assert json.loads(meta["input_spec"]) == ck.input_spec.as_dict()
    assert json.loads(meta["model_config"])["channels"] == ck.model_config.channels
    assert json.loads(meta["lineage"])["source_sha256"]
    report = json.loads((chain / "export" / "report.json").read_text())
    assert set(report["parity"]) == {"16", "100", "700", "2000", "mixed"}
    for v in report["parity"].values():
        assert v["max_abs_diff"] < 1e-3 and v["same_decodes"] == v["lines"]
    assert report["parity"]["mixed"]["batch_invariance_max_abs_diff"] <= 1e-4
    # dynamic batch and width, against PyTorch, in this process too
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = ck.build_model().eval()
    imgs = _real_lines(tiny_data, 5)
    for bs in (1, 5):
        batch, widths = pad_batch([preprocess(im, ck.input_spec) for im in imgs[:bs]])
        out = sess.run(None, {"image": batch, "widths": widths})[0]
        with torch.no_grad():
            ref = model(torch.from_numpy(batch), torch.from_numpy(widths)).numpy()
        assert out.shape == ref.shape and np.abs(out - ref).max() < 1e-3


def test_every_quantization_candidate_runs_and_the_choice_follows_the_rule(chain):
    report = json.loads((chain / "quantize" / "report.json").read_text())
    names = [m["name"] for m in report["models"]]
    assert names == ["fp32", "dynamic_all", "dynamic_rnn", "static_qdq", "static_qdq_rnn"]
    assert report["selection_key"] == "b1_t1"
    x = np.zeros((2, 1, 32, 160), np.float32)
    widths = np.array([160, 100], np.int64)
    for m in report["models"][1:]:
        sess = ort.InferenceSession(m["path"], providers=["CPUExecutionProvider"])
        assert sess.run(None, {"image": x, "widths": widths})[0].shape[:2] == (2, 40)
        assert read_metadata(m["path"])["charset"] == load_charset("digits").as_string()
        assert m["size_bytes"] < report["models"][0]["size_bytes"]
        # the verdict recorded is the rule applied to the numbers recorded
        ok, why = qualifies(m, report["models"][0], report["cer_budget_points"], "b1_t1", 1e-4)
        assert (m["qualifies"], m["why"]) == (ok, why)
    by_name = {m["name"]: m for m in report["models"]}
    # dynamic INT8 scales activations per call, so its answers depend on the batch; static QDQ does not
    assert by_name["dynamic_rnn"]["batch_invariance_max_abs_diff"] > 1e-4
    assert by_name["static_qdq"]["batch_invariance_max_abs_diff"] <= 1e-4
    # a 500-step model's agreement depends on the CPU's 8-bit kernels: >= 95 % on AVX2 machines, 94.9 % on
    # an AVX-512 VNNI one; a broken quantization reads far less alike
    assert by_name["static_qdq"]["same_text_as_fp32"] >= 0.9
    winners = [m for m in report["models"][1:] if m["qualifies"]]
    fastest = min(winners, key=lambda m: m["latency_ms"]["b1_t1"]["p50"])["name"] if winners else None
    assert report["chosen"] == fastest
    assert (chain / "quantize" / "model.int8.onnx").is_file() == bool(fastest)
    assert (chain / "quantize" / "report.md").read_text().count("|") > 20


@dataclass
class StageResult:
    returncode: int
    stderr: str


def _stage(module: str, overrides: list[str], tmp_path) -> StageResult:
    """Run a stage in this process exactly as its command line does (config composed from the same
    overrides, errors through `stage_errors`): the exit code and what it printed to stderr."""
    import importlib

    stage = importlib.import_module(module)
    cfg = compose_cfg(overrides)
    section = {"crnn.prune": cfg.prune, "crnn.export": cfg.export, "crnn.quantize": cfg.quantize}[module]
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err):
        try:
            with stage_errors():
                stage.run(cfg, section)
        except SystemExit as e:
            code = int(e.code or 0)
    return StageResult(code, err.getvalue())


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated zip", b"not a checkpoint at all"])
def test_bad_checkpoint_gives_one_line_error_and_no_artifact(tmp_path, tiny_data, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    over = tiny_overrides(tmp_path, "bad") + [f"data.root={tiny_data / 'data'}"]
    for module, key in (("crnn.prune", "prune.source"), ("crnn.export", "export.source")):
        proc = _stage(module, over + [f"{key}={bad}"], tmp_path)
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr.strip().splitlines()
        assert err[-1].startswith("error: ") and str(bad) in err[-1] and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "bad" / "prune" / "pruned.pt").exists()
    assert not list((tmp_path / "runs" / "bad").rglob("*.onnx"))


def test_missing_and_foreign_inputs(tmp_path, tiny_data, chain):
    over = tiny_overrides(tmp_path, "bad") + [f"data.root={tiny_data / 'data'}"]
    proc = _stage("crnn.prune", over + [f"prune.source={tmp_path}/nope.pt"], tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])).SerializeToString())
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((chain / "export" / "model.onnx").read_bytes()[:500])
    for f, why in ((foreign, "not a crnn-toolkit model"), (truncated, "not a readable ONNX")):
        proc = _stage("crnn.quantize", over + [f"quantize.source={f}"], tmp_path)
        assert proc.returncode == 2 and why in proc.stderr, proc.stderr
    proc = _stage(
        "crnn.prune", over + [f"prune.source={chain}/train/best.pt", "prune.target_macs_ratio=0.99"], tmp_path
    )
    assert proc.returncode == 2 and "prune.target_macs_ratio cannot be met" in proc.stderr
    assert not (tmp_path / "runs" / "bad" / "prune" / "pruned.pt").exists()


def test_empty_calibration_set_is_an_error(tmp_path, tiny_data, chain):
    from crnn.data.lmdb_io import LmdbWriter

    with LmdbWriter(tmp_path / "empty"):
        pass
    over = tiny_overrides(tmp_path, "bad") + [
        f"data.root={tiny_data / 'data'}",
        f"quantize.source={chain}/export/model.onnx",
        f"data.train_lmdb=[{tmp_path}/empty]",
    ]
    proc = _stage("crnn.quantize", over, tmp_path)
    assert proc.returncode == 2 and "calibration set is empty" in proc.stderr, proc.stderr
    assert not (tmp_path / "runs" / "bad" / "quantize" / "model.int8.onnx").exists()


def test_synthetic_training_stream_calibrates_static_quantization():
    """`data.train=synth` runs have no training LMDB: calibration draws from the stream training saw."""
    cfg = compose_cfg(["experiment=demo", "data.train=synth"])  # the digits renderer builds in a blink
    charset = load_charset(cfg.charset)
    calib = CalibrationReader.from_synth(train_stream_source(cfg, charset), 20, cfg.input)
    batches = []
    while (b := calib.get_next()) is not None:
        batches.append(b["image"])
    assert calib.lines == 20 and sum(b.shape[0] for b in batches) == 20
    assert all(b.shape[1:3] == (1, cfg.input.height) for b in batches)
    widths = [b.shape[-1] for b in batches]
    assert widths == sorted(widths)  # grouped by width: little padding in what the calibrator sees
    calib.rewind()
    assert calib.get_next()["image"].shape == batches[0].shape


def test_export_picks_the_pruned_model_only_when_it_came_from_the_current_checkpoint(tmp_path, chain):
    """A retrain after pruning must not export the old pruned model (it records the checkpoint it came
    from); the stale pair is refused with what to do."""
    import shutil

    from crnn.export import ExportError, default_source
    from crnn.models.checkpoint import save_checkpoint

    cfg = compose_cfg(tiny_overrides(tmp_path, "stale"))
    (cfg.stage_dir("train")).mkdir(parents=True)
    (cfg.stage_dir("prune")).mkdir(parents=True)
    shutil.copyfile(chain / "prune" / "pruned.pt", cfg.stage_dir("prune") / "pruned.pt")
    shutil.copyfile(chain / "train" / "best.pt", cfg.stage_dir("train") / "best.pt")
    assert default_source(cfg) == cfg.stage_dir("prune") / "pruned.pt"
    retrained = load_checkpoint(chain / "train" / "best.pt")
    retrained.lineage["mlflow_run_id"] = "a-new-run"
    save_checkpoint(retrained, cfg.stage_dir("train") / "best.pt")
    with pytest.raises(ExportError, match="make prune"):
        default_source(cfg)
    (cfg.stage_dir("prune") / "pruned.pt").unlink()
    assert default_source(cfg) == cfg.stage_dir("train") / "best.pt"


def test_parity_forgives_a_flip_only_where_two_classes_tie():
    """ONNX Runtime and PyTorch differ by ~1e-5; where two look-alike classes are that close, either may
    win a frame. Only such frames may change a decode; a frame any wider apart fails the export."""
    from crnn.export import only_ties

    la = np.zeros((4, 5), np.float32)
    la[:, 0] = 5.0  # blank wins every frame by far
    la[2, 3], la[2, 4] = 6.0, 6.0 - 2e-5  # frame 2: classes 3 and 4 tie
    lb = la.copy()
    lb[2, 4] += 4e-5  # ONNX picks 4 at frame 2
    assert only_ties(la, lb, 1e-3)
    assert not only_ties(la, la, 1e-3)  # nothing differs: not a tie flip
    lc = la.copy()
    lc[1, 2] = 9.0  # frame 1: class 2 over the blank by 4, far outside the tolerance
    assert not only_ties(la, lc, 1e-3)
    assert not only_ties(la, lb, 1e-6)  # a tighter tolerance calls the same flip a real difference
