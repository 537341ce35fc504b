"""One process trains a run at a time: the run directory's lock (utils.rundir.RunLock) refuses a second resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from astrogan.training.loop import train
from astrogan.training.state import list_states
from astrogan.utils.errors import UserError
from astrogan.utils.rundir import LOCK_NAME, RunLock
from tests.helpers.training import Kill, kill_at, tiny_train_config


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def test_a_held_run_is_refused_in_one_line_and_a_dead_holder_is_taken_over(tmp_path) -> None:
    first, second = RunLock(), RunLock()
    first.take(tmp_path)
    with pytest.raises(
        UserError, match=rf"run {tmp_path} is being trained by process {os.getpid()} on "
    ) as e:
        second.take(tmp_path)
    assert "\n" not in str(e.value) and f"delete {tmp_path / LOCK_NAME}" in str(e.value)
    second.release()  # not its lock: the holder's stays
    assert (tmp_path / LOCK_NAME).exists()
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    # a holder killed on this machine: its lock is taken over
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    second.take(tmp_path)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    second.release()
    # a holder on another host cannot be checked from here: refused
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere", "since": "then"}))
    with pytest.raises(UserError, match="on elsewhere since then"):
        first.take(tmp_path)


def test_resuming_a_run_in_training_is_refused_and_works_once_it_stops(tiny_dataset, tmp_path) -> None:
    cfg = tiny_train_config(tiny_dataset, tmp_path, "dcgan", num_train_steps=3, save_every=1)
    refused: list[str] = []

    def resume_meanwhile(step, ctx):  # a second `train --resume` of this run while it trains
        if step == 1:
            with pytest.raises(UserError) as e:
                train(cfg, resume=ctx["run_dir"], show_progress=False)
            refused.append(str(e.value))

    run = train(cfg, callbacks=[resume_meanwhile], show_progress=False)
    assert refused and "is being trained by process" in refused[0]
    assert max(s for s, _ in list_states(run / "checkpoints")) == 3  # the first went on undisturbed
    assert not (run / LOCK_NAME).exists()  # let go at the end
    # a run that died (here: an exception) lets go too, and can be resumed
    longer = tiny_train_config(tiny_dataset, tmp_path, "dcgan", num_train_steps=5, save_every=1)
    with pytest.raises(Kill):
        train(longer, resume=run, callbacks=[kill_at(4)], show_progress=False)
    assert not (run / LOCK_NAME).exists()
    train(longer, resume=run, show_progress=False)
    assert max(s for s, _ in list_states(run / "checkpoints")) == 5
