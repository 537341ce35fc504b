"""Several processes through torchrun on CPU (gloo): the same loop, gradients averaged across ranks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from astrogan.training.state import list_states, load_state
from astrogan.training.stats import read_stats
from tests.helpers.paths import HELPERS
from tests.helpers.processes import child_env, free_port

pytestmark = pytest.mark.slow  # spawns processes or a browser


def _torchrun(*target: str) -> list[str]:
    """`python -m torch.distributed.run` with 2 processes on a free loopback port, running `target`."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        *target,
    ]


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
    env = child_env()

    def torchrun(extra):
        cmd = _torchrun("-m", "astrogan.cli.main", *args, *extra)
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


def test_two_processes_average_gradients_and_stay_in_sync(tiny_dataset, tmp_path):
    """Each rank sees different data; after averaging, every rank must hold the same weights.

    tests/helpers/ddp_helper.py (run under torchrun) takes one step of a tiny MLP with astrogan's helpers and
    checks it against the gradient of the combined batch, then trains a tiny DCGAN for 3 steps through
    `train()` and dumps each rank's G, D and G_ema parameters from a step callback.
    """
    out = tmp_path / "out"
    out.mkdir()
    cmd = _torchrun(
        str(HELPERS / "ddp_helper.py"),
        str(tiny_dataset),
        str(tmp_path / "runs"),
        str(out),
    )
    env = child_env()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1))

    # all_reduce_grads: different local gradients become their mean, which is the combined-batch gradient.
    u0, u1 = r0["unit"], r1["unit"]
    assert any(not torch.equal(a, b) for a, b in zip(u0["local_grads"], u1["local_grads"], strict=True))
    for a, b, ref, l0, l1 in zip(
        u0["averaged_grads"],
        u1["averaged_grads"],
        u0["reference_grads"],
        u0["local_grads"],
        u1["local_grads"],
        strict=True,
    ):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, (l0 + l1) / 2)
        torch.testing.assert_close(a, ref)
    for a, b in zip(u0["params_after"], u1["params_after"], strict=True):
        assert torch.equal(a, b)

    # The training loop: after 3 steps on different data per rank, the weights are still bit-identical.
    for net in ("G", "D", "G_ema"):
        p0, p1 = r0["loop"][net], r1["loop"][net]
        assert p0.keys() == p1.keys() and p0
        differ = [k for k in p0 if not torch.equal(p0[k], p1[k])]
        assert not differ, f"{net}: ranks disagree on {differ}"
