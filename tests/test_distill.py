"""Knowledge distillation (crnn.distill) through the real training step, on real rendered lines."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from crnn.charset import load_charset
from crnn.data.dataset import Collate, LmdbLineDataset
from crnn.distill import Teacher, distill_loss, load_teacher
from crnn.models.checkpoint import Checkpoint, save_checkpoint, sha256_file
from crnn.models.crnn import CRNN
from crnn.settings import DistillConfig
from crnn.train import batch_loss, make_optimization, train_step
from crnn.train_utils import model_config_for
from tests.conftest import compose_cfg, tiny_overrides


def test_the_distillation_loss_reads_each_lines_own_frames_only():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(3, 10, 7, generator=g)
    lengths = torch.tensor([10, 6, 3])
    assert float(distill_loss(teacher.clone(), teacher, lengths)) == pytest.approx(0.0, abs=1e-6)
    student = teacher.clone()
    student[1, 6:] = torch.randn(4, 7, generator=g)  # line 1's padding: nobody's output
    student[2, 3:] = 100.0
    assert float(distill_loss(student, teacher, lengths)) == pytest.approx(0.0, abs=1e-6)
    student[1, 2] = torch.randn(7, generator=g)  # one of line 1's own frames
    # the one frame that differs, over the 19 valid frames; at a temperature, T^2 times the softened KL
    for temp in (1.0, 2.0):
        t, s = F.log_softmax(teacher[1, 2] / temp, -1), F.log_softmax(student[1, 2] / temp, -1)
        frame = float((t.exp() * (t - s)).sum())
        assert frame > 0
        assert float(distill_loss(student, teacher, lengths, temp)) == pytest.approx(temp**2 * frame / 19)
    with pytest.raises(ValueError, match="same alphabet and frame stride"):
        distill_loss(student[:, :5], teacher, lengths)


def _kl_to(teacher: CRNN, student: CRNN, batch) -> float:
    student.eval()
    with torch.no_grad():
        kl = distill_loss(
            student(batch.images, batch.widths), teacher(batch.images, batch.widths), batch.input_lengths
        )
    student.train()
    return float(kl)


@pytest.mark.parametrize("weight", [1.0, 0.0])
def test_a_student_learns_its_teachers_distributions_and_ctc_alone_does_not(tiny_data, weight):
    """The teacher is a fresh random model, which the transcripts do not point to: only the distillation
    term can bring the student's per-frame distributions to it."""
    cfg = compose_cfg(tiny_overrides(tiny_data) + [f"data.root={tiny_data / 'data'}"])
    charset = load_charset(cfg.charset)
    torch.manual_seed(1)
    teacher = CRNN(model_config_for(cfg, charset)).eval()
    torch.manual_seed(2)
    student = CRNN(model_config_for(cfg, charset))
    lines = LmdbLineDataset([str(tiny_data / "data" / "train")], charset, cfg.input, "skip")
    collate = Collate(charset, student.cfg.hstride)
    batches = [collate([lines[i] for i in range(k, k + 16)]) for k in range(0, 64, 16)]
    held_out = collate([lines[i] for i in range(64, 96)])
    t = replace(cfg.train, lr=3e-3, warmup_steps=0, max_steps=60)
    parts = make_optimization(student, t, torch.device("cpu"), Teacher(teacher, weight, 1.0, "random", ""))
    before = _kl_to(teacher, student, held_out)
    for step in range(60):
        train_step(parts, batches[step % len(batches)])
    after = _kl_to(teacher, student, held_out)
    if weight:
        assert after < 0.3 * before, (before, after)
    else:
        assert after > 0.5 * before, (before, after)


