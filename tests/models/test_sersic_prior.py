"""The Sérsic prior (models.sersic_prior): the profile it draws, and the StyleGAN2 generator built on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from astrogan.conditions import CondSpec
from astrogan.export import export_module
from astrogan.models import ARCHS
from astrogan.models.io import save_generator
from astrogan.models.layers import NoiseInjection
from astrogan.models.sersic_prior import (
    ANNULI_RE,
    SersicPrior,
    annulus_profile,
    lock,
    parse_prior_psf,
    prior_columns,
    sersic_b,
)
from astrogan.sampling.generator import load_generator
from astrogan.sampling.interpolate import interpolation_frames
from astrogan.utils.errors import UserError
from tests.helpers.conditions import SPEC


def _render(n: float, r_e: float, q: float, *, size: int = 64, angle: float = 0.0) -> np.ndarray:
    prior = SersicPrior(SPEC.names, size)
    with torch.no_grad():
        prior.log_sigma.fill_(-10.0)  # the narrowest blur (0.25 px): the profile itself
        z = torch.tensor([[np.cos(angle), np.sin(angle)]], dtype=torch.float32)
        return prior.render(prior.params(z, torch.tensor([[n, r_e, q]]))).numpy()[0, 0]


def _inside_ellipse(img: np.ndarray, r_e: float, q: float, angle: float = 0.0) -> float:
    """Fraction of the light inside the half-light ellipse (major r_e/sqrt(q), minor r_e*sqrt(q))."""
    size = img.shape[0]
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    xr, yr = xx * np.cos(angle) + yy * np.sin(angle), yy * np.cos(angle) - xx * np.sin(angle)
    return float(img[q * xr**2 + yr**2 / q < r_e**2].sum() / img.sum())


def test_sersic_b_puts_half_the_light_inside_r_e() -> None:
    from scipy.special import gammainc

    n = torch.tensor([0.5, 1.0, 2.5, 4.0, 6.0], dtype=torch.float64)
    assert np.allclose(gammainc(2 * n.numpy(), sersic_b(n).numpy()), 0.5, atol=2e-4)


@pytest.mark.parametrize(
    ("n", "r_e", "q", "angle"), [(1.0, 8.0, 1.0, 0.0), (4.0, 6.0, 0.5, 0.7), (2.0, 5.0, 0.3, 2.0)]
)
def test_the_template_holds_half_its_light_inside_the_half_light_ellipse(n, r_e, q, angle) -> None:
    img = _render(n, r_e, q, size=128, angle=angle)
    assert img.max() == pytest.approx(1.0)
    # pixelised and cut at the stamp's edge: within a few per cent of one half
    assert _inside_ellipse(img, r_e, q, angle) == pytest.approx(0.5, abs=0.04)
    # and elongated along the angle asked for (x = columns, y = rows, as GalSim's beta): second moments
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]] - (img.shape[0] - 1) / 2
    sxx, syy, sxy = ((img * v).sum() / img.sum() for v in (xx * xx, yy * yy, xx * yy))
    if q < 0.9:
        found = 0.5 * np.arctan2(2 * sxy, sxx - syy)
        assert abs((found - angle + np.pi / 2) % np.pi - np.pi / 2) < 0.02


def test_the_template_is_centred_like_galsim_and_sharper_for_higher_n() -> None:
    a, b = _render(1.0, 6.0, 1.0), _render(4.0, 6.0, 1.0)
    assert np.allclose(a, a[::-1, ::-1], atol=1e-6)  # symmetric about (S-1)/2
    assert b[31, 31] > b[20, 31] and (b > 0.5).sum() < (a > 0.5).sum()


def test_the_angle_comes_from_the_latent_or_from_a_position_angle_column() -> None:
    prior = SersicPrior(SPEC.names, 16)
    z = torch.tensor([[3.0, 0.0, 5.0], [0.0, 2.0, 5.0]])
    p = prior.params(z, torch.tensor([[2.0, 4.0, 0.5]] * 2))
    assert torch.allclose(p[:, 3:], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    with_pa = SersicPrior(("sersic_n", "hlr_px", "position_angle_deg"), 16)
    p = with_pa.params(z, torch.tensor([[2.0, 4.0, 90.0]] * 2))
    assert torch.allclose(p[:, 3:], torch.tensor([[0.0, 1.0]] * 2), atol=1e-6)
    assert torch.equal(p[:, 2], torch.ones(2))  # no axis-ratio column: round


def test_columns_are_found_by_name_and_missing_ones_are_one_line() -> None:
    assert prior_columns(["q", "half_light_radius_px", "sersic_n"]) == {"q": 0, "r_e": 1, "n": 2}
    with pytest.raises(UserError, match=r"needs a half-light radius in pixels .*conditions are sersic_n, q"):
        prior_columns(["sersic_n", "q"])
    with pytest.raises(UserError, match="needs a Sérsic index"):
        prior_columns(["half_light_radius_px"])


def test_with_the_data_psf_and_truncation_the_template_is_galsims_noise_free_stamp() -> None:
    """The template drawn with the stamps' own PSF and cut is, pixel for pixel, what `synth_sersic` draws
    (GalSim, no noise), so the generator has nothing to correct; without them it is not."""
    from astrogan.data.synthetic import TRUNC_IN_RE, _render_one, draw_params, parse_noise, parse_psf

    size, psf = 48, "moffat:fwhm=2.0,beta=3.0"
    rows = [p for p in (draw_params(5, i, image_size=size) for i in range(40)) if p["sersic_n"] < 5][:16]
    stamps = np.stack(
        [
            _render_one(p, image_size=size, bands=1, psf=parse_psf(psf), noise=parse_noise("none"))[0]
            for p in rows
        ]
    )
    stamps /= stamps.max(axis=(1, 2), keepdims=True)
    names = ("sersic_n", "half_light_radius_px", "q", "position_angle_deg")
    c = torch.tensor([[p[k] for k in names] for p in rows], dtype=torch.float32)

    def worst(prior: SersicPrior) -> float:
        with torch.no_grad():
            t = prior.render(prior.params(torch.zeros(len(rows), 2), c)).numpy()[:, 0]
        return float(np.median(np.abs(t - stamps).max(axis=(1, 2))))  # per stamp: the worst pixel

    assert worst(SersicPrior(names, size, psf, TRUNC_IN_RE)) < 0.006  # measured 0.003 of the peak
    assert worst(SersicPrior(names, size, psf)) > 0.01  # not cut: wings GalSim does not draw
    assert worst(SersicPrior(names, size, "gaussian:fwhm_px=2", TRUNC_IN_RE)) > 0.01  # another PSF


def test_the_cut_profiles_b_holds_half_the_light_inside_r_e() -> None:
    from scipy.special import gammainc

    prior = SersicPrior(SPEC.names, 16, truncate=4.0)
    n = torch.tensor([0.3, 0.5, 1.0, 2.5, 4.0, 6.0, 9.0])
    b = prior._b(n).double().numpy()  # float32 in the graph, as in training
    nn_ = n.double().numpy()
    # half the light of the profile cut at 4 r_e lies inside r_e: P(2n, b) = P(2n, b 4^(1/n)) / 2
    assert np.allclose(gammainc(2 * nn_, b) / gammainc(2 * nn_, b * 4.0 ** (1 / nn_)), 0.5, atol=5e-4)

    # and no light beyond the cut: n = 4 puts ~15% of an uncut profile's light beyond 4 r_e
    def beyond(truncate: float) -> float:
        cut = SersicPrior(SPEC.names, 64, truncate=truncate)
        with torch.no_grad():
            cut.log_sigma.fill_(-10.0)  # the narrowest blur (0.25 px)
            img = cut.render(cut.params(torch.ones(1, 2), torch.tensor([[4.0, 3.0, 1.0]]))).numpy()[0, 0]
        yy, xx = np.mgrid[:64, :64] - 31.5
        return float(img[np.hypot(xx, yy) > 4.5 * 3.0].sum() / img.sum())

    assert beyond(4.0) < 1e-3 and beyond(0.0) > 0.05
    # below the uncut one (equal for small n; the uncut series holds from n = 0.5)
    assert (b[1:] < sersic_b(n[1:].double()).numpy() + 1e-3).all() and b[-1] < 0.9 * sersic_b(
        torch.tensor(9.0)
    )


def test_psf_specs_and_truncation_errors_are_one_line() -> None:
    assert parse_prior_psf("moffat:fwhm_px=1.5,beta=3.5") == ("moffat", 1.5, 3.5)
    assert parse_prior_psf("gaussian:fwhm=2") == ("gaussian", 2.0, 0.0)
    assert parse_prior_psf("") is None and parse_prior_psf("none") is None
    for bad in (
        "moffat",
        "airy:fwhm_px=2",
        "moffat:fwhm_px=-1",
        "moffat:fwhm_px=2,size=3",
        "moffat:fwhm_px=x",
    ):
        with pytest.raises(UserError, match="is not a PSF spec; give moffat:fwhm_px=2,beta=3 or"):
            parse_prior_psf(bad)
    with pytest.raises(UserError, match="a Moffat beta must be > 1"):
        parse_prior_psf("moffat:fwhm_px=2,beta=0.5")
    a = ARCHS["stylegan2"]
    with pytest.raises(UserError, match="prior_truncate is in half-light radii and must be > 1"):
        a.config_cls(
            image_size=16, **a.tiny, cond=SPEC.to_dict(), cond_prior="sersic", prior_truncate=0.5
        ).validate()
    with pytest.raises(UserError, match="prior_psf 'airy' is not a PSF spec"):
        a.config_cls(
            image_size=16, **a.tiny, cond=SPEC.to_dict(), cond_prior="sersic", prior_psf="airy"
        ).validate()


# -- the generator --------------------------------------------------------------------------------------------


def _generator(seed: int = 0, spec: CondSpec = SPEC, **extra):
    a = ARCHS["stylegan2"]
    cfg = a.config_cls(
        **{"image_size": 16, **a.tiny, "cond": spec.to_dict(), "cond_prior": "sersic", **extra}
    )
    torch.manual_seed(seed)
    G = a.build_generator(cfg)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in G.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.3)
        G.mapping.w_avg.normal_()
    return G.eval(), cfg


def test_config_errors_are_one_line() -> None:
    a = ARCHS["stylegan2"]
    with pytest.raises(UserError, match="cond_prior must be one of '', 'none', 'sersic', got 'gauss'"):
        a.config_cls(image_size=16, **a.tiny, cond=SPEC.to_dict(), cond_prior="gauss").validate()
    with pytest.raises(
        UserError, match="cond_prior 'sersic' needs a model conditioned on physical parameters"
    ):
        a.build_generator(a.config_cls(image_size=16, **a.tiny, cond_prior="sersic"))
    other = CondSpec(("mass", "q"), ("", ""), (0.0, 0.1), (1.0, 1.0), (0.5, 0.5), (0.2, 0.2))
    with pytest.raises(UserError, match="needs a Sérsic index"):
        a.config_cls(image_size=16, **a.tiny, cond=other.to_dict(), cond_prior="sersic").validate()
    with pytest.raises(UserError, match="prior_residual must be true or false, got 'yes'"):
        a.config_cls(image_size=16, **a.tiny, cond=SPEC.to_dict(), prior_residual="yes").validate()
    with pytest.raises(UserError, match="prior_residual needs the Sérsic prior"):
        a.build_generator(a.config_cls(image_size=16, **a.tiny, cond=SPEC.to_dict(), prior_residual=True))
    with pytest.raises(UserError, match="prior_lock must be true or false, got 1"):
        a.config_cls(image_size=16, **a.tiny, cond=SPEC.to_dict(), prior_lock=1).validate()
    with pytest.raises(UserError, match="prior_lock needs the Sérsic prior"):
        a.build_generator(a.config_cls(image_size=16, **a.tiny, cond=SPEC.to_dict(), prior_lock=True))


def test_the_image_is_built_on_the_template() -> None:
    G, cfg = _generator()
    z, c = torch.randn(3, cfg.z_dim), torch.tensor([[1.0, 3.0, 0.4], [4.0, 3.0, 1.0], [2.0, 8.0, 0.7]])
    prior = G.prior_params(z, c)
    with torch.no_grad():
        template = G.synthesis.prior.render(prior)
        for block in G.synthesis.blocks:  # only the prior's direct path left: the image is the template
            block.torgb.conv.weight.zero_()
            block.torgb.bias.zero_()
        G.synthesis.prior_gain.fill_(1.0)
        assert torch.allclose(G(z, c), template, atol=1e-6)
    G2, _ = _generator()
    with (
        torch.no_grad()
    ):  # and the features see it: without the direct path, another template changes the image
        G2.synthesis.prior_gain.zero_()
        ws = G2.mapping(z, c)
        assert not torch.allclose(G2.synthesis(ws, prior), G2.synthesis(ws, prior[[1, 2, 0]]), atol=1e-3)
    with pytest.raises(UserError, match="draws on a Sérsic prior"):
        G2.synthesis(ws)


def test_prior_residual_starts_the_image_as_the_template_in_the_stretch() -> None:
    """prior_residual: at its start the image is 2 * template - 1 (a peak-white linear stretch in [-1, 1]) plus
    a small residual; without it the synthesis paints over a template at gain 0."""
    a = ARCHS["stylegan2"]
    z, c = torch.randn(4, a.tiny["z_dim"]), torch.tensor([[1.0, 3.0, 0.4], [4.0, 5.0, 1.0]] * 2)
    gaps = {}
    for residual in (False, True):
        cfg = a.config_cls(
            image_size=32, **a.tiny, cond=SPEC.to_dict(), cond_prior="sersic", prior_residual=residual
        )
        torch.manual_seed(0)
        G = a.build_generator(cfg).train()
        with torch.no_grad():
            template = G.synthesis.prior.render(G.prior_params(z, c))
            gaps[residual] = (G(z, c) - (2 * template - 1)).abs().mean().item()
    assert gaps[True] < 0.15 < 0.5 < gaps[False]


@pytest.mark.parametrize("extra", [{}, {"prior_residual": True}])
def test_every_parameter_of_the_prior_model_learns(extra) -> None:
    G, cfg = _generator(**extra)
    G.train()
    z, c = (
        torch.randn(4, cfg.z_dim),
        torch.tensor([[1.0, 3.0, 0.4], [4.0, 3.0, 1.0], [2.0, 8.0, 0.7]] + [[3.0, 5.0, 0.5]]),
    )
    G(z, c).square().mean().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert "synthesis.prior.log_sigma" not in missing and "synthesis.prior_gain" not in missing
    assert not [n for n in missing if "prior" in n]
    if extra:  # each image's own gain and offset of the template, from its w
        assert "synthesis.prior_style.weight" not in missing


@pytest.mark.parametrize(
    "template",
    [
        {},
        {"prior_psf": "moffat:fwhm_px=1,beta=3", "prior_truncate": 4.0},
        {"prior_residual": True},
        {"prior_residual": True, "prior_lock": True, "prior_truncate": 4.0},
    ],
)
def test_save_load_sample_interpolate_and_export_with_parity(tmp_path, template) -> None:
    G, cfg = _generator(**template)
    save_generator(G, arch="stylegan2", config=cfg, out_dir=tmp_path / "ckpt")
    gen = load_generator(tmp_path / "ckpt", device="cpu")
    assert json.loads((tmp_path / "ckpt" / "generator.json").read_text())["config"]["cond_prior"] == "sersic"
    a = gen.generate([3, 4], cond="sersic_n=1.2,half_light_radius_px=6,q=0.4")
    assert np.array_equal(
        a, gen.generate([3, 4], cond="sersic_n=1.2,half_light_radius_px=6,q=0.4", batch_size=1)
    )
    assert not np.array_equal(a, gen.generate([3, 4], cond="sersic_n=5,half_light_radius_px=6,q=0.4"))
    frames = interpolation_frames(gen, 0, 1, steps=4)  # the walk's ends are the seeds' own images
    for frame, seed in ((frames[0], 0), (frames[-1], 1)):  # (up to 8-bit rounding of batch-size numerics)
        assert np.abs(frame.astype(int) - gen.generate([seed])[0].astype(int)).max() <= 1
    for fmt in ("onnx", "torchscript"):
        result = export_module(G, tmp_path / fmt, fmt=fmt)
        assert json.loads((result.out_dir / "model.json").read_text())["parity"]["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("size", [16, 32, 64])
def test_the_learned_blur_gets_a_gradient_at_its_start(size) -> None:
    """Its clamp's upper bound lies above the 1 px start at every size: at the bound torch (2.14) passes no
    gradient, and a 16 px model's blur never learned."""
    prior = SersicPrior(SPEC.names, size)
    t = prior.render(prior.params(torch.randn(4, 2), torch.tensor([[2.0, 3.0, 0.5]] * 4)))
    (t * torch.linspace(-1, 1, t.numel()).view_as(t)).sum().backward()
    assert prior.log_sigma.grad is not None and prior.log_sigma.grad.abs() > 0


