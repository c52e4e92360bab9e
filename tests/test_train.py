"""Training on real LMDBs: overfit (the chain fixture's CLI run), kill-and-resume, fine-tune, MLflow."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import replace

import pytest
import torch

from crnn.charset import load_charset
from crnn.data.dataset import SynthBatchStream
from crnn.data.preprocess import InputSpec
from crnn.data.source import SynthSource
from crnn.lineage import sha256_file
from crnn.models.checkpoint import CheckpointError, load_checkpoint
from crnn.settings import TrainConfig
from crnn.train import train
from crnn.train_utils import (
    TrainState,
    amp_dtype_for,
    load_train_state,
    make_scheduler,
    schedule_from,
    state_path,
    train_data,
    transfer_from,
)
from tests.conftest import ROOT, compose_cfg, read_summary, run_module, signal_once_saved, tiny_overrides


def _weights(path):
    return load_checkpoint(path).state_dict


def test_the_chain_model_overfits_its_256_training_lines(chain):
    """The chain fixture's training run (the real CLI, 500 steps over the 256 tiny training lines, batch 32)
    drives the loss far down and writes a complete checkpoint."""
    s = json.loads((chain / "train" / "summary.json").read_text())
    assert s["steps"] == 500
    assert s["labels"]["kept"] == 256
    assert s["loss_first"] > 0
    assert s["loss_last"] < 0.2 * s["loss_first"], (s["loss_first"], s["loss_last"])
    ck = load_checkpoint(chain / "train" / "best.pt")
    assert ck.charset == load_charset("digits")
    assert ck.lineage["data_fingerprint"] and ck.lineage["git_commit"]
    assert set(ck.input_spec.as_dict()) >= {"height", "mean", "std"}
    raw = torch.load(chain / "train" / "best.pt", weights_only=True)
    assert raw["format"].startswith("crnn-toolkit/checkpoint")


def _train_cmd(tmp_path, name, steps, extra=()):
    return [
        sys.executable,
        "-m",
        "crnn.train",
        *tiny_overrides(tmp_path, name),
        f"train.max_steps={steps}",
        "train.save_every=5",
        "train.val_every=1000",
        *extra,
    ]


def test_kill_and_resume_matches_an_uninterrupted_run(tiny_data, tmp_path):
    data = tiny_data / "data"
    common = [f"data.root={data}", "train.warmup_steps=5", "train.ema_decay=0.9"]  # the average resumes too
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # uninterrupted reference, in this process (one thread, as the runs below): the CLI is the chain's
    train(compose_cfg(_train_cmd(tmp_path, "ref", 30, [*common, "train.keep_heap=false"])[3:]))
    # the same run, killed with SIGKILL once a checkpoint past step 10 exists, then resumed
    last = tmp_path / "runs/cut/train/last.pt"
    proc = subprocess.Popen(
        _train_cmd(tmp_path, "cut", 30, common),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                step = load_checkpoint(last).lineage["step"]
            except CheckpointError:
                step = 0
            if step >= 10:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at is not None and killed_at < 30, "the run ended before it could be killed"
    run_module("crnn.train", [*_train_cmd(tmp_path, "cut", 30, common)[3:], "train.resume=true"])
    ref, cut = _weights(tmp_path / "runs/ref/train/last.pt"), _weights(last)
    assert ref.keys() == cut.keys()
    for k in ref:
        assert torch.equal(ref[k], cut[k]), f"{k} differs after resume from step {killed_at}"
    ref_last = tmp_path / "runs/ref/train/last.pt"
    ref_ema = load_train_state(load_checkpoint(ref_last), ref_last)["ema"]["weights"]
    cut_ema = load_train_state(load_checkpoint(last), last)["ema"]["weights"]
    for k in ref_ema:
        assert torch.equal(ref_ema[k], cut_ema[k]), f"the average's {k} differs after resume from {killed_at}"
    assert load_checkpoint(last).lineage["step"] == 30
    cut_state = load_train_state(load_checkpoint(last), last)
    ref_state = load_train_state(load_checkpoint(ref_last), ref_last)
    assert cut_state["step"] == 30 and ref_state["step"] == 30
    # every line drawn counts, across the kill (skipped ones are counted apart too); from step 0 on
    batch = compose_cfg(_train_cmd(tmp_path, "ref", 30, common)[3:]).train.batch_size
    assert cut_state["lines_seen"] == ref_state["lines_seen"] == 30 * batch
    assert cut_state["lines_counted_from"] == 0
    assert load_checkpoint(last).lineage["lines_seen"] == cut_state["lines_seen"]
    # and each line is booked to the device that trained on it, with the time its steps took
    assert cut_state["devices"]["cpu"]["lines"] == ref_state["devices"]["cpu"]["lines"] == 30 * batch
    assert cut_state["devices"].keys() == {"cpu"} and cut_state["devices"]["cpu"]["seconds"] > 0
    assert cut_state["devices_counted_from"] == 0
    assert load_checkpoint(last).lineage["devices"] == cut_state["devices"]


def test_mlflow_run_records_params_metrics_and_checkpoint(tiny_data, tmp_path, monkeypatch):
    data = tiny_data / "data"
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # mlflow.set_tracking_uri exports it: undone after
    over = [o for o in tiny_overrides(tmp_path, "ml") if not o.startswith("mlflow.enabled")]
    train(
        compose_cfg(
            over + [f"data.root={data}", "train.keep_heap=false", "train.max_steps=10", "train.val_every=10"]
        )
    )
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("ml")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    r = runs[0]
    assert r.data.tags["stage"] == "train"
    assert r.data.params["cfg.model.name"] == "tiny"
    for key in ("loss", "lr", "throughput_img_s", "val_cer", "val_cer_printed", "val_cer_blurry"):
        assert key in r.data.metrics, key
    arts = [a.path for a in client.list_artifacts(r.info.run_id, "checkpoint")]
    assert arts == ["checkpoint/best.pt"]
    # a checkpoint naming a run this store does not hold (one trained on another machine): a new run
    last = tmp_path / "runs/ml/train/last.pt"
    state = load_train_state(load_checkpoint(last), last)
    torch.save(dict(state, mlflow_run_id="0123456789abcdef0123456789abcdef"), state_path(last))
    more = ["train.resume=true", "train.max_steps=12", "train.val_every=12"]
    s = train(compose_cfg(over + [f"data.root={data}", "train.keep_heap=false", *more]))
    assert s["steps"] == 12 and s["mlflow_run_id"] not in (r.info.run_id, "0123456789abcdef0123456789abcdef")
    assert client.get_run(s["mlflow_run_id"]).data.tags["continues_run"] == "0123456789abcdef0123456789abcdef"


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a crnn-toolkit checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_synthetic_stream_trains_and_is_independent_of_worker_count(tiny_data, tmp_path):
    cfg = compose_cfg(
        tiny_overrides(tmp_path) + ["data.train=synth", "train.batch_size=4", "train.stream_pool=3"]
    )
    charset = load_charset(cfg.charset)

    def first_batches(workers: int, start: int, n: int = 5) -> list:
        with_workers = replace(cfg, train=replace(cfg.train, num_workers=workers))
        data = train_data(with_workers, charset, cfg.model.hstride, start)
        with closing(data.batches(start)) as batches:
            return [next(batches) for _ in range(n)]

    alone, shared = first_batches(0, 2), first_batches(2, 2)  # from step 2: pools cut mid-way
    for a, b in zip(alone, shared, strict=True):
        assert a.labels == b.labels
        assert torch.equal(a.images, b.images) and torch.equal(a.widths, b.widths)
    assert len({tuple(b.labels) for b in alone}) == 5  # five different batches, not one repeated

    def factory():
        return SynthSource(cfg.corpus, cfg.render, load_charset(cfg.charset), seed=9)

    s = SynthBatchStream(factory, InputSpec(), batch_size=4, start_step=3)
    b3 = s.batch_items(3)
    again = SynthBatchStream(factory, InputSpec(), batch_size=4).batch_items(3)
    assert [i.label for i in b3] == [i.label for i in again]
    lengths = [len(i.label) for i in b3]
    assert max(lengths) - min(lengths) <= max(6, max(lengths) // 2)  # one target length per batch
    # pooled: the lines of batches 4..7 regrouped by width, each batch a pure function of its index
    pooled = SynthBatchStream(factory, InputSpec(), batch_size=4, pool_batches=4)
    got = [pooled.batch_items(g) for g in (5, 4, 7, 6)]
    fresh = SynthBatchStream(factory, InputSpec(), batch_size=4, pool_batches=4).batch_items(7)
    assert [i.label for i in fresh] == [i.label for i in got[2]]
    raw = [it.label for g in range(4, 8) for it in s.raw_batch(g)]
    assert sorted(it.label for b in got for it in b) == sorted(raw)  # the same lines, none lost or repeated
    for b in got:
        w = [it.x.shape[-1] for it in b]
        assert w == sorted(w)
    spans = sorted((b[0].x.shape[-1], b[-1].x.shape[-1]) for b in got)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # batches do not overlap in width
    data = tiny_data / "data"
    over = tiny_overrides(tmp_path, "stream") + [
        f"data.root={data}",
        "data.train=synth",
        "train.keep_heap=false",
        "train.max_steps=6",
        "train.val_every=6",
        "train.num_workers=2",
        "train.stream_pool=3",
    ]
    assert train(compose_cfg(over))["steps"] == 6
    assert read_summary(tmp_path, "stream")["steps"] == 6


def _train_in_process(tmp_path, name, data, extra=()):
    over = tiny_overrides(tmp_path, name) + [
        f"data.root={data}",
        "train.keep_heap=false",
        "train.max_steps=2",
        "train.val_every=2",
        "train.val_max_lines=4",
        *extra,
    ]
    return train(compose_cfg(over))


def test_resume_refuses_a_checkpoint_with_another_input_spec(tiny_data, tmp_path):
    data = tiny_data / "data"
    _train_in_process(tmp_path, "spec", data)
    with pytest.raises(ValueError, match=r"input\.mean: checkpoint 0\.5, config 0\.4") as e:
        _train_in_process(
            tmp_path, "spec", data, ["train.resume=true", "train.max_steps=4", "input.mean=0.4"]
        )
    assert "last.pt" in str(e.value)
    with pytest.raises(ValueError, match=r"model\.hstride: checkpoint 4, config 8"):
        _train_in_process(
            tmp_path, "spec", data, ["train.resume=true", "train.max_steps=4", "model.hstride=8"]
        )
    s = _train_in_process(
        tmp_path, "spec", data, ["train.resume=true", "train.max_steps=4"]
    )  # unchanged: goes on
    assert s["steps"] == 4


def test_the_weights_find_their_own_state_and_resume_alone_without_one(tiny_data, tmp_path, capsys):
    """last.pt holds the weights, last.state.pt the optimizer / RNG state. A kill after the new state was
    written but before the new weights leaves them of different steps: the state kept from before the save
    is the one that belongs. Weights with no state of their step resume alone, at their step."""
    data = tiny_data / "data"
    _train_in_process(tmp_path, "st", data, ["train.max_steps=4", "train.save_every=2", "train.val_every=4"])
    last = tmp_path / "runs/st/train/last.pt"
    ck = load_checkpoint(last)
    assert ck.train_state is None and load_train_state(ck, last)["step"] == 4
    assert not state_path(last, previous=True).exists()
    shutil.copyfile(state_path(last), state_path(last, previous=True))
    torch.save(dict(load_train_state(ck, last), step=6), state_path(last))  # the next save's state
    assert load_train_state(ck, last)["step"] == 4
    state_path(last, previous=True).unlink()
    assert load_train_state(ck, last) is None
    seen_at_4 = ck.lineage["lines_seen"]
    assert seen_at_4 > 0
    s = _train_in_process(tmp_path, "st", data, ["train.resume=true", "train.max_steps=6"])
    assert "weights only: resuming at step 4" in capsys.readouterr().out
    assert s["steps"] == 6 and load_train_state(load_checkpoint(last), last)["step"] == 6
    assert load_train_state(load_checkpoint(last), last)["rewarm_from"] == 4  # kept for the next resume
    # the weights carry the count: two more steps of the same batches add to it
    assert s["lines_seen"] == seen_at_4 * 6 // 4 and s["lines_counted_from"] == 0
    assert s["devices"]["cpu"]["lines"] == s["lines_seen"] and s["devices_counted_from"] == 0


def test_a_run_resumed_from_a_state_without_a_line_count_counts_from_its_step(tiny_data, tmp_path):
    """States written before lines were counted: the run counts from the step it resumed at, and says so
    (the model card then names that step instead of guessing the lines before it)."""
    data = tiny_data / "data"
    _train_in_process(tmp_path, "old", data, ["train.max_steps=2", "train.save_every=2"])
    last = tmp_path / "runs/old/train/last.pt"
    ck = load_checkpoint(last)
    ts = load_train_state(ck, last)
    del ts["lines_seen"], ts["lines_counted_from"], ts["devices"], ts["devices_counted_from"]
    torch.save(ts, state_path(last))
    s = _train_in_process(tmp_path, "old", data, ["train.resume=true", "train.max_steps=4"])
    assert s["lines_counted_from"] == 2 and s["devices_counted_from"] == 2
    assert s["devices"]["cpu"]["lines"] == s["lines_seen"]
    assert 0 < s["lines_seen"] <= 2 * compose_cfg(tiny_overrides(tmp_path, "old")).train.batch_size


def test_a_weights_only_resume_warms_the_rate_up_again_into_the_schedule():
    """Fresh AdamW moments at the full rate move every weight by about the rate: the rate ramps up again
    over warmup_steps from the resumed step, then follows the schedule; a resume with state keeps the ramp."""
    t = TrainConfig(lr=1e-3, warmup_steps=10, max_steps=100)

    def lr_at(step: int, rewarm_from: int | None) -> float:
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=t.lr)
        return schedule_from(opt, t, TrainState(step=step, rewarm_from=rewarm_from)).get_last_lr()[0]

    plain = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=t.lr)
    sched = make_scheduler(plain, t)
    rates = []
    for _ in range(70):
        rates.append(sched.get_last_lr()[0])
        plain.step()
        sched.step()
    assert lr_at(50, None) == pytest.approx(rates[50])
    assert lr_at(50, 50) == pytest.approx(rates[50] / 10)
    assert lr_at(54, 50) == pytest.approx(rates[54] * 5 / 10)
    assert lr_at(59, 50) == pytest.approx(rates[59]) and lr_at(65, 50) == pytest.approx(rates[65])


def test_a_resumed_schedule_is_rebuilt_at_its_step_for_each_kind():
    """The scheduler is not saved: a resume rebuilds it from the step (restore_last leaves it alone), so the
    rate at the step must be the uninterrupted run's, for one-cycle as for cosine."""
    for kind in ("cosine", "onecycle"):
        t = TrainConfig(lr=1e-3, warmup_steps=10, max_steps=100, schedule=kind)
        plain = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=t.lr)
        sched = make_scheduler(plain, t)
        for _ in range(37):
            plain.step()
            sched.step()
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=t.lr)
        opt.load_state_dict(plain.state_dict())  # what restore_last does
        again = schedule_from(opt, t, TrainState(step=37))
        assert again.get_last_lr()[0] == pytest.approx(sched.get_last_lr()[0], rel=1e-9), kind
        for _ in range(20):
            opt.step(), plain.step(), again.step(), sched.step()
        assert again.get_last_lr()[0] == pytest.approx(sched.get_last_lr()[0], rel=1e-9), kind


