"""Training variants: a class-conditional DCGAN on a Galaxy10-layout file, and mixed precision on CPU."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from astrogan.config import TrainConfig
from astrogan.data.build import BuildOptions, build_dataset
from astrogan.sampling.generator import load_generator
from astrogan.training.loop import train
from astrogan.training.stats import read_stats
from astrogan.utils.errors import UserError
from tests.helpers.marks import slow_cases
from tests.helpers.training import tiny_train_config

TINY_DCGAN = {"ngf": 8, "ndf": 8}  # narrower than ARCHS["dcgan"].tiny: its default z_dim, no embedding


@pytest.fixture(scope="module")
def galaxy10_ds(tmp_path_factory):
    """A tiny file in the astroNN Galaxy10 DECaLS layout (images uint8 (N,256,256,3), ans 0-9), built at 16 px."""
    root = tmp_path_factory.mktemp("g10")
    rng = np.random.default_rng(0)
    with h5py.File(root / "Galaxy10_DECals.h5", "w") as f:
        f["images"] = rng.integers(0, 255, (20, 256, 256, 3), dtype=np.uint8)
        f["ans"] = np.arange(20) % 10
    build_dataset(
        [],
        root / "ds",
        options=BuildOptions(image_sizes=(16,)),
        galaxy10_path=root / "Galaxy10_DECals.h5",
        show_progress=False,
    )
    return root / "ds"


def test_conditional_dcgan_trains_and_samples_per_class(galaxy10_ds, tmp_path):
    cfg = tiny_train_config(galaxy10_ds, tmp_path, num_classes=10, model=TINY_DCGAN)
    run = train(cfg, show_progress=False)
    gen = load_generator(run, device="cpu")
    assert gen.num_classes == 10
    a = gen.generate([1, 1], labels=[0, 7])
    assert not np.array_equal(a[0], a[1])  # the label changes the picture for the same seed
    assert np.array_equal(gen.generate([1], labels=3)[0], gen.generate([1, 2], labels=[3, 3])[0])
    with pytest.raises(UserError, match="0..9"):
        gen.generate([0], labels=[12])
    with pytest.raises(UserError, match="labels"):
        train(TrainConfig(**{**cfg.to_dict(), "num_classes": 5, "aug_types": ()}), show_progress=False)


def _record_layer_dtypes(seen: set[torch.dtype]):
    """A step callback: at step 1 it hooks every conv/linear layer of G and D, whose later outputs land in `seen`.

    Steps 2.. then run under the loop's own autocast context, so `seen` holds the dtypes the layers computed in.
    """
    layers = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            seen.add(output.dtype)

    def callback(step, ctx):
        if step == 1:
            for net in (ctx["G"], ctx["D"]):
                for m in net.modules():
                    if isinstance(m, layers):
                        m.register_forward_hook(hook)

    return callback


@pytest.mark.parametrize("arch", slow_cases(["dcgan", "fastgan"], {"fastgan"}))  # fastgan's takes seconds
def test_amp_on_cpu_uses_bfloat16_and_stays_finite(tiny_dataset, tmp_path, arch):
    model = {"dcgan": {"ngf": 8, "ndf": 8}, "fastgan": {"ngf": 4, "ndf": 4}}[arch]
    cfg = tiny_train_config(
        tiny_dataset,
        tmp_path,
        arch,
        num_train_steps=3,
        gradient_accumulate_every=2,
        save_every=3,
        evaluate_every=3,
        amp=True,
        model=model,
        aug_prob=1.0,
    )
    seen: set[torch.dtype] = set()
    run = train(cfg, callbacks=[_record_layer_dtypes(seen)], show_progress=False)
    # CPU autocast runs conv/linear in bfloat16: every hooked layer output of G and D in steps 2-3 is bf16.
    assert seen == {torch.bfloat16}
    ticks = [r for r in read_stats(run) if "loss_d" in r]
    assert len(ticks) == 1 and np.isfinite(ticks[0]["loss_d"]) and np.isfinite(ticks[0]["loss_g"])
    assert ticks[0]["kimg"] == pytest.approx(3 * 4 * 2 / 1000)


def test_amp_off_on_cpu_computes_in_float32(tiny_dataset, tmp_path):
    cfg = tiny_train_config(
        tiny_dataset, tmp_path, num_train_steps=2, save_every=2, evaluate_every=2, amp=False, model=TINY_DCGAN
    )
    seen: set[torch.dtype] = set()
    train(cfg, callbacks=[_record_layer_dtypes(seen)], show_progress=False)
    assert seen == {torch.float32}


@pytest.mark.slow
def test_wall_clock_budget_stops_and_saves_early(tiny_dataset, tmp_path):
    cfg = tiny_train_config(
        tiny_dataset,
        tmp_path,
        num_train_steps=10_000,
        save_every=10_000,
        evaluate_every=10_000,
        max_minutes=0.05,
        model=TINY_DCGAN,
    )
    run = train(cfg, show_progress=False)
    from astrogan.training.state import list_states

    states = list_states(run / "checkpoints")
    assert len(states) == 1 and 0 < states[0][0] < 10_000  # stopped early, and saved where it stopped
    assert (run / "snapshots" / f"step-{states[0][0]:07d}.png").is_file()


def test_metrics_during_training_reach_stats(tiny_dataset, tmp_path):
    cfg = tiny_train_config(
        tiny_dataset,
        tmp_path,
        image_size=32,
        metrics=("spectrum", "morphology"),
        num_metric_images=16,
        model=TINY_DCGAN,
    )
    run = train(cfg, show_progress=False)
    metric_rows = [r for r in read_stats(run) if any(k.startswith("metric_") for k in r)]
    assert len(metric_rows) == 1 and metric_rows[0]["step"] == 2
    keys = [k for k in metric_rows[0] if k.startswith("metric_")]
    assert any("spectrum" in k for k in keys) and any("morph" in k for k in keys)
    assert list((tmp_path / ".cache").iterdir())  # reference statistics cached by dataset hash