def test_annulus_profile_averages_the_asked_ellipse_and_nothing_else() -> None:
    """Means over elliptical annuli of the asked profile: a constant stays itself, the template falls
    outwards, and a pattern that is odd about the centre (a lopsided residual) averages to nothing."""
    prior = SersicPrior(SPEC.names, 32, "moffat:fwhm_px=2,beta=3")
    angle = 0.6
    params = torch.tensor([[1.5, 4.0, 0.5, np.cos(angle), np.sin(angle)]] * 2, dtype=torch.float32)
    const = torch.full((2, 3, 32, 32), 0.7)
    means, area = annulus_profile(const, params)
    assert means.shape == (2, 3, len(ANNULI_RE) + 1) and area.shape == (2, len(ANNULI_RE) + 1)
    assert torch.allclose(area.sum(dim=1), torch.ones(2))
    assert torch.allclose(means[area.unsqueeze(1).expand_as(means) > 0], torch.tensor(0.7))
    template = prior.render(params)
    t_means, _ = annulus_profile(template, params)
    assert (t_means[0, 0, 1:-1].diff() < 0).all()  # the profile falls outwards, annulus by annulus
    sq_means, area = annulus_profile(template.square(), params)  # and is nearly flat within each annulus
    within = (area[0] * (sq_means[0, 0] - t_means[0, 0].square())).sum()
    assert within < 0.05 * template[0].var(unbiased=False)
    yy, xx = torch.meshgrid(torch.arange(32.0) - 15.5, torch.arange(32.0) - 15.5, indexing="ij")
    odd = (xx * np.cos(angle) + yy * np.sin(angle)).expand(2, 1, 32, 32) * template  # one side up, one down
    o_means, _ = annulus_profile(odd, params)
    assert o_means.abs().max() < 1e-4 < t_means.abs().max()
    rotated = params.clone()
    rotated[:, 3:] = torch.tensor([np.cos(angle + np.pi / 2), np.sin(angle + np.pi / 2)])
    r_means, _ = annulus_profile(template, rotated)  # the ellipse across the profile mixes its annuli
    assert (r_means[0, 0, :4] - t_means[0, 0, :4]).abs().max() > 0.05