def test_a_time_budget_stops_validates_and_saves(tiny_data, tmp_path):
    data = tiny_data / "data"
    over = [
        "train.max_steps=100000",
        "train.val_every=100000",
        "train.save_every=100000",
        "train.max_minutes=0.001",
    ]
    s = _train_in_process(tmp_path, "clock", data, over)
    assert s["steps"] == 5  # the first check, at the first log step (train.log_every=5)
    assert s["final"]["val"]["overall"]["n"] > 0 and s["best_step"] == 5
    assert load_checkpoint(tmp_path / "runs/clock/train/last.pt").lineage["step"] == 5
    assert [c[0] for c in s["loss_curve"]] == [5]


@pytest.mark.parametrize("how", ["ctrl-c to the group", "kill to the process"])
def test_a_signal_stops_the_run_politely_and_it_can_be_judged(tiny_data, tmp_path, how):
    """Ctrl-C (SIGINT to the whole group, loader workers too) or `kill` (SIGTERM): the run validates, saves
    last.pt and writes summary.json at its next check, as when its time budget runs out; exit 128+signal."""
    data = tiny_data / "data"
    extra = [
        f"data.root={data}",
        "train.val_every=100000",
        "train.val_max_lines=8",
        "train.num_workers=1",
    ]
    last = tmp_path / "runs/sig/train/last.pt"
    group = how == "ctrl-c to the group"
    sig = signal.SIGINT if group else signal.SIGTERM
    status, out = signal_once_saved(_train_cmd(tmp_path, "sig", 100000, extra), last, sig, group)
    name = sig.name
    assert status == 128 + sig.value, out[-3000:]  # a shell sees the signal: make stops there
    assert f"{name} received: stopped at step" in out
    s = read_summary(tmp_path, "sig")
    assert s["stopped_early"] == f"{name} received"
    assert 5 <= s["steps"] < 100000 and s["steps"] % 5 == 0  # stopped at a check, the log step
    assert s["final"]["val"]["overall"]["n"] > 0
    assert load_checkpoint(last).lineage["step"] == s["steps"]
    assert (tmp_path / "runs/sig/train/best.pt").is_file()


