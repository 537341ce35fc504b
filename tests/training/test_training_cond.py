"""Training on physical conditions: a Sérsic dataset's true parameters in, a generator that takes them out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from astrogan.config import TrainConfig
from astrogan.data.build import BuildOptions, build_dataset
from astrogan.data.dataset import open_dataset
from astrogan.data.synthetic import synth_sersic
from astrogan.models import ARCHS
from astrogan.sampling.generator import load_generator
from astrogan.training.loop import train
from astrogan.training.losses import PROFILE_WEIGHT
from astrogan.training.state import list_states, load_state
from astrogan.utils.errors import UserError
from tests.helpers.training import Kill, kill_at, tiny_train_config

COLS = ("sersic_n", "half_light_radius_px", "q")
COND_ARCHS = sorted(n for n, a in ARCHS.items() if "cond" in a.config_cls.__dataclass_fields__)


@pytest.fixture(scope="module")
def sersic_ds(tmp_path_factory):
    """24 real Sérsic stamps at 32 px (their params.csv picked up by the build), stored at 16 px."""
    root = tmp_path_factory.mktemp("sersic_cond")
    synth_sersic(root / "raw", num=24, image_size=32, seed=3, fmt="png", num_workers=1)
    build_dataset([root / "raw"], root / "ds", options=BuildOptions(image_sizes=(16,)), show_progress=False)
    return root / "ds"


def _cfg(ds, tmp_path, arch: str, **kw) -> TrainConfig:
    return tiny_train_config(ds, tmp_path, arch, **{"cond": COLS, **kw})


def test_cond_archs_are_the_expected_ones() -> None:
    assert COND_ARCHS == ["dcgan", "stylegan2"]


@pytest.mark.parametrize("arch", COND_ARCHS)
def test_conditional_training_keeps_the_spec_and_resumes(sersic_ds, tmp_path, arch: str) -> None:
    run = train(_cfg(sersic_ds, tmp_path, arch), show_progress=False)
    values, spec = open_dataset(sersic_ds).cond(16, COLS)
    gen = load_generator(run, device="cpu")
    assert gen.cond_spec is not None and gen.cond_spec.names == COLS
    # The model normalises with the statistics of the data it saw (radius in 16 px pixels).
    np.testing.assert_allclose(gen.cond_spec.mean, values.mean(axis=0), rtol=1e-5)
    assert gen.cond_spec.high[1] == pytest.approx(float(values[:, 1].max()), rel=1e-6)
    cfg_json = json.loads((run / "config.json").read_text())
    assert cfg_json["train"]["cond"] == list(COLS)
    assert set(COLS) <= set(cfg_json["dataset"]["cond"]["names"])
    a = gen.generate([5, 5], cond=np.stack([spec.values({"sersic_n": 1.2}), spec.values({"sersic_n": 3.5})]))
    assert not np.array_equal(a[0], a[1])  # the condition changes the picture for the same seed
    one = gen.generate([5], cond="sersic_n=2,q=0.6")[0]
    assert np.array_equal(one, gen.generate([9, 5], cond="sersic_n=2,q=0.6")[1])
    # Resume continues from the saved state with the same conditions.
    run2 = train(_cfg(sersic_ds, tmp_path, arch, num_train_steps=3), resume=run, show_progress=False)
    assert run2 == run and max(s for s, _ in list_states(run / "checkpoints")) == 3


def test_cond_errors_are_one_line(sersic_ds, tmp_path) -> None:
    with pytest.raises(UserError, match="conditioning input .*fastgan has none"):
        train(_cfg(sersic_ds, tmp_path, "fastgan"), show_progress=False)
    with pytest.raises(UserError, match="unknown condition column 'hlr'"):
        train(_cfg(sersic_ds, tmp_path, "dcgan", cond=("sersic_n", "hlr")), show_progress=False)
    with pytest.raises(UserError, match="cannot be combined"):
        _cfg(sersic_ds, tmp_path, "dcgan", num_classes=3).validate()
    no_prior = {**ARCHS["stylegan2"].tiny, "cond_prior": "none"}
    with pytest.raises(UserError, match="profile_weight needs the Sérsic prior"):
        train(
            _cfg(sersic_ds, tmp_path / "pw", "stylegan2", model=no_prior, loss={"profile_weight": 1.0}),
            show_progress=False,
        )
    assert not (tmp_path / "pw").exists()  # refused before anything is written
    with pytest.raises(
        UserError, match="black_weight and peak_weight need data stretched per image between two percentiles"
    ):
        train(_cfg(sersic_ds, tmp_path / "sw", "stylegan2", loss={"black_weight": 1.0}), show_progress=False)
    assert not (tmp_path / "sw").exists()  # PNG stamps carry no per-image stretch to obey


def test_a_sersic_prior_run_trains_its_prior_and_resumes_bit_exactly(sersic_ds, tmp_path) -> None:
    model = {**ARCHS["stylegan2"].tiny, "cond_prior": "sersic"}
    kw: dict = dict(model=model, num_train_steps=4, save_every=2, evaluate_every=4)
    full = train(_cfg(sersic_ds, tmp_path, "stylegan2", name="full", **kw), show_progress=False)
    killed = _cfg(sersic_ds, tmp_path, "stylegan2", name="killed", **kw)
    with pytest.raises(Kill):
        train(killed, callbacks=[kill_at(3)], show_progress=False)
    resumed = train(killed, resume=True, show_progress=False)
    a = load_state(full / "checkpoints" / "state-0000004.pt")["G"]
    b = load_state(resumed / "checkpoints" / "state-0000004.pt")["G"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["synthesis.prior_gain"].abs().max() > 0  # the template's direct gain learned (it starts at 0)
    assert float(a["synthesis.prior.log_sigma"]) != 0.0  # the blur width learned (it starts at 0)
    gen = load_generator(full, device="cpu")
    assert (gen.module.config.prior_psf, gen.module.config.prior_truncate) == ("", 0.0)  # the default
    assert gen.module.config.cond_prior == "sersic"
    assert not np.array_equal(gen.generate([5], cond="sersic_n=1"), gen.generate([5], cond="sersic_n=4"))


def test_a_prior_told_the_data_psf_draws_with_it(sersic_ds, tmp_path) -> None:
    # the synth's 2 px FWHM Moffat on 32 px stamps is 1 px at 16 px; the synth cuts profiles at 4 r_e
    told = {"prior_psf": "moffat:fwhm_px=1,beta=3", "prior_truncate": 4.0}
    model = {**ARCHS["stylegan2"].tiny, **told}
    run = train(_cfg(sersic_ds, tmp_path, "stylegan2", model=model, num_train_steps=2), show_progress=False)
    gen = load_generator(run, device="cpu")
    assert (gen.module.config.prior_psf, gen.module.config.prior_truncate) == tuple(told.values())
    assert gen.module.synthesis.prior.log_sigma is None  # a known PSF: no blur to learn
    assert gen.module.synthesis.prior.psf is not None and gen.module.synthesis.prior.truncate == 4.0


def test_new_runs_on_sersic_conditions_draw_on_the_prior_unless_told_none(sersic_ds, tmp_path) -> None:
    def prior_of(run):
        train_model = json.loads((run / "config.json").read_text())["train"]["model"]
        return load_generator(run, device="cpu").module.config.cond_prior, train_model.get("cond_prior")

    auto = train(_cfg(sersic_ds, tmp_path, "stylegan2", name="auto"), show_progress=False)
    assert prior_of(auto) == (
        "sersic",
        "sersic",
    )  # the run's config says so: a resume rebuilds the same model
    tiny = ARCHS["stylegan2"].tiny
    off = train(
        _cfg(sersic_ds, tmp_path, "stylegan2", name="off", model={**tiny, "cond_prior": "none"}),
        show_progress=False,
    )
    assert (
        prior_of(off) == ("none", "none") and load_generator(off, device="cpu").module.synthesis.prior is None
    )
    other = train(
        _cfg(sersic_ds, tmp_path, "stylegan2", name="nq", cond=("sersic_n", "q")), show_progress=False
    )
    assert prior_of(other) == ("", None)  # no half-light radius: nothing to draw
    # Typing the run's own model options again on resume is no change; another value still is refused.
    train(
        _cfg(sersic_ds, tmp_path, "stylegan2", name="auto", num_train_steps=3),
        resume=auto,
        show_progress=False,
    )
    with pytest.raises(UserError, match=r"--model .* differs from the run's"):
        train(
            _cfg(sersic_ds, tmp_path, "stylegan2", name="auto", model={**tiny, "cond_prior": "none"}),
            resume=auto,
            show_progress=False,
        )
    # A run from before the prior (no cond_prior in its config) resumes as it was built: without one.
    cfg_path = off / "config.json"
    saved = json.loads(cfg_path.read_text())
    del saved["train"]["model"]["cond_prior"]
    cfg_path.write_text(json.dumps(saved))
    train(_cfg(sersic_ds, tmp_path, "stylegan2", num_train_steps=3), resume=off, show_progress=False)
    assert max(s for s, _ in list_states(off / "checkpoints")) == 3
    assert load_generator(off, device="cpu").module.synthesis.prior is None


def test_peak_white_linear_data_start_the_image_as_the_prior(sersic_ds, tmp_path) -> None:
    """FITS stamps stretched linearly with white at each peak: new runs start from the template
    (`prior_residual`), locked to the asked parameters (`prior_lock`), unless told otherwise; other stretches
    (the PNG set) and a resumed run do not."""
    root = tmp_path / "fits"
    synth_sersic(root / "raw", num=24, image_size=32, seed=3, fmt="fits", num_workers=1)
    opts = BuildOptions(image_sizes=(16,), stretch="linear", white_percentile=100.0)
    build_dataset([root / "raw"], root / "ds", options=opts, show_progress=False)

    def residual_of(run):
        saved = json.loads((run / "config.json").read_text())["train"]
        config = load_generator(run, device="cpu").module.config
        assert config.prior_lock is saved["model"].get("prior_lock", False)
        told = saved["model"].get("prior_residual")
        return config.prior_residual, told, saved["loss"].get("profile_weight"), config.prior_lock

    on = train(_cfg(root / "ds", tmp_path, "stylegan2", name="on"), show_progress=False)
    assert residual_of(on) == (True, True, PROFILE_WEIGHT, True)  # keeps the asked radial light, locked
    tiny = ARCHS["stylegan2"].tiny
    free = _cfg(root / "ds", tmp_path, "stylegan2", name="free", model={**tiny, "prior_lock": False})
    assert residual_of(train(free, show_progress=False)) == (True, True, PROFILE_WEIGHT, False)
    told = _cfg(root / "ds", tmp_path, "stylegan2", name="told", model={**tiny, "prior_residual": False})
    assert residual_of(train(told, show_progress=False)) == (False, False, None, False)
    zero = _cfg(root / "ds", tmp_path, "stylegan2", name="pw0", loss={"profile_weight": 0.0})
    assert residual_of(train(zero, show_progress=False)) == (True, True, 0.0, True)
    off = _cfg(root / "ds", tmp_path, "stylegan2", name="np", model={**tiny, "cond_prior": "none"})
    saved = json.loads((train(off, show_progress=False) / "config.json").read_text())
    assert "prior_residual" not in saved["train"]["model"] and "profile_weight" not in saved["train"]["loss"]
    png = train(_cfg(sersic_ds, tmp_path, "stylegan2", name="png"), show_progress=False)
    assert residual_of(png) == (False, None, None, False)
    # black_weight takes the build's percentiles from the manifest, and the run's config keeps them.
    sw = train(
        _cfg(root / "ds", tmp_path, "stylegan2", name="sw", loss={"black_weight": 2.0}), show_progress=False
    )
    saved = json.loads((sw / "config.json").read_text())["train"]["loss"]
    assert (saved["black_weight"], saved["stretch_black"], saved["stretch_white"]) == (2.0, 0.5, 100.0)
    assert any("loss_black" in json.loads(line) for line in (sw / "stats.jsonl").read_text().splitlines())


def test_cli_sersic_prior_needs_the_sersic_columns(sersic_ds, tmp_path, cli) -> None:
    args = ["train", "--data", sersic_ds, "--arch", "stylegan2", "--image-size", 16, "--batch-size", 4,
            "--num-train-steps", 1, "--save-every", 1, "--evaluate-every", 1, "--results-dir", tmp_path,
            "--device", "cpu", "--model", "cond_prior=sersic"]  # fmt: skip
    args += [x for k, v in ARCHS["stylegan2"].tiny.items() for x in ("--model", f"{k}={v}")]
    code, _, err = cli([*args, "--cond", "sersic_n,q"])
    assert code != 0 and "needs a half-light radius in pixels" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli(args)
    assert code != 0 and "needs a model conditioned on physical parameters" in err
    code, out, err = cli([*args, "--cond", "sersic_n,half_light_radius_px"])
    assert code == 0, err
    assert load_generator(out.strip().splitlines()[-1], device="cpu").module.synthesis.prior is not None
    # the data's PSF, given as a quoted --model value (its comma stays inside)
    given = ["--model", 'prior_psf="moffat:fwhm_px=1.5,beta=2.5"', "--cond", "sersic_n,half_light_radius_px"]
    code, out, err = cli([*args, *given])
    assert code == 0, err
    cfg = load_generator(out.strip().splitlines()[-1], device="cpu").module.config
    assert (cfg.prior_psf, cfg.prior_truncate) == ("moffat:fwhm_px=1.5,beta=2.5", 0.0)
    code, _, err = cli([*args, "--cond", "sersic_n,half_light_radius_px", "--model", "prior_psf=airy"])
    assert code != 0 and "prior_psf 'airy' is not a PSF spec" in err and len(err.strip().splitlines()) == 1


def test_plain_dataset_has_no_conditions(tiny_dataset, tmp_path) -> None:
    with pytest.raises(UserError, match="no physical conditions"):
        train(_cfg(tiny_dataset, tmp_path, "dcgan"), show_progress=False)


# ---------------------------------------------------------------------------------------------------------
# The road through the CLI: train --cond, generate --cond / --cond-grid, eval --metrics conditioning


@pytest.fixture(scope="module")
def cond_run(sersic_ds, tmp_path_factory):
    """A StyleGAN2 trained 2 steps on the stamps' Sérsic n, radius and axis ratio."""
    return train(_cfg(sersic_ds, tmp_path_factory.mktemp("cond_runs"), "stylegan2"), show_progress=False)