def test_prior_share_is_what_the_template_adds_to_the_image() -> None:
    G, cfg = _generator(prior_residual=True)
    z, c = torch.randn(3, cfg.z_dim), torch.tensor([[1.0, 3.0, 0.4], [4.0, 3.0, 1.0], [2.0, 8.0, 0.7]])
    prior = G.prior_params(z, c)
    with torch.no_grad():
        G.synthesis.prior_style.weight.normal_()  # each image its own gain and offset
        ws = G.mapping(z, c)
        residual = G.synthesis(ws, prior) - G.synthesis.prior_share(ws, prior)
        G.synthesis.prior_gain.add_(3.0)
        G.synthesis.prior_style.bias.add_(0.5)
        assert torch.allclose(
            G.synthesis(ws, prior) - G.synthesis.prior_share(ws, prior), residual, atol=1e-5
        )
        for block in G.synthesis.blocks:  # nothing drawn on top: the image is the share
            block.torgb.conv.weight.zero_()
            block.torgb.bias.zero_()
        assert torch.allclose(G.synthesis(ws, prior), G.synthesis.prior_share(ws, prior), atol=1e-6)


def _lock_case(
    size: int = 48, pa: bool = False, truncate: float = 4.0, fwhm: float = 2.0, scale: float = 1.0
):
    """A prior drawn as synth_sersic draws (Moffat PSF, cut at 4 r_e) and three profiles' parameters (N, 5),
    their radii times `scale`."""
    names = (*SPEC.names, "position_angle_deg") if pa else SPEC.names
    prior = SersicPrior(names, size, f"moffat:fwhm_px={fwhm},beta=3", truncate)
    c = torch.tensor([[1.2, 5.0, 0.4, 30.0], [3.5, 4.0, 0.8, 100.0], [2.0, 6.0, 1.0, 0.0]])
    c[:, 1] *= scale
    return prior, prior.params(torch.tensor([[0.6, 0.8]] * 3), c if pa else c[:, :3])


