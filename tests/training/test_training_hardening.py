"""Runs that survive their users: resume keeps the run's settings, signals save, kills and full disks lose nothing."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from astrogan.cli.main import main as cli_main
from astrogan.config import TrainConfig
from astrogan.models import ARCHS
from astrogan.models.io import generator_pair_intact, load_generator_module
from astrogan.training import state as state_mod
from astrogan.training.loop import train
from astrogan.training.state import list_states, load_state
from astrogan.utils.errors import Interrupted, UserError
from tests.helpers.processes import astrogan_cmd, child_env
from tests.helpers.training import tiny_train_config


@pytest.fixture
def loud(monkeypatch):
    """Status lines on (the suite runs quiet): these tests read what the user is told."""
    monkeypatch.setenv("ASTROGAN_QUIET", "0")


def _cfg(data, tmp_path, **kw) -> TrainConfig:
    settings = dict(num_train_steps=8, save_every=2, evaluate_every=100, log_every=1, name="r")
    return tiny_train_config(data, tmp_path / "runs", **{**settings, **kw})


def _flags(data, results, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--arch",
        "dcgan",
        "--image-size",
        "16",
        "--batch-size",
        "4",
        "--save-every",
        "2",
        "--evaluate-every",
        "100",
        "--results-dir",
        str(results),
        "--name",
        "r",
        "--device",
        "cpu",
        *[x for k, v in ARCHS["dcgan"].tiny.items() for x in ("--model", f"{k}={v}")],
        *extra,
    ]


def _steps(run: Path) -> list[int]:
    return [s for s, _ in list_states(run / "checkpoints")]


def _cut_back_to(run: Path, step: int) -> None:
    """The run as a kill after `step` leaves it: later states gone."""
    for s, p in list_states(run / "checkpoints"):
        if s > step:
            p.unlink()


# ---- resume continues the run as it was started --------------------------------------------------


def test_resume_without_flags_trains_to_the_runs_own_step_count(tiny_dataset, tmp_path, capsys, loud):
    assert cli_main(_flags(tiny_dataset, tmp_path, "--num-train-steps", "8")) == 0
    run = tmp_path / "00000-r"
    _cut_back_to(run, 4)
    # The README's resume line: no step count typed, so the run's own 8 holds (not the default 1000).
    assert cli_main(["train", "--name", "r", "--results-dir", str(tmp_path), "--resume"]) == 0
    assert _steps(run)[-1] == 8
    err = capsys.readouterr().err
    assert "resuming 00000-r at step 4 with its own settings" in err and "overridden" not in err


def test_a_flag_given_on_resume_overrides_and_says_so(tiny_dataset, tmp_path, capsys, loud):
    assert cli_main(_flags(tiny_dataset, tmp_path, "--num-train-steps", "4")) == 0
    args = ["train", "--name", "r", "--results-dir", str(tmp_path), "--resume"]
    assert cli_main([*args, "--num-train-steps", "6", "--max-minutes", "5"]) == 0
    assert _steps(tmp_path / "00000-r")[-1] == 6
    err = " ".join(capsys.readouterr().err.split())
    assert "overridden: --max-minutes none -> 5.0, --num-train-steps 4 -> 6" in err
    saved = json.loads((tmp_path / "00000-r" / "config.json").read_text())["train"]
    assert saved["max_minutes"] == 5.0 and saved["num_train_steps"] == 6


def test_a_flag_that_changes_the_runs_shape_is_refused(tiny_dataset, tmp_path, capsys):
    assert cli_main(_flags(tiny_dataset, tmp_path, "--num-train-steps", "2")) == 0
    code = cli_main(["train", "--name", "r", "--results-dir", str(tmp_path), "--resume", "--batch-size", "8"])
    err = capsys.readouterr().err
    assert code == 2 and "--batch-size 8 differs from the run's 4" in err and "Traceback" not in err


def test_resume_from_another_directory_finds_the_dataset(tiny_dataset, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(tiny_dataset, work / "ds")
    monkeypatch.chdir(work)
    assert cli_main(_flags("ds", "runs", "--num-train-steps", "4")) == 0  # a relative --data
    _cut_back_to(work / "runs" / "00000-r", 2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli_main(["train", "--resume-from", str(work / "runs" / "00000-r")]) == 0
    assert _steps(work / "runs" / "00000-r")[-1] == 4


def test_resume_with_another_dataset_is_refused_and_a_moved_one_accepted(tiny_dataset, tmp_path, capsys):
    ds = tmp_path / "ds"
    shutil.copytree(tiny_dataset, ds)
    run = train(_cfg(ds, tmp_path, num_train_steps=2), show_progress=False)
    other = tmp_path / "other"
    shutil.copytree(ds, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["content_hash"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    code = cli_main(["train", "--resume-from", str(run), "--data", str(other), "--num-train-steps", "4"])
    assert code == 2 and "is another dataset" in capsys.readouterr().err
    moved = tmp_path / "moved"
    ds.rename(moved)
    code = cli_main(["train", "--resume-from", str(run), "--num-train-steps", "4"])
    assert code == 2 and "is gone: pass --data" in " ".join(capsys.readouterr().err.split())
    assert cli_main(["train", "--resume-from", str(run), "--data", str(moved), "--num-train-steps", "4"]) == 0
    assert _steps(run)[-1] == 4


# ---- kills mid-write: nothing lost, nothing left --------------------------------------------------


def test_truncated_newest_state_falls_back_to_an_intact_one_and_says_so(tiny_dataset, tmp_path, capsys, loud):
    run = train(_cfg(tiny_dataset, tmp_path, num_train_steps=6), show_progress=False)
    newest = run / "checkpoints" / "state-0000006.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    capsys.readouterr()
    train(_cfg(tiny_dataset, tmp_path, num_train_steps=8), resume=run, show_progress=False)
    err = " ".join(capsys.readouterr().err.split())
    assert "state-0000006.pt" in err and "resuming from the intact state-0000004.pt" in err
    assert load_state(run / "checkpoints" / "state-0000008.pt")["step"] == 8
    for _, p in list_states(run / "checkpoints"):
        load_state(p)  # the bad one was overwritten or pruned


def test_every_state_corrupt_is_one_clear_error(tiny_dataset, tmp_path):
    run = train(_cfg(tiny_dataset, tmp_path, num_train_steps=2), show_progress=False)
    for _, p in list_states(run / "checkpoints"):
        p.write_bytes(b"junk")
    with pytest.raises(UserError, match="every checkpoint in .* is corrupt"):
        train(_cfg(tiny_dataset, tmp_path, num_train_steps=4), resume=run, show_progress=False)


def test_resume_removes_temp_files_of_killed_writes_and_repairs_the_generator_pair(tiny_dataset, tmp_path):
    run = train(_cfg(tiny_dataset, tmp_path, num_train_steps=4), show_progress=False)
    ckpt = run / "checkpoints"
    # What kills mid-write leave: torch.save's and safetensors' temp files, and a pair split between
    # two saves (new weights renamed, the JSON still the previous save's).
    (ckpt / ".state-0000006.pt.abc123.pt.tmp").write_bytes(b"half a state")
    (ckpt / ".generator.safetensors.xyz.safetensors").write_bytes(b"half")
    meta = json.loads((ckpt / "generator.json").read_text())
    meta["weights_sha256"] = "0" * 64
    (ckpt / "generator.json").write_text(json.dumps(meta))
    assert not generator_pair_intact(ckpt)
    _cut_back_to(run, 2)
    # A run already at its last step still gets repaired on resume (nothing else to do).
    train(_cfg(tiny_dataset, tmp_path, num_train_steps=2), resume=run, show_progress=False)
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith(".")) == []
    assert generator_pair_intact(ckpt)
    _, meta = load_generator_module(run)
    assert meta["extra"]["step"] == 2  # the pair belongs to the state the run continues from


def test_disk_full_while_checkpointing_says_so_and_keeps_the_earlier_checkpoints(
    tiny_dataset, tmp_path, monkeypatch
):
    real_save = torch.save

    class FullDisk:
        """A file that takes 4 kB and then reports ENOSPC, as a full disk does."""

        def __init__(self, path):
            self.fh, self.left = open(path, "wb"), 4096

        def write(self, b):
            if len(b) > self.left:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.left -= len(b)
            return self.fh.write(b)

        def flush(self):
            self.fh.flush()

    calls = {"n": 0}

    def save(obj, path):
        calls["n"] += 1
        if calls["n"] <= 2:  # steps 2 and 4 fit; step 6 hits a full disk
            return real_save(obj, path)
        out = FullDisk(path)
        try:
            real_save(obj, out)
        finally:
            out.fh.close()

    monkeypatch.setattr(state_mod.torch, "save", save)
    with pytest.raises(UserError, match="the disk is full writing a checkpoint") as err:
        train(_cfg(tiny_dataset, tmp_path, num_train_steps=8), show_progress=False)
    run = tmp_path / "runs" / "00000-r"
    assert "state-0000004.pt" in str(err.value) and "--resume-from" in str(err.value)
    assert _steps(run) == [2, 4] and load_state(run / "checkpoints" / "state-0000004.pt")["step"] == 4
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


# ---- signals save --------------------------------------------------------------------------------


def test_sigterm_saves_the_step_it_arrived_in_and_stops(tiny_dataset, tmp_path):
    def pre_empt(step, ctx):
        if step == 3:  # deterministic: the signal arrives during step 3's bookkeeping
            os.kill(os.getpid(), signal.SIGTERM)

    cfg = _cfg(tiny_dataset, tmp_path, num_train_steps=50, save_every=100)
    with pytest.raises(Interrupted, match="stopped by SIGTERM at step 4") as err:
        train(cfg, callbacks=[pre_empt], show_progress=False)
    assert err.value.exit_code == 143
    run = tmp_path / "runs" / "00000-r"
    assert _steps(run) == [4]  # off the save cadence: saved because of the signal
    assert generator_pair_intact(run / "checkpoints")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_sigint_saves_and_a_resume_continues_bit_exactly(tiny_dataset, tmp_path):
    def ctrl_c(step, ctx):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    cfg = _cfg(tiny_dataset, tmp_path, num_train_steps=6, save_every=100, name="cut")
    with pytest.raises(Interrupted, match="stopped by SIGINT at step 4"):
        train(cfg, callbacks=[ctrl_c], show_progress=False)
    cut = train(cfg, resume=True, show_progress=False)
    full = train(
        _cfg(tiny_dataset, tmp_path, num_train_steps=6, save_every=100, name="full"), show_progress=False
    )
    a, b = (
        load_state(full / "checkpoints" / "state-0000006.pt"),
        load_state(cut / "checkpoints" / "state-0000006.pt"),
    )
    for name, tensor in a["G"].items():
        assert torch.equal(tensor, b["G"][name]), name


@pytest.mark.slow
def test_sigterm_to_the_cli_saves_and_exits_143(tiny_dataset, tmp_path):
    cmd = astrogan_cmd(*_flags(tiny_dataset, tmp_path, "--num-train-steps", "100000"))
    proc = subprocess.Popen(
        cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    ckpt = tmp_path / "00000-r" / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list_states(ckpt):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    last = _steps(ckpt.parent)[-1]
    assert f"stopped by SIGTERM at step {last}" in " ".join(err.split())
    assert load_state(ckpt / f"state-{last:07d}.pt")["step"] == last


# ---- configs that ask for absurd sizes ------------------------------------------------------------


def test_absurd_model_sizes_are_refused_before_allocating(tiny_dataset, tmp_path):
    with pytest.raises(UserError, match="parameters"):
        train(_cfg(tiny_dataset, tmp_path, model={"ngf": 10**6}), show_progress=False)
    run = train(_cfg(tiny_dataset, tmp_path, num_train_steps=2), show_progress=False)
    config = json.loads((run / "config.json").read_text())
    config["train"]["model"]["ngf"] = 10**6
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="parameters"):
        train(_cfg(tiny_dataset, tmp_path), resume=run, overrides=(), show_progress=False)


# ---- runs started together ------------------------------------------------------------------------


def test_runs_started_at_once_in_one_results_dir_each_get_their_own(tiny_dataset, tmp_path, monkeypatch):
    from astrogan.training import loop
    from astrogan.utils.rundir import make_run_dir

    results, set_up, others = tmp_path / "runs", loop._set_up, []

    def set_up_while_another_run_starts(*args, **kwargs):  # data loading takes seconds: the window
        out = set_up(*args, **kwargs)
        other = make_run_dir(results, "r")
        (other / "config.json").write_text('{"other": true}')
        others.append(other)
        return out

    monkeypatch.setattr(loop, "_set_up", set_up_while_another_run_starts)
    run = train(_cfg(tiny_dataset, tmp_path, num_train_steps=2), show_progress=False)
    assert [p.name for p in others] == ["00000-r"] and run.name == "00001-r"
    assert json.loads((others[0] / "config.json").read_text()) == {"other": True}  # not written over
    assert sorted(p.name for p in others[0].iterdir()) == ["config.json"]


def test_a_run_whose_set_up_fails_leaves_no_run_dir(tiny_dataset, tmp_path):
    with pytest.raises(UserError, match="needs a labelled dataset"):
        train(_cfg(tiny_dataset, tmp_path, num_classes=3), show_progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