def test_init_from_refuses_another_input_spec_but_takes_another_alphabet(tiny_data, tmp_path):
    data = tiny_data / "data"
    _train_in_process(tmp_path, "src", data)
    src_path = tmp_path / "runs/src/train/best.pt"
    src = load_checkpoint(src_path)
    init = f"train.init_from={src_path}"
    with pytest.raises(ValueError, match=r"input\.cleanup: checkpoint 'none', config 'equalize'"):
        _train_in_process(tmp_path, "ft", data, [init, "input.cleanup=equalize"])
    with pytest.raises(ValueError, match=r"input\.std: checkpoint 1\.0, config 0\.5"):
        _train_in_process(tmp_path, "ft", data, [init, "input.std=0.5"])
    # new alphabet: drops '%' and '+', adds two letters; order changed
    new = [c for c in reversed(src.charset.chars) if c not in "%+"] + ["A", "B"]
    alpha = tmp_path / "alpha.txt"
    alpha.write_text("".join(c + "\n" for c in new), encoding="utf-8")
    s = _train_in_process(
        tmp_path,
        "ft",
        data,
        [
            init,
            f"charset={alpha}",
            "train.max_steps=1",
            "train.lr=1e-12",
            "train.warmup_steps=1",
            "train.val_every=1",
        ],
    )
    ft = load_checkpoint(tmp_path / "runs/ft/train/last.pt")
    assert ft.charset.chars == tuple(new)
    assert ft.model_config.num_classes == len(new) + 1
    w_old, w_new = src.state_dict["classifier.weight"], ft.state_dict["classifier.weight"]
    for i, c in enumerate(new):
        if c in src.charset:
            j = src.charset.chars.index(c) + 1
            assert torch.allclose(w_new[i + 1], w_old[j], atol=1e-6), c
        else:  # a fresh row of its own, not a copy of any old one
            assert torch.isfinite(w_new[i + 1]).all() and w_new[i + 1].abs().sum() > 0, c
            assert not any(torch.allclose(w_new[i + 1], row, atol=1e-6) for row in w_old), c
    assert torch.allclose(w_new[0], w_old[0], atol=1e-6)  # the blank
    assert torch.allclose(
        ft.state_dict["features.0.0.weight"], src.state_dict["features.0.0.weight"], atol=1e-6
    )
    assert s["transfer"] == {"shared_chars": len(new) - 2, "new_chars": 2, "dropped_chars": 2}
    assert read_summary(tmp_path, "ft")["transfer"] == s["transfer"]
    assert ft.lineage["source_sha256"] == sha256_file(src_path)