def _moved(prior, params, factors) -> torch.Tensor:
    """The templates of params with n, r_e and q scaled by factors (q at most 1) less the templates: (N, 1, S, S)."""
    moved = params.clone()
    moved[:, :3] *= torch.tensor(factors)
    moved[:, 2] = moved[:, 2].clamp_max(1.0)
    return prior.render(moved) - prior.render(params)


@pytest.mark.parametrize("pa", [False, True])
def test_the_lock_basis_spans_what_moves_the_asked_parameters_and_nothing_a_fit_leaves_free(pa) -> None:
    # uncut: smooth in every parameter, so first order holds; small beside a wide PSF, whose blur the
    # directions must carry
    prior, params = _lock_case(pa=pa, truncate=0.0, fwhm=4.0, scale=0.4)
    basis = prior.lock_basis(params)
    assert basis.shape == (3, 48 * 48, 4 if pa else 3) and not basis.requires_grad
    gram = basis.transpose(1, 2) @ basis
    eye = torch.eye(basis.shape[2])
    if pa:  # a round profile has no angle to move: that direction is empty
        eye = eye.expand_as(gram).clone()
        eye[2, 3, 3] = 0.0
    assert torch.allclose(gram, eye.expand_as(gram), atol=1e-3)
    template = prior.render(params)
    t, one = template.flatten(1), torch.ones(3, 48 * 48)
    for kept in (
        0.7 * template,
        torch.full_like(template, 0.2),
        0.7 * template + 0.2,
    ):  # a fit's gain and sky
        assert torch.allclose(lock(kept, basis), kept, atol=1e-5)
    for j in range(3):  # a small change of n, r_e or q alone, locked, is what a gain and a sky can draw
        change = _moved(prior, params, [1.02 if k == j else 1.0 for k in range(3)])
        free = torch.linalg.lstsq(torch.stack([t, one], -1), change.flatten(1).unsqueeze(-1)).solution
        gain_sky = (torch.stack([t, one], -1) @ free).view_as(change)
        left = lock(change, basis) - gain_sky
        assert (left.norm(dim=(2, 3)) <= 0.05 * (change - gain_sky).norm(dim=(2, 3))).all()  # q=1: no change
    noise = torch.randn(3, 2, 48, 48)  # white noise loses only its share along K directions, every band
    assert torch.allclose(lock(noise, basis).square().mean(), noise.square().mean(), rtol=0.02)


