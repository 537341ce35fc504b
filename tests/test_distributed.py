"""Several processes through torchrun on CPU (gloo): the same loop, gradients averaged across ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from astrogan.training.state import list_states, load_state
from astrogan.training.stats import read_stats

pytestmark = pytest.mark.slow  # spawns processes or a browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_training_runs_and_resumes(tiny_dataset, tmp_path):
    args = [
        "train",
        "--data",
        str(tiny_dataset),
        "--arch",
        "dcgan",
        "--image-size",
        "16",
        "--batch-size",
        "8",
        "--num-train-steps",
        "4",
        "--save-every",
        "2",
        "--evaluate-every",
        "2",
        "--results-dir",
        str(tmp_path / "runs"),
        "--name",
        "ddp",
        "--model",
        "ngf=8",
        "--model",
        "ndf=8",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ASTROGAN_QUIET": "1"}

    def torchrun(extra):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            "-m",
            "astrogan.cli.main",
            *args,
            *extra,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)

    proc = torchrun([])
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "runs" / "00000-ddp"
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["images_per_step"] == 8
    state = load_state(run / "checkpoints" / "state-0000004.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["cur_nimg"] == 32
    # Each rank drew its own data: their sampler streams must differ.
    assert state["sampler"][0]["perm"].tolist() != state["sampler"][1]["perm"].tolist()
    ticks = [r for r in read_stats(run) if "loss_d" in r]
    assert [r["step"] for r in ticks] == [4] and ticks[0]["kimg"] == 0.032  # 4 steps x 2 ranks x 4 images

    # Extend the run by two steps under torchrun again: it resumes from step 4.
    args[args.index("--num-train-steps") + 1] = "6"
    proc = torchrun(["--resume"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [s for s, _ in list_states(run / "checkpoints")][-1] == 6
