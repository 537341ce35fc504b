"""CondSpec: statistics, normalisation round trip, parsing of requests and grids, range checks."""

from __future__ import annotations

import numpy as np
import pytest

from astrogan.conditions import CondSpec, parse_assignments, unit_of
from astrogan.utils.errors import UserError

NAMES = ("sersic_n", "half_light_radius_px", "q")


@pytest.fixture
def spec() -> CondSpec:
    rng = np.random.default_rng(0)
    values = np.stack([rng.uniform(1, 4, 500), rng.uniform(2, 12, 500), rng.uniform(0.4, 1, 500)], axis=1)
    return CondSpec.from_values(NAMES, values)


def test_units_from_names() -> None:
    assert [unit_of(n) for n in NAMES] == ["", "px", ""]
    assert unit_of("half_light_radius_px") == "px"
    assert unit_of("half_light_radius_arcsec") == "arcsec"
    assert unit_of("sersic_n") == ""


def test_statistics_and_round_trip(spec: CondSpec) -> None:
    assert spec.units == ("", "px", "")
    assert 1.0 <= spec.low[0] < 1.05 and 3.95 < spec.high[0] <= 4.0
    x = np.array([[2.5, 6.0, 0.7], [1.0, 12.0, 0.4]], np.float32)
    z = spec.normalize(x)
    np.testing.assert_allclose(z[:, 0], (x[:, 0] - spec.mean[0]) / spec.std[0], rtol=1e-5)
    np.testing.assert_allclose(spec.denormalize(z), x, rtol=1e-5)
    assert CondSpec.from_dict(spec.to_dict()) == spec


def test_constant_column_gets_unit_std() -> None:
    s = CondSpec.from_values(["a", "b"], np.array([[1.0, 2.0], [1.0, 3.0]]))
    assert s.std[0] == 1.0 and s.std[1] == pytest.approx(0.5)


def test_values_fill_mean_and_check_range(spec: CondSpec) -> None:
    v = spec.values("sersic_n=1.2,q=0.4")
    assert v.dtype == np.float32 and v.shape == (3,)
    assert v[0] == pytest.approx(1.2) and v[2] == pytest.approx(0.4)
    assert v[1] == pytest.approx(spec.mean[1])
    with pytest.raises(UserError, match=r"sersic_n must be within \[1\.\d+, [34]\.\d+\].*got 5"):
        spec.values({"sersic_n": 5.0})
    assert spec.values({"sersic_n": 5.0}, check=False)[0] == 5.0
    # The printed bound itself is accepted (rounded to 4 significant digits).
    spec.values({"sersic_n": float(f"{spec.high[0]:.4g}")})
    with pytest.raises(UserError, match="unknown condition 'n'"):
        spec.values("n=1")


@pytest.mark.parametrize(
    "text", ["sersic_n", "sersic_n=abc", "sersic_n=nan", "=3", "sersic_n=1,sersic_n=2", ""]
)
def test_bad_assignments(text: str) -> None:
    with pytest.raises(UserError):
        parse_assignments(text)


def test_grid_axes(spec: CondSpec) -> None:
    axes, g = spec.grid("sersic_n=1:4:5")
    assert g.shape == (1, 5, 3) and axes[0][0] == "sersic_n"
    np.testing.assert_allclose(g[0, :, 0], np.linspace(1, 4, 5), rtol=1e-6)
    assert np.allclose(g[..., 1], spec.mean[1])
    axes, g = spec.grid("sersic_n=1:4:5,q=0.4:1:3", base="half_light_radius_px=6")
    assert g.shape == (3, 5, 3)
    np.testing.assert_allclose(g[:, 0, 2], [0.4, 0.7, 1.0], rtol=1e-6)  # second axis down the rows
    np.testing.assert_allclose(g[0, :, 0], np.linspace(1, 4, 5), rtol=1e-6)  # first along the columns
    assert np.allclose(g[..., 1], 6.0)
    for bad in (
        "sersic_n=1:4",
        "sersic_n=1:4:0",
        "x=1:2:3",
        "sersic_n=1:2:2,q=.4:1:2,half_light_radius_px=2:3:2",
    ):
        with pytest.raises(UserError):
            spec.grid(bad)
    with pytest.raises(UserError, match="sersic_n must be within"):
        spec.grid("sersic_n=0:4:5")


def test_select_and_scale_lengths(spec: CondSpec) -> None:
    sub, idx = spec.select(["q", "half_light_radius_px"])
    assert sub.names == ("q", "half_light_radius_px") and idx == [2, 1]
    with pytest.raises(UserError, match="this data has sersic_n"):
        spec.select(["flux"])
    x = np.array([[2.0, 8.0, 0.5]], np.float32)
    np.testing.assert_allclose(spec.scale_lengths(x, 0.5), [[2.0, 4.0, 0.5]])


def test_malformed_specs() -> None:
    with pytest.raises(UserError):
        CondSpec.from_dict({"names": ["a"], "low": [0], "high": [1], "mean": [0.5]})
    with pytest.raises(UserError):
        CondSpec.from_values(["a"], np.array([[np.nan], [1.0]]))
    with pytest.raises(UserError):
        CondSpec(names=("a",), units=("",), low=(0.0,), high=(1.0,), mean=(0.5,), std=(0.0,))


def test_regular_grid_covers_every_combination(spec: CondSpec) -> None:
    g = spec.regular_grid(3)
    assert g.shape == (27, 3) and g.dtype == np.float32
    assert len({tuple(r) for r in g}) == 27
    np.testing.assert_allclose(g[:3, 2], np.linspace(spec.low[2], spec.high[2], 3), rtol=1e-6)  # last fastest
    np.testing.assert_allclose([g[:, 0].min(), g[:, 0].max()], [spec.low[0], spec.high[0]], rtol=1e-6)
