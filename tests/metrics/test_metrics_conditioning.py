"""The closed-loop conditioning metric on real GalSim Sérsic stamps: their true parameters give the floor,
shuffled ones (a generator that ignores its condition) no correlation; run_metrics/evaluate end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from astrogan.conditions import CondSpec
from astrogan.metrics import DEFAULT_METRICS, METRICS
from astrogan.metrics.compute import evaluate, run_metrics
from astrogan.metrics.conditioning import closed_loop, measure_conditions
from astrogan.utils.errors import UserError

pytest.importorskip("galsim")

COLUMNS = ("sersic_n", "half_light_radius_px", "q")


@pytest.fixture(scope="module")
def stamps():
    """96 noisy PSF-convolved Sérsic stamps, float (N, 64, 64, 1) in [0, 1], and their true parameters."""
    from astrogan.data.synthetic import render_sersic

    images, params = render_sersic(96, image_size=64, seed=0, num_workers=1)
    x = np.transpose(images, (0, 2, 3, 1)).astype(np.float32)
    return x / float(x.max()), params


def table(params, columns=COLUMNS) -> np.ndarray:
    return np.stack([params[c] for c in columns], axis=1)


def test_real_stamps_with_their_true_parameters_are_the_floor(stamps):
    images, params = stamps
    res = closed_loop(table(params, (*COLUMNS, "ellipticity")), images, [*COLUMNS, "ellipticity"])
    assert list(res) == [*COLUMNS, "ellipticity"]
    # Measured on this set: Spearman 0.90 (n), 0.89 (radius), 0.92 (q); median relative error 0.38,
    # 0.10, 0.11; nothing dropped.
    for c in COLUMNS:
        assert res[c]["measurable"] and res[c]["num_used"] >= 90, c
        assert res[c]["spearman"] >= 0.8, (c, res[c]["spearman"])
    # The radius is circularised like GalSim's half_light_radius under shear(q): near identity (the
    # fit's semi-major axis alone would be ~1.4x the asked radius).
    assert 0.9 <= res["half_light_radius_px"]["median_ratio"] <= 1.25
    assert res["half_light_radius_px"]["median_rel_err"] < 0.2
    assert 0.9 <= res["q"]["median_ratio"] <= 1.2 and res["q"]["median_rel_err"] < 0.2
    assert res["ellipticity"]["spearman"] >= 0.8
    # The PSF flattens the core: the engine measures a lower n, which is what the floor is for.
    assert 0.4 <= res["sersic_n"]["median_ratio"] <= 1.0
    # Aliases measure the same thing.
    alias = closed_loop(table(params), images, ["sersic_n", "hlr_px", "axis_ratio"])
    assert alias["hlr_px"]["spearman"] == res["half_light_radius_px"]["spearman"]
    assert alias["axis_ratio"]["median_rel_err"] == res["q"]["median_rel_err"]


def test_a_generator_that_ignores_its_condition_has_no_correlation(stamps):
    images, params = stamps
    floor = closed_loop(table(params), images, COLUMNS)
    shuffled = table(params)[np.random.default_rng(1).permutation(len(images))]
    res = closed_loop(shuffled, images, COLUMNS)
    for c in COLUMNS:
        assert abs(res[c]["spearman"]) < 0.3, (c, res[c]["spearman"])
        assert res[c]["median_abs_err"] > floor[c]["median_abs_err"], c


def test_unmapped_columns_and_units_are_reported_not_measured(stamps):
    images, params = stamps
    names = ["position_angle_deg", "sersic_n", "half_light_radius_arcsec"]
    res = closed_loop(table(params, names)[:8], images[:8], names)
    assert (
        not res["position_angle_deg"]["measurable"]
        and "not measurable" in res["position_angle_deg"]["reason"]
    )
    assert not res["half_light_radius_arcsec"]["measurable"] and res["sersic_n"]["measurable"]
    assert set(res["position_angle_deg"]) == {"measurable", "reason"}
    json.dumps(res)  # benches write the figures as they come
    # The measured values alone: NaN for a column with no measurement.
    measured = measure_conditions(images[:8], names)
    assert (
        measured.shape == (8, 3) and np.isnan(measured[:, [0, 2]]).all() and np.isfinite(measured[:, 1]).all()
    )
    # A length column in another unit than the engine's pixels is not compared.
    spec = CondSpec.from_values(["hlr_px"], table(params, ["half_light_radius_px"]), units=["arcsec"])
    res = closed_loop(table(params, ["half_light_radius_px"])[:8], images[:8], ["hlr_px"], spec=spec)
    assert not res["hlr_px"]["measurable"] and "arcsec" in res["hlr_px"]["reason"]
    # Nothing measurable: nothing is measured (no images needed).
    assert not closed_loop(np.zeros((3, 1)), None, ["flux"])["flux"]["measurable"]
    with pytest.raises(UserError, match=r"\(N, 2\)"):
        closed_loop(np.zeros((8, 3)), images[:8], ["sersic_n", "q"])


def test_failed_measurements_are_dropped_and_counted(stamps):
    images, params = stamps
    x = images[:12].copy()
    x[:2] = 0.0  # blank stamps: no source, flag 2
    res = closed_loop(table(params)[:12], x, COLUMNS)
    for c in COLUMNS:
        r = res[c]
        assert r["num_flagged"] == 2 and r["num_dropped"] >= 2 and r["num_used"] == 12 - r["num_dropped"], c
    assert np.isnan(measure_conditions(x, COLUMNS)[:2]).all()


def test_run_metrics_and_evaluate_end_to_end(stamps, tmp_path):
    images, params = stamps
    assert "conditioning" in METRICS and "conditioning" not in DEFAULT_METRICS
    names = [*COLUMNS, "position_angle_deg", "<b>odd</b>"]
    values = np.concatenate([table(params, names[:4]), np.ones((len(images), 1))], axis=1)
    spec = CondSpec.from_values(names, values)
    real, fake = images[:48], images[48:]
    kw = {"cond_spec": spec, "real_cond": values[:48], "fake_cond": values[48:]}
    res = run_metrics(["conditioning"], real, fake, **kw)
    s = res.scalars
    for c in COLUMNS:
        for k in ("spearman", "median_abs_err", "median_rel_err", "floor_spearman", "floor_median_rel_err"):
            assert np.isfinite(s[f"cond_{c}_{k}"]), (c, k)
        assert s[f"cond_{c}_spearman"] >= 0.7 and s[f"cond_{c}_floor_spearman"] >= 0.7
    assert not any("position_angle" in k for k in s)
    rows = {r.metric: r for r in res.rows}
    row = rows["conditioning half_light_radius_px: median relative error"]
    assert row.value == s["cond_half_light_radius_px_median_rel_err"]
    assert row.floor == s["cond_half_light_radius_px_floor_median_rel_err"] and row.ratio is not None
    assert rows["conditioning rank correlation (mean of 3)"].lower_is_better is False

    doc = evaluate(real, fake, tmp_path / "rep", names=["conditioning"], meta={"generator": "test"}, **kw)
    rep = tmp_path / "rep"
    on_disk = json.loads((rep / "metrics.json").read_text())
    assert on_disk["metrics"] == doc["metrics"] and "conditioning.png" in on_disk["plots"]
    cols = on_disk["conditioning"]["columns"]
    assert cols["sersic_n"]["generated"]["num_used"] + cols["sersic_n"]["generated"]["num_dropped"] == 48
    assert cols["q"]["real"]["spearman"] == pytest.approx(s["cond_q_floor_spearman"])
    assert set(on_disk["conditioning"]["not_measurable"]) == {"position_angle_deg", "<b>odd</b>"}
    assert Image.open(rep / "conditioning.png").size[0] > 300
    page = (rep / "report.html").read_text()
    assert "Conditioning (closed loop" in page and "conditioning.png" in page
    assert "&lt;b&gt;odd&lt;/b&gt;" in page and "<b>odd</b>" not in page


def test_skipped_without_conditions(stamps):
    images, params = stamps
    res = run_metrics(["conditioning"], images[:8], images[8:16])
    assert "conditioning" in res.skipped and "no physical conditions" in res.skipped["conditioning"]
    spec = CondSpec.from_values(["flux"], table(params, ["flux"]))
    res = run_metrics(
        ["conditioning"], images[:8], images[8:16], cond_spec=spec, fake_cond=params["flux"][8:16]
    )
    assert "none of the columns flux" in res.skipped["conditioning"]
    with pytest.raises(UserError, match="shape"):
        run_metrics(["conditioning"], images[:8], images[8:16], cond_spec=spec, fake_cond=np.zeros((3, 1)))
    with pytest.raises(UserError, match="cond_spec"):
        run_metrics(["conditioning"], images[:8], images[8:16], fake_cond=np.zeros((8, 1)))