def test_a_locked_image_measures_as_asked_whatever_is_drawn_on_it() -> None:
    """With the closed loop's own engine, on profiles cut as the data are: light drawn on the template that makes
    it 3% steeper, larger and rounder moves the measured n, r_e, q as much; locked, they measure as the template
    alone does (to 0.5%: the cut edge is not smooth in r_e, so first order is not all of it)."""
    from astrogan.data.synthetic import DEFAULT_PSF, TRUNC_IN_RE
    from astrogan.metrics.conditioning import measure_conditions

    prior, params = _lock_case()
    template, basis = prior.render(params), prior.lock_basis(params)

    def measured(img: torch.Tensor) -> np.ndarray:
        x = img.clamp(0, 1).permute(0, 2, 3, 1).numpy()
        return measure_conditions(x, list(SPEC.names), psf=DEFAULT_PSF, truncate=TRUNC_IN_RE)

    alone = measured(0.9 * template + 0.1)  # the engine's own reading of the noise-free stamp (n off at 3.5)
    drawn = _moved(prior, params, [1.03, 1.03, 1.03])  # the round profile cannot get rounder
    free, locked = measured(0.9 * template + 0.1 + drawn), measured(0.9 * template + 0.1 + lock(drawn, basis))
    assert (np.abs(free / alone - 1)[[0, 0, 0, 1, 1, 1, 2, 2], [0, 1, 2, 0, 1, 2, 0, 1]] > 0.025).all()
    assert np.abs(locked / alone - 1).max() < 0.005


