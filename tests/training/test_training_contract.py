"""The loop/loss contract: phases are data (lazy intervals, Adam rescaling), stats per phase, augment.update."""

from __future__ import annotations

import pytest
import torch

from astrogan.config import TrainConfig
from astrogan.models import ARCHS
from astrogan.training import loop as loop_mod
from astrogan.training.losses import DCGANLoss, Phase, reg_intervals
from astrogan.training.state import load_state
from astrogan.training.stats import read_stats
from tests.helpers.training import tiny_train_config


class LazyPenaltyLoss(DCGANLoss):
    """DCGAN plus a made-up lazy D phase every 3 steps that records when it runs."""

    phases = (
        Phase("Dmain", "D", needs_real=True),
        Phase("Dreg", "D", interval=3, needs_real=True),
        Phase("Gmain", "G"),
    )

    def __init__(self, ran: list[str]) -> None:
        super().__init__()
        self.ran = ran

    def run(self, phase, *, G, D, augment, batch):
        self.ran.append(phase.name)
        if phase.name == "Dreg":
            penalty = D(batch.real, batch.c_real).float().square().mean()
            return penalty * phase.interval, {"loss_reg": penalty.item()}
        return super().run(phase, G=G, D=D, augment=augment, batch=batch)


def _cfg(tiny_dataset, tmp_path, **kw) -> TrainConfig:
    settings = dict(num_train_steps=6, save_every=6, evaluate_every=6, log_every=1)
    return tiny_train_config(tiny_dataset, tmp_path / "runs", **{**settings, **kw})


def test_reg_intervals() -> None:
    assert reg_intervals(LazyPenaltyLoss.phases) == {"G": 1, "D": 3}
    assert reg_intervals(DCGANLoss.phases) == {"G": 1, "D": 1}


def test_lazy_phase_runs_every_k_steps_with_rescaled_adam(tiny_dataset, tmp_path, monkeypatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(loop_mod, "make_loss", lambda name, **kw: LazyPenaltyLoss(ran))
    run = loop_mod.train(_cfg(tiny_dataset, tmp_path), show_progress=False)
    # steps 0..5: the lazy phase on steps 0 and 3 only, in the declared order
    assert ran.count("Dreg") == 2 and ran.count("Dmain") == ran.count("Gmain") == 6
    assert ran[:4] == ["Dmain", "Dreg", "Gmain", "Dmain"]
    ticks = [r for r in read_stats(run) if "loss_d" in r]
    assert [("loss_reg" in r) for r in ticks] == [True, False, False, True, False, False]
    # D is regularised every 3 steps: lr x 3/4 and betas ** (3/4) (StyleGAN2 App. B); G keeps its own
    assert ticks[-1]["lr_d"] == pytest.approx(2e-4 * 0.75) and ticks[-1]["lr_g"] == pytest.approx(2e-4)
    state = load_state(run / "checkpoints" / "state-0000006.pt")
    d_group, g_group = state["opt_d"]["param_groups"][0], state["opt_g"]["param_groups"][0]
    assert d_group["betas"] == pytest.approx((0.5**0.75, 0.999**0.75))
    assert g_group["betas"] == pytest.approx((0.5, 0.999))


def test_augment_update_gets_the_overfitting_signal_every_step(tiny_dataset, tmp_path, monkeypatch) -> None:
    seen: list[dict[str, float]] = []
    real_make = loop_mod._make_augment

    def recording(cfg, channels):
        aug = real_make(cfg, channels)
        aug.update = lambda stats: seen.append(dict(stats))
        return aug

    monkeypatch.setattr(loop_mod, "_make_augment", recording)
    loop_mod.train(
        _cfg(tiny_dataset, tmp_path, num_train_steps=3, save_every=3, evaluate_every=3), show_progress=False
    )
    assert len(seen) == 3
    assert all(-1.0 <= s["d_real_sign"] <= 1.0 and s["num_images"] == 4 for s in seen)


def test_training_state_capture_is_a_copy(tiny_dataset, tmp_path) -> None:
    states = []

    def grab(step, ctx):
        if step == 2:
            states.append(ctx["state"].capture())

    loop_mod.train(
        _cfg(tiny_dataset, tmp_path, num_train_steps=4, save_every=4, evaluate_every=4),
        callbacks=[grab],
        show_progress=False,
    )
    captured = states[0]
    assert captured["step"] == 2 and captured["cur_nimg"] == 8
    final = load_state(next((tmp_path / "runs").iterdir()) / "checkpoints" / "state-0000004.pt")
    name = next(iter(captured["G"]))
    assert not torch.equal(captured["G"][name], final["G"][name])  # later steps did not change the copy


def test_built_in_presets_load_and_validate() -> None:
    from astrogan.config import from_dict, load_preset, preset_names

    assert {"small", "paper256", "paper1024"} <= set(preset_names())
    for name in preset_names():
        values = load_preset(name)
        cfg = from_dict(TrainConfig, {**values, "data": "x"}).validate()
        spec = ARCHS[cfg.arch]
        spec.config_cls(image_size=cfg.image_size, **cfg.model).validate()
        assert loop_mod.make_loss(spec.loss, image_size=cfg.image_size, batch_size=cfg.batch_size, **cfg.loss)


def test_unknown_preset_and_bad_loss_option_are_one_line_errors(tmp_path) -> None:
    from astrogan.config import load_preset
    from astrogan.utils.errors import UserError

    with pytest.raises(UserError, match="no built-in preset 'tiny-gpu'.*small"):
        load_preset("tiny-gpu")
    with pytest.raises(UserError, match="bad option for loss 'stylegan2'"):
        # fails before the dataset is read: the path does not even exist
        loop_mod.train(
            TrainConfig(data=str(tmp_path / "none"), arch="stylegan2", loss={"r2_gamma": 1}, device="cpu"),
            show_progress=False,
        )


def test_cli_preset_with_flags_on_top(tiny_dataset, tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from astrogan.cli.main import app

    args = ["train", "--preset", "small", "--data", str(tiny_dataset), "--image-size", "16"]
    args += ["--batch-size", "4", "--num-train-steps", "2", "--save-every", "2", "--evaluate-every", "2"]
    args += [
        "--results-dir",
        str(tmp_path),
        "--model",
        "channel_max=16",
        "--loss",
        "pl_weight=0",
        "--ada-kimg",
        "1",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads(next(tmp_path.glob("*/config.json")).read_text())
    train_cfg = config["train"]
    assert train_cfg["arch"] == "stylegan2" and train_cfg["aug"] == "ada" and train_cfg["ada_kimg"] == 1
    assert (
        train_cfg["model"]["channel_max"] == 16 and train_cfg["model"]["z_dim"] == 64
    )  # merged with the preset
    assert train_cfg["loss"] == {"pl_weight": 0, "style_mixing": 0.9}
    assert [p["name"] for p in config["phases"]] == ["Dmain", "Dreg", "Gmain"]