def test_a_larger_alphabet_starts_out_reading_what_the_source_read(tiny_data):
    """v2 moved onto all of GB2312 (3,096 new characters): before its first step the fine-tuned model must
    read every line as v2 does. With fresh rows for the new characters it read validation at 184 % CER."""
    from crnn.data.dataset import LmdbLineDataset
    from crnn.inference import TorchBackend, score_dataset

    src = load_checkpoint(ROOT / "models/snapshots/crnn_zh_en_v2.pt")
    larger = load_charset("zh_en_gb2312")
    assert set(src.charset.chars) < set(larger.chars) and len(larger.chars) - len(src.charset.chars) > 3000
    moved, info = transfer_from(src, larger)
    assert info == {"shared_chars": len(src.charset.chars), "new_chars": 3096, "dropped_chars": 0}
    readings = {}
    for name, model, charset in (("v2", src.build_model(), src.charset), ("moved", moved, larger)):
        val = LmdbLineDataset([str(tiny_data / "data" / "val")], charset, src.input_spec, "skip")
        readings[name] = {}
        score_dataset(TorchBackend(model, charset, src.input_spec), val, 32, predictions=readings[name])
    assert len(readings["v2"]) > 20 and any(readings["v2"].values())
    assert readings["moved"] == readings["v2"]


