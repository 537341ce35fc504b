"""The arch-agnostic loop: files it writes, bit-exact resume, NaN rollback, snapshots, stats."""

from __future__ import annotations

import json
import math

import pytest
import torch

from astrogan.config import TrainConfig
from astrogan.models import ARCHS
from astrogan.training import loop as loop_mod
from astrogan.training.loop import train
from astrogan.training.state import list_states, load_state
from astrogan.training.stats import read_stats
from tests.helpers.marks import slow_cases
from tests.helpers.training import Kill, kill_at, tiny_train_config


def _cfg(tiny_dataset, tmp_path, arch, **kw) -> TrainConfig:
    settings = dict(num_train_steps=6, save_every=3, evaluate_every=3, log_every=1, name=arch, aug_prob=0.5)
    return tiny_train_config(tiny_dataset, tmp_path / "runs", arch, **{**settings, **kw})


# Every registered architecture gets this test (add one to ARCHS with its `tiny` knobs and it runs here).
@pytest.mark.parametrize("arch", slow_cases(sorted(ARCHS), {"fastgan", "stylegan2"}))  # theirs take seconds
def test_short_run_writes_run_dir_and_resumes_bit_exactly(tiny_dataset, tmp_path, arch):
    cfg = _cfg(tiny_dataset, tmp_path, arch)
    full = train(cfg, show_progress=False)
    assert (full / "config.json").is_file() and (full / "tb").is_dir()
    assert sorted(p.name for p in (full / "snapshots").iterdir()) == [
        "step-0000000.png",
        "step-0000003.png",
        "step-0000006.png",
    ]
    assert [s for s, _ in list_states(full / "checkpoints")] == [3, 6]
    assert (full / "checkpoints" / "generator.safetensors").is_file()
    stats = read_stats(full)
    assert [r["step"] for r in stats] == [1, 2, 3, 4, 5, 6]
    for r in stats:
        assert math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"])
        assert 0 <= r["acc_real"] <= 1 and 0 <= r["acc_fake"] <= 1 and r["images_per_s"] > 0
    config = json.loads((full / "config.json").read_text())
    assert config["dataset"]["content_hash"] and config["arch"] == arch

    # Same config, killed after step 4 (last save at 3), then resumed: must equal the uninterrupted run.
    cfg2 = _cfg(tiny_dataset, tmp_path, arch, name=f"{arch}-killed")
    with pytest.raises(Kill):
        train(cfg2, callbacks=[kill_at(4)], show_progress=False)
    resumed = train(cfg2, resume=True, show_progress=False)
    a = load_state(full / "checkpoints" / "state-0000006.pt")
    b = load_state(resumed / "checkpoints" / "state-0000006.pt")
    for key in ("G", "D", "G_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    assert a["cur_nimg"] == b["cur_nimg"] == 6 * 4
    assert [r["step"] for r in read_stats(resumed)] == [1, 2, 3, 4, 5, 6]
    assert [r["loss_d"] for r in read_stats(resumed)] == [r["loss_d"] for r in stats]


def test_resume_can_extend_a_finished_run(tiny_dataset, tmp_path):
    cfg = _cfg(tiny_dataset, tmp_path, "dcgan", num_train_steps=3)
    run = train(cfg, show_progress=False)
    again = train(_cfg(tiny_dataset, tmp_path, "dcgan", num_train_steps=6), resume=run, show_progress=False)
    assert again == run
    assert [s for s, _ in list_states(run / "checkpoints")] == [3, 6]


def test_nan_loss_rolls_back_and_lowers_learning_rate(tiny_dataset, tmp_path, monkeypatch):
    cfg = _cfg(tiny_dataset, tmp_path, "dcgan", num_train_steps=6)
    real_make_loss = loop_mod.make_loss
    calls = {"n": 0}

    def poisoned(name, **kw):
        loss = real_make_loss(name, **kw)
        original = loss.d_loss

        def d_loss(D, real, fake, c=None):
            calls["n"] += 1
            value, stats = original(D, real, fake, c)
            if calls["n"] == 5:  # the 5th D update (step 5) blows up once
                return value * float("nan"), stats
            return value, stats

        loss.d_loss = d_loss
        return loss

    monkeypatch.setattr(loop_mod, "make_loss", poisoned)
    run = train(cfg, show_progress=False)
    stats = read_stats(run)
    events = [r for r in stats if r.get("event") == "nan_rollback"]
    assert len(events) == 1 and events[0]["step"] == 3  # back to the save at step 3
    ticks = [r for r in stats if "loss_d" in r]
    assert ticks[-1]["step"] == 6
    assert ticks[-1]["lr_d"] == pytest.approx(2e-4 * 0.5)
    final = load_state(run / "checkpoints" / "state-0000006.pt")
    assert final["nan_rollbacks"] == 1
    assert all(torch.isfinite(t).all() for t in final["G"].values() if t.is_floating_point())


def test_training_rejects_bad_input(tiny_dataset, tmp_path):
    from astrogan.utils.errors import UserError

    with pytest.raises(UserError, match="no dataset"):
        train(_cfg(tmp_path / "nope", tmp_path, "dcgan"), show_progress=False)
    with pytest.raises(UserError, match="power of two|image size|image_size"):
        train(_cfg(tiny_dataset, tmp_path, "dcgan", image_size=24), show_progress=False)
    with pytest.raises(UserError, match="labels"):
        train(_cfg(tiny_dataset, tmp_path, "dcgan", num_classes=3), show_progress=False)
    with pytest.raises(UserError, match="nothing to resume"):
        train(_cfg(tiny_dataset, tmp_path, "dcgan", name="never-ran"), resume=True, show_progress=False)


@pytest.mark.slow  # heavy: StyleGAN2 trained twice
def test_stylegan2_with_ada_resumes_bit_exactly_with_p_and_path_length_mean(tiny_dataset, tmp_path):
    # ADA fast enough to move p within a few steps; lazy R1 every 2 and path length every 3 steps.
    kw = dict(aug="ada", aug_prob=0.2, ada_kimg=0.16, loss={"r1_interval": 2, "pl_interval": 3})
    cfg = _cfg(tiny_dataset, tmp_path, "stylegan2", **kw)
    full = train(cfg, show_progress=False)
    ticks = read_stats(full)
    # ADA adjusts every 4 steps: p moved at step 4, in the direction of r_t against the 0.6 target
    assert [r["aug_prob"] for r in ticks[:3]] == [0.2] * 3
    assert ticks[3]["aug_prob"] == pytest.approx(
        0.2 + (4 * 4 / 160) * (1 if ticks[3]["ada_rt"] > 0.6 else -1)
    )
    # the regularisers show up on their steps only (steps 0, 2, 4 and 0, 3 -> records 1, 3, 5 and 1, 4)
    assert [r["step"] for r in ticks if "loss_r1" in r] == [1, 3, 5]
    assert [r["step"] for r in ticks if "loss_pl" in r] == [1, 4]
    assert all(r["loss_r1"] > 0 for r in ticks if "loss_r1" in r)
    assert all(r["loss_pl"] > 0 for r in ticks if "loss_pl" in r)

    cfg2 = _cfg(tiny_dataset, tmp_path, "stylegan2", name="sg2-killed", **kw)
    with pytest.raises(Kill):
        train(cfg2, callbacks=[kill_at(5)], show_progress=False)
    resumed = train(cfg2, resume=True, show_progress=False)
    a = load_state(full / "checkpoints" / "state-0000006.pt")
    b = load_state(resumed / "checkpoints" / "state-0000006.pt")
    for key in ("G", "D", "G_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    assert a["augment"] == b["augment"] and a["augment"]["p"] != 0.2
    assert torch.equal(a["loss_state"][0]["pl_mean"], b["loss_state"][0]["pl_mean"])
    assert a["loss_state"][0]["pl_mean"] > 0
    assert [r["loss_d"] for r in read_stats(resumed)] == [r["loss_d"] for r in ticks]


@pytest.fixture
def _restore_determinism():
    """The global switches `_deterministic_cuda` sets, put back after the test."""
    import os

    saved = (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[0], saved[1]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
    if saved[4] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[4]


def test_cuda_training_asks_for_deterministic_kernels(_restore_determinism, monkeypatch):
    # fp32 CUDA runs differed run to run on an H200 (bench/gpu_check.sh); these switches are the fix. The CPU
    # has nothing to switch: it is left alone.
    import os

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    torch.use_deterministic_algorithms(False)
    loop_mod._deterministic_cuda(torch.device("cpu"))
    assert not torch.backends.cudnn.deterministic and not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    loop_mod._deterministic_cuda(torch.device("cuda"))
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()  # ops with no deterministic kernel still run
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_training_sets_up_determinism_for_its_device_first(tiny_dataset, tmp_path, monkeypatch):
    seen = []
    real_load = loop_mod._load_images
    monkeypatch.setattr(loop_mod, "_deterministic_cuda", lambda device: seen.append(("det", device.type)))
    monkeypatch.setattr(
        loop_mod, "_load_images", lambda *a, **k: (seen.append(("load", None)), real_load(*a, **k))[1]
    )
    train(_cfg(tiny_dataset, tmp_path, "dcgan", num_train_steps=1, save_every=1), show_progress=False)
    assert seen[:2] == [("det", "cpu"), ("load", None)]  # before any tensor reaches the device


@pytest.mark.parametrize(
    ("arch", "device", "asked", "nhwc"),
    [
        ("stylegan2", "cpu", None, True),  # measured 1.17x on the CPU (bench/train_throughput.py)
        ("dcgan", "cpu", None, False),  # 1.02x: not worth a layout change
        ("fastgan", "cpu", None, False),
        ("dcgan", "cuda", None, True),
        ("stylegan2", "cpu", False, False),  # --no-channels-last wins
        ("dcgan", "cpu", True, True),
    ],
)
def test_memory_format_default_follows_device_and_arch(arch, device, asked, nhwc):
    cfg = TrainConfig(data="unused", arch=arch, channels_last=asked)
    fmt = loop_mod._memory_format(cfg, torch.device(device))
    assert fmt == (torch.channels_last if nhwc else torch.contiguous_format)
