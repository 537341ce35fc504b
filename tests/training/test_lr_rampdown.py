"""The end-of-training learning-rate ramp-down (`--lr-rampdown`): its schedule, the rates the optimizers step
with, an exact resume in the middle of the ramp, and the flag's one-line error."""

from __future__ import annotations

import math

import pytest
import torch

from astrogan.training.loop import train
from astrogan.training.state import load_state, rampdown_factor
from astrogan.utils.errors import UserError
from tests.helpers.training import Kill, kill_at, tiny_train_config


def test_the_factor_is_one_then_a_half_cosine_to_zero() -> None:
    assert [rampdown_factor(s, 100, 0.0) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert [rampdown_factor(s, 100, 0.2) for s in (0, 79, 80)] == [1.0, 1.0, 1.0]
    assert rampdown_factor(90, 100, 0.2) == pytest.approx(0.5)
    assert rampdown_factor(99, 100, 0.2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 19 / 20)))
    assert rampdown_factor(100, 100, 0.2) == pytest.approx(0.0)
    factors = [rampdown_factor(s, 100, 0.3) for s in range(100)]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))  # never rises


def _lr_recorder(seen: list[float]):
    def record(step, context) -> None:  # after the step: the rate it stepped with
        seen.append(context["state"].opt["G"].param_groups[0]["lr"])

    return record


def test_a_ramped_run_steps_with_falling_rates_and_resumes_bit_exactly(tiny_dataset, tmp_path) -> None:
    def cfg(name, rampdown=0.5):
        return tiny_train_config(
            tiny_dataset, tmp_path / "runs", name=name, num_train_steps=8, save_every=4, lr_rampdown=rampdown
        )

    seen: list[float] = []
    full = train(cfg("full"), callbacks=[_lr_recorder(seen)], show_progress=False)
    expected = [seen[0] * rampdown_factor(s, 8, 0.5) for s in range(8)]
    assert seen == pytest.approx(expected, rel=1e-9) and seen[-1] < 0.2 * seen[0]
    with pytest.raises(Kill):  # killed inside the ramp, resumed from its step-4 checkpoint
        train(cfg("killed"), callbacks=[kill_at(6)], show_progress=False)
    resumed = train(cfg("killed"), resume=True, show_progress=False)
    a = load_state(full / "checkpoints" / "state-0000008.pt")
    b = load_state(resumed / "checkpoints" / "state-0000008.pt")
    for key in ("G", "D", "G_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    flat = train(cfg("flat", rampdown=0.0), show_progress=False)
    c = load_state(flat / "checkpoints" / "state-0000008.pt")
    assert any(not torch.equal(t, c["G"][n]) for n, t in a["G"].items()), "the ramp changed nothing"


def test_a_rampdown_outside_0_1_is_one_line(tiny_dataset, tmp_path) -> None:
    for bad in (-0.1, 1.0):
        with pytest.raises(UserError, match=r"--lr-rampdown is a fraction of the steps in \[0, 1\)"):
            tiny_train_config(tiny_dataset, tmp_path, lr_rampdown=bad).validate()
