"""A training process killed with SIGKILL resumes from its last save and ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import torch

from astrogan.training.state import list_states, load_state
from tests.helpers.processes import astrogan_cmd, child_env

pytestmark = pytest.mark.slow  # spawns processes or a browser


def _cmd(ds, results, name, steps):
    return astrogan_cmd(
        "train",
        "--data",
        str(ds),
        "--arch",
        "dcgan",
        "--image-size",
        "16",
        "--batch-size",
        "4",
        "--num-train-steps",
        str(steps),
        "--save-every",
        "5",
        "--evaluate-every",
        "5",
        "--results-dir",
        str(results),
        "--name",
        name,
        "--model",
        "ngf=8",
        "--model",
        "ndf=8",
        "--device",
        "cpu",
        "--aug-prob",
        "0.5",
    )


def test_sigkill_then_resume_matches_uninterrupted(tiny_dataset, tmp_path):
    env = child_env()
    full = subprocess.run(
        _cmd(tiny_dataset, tmp_path, "full", 60), env=env, capture_output=True, text=True, timeout=300
    )
    assert full.returncode == 0, full.stderr[-2000:]

    proc = subprocess.Popen(
        _cmd(tiny_dataset, tmp_path, "killed", 60),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt = tmp_path / "00001-killed" / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(s >= 10 for s, _ in list_states(ckpt)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = [s for s, _ in list_states(ckpt)]
    assert saved and saved[-1] < 60, "the run finished before it could be killed"
    for _, path in list_states(ckpt):  # a kill mid-write leaves only a hidden temp file: every state loads
        assert load_state(path)["step"] in saved

    resumed = subprocess.run(
        _cmd(tiny_dataset, tmp_path, "killed", 60) + ["--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_state(tmp_path / "00000-full" / "checkpoints" / "state-0000060.pt")
    b = load_state(ckpt / "state-0000060.pt")
    for key in ("G", "D", "G_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after kill -9 and resume"