def test_cli_train_takes_cond(sersic_ds, tmp_path, cli) -> None:
    code, out, err = cli(
        ["train", "--data", sersic_ds, "--arch", "dcgan", "--image-size", 16, "--batch-size", 4,
         "--num-train-steps", 1, "--save-every", 1, "--evaluate-every", 1, "--results-dir", tmp_path,
         "--model", "ngf=8", "--model", "ndf=8", "--device", "cpu", "--cond", "sersic_n,q"],
    )  # fmt: skip
    assert code == 0, err
    gen = load_generator(out.strip().splitlines()[-1], device="cpu")
    assert gen.cond_spec.names == ("sersic_n", "q")


def test_cli_generate_with_conditions(cond_run, tmp_path, cli) -> None:
    code, _, err = cli(
        [
            "generate",
            "--run",
            cond_run,
            "--seeds",
            "3,4",
            "--cond",
            "sersic_n=2,q=0.5",
            "--out",
            tmp_path / "a",
        ],
    )
    assert code == 0, err
    gen = load_generator(cond_run, device="cpu")
    want = gen.generate([3, 4], cond="sersic_n=2,q=0.5")
    from PIL import Image

    got = np.asarray(Image.open(tmp_path / "a" / "seed0004.png"))
    assert np.array_equal(got.reshape(want[1].shape), want[1])
    code, _, err = cli(["generate", "--run", cond_run, "--seeds", "0", "--cond", "sersic_n=50"])
    assert code == 2 and "sersic_n must be within" in err and "Traceback" not in err
    code, _, err = cli(
        ["generate", "--run", cond_run, "--seeds", "0", "--cond", "sersic_n=50", "--extrapolate",
         "--out", tmp_path / "b"],
    )  # fmt: skip
    assert code == 0, err