def test_training_and_fine_tuning_pick_the_same_autocast_dtype():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert amp_dtype_for(TrainConfig(amp=True), cuda, bf16_supported=True) == torch.bfloat16
    assert amp_dtype_for(TrainConfig(amp=True), cuda, bf16_supported=False) == torch.float16
    assert amp_dtype_for(TrainConfig(amp=False), cuda, bf16_supported=True) is None
    assert amp_dtype_for(TrainConfig(amp=True), cpu) is None
    assert amp_dtype_for(TrainConfig(cpu_amp=True), cpu) == torch.bfloat16


def test_bf16_and_channels_last_train_on_the_cpu(tiny_data, tmp_path):
    """The CPU speed options of scripts/train_speed.py run the real loop (their speed is that script's)."""
    over = ["train.cpu_amp=true", "train.channels_last=true", "train.max_steps=3", "train.val_every=3"]
    s = _train_in_process(tmp_path, "fast", tiny_data / "data", over)
    assert s["steps"] == 3 and s["loss_first"] > 0 and s["final"]["val"]["overall"]["n"] > 0
    assert (
        load_checkpoint(tmp_path / "runs/fast/train/best.pt").state_dict["features.0.0.weight"].dtype
        == torch.float32
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="autocast dtypes need a CUDA device")
def test_finetune_autocasts_with_the_configured_dtype(tiny_data, tmp_path, monkeypatch):
    """On a GPU without bfloat16 training autocasts to float16; fine-tuning must too (it forced bfloat16)."""
    from crnn.models.config import ModelConfig
    from crnn.models.crnn import CRNN
    from crnn.train import finetune

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    cfg = compose_cfg(tiny_overrides(tmp_path) + [f"data.root={tiny_data / 'data'}", "train.device=cuda"])
    model = CRNN(ModelConfig(**{**cfg.model.as_dict(), "num_classes": load_charset(cfg.charset).num_classes}))
    model.cuda()
    seen = []
    model.classifier.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    finetune(model, cfg, 2, 1e-4, "ft")
    assert seen and set(seen) == {torch.float16}