def test_a_locked_generators_residual_has_nothing_along_the_asked_parameters() -> None:
    G, cfg = _generator(prior_residual=True, prior_lock=True)
    z, c = torch.randn(3, cfg.z_dim), torch.tensor([[1.0, 3.0, 0.4], [4.0, 3.0, 1.0], [2.0, 8.0, 0.7]])
    prior = G.prior_params(z, c)
    with torch.no_grad():
        ws = G.mapping(z, c)
        residual = (G.synthesis(ws, prior) - G.synthesis.prior_share(ws, prior)).flatten(2)
        basis = G.synthesis.prior.lock_basis(prior)
        G.synthesis.locked = False
        free = (G.synthesis(ws, prior) - G.synthesis.prior_share(ws, prior)).flatten(2)
    along = torch.einsum("ncp,npk->nck", residual, basis)
    G.synthesis.locked = True
    with torch.no_grad():  # the locked path's own template (drawn with the basis) is the template
        for block in G.synthesis.blocks:
            block.torgb.conv.weight.zero_()
            block.torgb.bias.zero_()
        assert torch.allclose(G.synthesis(ws, prior), G.synthesis.prior_share(ws, prior), atol=1e-6)
    assert along.abs().max() < 1e-4 * residual.norm() < torch.einsum("ncp,npk->nck", free, basis).abs().max()
