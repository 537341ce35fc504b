"""`astrogan eval --metrics conditioning` with the PSF: --psf / --sersic-truncate, and their pickup from synth."""

from __future__ import annotations

import json

import pytest

from astrogan.data.build import BuildOptions, build_dataset
from astrogan.data.dataset import open_dataset
from astrogan.data.synth_psf import synth_psf
from astrogan.data.synthetic import TRUNC_IN_RE, synth_sersic
from astrogan.metrics.morphology import psf_fit
from astrogan.training.loop import train
from tests.helpers.conditions import SPEC
from tests.helpers.training import tiny_train_config

# The synth draws at 32 px with its default PSF (moffat FWHM 2 px); the dataset and the model are 16 px.
PICKED = "moffat:fwhm_px=1,beta=3"


@pytest.fixture(scope="module")
def stamps(tmp_path_factory):
    """(root, dataset): 12 Sérsic stamps at 32 px stored at 16 px (and 32 px)."""
    root = tmp_path_factory.mktemp("eval_psf")
    synth_sersic(root / "raw", num=12, image_size=32, seed=5, fmt="png", num_workers=1)
    build_dataset(
        [root / "raw"], root / "ds", options=BuildOptions(image_sizes=(32, 16)), show_progress=False
    )
    return root, root / "ds"


@pytest.fixture(scope="module")
def cond_run(stamps, tmp_path_factory):
    """A DCGAN trained one step on the stamps' Sérsic n, radius and axis ratio (16 px)."""
    cfg = tiny_train_config(
        stamps[1], tmp_path_factory.mktemp("runs"), "dcgan", cond=SPEC.names, num_train_steps=1, save_every=1
    )
    return train(cfg, show_progress=False)


def _eval(cli, run, ds, out, *extra):
    args = ["eval", "--run", run, "--data", ds, "--num", 8, "--metrics", "conditioning", "--out", out]
    return cli([*args, "--device", "cpu", "--cache-dir", out.parent / "cache", *map(str, extra)])


def _conditioning(out) -> tuple[dict, dict, str]:
    """(the conditioning section of metrics.json, its meta, report.html)."""
    doc = json.loads((out / "metrics.json").read_text())
    return doc["conditioning"], doc["meta"], (out / "report.html").read_text()


def test_the_synth_psf_is_picked_up_and_rescaled(stamps, cond_run, tmp_path, cli, monkeypatch) -> None:
    monkeypatch.delenv("ASTROGAN_QUIET")  # for the console line
    calls = []  # what the PSF-aware fit is called with (real, generated and grid sets)

    def spy(images, psf, **kw):
        calls.append((len(images), psf, kw.get("truncate")))
        return fit(images, psf, **kw)

    fit = psf_fit.fit_sersic_psf
    monkeypatch.setattr(psf_fit, "fit_sersic_psf", spy)
    code, _, err = _eval(cli, cond_run, stamps[1], tmp_path / "ev")
    assert code == 0, err
    assert {(psf, cut) for _, psf, cut in calls} == {(PICKED, TRUNC_IN_RE)}
    assert sorted(n for n, _, _ in calls)[:2] == [8, 12]  # generated, real (and the grid set)
    js, meta, page = _conditioning(tmp_path / "ev")
    assert js["psf"] == PICKED and js["sersic_truncate"] == TRUNC_IN_RE
    assert js["measured_with"] == f"a Sérsic fit convolved with the PSF {PICKED}, truncated at 4 r_e"
    assert "convolved with the PSF" in js["columns"]["sersic_n"]["generated"]["measured_as"]
    assert js["columns"]["q"]["real"]["num_used"] > 0  # the floor is measured with it too
    assert meta["conditioning_psf"] == PICKED and meta["conditioning_sersic_truncate"] == TRUNC_IN_RE
    assert "synth_sersic" in meta["conditioning_picked_up"]
    assert f"convolved with the PSF {PICKED}, truncated at 4 r_e" in page
    # One console line says where it came from and how it was rescaled.
    line = next(ln for ln in err.splitlines() if ln.startswith("conditioning: PSF"))
    assert "moffat:fwhm=2.0,beta=3.0" in line and "times 16/32" in line and "--psf" in line


def test_the_pickup_at_each_size_and_where_it_does_not_apply(stamps, tmp_path) -> None:
    root, ds_path = stamps
    ds = open_dataset(ds_path)
    same, _ = synth_psf(ds, 32)
    assert same is not None and same.psf == "moffat:fwhm_px=2,beta=3" and same.truncate == TRUNC_IN_RE
    assert synth_psf(ds, 64)[0].psf == "moffat:fwhm_px=4,beta=3"
    # A second folder with another PSF: no single PSF to fit with.
    synth_sersic(root / "wide", num=4, image_size=32, seed=6, fmt="png", psf="gaussian:fwhm=3", num_workers=1)
    build_dataset(
        [root / "raw", root / "wide"],
        tmp_path / "mixed",
        options=BuildOptions(image_sizes=(16,)),
        show_progress=False,
    )
    found, why = synth_psf(open_dataset(tmp_path / "mixed"), 16)
    assert found is None and "one PSF" in why


def test_flags_override_and_turn_it_off(stamps, cond_run, tmp_path, cli) -> None:
    code, _, err = _eval(cli, cond_run, stamps[1], tmp_path / "off", "--psf", "none")
    assert code == 0, err
    js, meta, page = _conditioning(tmp_path / "off")
    assert js["psf"] is None and js["sersic_truncate"] is None and "no PSF" in js["measured_with"]
    assert (
        "conditioning: PSF" not in err and "convolved" not in js["columns"]["q"]["generated"]["measured_as"]
    )
    assert "Measured with the fast morphology engine, no PSF" in page
    code, _, err = _eval(
        cli, cond_run, stamps[1], tmp_path / "own", "--psf", "gaussian:fwhm=1.5", "--sersic-truncate", "none"
    )
    assert code == 0, err
    js, _, _ = _conditioning(tmp_path / "own")
    assert js["psf"] == "gaussian:fwhm=1.5" and js["sersic_truncate"] is None
    assert "untruncated" in js["measured_with"]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--psf", "moffat:fwhm=-1"], "psf parameter fwhm"),
        (["--psf", "airy:fwhm=2"], "psf kind"),
        (["--sersic-truncate", "0.5"], "must be > 1"),
        (["--sersic-truncate", "four"], "number of half-light radii"),
        (["--psf", "none", "--sersic-truncate", "4"], "give the images' --psf"),
    ],
)
def test_bad_flags_are_one_line(stamps, cond_run, tmp_path, cli, flags, says) -> None:
    code, out, err = _eval(cli, cond_run, stamps[1], tmp_path / "bad", *flags)
    assert code == 2, err
    assert says in err and "Traceback" not in err + out
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "bad").exists()