def test_the_weights_moving_average_updates_as_its_formula_says():
    from crnn.ema import WeightEma

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    ema = WeightEma(model, 0.75)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(2.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    now = model.state_dict()
    for k, v in ema.model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.75 * start[k] + 0.25 * now[k])
        else:
            assert torch.equal(v, now[k])
    assert not any(p.requires_grad for p in ema.model.parameters())
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="ema_decay"):
            WeightEma(model, bad)


def test_a_resume_that_turns_the_moving_average_off_or_changes_its_decay_says_so():
    from crnn.ema import WeightEma
    from crnn.train import moving_average

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    saved = {"decay": 0.9, "weights": WeightEma(model, 0.9).model.state_dict()}
    said: list[str] = []
    state = TrainState(step=10, best_cer=0.2, ema=dict(saved))
    assert moving_average(model, 0.0, state, said.append) is None
    assert state.ema is None and "moving average is dropped" in said[-1]
    state = TrainState(step=10, ema=dict(saved))
    ema = moving_average(model, 0.99, state, said.append)
    assert ema is not None and ema.decay == 0.99 and state.ema is None
    assert "kept with decay 0.9, goes on with 0.99" in said[-1]


def test_with_a_moving_average_validation_best_pt_and_snapshots_read_the_average(
    tiny_data, tmp_path, capsys, monkeypatch
):
    """The trained weights go on in last.pt (a resume continues them); the average is what is scored first,
    kept in best.pt and snapshot, and its own CER is the one best.pt is chosen by."""
    import crnn.train as training

    scored, real_evaluate = [], training.evaluate

    def spy(model, *args, **kwargs):  # the real evaluation, noting which weights it read
        scored.append({n: v.detach().clone() for n, v in model.state_dict().items()})
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(training, "evaluate", spy)
    data = tiny_data / "data"
    over = ["train.max_steps=6", "train.val_every=3", "train.save_every=3", "train.ema_decay=0.5"]
    s = _train_in_process(tmp_path, "ema", data, over)
    assert "(trained weights " in capsys.readouterr().out and s["final"]["val_raw_cer"] >= 0
    last, best = tmp_path / "runs/ema/train/last.pt", tmp_path / "runs/ema/train/best.pt"
    state = load_train_state(load_checkpoint(last), last)
    assert state["ema"]["decay"] == 0.5
    averaged, trained = state["ema"]["weights"], load_checkpoint(last).state_dict
    k = next(n for n, v in trained.items() if v.is_floating_point())
    assert not torch.equal(averaged[k], trained[k])

    def same(a: dict, b: dict) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)

    assert len(scored) == 4  # steps 3 and 6: the average, then the trained weights
    assert same(scored[2], averaged) and same(scored[3], trained)
    b = load_checkpoint(best)
    assert b.lineage["ema_decay"] == 0.5 and s["best_step"] in (3, 6)
    assert same(b.state_dict, scored[0] if s["best_step"] == 3 else scored[2])
    snap = tmp_path / "snap.pt"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/snapshot.py"), str(last), str(snap)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "moving average" in proc.stdout, proc.stderr
    sn = load_checkpoint(snap)
    assert sn.lineage["ema_decay"] == 0.5 and sn.lineage["step"] == 6
    torch.testing.assert_close(sn.state_dict[k], averaged[k].half())
