"""Checkpoint averaging (crnn/average.py) on real checkpoints, a real git history and the real CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from crnn.average import AverageError, average
from crnn.charset import load_charset
from crnn.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, sha256_file
from crnn.models.crnn import CRNN
from crnn.train_utils import model_config_for
from tests.conftest import ROOT, compose_cfg


def _checkpoint(seed: int, step: int, overrides: list[str] | None = None, half: bool = False) -> Checkpoint:
    cfg = compose_cfg(["experiment=demo", *(overrides or [])])
    charset = load_charset(cfg.charset)
    torch.manual_seed(seed)
    model = CRNN(model_config_for(cfg, charset))
    with torch.no_grad():  # BatchNorm's statistics differ between checkpoints too, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.num_batches_tracked.fill_(step)
    sd = {k: v.half() if half and v.is_floating_point() else v for k, v in model.state_dict().items()}
    lineage = {"stage": "train", "step": step, "config_name": "demo", "mlflow_run_id": f"run{seed}"}
    return Checkpoint(model.cfg, sd, charset, cfg.input, lineage)


def test_the_average_is_the_mean_of_the_weights_and_names_every_input(tmp_path, monkeypatch):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    save_checkpoint(_checkpoint(1, 1000), a)
    save_checkpoint(_checkpoint(2, 2000), b)
    out = tmp_path / "avg" / "model.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "crnn.average", str(out), str(a), str(b)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "at steps 1,000, 2,000" in proc.stdout
    avg, ca, cb = load_checkpoint(out), load_checkpoint(a), load_checkpoint(b)
    for k, v in avg.state_dict.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (ca.state_dict[k] + cb.state_dict[k]) / 2)
        else:  # the batch counter is the newest input's, not a mean
            assert torch.equal(v, cb.state_dict[k])
    assert avg.lineage["stage"] == "average" and avg.lineage["step"] == 2000
    assert avg.lineage["mlflow_run_id"] == "run2"
    assert [i["sha256"] for i in avg.lineage["averaged"]] == [sha256_file(a), sha256_file(b)]
    assert [i["step"] for i in avg.lineage["averaged"]] == [1000, 2000]
    assert avg.train_state is None
    x = torch.rand(1, 1, avg.input_spec.height, 96)
    assert avg.build_model().eval()(x).shape == cb.build_model().eval()(x).shape
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from ship_model import average_line  # the model card names the averaged steps

    assert average_line(str(out)) == [
        f"- The weights are the uniform average of 2 checkpoints of the run, at steps 1,000, 2,000 (`{out}`, "
        "`make average`)."
    ]
    assert average_line(str(b)) == []
    assert average_line(str(out), sha256_file(out)) == average_line(str(out))
    from crnn.cli import StageError

    with pytest.raises(StageError, match="changed since it was exported"):
        average_line(str(out), sha256_file(a))  # the card would name another average's steps
    exported = sha256_file(out)
    out.write_bytes(b.read_bytes())  # the average replaced by plain weights after its export
    with pytest.raises(StageError, match="changed since it was exported"):
        average_line(str(out), exported)  # not silently an unaveraged card
    out.unlink()
    with pytest.raises(StageError, match="gone or changed"):
        average_line(str(out), exported)


def test_an_input_replaced_by_a_later_commit_is_read_from_git_history(tmp_path):
    """models/snapshots/ keeps one file per run: the step a later commit replaced is `<commit>:<path>`."""
    repo = tmp_path / "repo"
    (repo / "snap").mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    old = _checkpoint(1, 1000, half=True)
    save_checkpoint(old, repo / "snap" / "m.pt")
    subprocess.run([*git, "add", "snap/m.pt"], check=True)
    subprocess.run([*git, "commit", "-qm", "step 1000"], check=True)
    first = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    save_checkpoint(_checkpoint(2, 2000, half=True), repo / "snap" / "m.pt")  # replaced in place
    avg = average([f"{first}:snap/m.pt", str(repo / "snap" / "m.pt")], tmp_path / "avg.pt", repo=repo)
    assert [i["step"] for i in avg.lineage["averaged"]] == [1000, 2000]
    assert avg.lineage["averaged"][0]["spec"] == f"{first}:snap/m.pt"
    k = next(k for k, v in old.state_dict.items() if v.is_floating_point())
    assert avg.state_dict[k].dtype == torch.float16  # fp16 snapshots average into an fp16 snapshot
    new = load_checkpoint(repo / "snap" / "m.pt")
    expect = ((old.state_dict[k].float() + new.state_dict[k].float()) / 2).half()
    torch.testing.assert_close(avg.state_dict[k], expect)
    with pytest.raises(AverageError, match="git show"):
        average([f"{first}:snap/missing.pt", str(repo / "snap" / "m.pt")], tmp_path / "x.pt", repo=repo)


def test_only_checkpoints_of_one_model_average(tmp_path):
    a, other = tmp_path / "a.pt", tmp_path / "other.pt"
    save_checkpoint(_checkpoint(1, 1000), a)
    save_checkpoint(_checkpoint(2, 2000, ["model.hstride=8"]), other)
    other_step = tmp_path / "later.pt"
    save_checkpoint(_checkpoint(4, 4000), other_step)
    with pytest.raises(AverageError, match="another model"):
        average([str(a), str(other)], tmp_path / "x.pt")
    with pytest.raises(AverageError, match="oldest first"):  # the newest gives the step and buffers
        average([str(other_step), str(a)], tmp_path / "x.pt")
    with pytest.raises(AverageError, match="two or more"):
        average([str(a)], tmp_path / "x.pt")
    copy = tmp_path / "copy.pt"
    copy.write_bytes(a.read_bytes())
    with pytest.raises(AverageError, match="same file"):  # equal steps pass the order check
        average([str(a), str(copy), str(other_step)], tmp_path / "x.pt")
    with pytest.raises(AverageError, match="neither a file"):
        average([str(a), str(tmp_path / "nope.pt")], tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "crnn.average", str(tmp_path / "x.pt"), str(a), str(other)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "another model" in proc.stderr and "Traceback" not in proc.stderr


def test_a_fine_tune_averages_with_the_weights_it_started_from(tmp_path):
    """WiSE-FT: a fine-tune counts its steps afresh, so it comes after its start whatever the steps say; any
    other checkpoint at a lower step still does not."""
    start, tuned, stranger = tmp_path / "start.pt", tmp_path / "tuned.pt", tmp_path / "stranger.pt"
    save_checkpoint(_checkpoint(1, 60000), start)
    ft = _checkpoint(2, 1500)
    ft.lineage.update(config_name="demo_ft", source_sha256=sha256_file(start))
    save_checkpoint(ft, tuned)
    avg = average([str(start), str(tuned)], tmp_path / "wise.pt")
    assert [i["step"] for i in avg.lineage["averaged"]] == [60000, 1500]
    assert avg.lineage["config_name"] == "demo_ft" and avg.lineage["step"] == 1500
    from crnn.average import describe

    said = describe(avg.lineage)
    assert said == "the uniform average of 2 checkpoints of demo, demo_ft, at steps 60,000, 1,500"
    other = _checkpoint(3, 1500)
    other.lineage["source_sha256"] = "0" * 64  # started from some other file
    save_checkpoint(other, stranger)
    with pytest.raises(AverageError, match="oldest first"):
        average([str(start), str(stranger)], tmp_path / "x.pt")
    later = tmp_path / "later.pt"
    ft3000 = _checkpoint(4, 3000)
    ft3000.lineage.update(config_name="demo_ft", source_sha256=sha256_file(start))
    save_checkpoint(ft3000, later)
    with pytest.raises(AverageError, match="oldest first"):  # the fine-tune's own steps still go forward
        average([str(start), str(later), str(tuned)], tmp_path / "x.pt")
    base = tmp_path / "base.pt"
    save_checkpoint(_checkpoint(5, 50000), base)
    with pytest.raises(AverageError, match="oldest first"):  # nothing of another run after the fine-tune
        average([str(start), str(tuned), str(base)], tmp_path / "x.pt")
    assert average([str(start), str(tuned), str(later)], tmp_path / "three.pt").lineage["step"] == 3000


def test_the_card_counts_lines_as_the_run_counted_them(monkeypatch):
    """A run's steps had different batch sizes on a GPU and on the CPU: the card says what the state counted,
    from the step the count began, and says when it only multiplies steps by one batch size."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from ship_model import lines_seen_text

    assert lines_seen_text({"steps": 100, "lines_seen": 9_000, "lines_counted_from": 0}, 64) == (
        "9,000 lines seen in 100 steps"
    )
    since = lines_seen_text({"steps": 100, "lines_seen": 3_200, "lines_counted_from": 50}, 64)
    assert since.startswith("3,200 lines seen in steps 50 to 100") and "first 50 steps" in since
    assert lines_seen_text({"steps": 100}, 64).startswith("6,400 lines seen if every one of its 100 steps")


def test_the_card_says_how_long_each_device_trained(monkeypatch):
    """A run that moved between CPU sessions and a GPU burst: hours and lines per second of each, as the
    state timed them; the card claimed "no GPU" for v2, which had H100 bursts."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from ship_model import devices_text

    both = {"cpu": {"seconds": 7200.0, "lines": 720_000}, "cuda": {"seconds": 360.0, "lines": 360_000}}
    text = devices_text({"devices": both, "devices_counted_from": 0})
    assert text == (
        "- Trained on: 2.00 h on CPU (720,000 lines, 100 lines/s); 0.10 h on CUDA GPU (360,000 lines, "
        "1000 lines/s)."
    )
    later = devices_text({"devices": {"cpu": both["cpu"]}, "devices_counted_from": 55_000})
    assert later.endswith("counted from step 55,000 (the run's earlier steps predate the count).")
    assert "not recorded" in devices_text({})