def test_cli_condition_grid(cond_run, tmp_path, cli) -> None:
    code, _, err = cli(
        ["generate", "--run", cond_run, "--seeds", "7", "--cond-grid", "sersic_n=1:3:4,q=0.5:0.9:3",
         "--out", tmp_path],
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads((tmp_path / "cond_grid.json").read_text())
    assert (doc["rows"], doc["cols"]) == (3, 4) and [a["name"] for a in doc["axes"]] == ["sersic_n", "q"]
    # Down each column the first condition is fixed; along each row the second is.
    cells = np.array([c["cond"] for c in doc["cells"]]).reshape(3, 4, -1)
    assert np.allclose(cells[:, 0, 0], 1.0) and np.allclose(cells[0, :, 2], 0.5)
    assert (tmp_path / "cond_grid_labelled.png").stat().st_size > 1000
    code, _, err = cli(
        ["generate", "--run", cond_run, "--seeds", "0-3", "--cond-grid", "sersic_n=1:3:4,q=0.5:0.9:3"]
    )
    assert code == 2 and "one seed" in err


def test_cli_eval_conditioning(cond_run, sersic_ds, tmp_path, cli) -> None:
    code, _, err = cli(
        ["eval", "--run", cond_run, "--data", sersic_ds, "--num", 24, "--metrics", "conditioning",
         "--out", tmp_path / "ev", "--device", "cpu", "--cache-dir", tmp_path / "cache"],
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    flat = json.dumps(doc)
    assert "cond_sersic_n_spearman" in flat and "cond_sersic_n_floor_spearman" in flat
    assert "cond_q_grid_spearman" in flat  # the regular-grid set is measured too
    assert "regular grid" in (tmp_path / "ev" / "report.html").read_text()
    assert (tmp_path / "ev" / "conditioning.png").is_file()