def test_the_loss_blends_ctc_and_distillation_by_weight(tiny_data):
    cfg = compose_cfg(tiny_overrides(tiny_data) + [f"data.root={tiny_data / 'data'}"])
    charset = load_charset(cfg.charset)
    torch.manual_seed(3)
    student, teacher = (
        CRNN(model_config_for(cfg, charset)).eval(),
        CRNN(model_config_for(cfg, charset)).eval(),
    )
    lines = LmdbLineDataset([str(tiny_data / "data" / "val")], charset, cfg.input, "skip")
    batch = Collate(charset, student.cfg.hstride)([lines[i] for i in range(8)])
    losses = {}
    for w in (0.0, 0.25, 1.0):
        parts = make_optimization(student, cfg.train, torch.device("cpu"), Teacher(teacher, w, 1.0, "t", ""))
        losses[w] = float(batch_loss(parts, batch).detach())
    ctc = float(batch_loss(make_optimization(student, cfg.train, torch.device("cpu")), batch).detach())
    assert losses[0.0] == pytest.approx(ctc, rel=1e-5)
    assert losses[0.25] == pytest.approx(0.75 * ctc + 0.25 * losses[1.0], rel=1e-4)
    assert losses[1.0] != pytest.approx(ctc, rel=1e-2)


def test_a_teacher_must_read_the_students_alphabet_and_frames(tmp_path, tiny_data):
    cfg = compose_cfg(tiny_overrides(tiny_data))
    charset = load_charset(cfg.charset)
    student, spec, cpu = model_config_for(cfg, charset), cfg.input, torch.device("cpu")
    assert load_teacher(DistillConfig(), charset, student, spec, cpu, "train") is None
    with pytest.raises(ValueError, match="needs train.distill.teacher"):
        load_teacher(DistillConfig(weight=0.5), charset, student, spec, cpu, "train")
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        load_teacher(DistillConfig(weight=1.5), charset, student, spec, cpu, "train")

    def saved(cfg_overrides: list[str], name: str) -> str:
        c = compose_cfg(tiny_overrides(tiny_data) + cfg_overrides)
        cs = load_charset(c.charset)
        model = CRNN(model_config_for(c, cs))
        save_checkpoint(Checkpoint(model.cfg, model.state_dict(), cs, c.input, {}), tmp_path / name)
        return str(tmp_path / name)

    good = saved([], "good.pt")
    t = load_teacher(DistillConfig(teacher=good, weight=0.5), charset, student, spec, cpu, "train")
    assert not t.model.training and t.lineage()["teacher_sha256"] == sha256_file(good)
    assert not any(p.requires_grad for p in t.model.parameters())
    refused = (
        (["charset=zh_en"], "alphabet"),
        (["model.hstride=8"], "model.hstride"),
        (["input.mean=0.0"], "input.mean"),  # another normalisation: it would read other pixels
    )
    for overrides, what in refused:
        bad = saved(overrides, f"bad_{what}.pt")
        with pytest.raises(ValueError, match=what):
            load_teacher(DistillConfig(teacher=bad, weight=0.5), charset, student, spec, cpu, "prune")


def test_a_resumed_run_keeps_the_teacher_it_learnt_from_and_a_bundle_checks_its_teacher_first(tmp_path):
    from crnn.bundle import build_bundle
    from crnn.data.preprocess import InputSpec
    from crnn.train_utils import lineage_for

    cfg = compose_cfg(["experiment=demo", "data.train=synth"])  # no LMDB needed: a fresh clone has none
    taught = {
        "teacher": "t.pt",
        "teacher_sha256": "abc",
        "distill_weight": "0.5",
        "distill_temperature": "1.0",
    }
    model = CRNN(model_config_for(cfg, load_charset(cfg.charset)))
    ck = Checkpoint(model.cfg, {}, load_charset(cfg.charset), InputSpec(), {"source_sha256": "s", **taught})
    assert taught.items() <= lineage_for(cfg, ck).items()  # resumed without train.distill
    assert "teacher" not in lineage_for(cfg)
    gone = ["experiment=demo", "train.distill.weight=0.5", f"train.distill.teacher={tmp_path}/gone.pt"]
    with pytest.raises(Exception, match="gone.pt"):
        build_bundle(gone, tmp_path / "bundle", "", ["3.12"], 48.0)
    assert not (tmp_path / "bundle").exists()
