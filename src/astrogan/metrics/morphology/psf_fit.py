"""A batched Levenberg-Marquardt fit of a PSF-convolved elliptical Sérsic profile + flat background."""

# Why: the engine's own Sérsic fit (`sersic.py`) has no PSF, so on small galaxies the PSF's flattened
# core reads as a low n and its rounding as a high q. The model here is what the telescope records: the
# profile sampled on an `oversample`-times finer grid (the few samples about the centre integrated
# finer still, or a cusp reads high in n), convolved with the PSF by rFFT at that scale, then averaged
# back to pixels (which integrates over each pixel, as GalSim draws). All stamps of a chunk and both
# starts (n = 1 and n = 4) advance together; the Jacobian is analytic (one profile evaluation, then the
# same FFT convolution per parameter).
#
# Parameters: background, flux, ln r_eff, n, centre x0, y0 (0-based column, row of the array) and the
# reduced shear (g1, g2) of GalSim's `shear`, |g| = (1 - q) / (1 + q), which has no singularity at
# q = 1. r_eff is the CIRCULARISED half-light radius sqrt(a b) (GalSim's `half_light_radius` after
# `shear(q=...)`, which keeps the area); the semi-major axis is r_eff / sqrt(q). Bounds are kept by
# projection: n in [0.2, 8], r_eff in [0.3 px, the stamp side], q in [0.05, 1], centre in the stamp.

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import special

from astrogan.utils.errors import UserError

__all__ = ["N_BOUNDS", "Q_MIN", "R_MIN_PX", "fit_sersic_psf", "psf_kernel"]

N_BOUNDS = (0.2, 8.0)
Q_MIN = 0.05
R_MIN_PX = 0.3
_G_MAX = (1.0 - Q_MIN) / (1.0 + Q_MIN)
_N_STARTS = (1.0, 4.0)
_SCOUT_ITER = 6
_CHUNK = 32  # galaxies per chunk: a chunk's Jacobian stack (2 starts x 7 planes) stays ~100 MB at 64 px
# Parameter order in the fit vector.
_B, _F, _LNR, _N, _X0, _Y0, _G1, _G2 = range(8)


def _moffat_alpha(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def psf_kernel(spec: str | None, size_px: int | None = None, oversample: int = 2) -> np.ndarray | None:
    """The PSF of a spec string sampled on an `oversample`-times finer grid: float64 `(K, K)`, sum 1.

    spec: `moffat:fwhm=2.0,beta=3.0`, `gaussian:fwhm=2` (fwhm in pixels) or `none` (-> None); size_px:
    the kernel's side in pixels (default 4 FWHM on either side of the centre); K = size_px * oversample,
    made odd so that the centre falls on a sample."""
    from astrogan.data.synthetic import parse_psf

    p = parse_psf(spec)
    if p.kind == "none":
        return None
    if oversample < 1:
        raise UserError(f"oversample must be >= 1, got {oversample}")
    if size_px is None:
        size_px = 2 * math.ceil(4.0 * p.fwhm_px) + 1
    k = int(size_px) * int(oversample)
    k += 1 - k % 2
    c = (np.arange(k) - k // 2) / oversample
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    if p.kind == "moffat":
        ker = (1.0 + r2 / _moffat_alpha(p.fwhm_px, p.beta) ** 2) ** (-p.beta)
    else:
        ker = np.exp(-0.5 * r2 / (p.fwhm_px / (2.0 * math.sqrt(2.0 * math.log(2.0)))) ** 2)
    return ker / ker.sum()


def _as_kernel(psf: np.ndarray | str | None, oversample: int) -> np.ndarray | None:
    if psf is None or isinstance(psf, str):
        return psf_kernel(psf, oversample=oversample)
    ker = np.asarray(psf, dtype=np.float64)
    if ker.ndim != 2 or ker.shape[0] % 2 == 0 or ker.shape[1] % 2 == 0:
        raise UserError(
            f"a PSF kernel must be a 2D array with odd sides (centre on a sample), got {ker.shape}"
        )
    if not np.isfinite(ker).all() or ker.sum() <= 0:
        raise UserError("a PSF kernel must be finite with a positive sum")
    return ker / ker.sum()


@dataclass
class _Grid:
    """The oversampled, padded grid of one stamp size, and the PSF's transfer function on it."""

    h: int
    w: int
    s: int
    pad: int  # pixels of padding before the stamp (the PSF's radius, so nothing wraps into it)
    lh: int  # FFT sizes (oversampled samples)
    lw: int
    dx: np.ndarray  # (1, lw) sample x positions in stamp pixel coordinates
    dy: np.ndarray  # (lh, 1)
    otf: np.ndarray | None  # rfft2 of the centred kernel, (lh, lw // 2 + 1) complex64
    trunc: float | None = None  # the profile's truncation radius in r_eff (None: untruncated)

    @classmethod
    def make(cls, h: int, w: int, s: int, ker: np.ndarray | None, trunc: float | None = None) -> _Grid:
        # No margin beyond the stamp (plus what the FFT's fast length adds): what wraps round the FFT is
        # the far edge's galaxy light (the flat background is added after the convolution), negligible for
        # a galaxy that fits its stamp; a margin of the PSF's radius would cost ~1.5x the time.
        pad = 0
        lh = sfft.next_fast_len((h + 2 * pad) * s, real=True)
        lw = sfft.next_fast_len((w + 2 * pad) * s, real=True)
        # Sample k of the fine grid sits at the centre of its sub-pixel: pixel j spans j - 0.5 .. j + 0.5.
        dy = ((np.arange(lh) + 0.5) / s - 0.5 - pad)[:, None].astype(np.float32)
        dx = ((np.arange(lw) + 0.5) / s - 0.5 - pad)[None, :].astype(np.float32)
        otf = None
        if ker is not None:
            full = np.zeros((lh, lw))
            ky, kx = ker.shape
            if ky > lh or kx > lw:
                raise UserError(f"the PSF kernel {ker.shape} is larger than the padded stamp ({lh}, {lw})")
            full[:ky, :kx] = ker
            full = np.roll(full, (-(ky // 2), -(kx // 2)), axis=(0, 1))  # centre at (0, 0)
            otf = sfft.rfft2(full).astype(np.complex64)
        return cls(h, w, s, pad, lh, lw, dx, dy, otf, trunc)

    def observe(self, planes: np.ndarray) -> np.ndarray:
        """`(..., lh, lw)` fine planes -> convolved with the PSF, cropped and averaged to `(..., h, w)`."""
        x = planes.astype(np.float32, copy=False)
        if self.otf is not None:
            spec = sfft.rfft2(x, workers=1)
            x = sfft.irfft2(np.multiply(spec, self.otf, out=spec), s=(self.lh, self.lw), workers=1)
        o, s = self.pad * self.s, self.s
        x = x[..., o : o + self.h * s, o : o + self.w * s]
        # Strided sums: several times faster than a mean over two axes of a 6D view.
        rows = x[..., 0::s, :].copy()
        for i in range(1, s):
            rows += x[..., i::s, :]
        out = rows[..., 0::s].copy()
        for j in range(1, s):
            out += rows[..., j::s]
        return out * np.float32(1.0 / (s * s))


def _bn(n: np.ndarray) -> np.ndarray:
    return special.gammaincinv(2.0 * n, 0.5)


_TRUNC_EDGE = 0.05  # width of the truncation's logistic edge in ln (R / r_eff)^2: smooth, so differentiable


@functools.lru_cache(maxsize=8)
def _trunc_table(trunc: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ln n grid, b, c) of a Sérsic truncated at `trunc` r_eff, r_eff being the truncated profile's own
    half-light radius (GalSim's `flux_untruncated=False`): P(2n, b) = P(2n, b trunc^(1/n)) / 2, and
    c = 2n ln b - ln n - ln Gamma(2n) - ln P(2n, b trunc^(1/n)) (the unit-flux normalisation but ln 2pi r^2)."""
    lnn = np.linspace(math.log(N_BOUNDS[0]) - 0.01, math.log(N_BOUNDS[1]) + 0.01, 2000)
    n = np.exp(lnn)
    lo, hi = np.zeros_like(n), _bn(n)  # the truncated b lies below the untruncated one
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        f = special.gammainc(2 * n, mid) - 0.5 * special.gammainc(2 * n, mid * trunc ** (1 / n))
        lo, hi = np.where(f < 0, mid, lo), np.where(f < 0, hi, mid)
    b = 0.5 * (lo + hi)
    c = (
        2 * n * np.log(b)
        - np.log(n)
        - special.gammaln(2 * n)
        - np.log(special.gammainc(2 * n, b * trunc ** (1 / n)))
    )
    return lnn, b, c


def _row_consts(n: np.ndarray, trunc: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row (b, c) of `_trunc_table`'s meaning; untruncated: b_n and 2n ln b - ln n - ln Gamma(2n)."""
    if trunc is None:
        b = _bn(n)
        return b, 2.0 * n * np.log(b) - np.log(n) - special.gammaln(2.0 * n)
    lnn, bt, ct = _trunc_table(float(trunc))
    return np.interp(np.log(n), lnn, bt), np.interp(np.log(n), lnn, ct)


def _sersic(
    p: np.ndarray, xs: np.ndarray, ys: np.ndarray, with_derivs: bool, trunc: float | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Unit-flux Sérsic (truncated at `trunc` r_eff, if given) at the points `xs` `(M|1, 1, A)` x `ys`
    `(M|1, B, 1)` -> `(M, B, A)` and, if asked, its derivatives `(M, 6, B, A)` in ln r, n, x0, y0, g1, g2
    (float32: twice as fast as float64, far finer than the noise)."""
    n64 = p[:, _N]
    b64, c64 = _row_consts(n64, trunc)
    f32 = np.float32
    lnr, n, x0, y0, g1, g2 = (p[:, k, None, None].astype(f32) for k in (_LNR, _N, _X0, _Y0, _G1, _G2))
    log_norm = (c64 - math.log(2.0 * math.pi) - 2.0 * p[:, _LNR])[:, None, None].astype(f32)
    b = b64[:, None, None].astype(f32)
    dx, dy = xs - x0, ys - y0
    gg = g1 * g1 + g2 * g2
    d = f32(1.0) - gg
    rho2 = dx * dx + dy * dy
    c2, s2 = dx * dx - dy * dy, dx * dy
    # Circularised elliptical radius^2 times (1 - g^2) (GalSim's shear, area kept); floored so that the
    # derivatives at a sample exactly on the centre stay finite.
    num = np.maximum((f32(1.0) + gg) * rho2 - f32(2.0) * g1 * c2 - f32(4.0) * g2 * s2, f32(1e-8))
    lnt = np.log(num) - np.log(d) - f32(2.0) * lnr  # ln (R / r_eff)^2
    u = np.exp(lnt * (f32(0.5) / n))  # (R / r_eff)^(1/n)
    expo = log_norm - b * u
    edge = None
    if trunc is not None:
        edge = special.expit((f32(2.0 * math.log(trunc)) - lnt) / f32(_TRUNC_EDGE))
        expo += np.log(np.maximum(edge, f32(1e-30)))
    prof = np.exp(expo)
    if not with_derivs:
        return prof, None
    h = 1e-3
    bp, cp = _row_consts(n64 * (1 + h), trunc)
    bm, cm = _row_consts(n64 * (1 - h), trunc)
    db = ((bp - bm) / (2 * h * n64))[:, None, None].astype(f32)
    dc = ((cp - cm) / (2 * h * n64))[:, None, None].astype(f32)
    bu2n = b * u / (f32(2.0) * n)
    # d ln(profile) / d ln t, but for the sign: the exponent's -b u and the truncation edge's log.
    kk = bu2n if edge is None else bu2n + (f32(1.0) - edge) / f32(_TRUNC_EDGE)
    inv = kk / num
    dlog = np.empty((len(p), 6, *prof.shape[1:]), f32)
    dlog[:, 0] = f32(2.0) * kk - f32(2.0)
    dlog[:, 1] = (bu2n / n) * lnt - db * u + dc
    dlog[:, 2] = inv * (f32(2.0) * (f32(1.0) + gg - f32(2.0) * g1) * dx - f32(4.0) * g2 * dy)
    dlog[:, 3] = inv * (f32(2.0) * (f32(1.0) + gg + f32(2.0) * g1) * dy - f32(4.0) * g2 * dx)
    dlog[:, 4] = -inv * (f32(2.0) * g1 * rho2 - f32(2.0) * c2) - kk * (f32(2.0) * g1 / d)
    dlog[:, 5] = -inv * (f32(2.0) * g2 * rho2 - f32(4.0) * s2) - kk * (f32(2.0) * g2 / d)
    dlog *= prof[:, None]
    return prof, dlog


_REFINE = 6  # fine samples on a side of the block about the centre that is integrated more finely
_SUB = 4  # sub-samples per fine sample on a side there


def _profile(grid: _Grid, p: np.ndarray, with_derivs: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """`_sersic` on the fine grid `(M, lh, lw)` (and `(M, 6, lh, lw)`), the fine samples near the centre
    averaged over `_SUB` x `_SUB` sub-samples: a cusp (n ~ 4) sampled at one point per fine sample reads
    ~6% high in n at 2x oversampling, ~1% with this."""
    prof, dlog = _sersic(p, grid.dx, grid.dy, with_derivs, grid.trunc)
    m, s, c, k = len(p), grid.s, _REFINE, _SUB
    # The centre in fine samples; the block spans the samples within c/2 of it (kept inside the grid).
    cy, cx = (p[:, _Y0] + 0.5 + grid.pad) * s - 0.5, (p[:, _X0] + 0.5 + grid.pad) * s - 0.5
    iy = np.clip(np.floor(cy).astype(int) - (c // 2 - 1), 0, grid.lh - c)
    ix = np.clip(np.floor(cx).astype(int) - (c // 2 - 1), 0, grid.lw - c)
    off = ((np.arange(c * k) + 0.5) / k - 0.5) / s  # sub-sample offsets from the block's first sample
    ys = (iy[:, None] + 0.5) / s - 0.5 - grid.pad + off[None, :]
    xs = (ix[:, None] + 0.5) / s - 0.5 - grid.pad + off[None, :]
    xs32, ys32 = xs[:, None, :].astype(np.float32), ys[:, :, None].astype(np.float32)
    sub, dsub = _sersic(p, xs32, ys32, with_derivs, grid.trunc)
    rows = (iy[:, None] + np.arange(c))[:, :, None]
    cols = (ix[:, None] + np.arange(c))[:, None, :]
    # Blend weight: 1 within c/2 - 1 samples of the centre, 0 at c/2, so that the model stays continuous
    # as the centre moves and the block with it (a jump there stalls the fit, the centre flipping).
    dist = np.maximum(np.abs(rows - cy[:, None, None]), np.abs(cols - cx[:, None, None]))
    wgt = np.clip(c / 2 - dist, 0.0, 1.0).astype(np.float32)
    mi = np.arange(m)[:, None, None]
    fine = sub.reshape(m, c, k, c, k).mean(axis=(2, 4))
    prof[mi, rows, cols] += wgt * (fine - prof[mi, rows, cols])
    if dlog is not None and dsub is not None:
        idx = (mi[:, :, :, None], np.arange(6)[None, :, None, None], rows[:, None], cols[:, None])
        dfine = dsub.reshape(m, 6, c, k, c, k).mean(axis=(3, 5))
        dlog[idx] += wgt[:, None] * (dfine - dlog[idx])
    return prof, dlog


def _model(grid: _Grid, p: np.ndarray) -> np.ndarray:
    """`(M, h, w)` model images of parameter rows `p` `(M, 8)`."""
    unit = grid.observe(_profile(grid, p, False)[0])
    return p[:, _B, None, None] + p[:, _F, None, None] * unit


def _jacobian(grid: _Grid, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(model `(M, h, w)`, Jacobian `(M, 8, h*w)`) at `p`."""
    prof, dlog = _profile(grid, p, True)
    assert dlog is not None
    obs = grid.observe(np.concatenate([prof[:, None], dlog], axis=1))  # (M, 7, h, w)
    m = len(p)
    jac = np.empty((m, 8, grid.h * grid.w))
    jac[:, _B] = 1.0
    jac[:, _F] = obs[:, 0].reshape(m, -1)
    jac[:, 2:] = p[:, _F, None, None] * obs[:, 1:].reshape(m, 6, -1)
    model = p[:, _B, None, None] + p[:, _F, None, None] * obs[:, 0]
    return model, jac


def _project(p: np.ndarray, h: int, w: int) -> np.ndarray:
    p = p.copy()
    p[:, _F] = np.maximum(p[:, _F], 0.0)
    p[:, _LNR] = np.clip(p[:, _LNR], math.log(R_MIN_PX), math.log(max(h, w)))
    p[:, _N] = np.clip(p[:, _N], *N_BOUNDS)
    p[:, _X0] = np.clip(p[:, _X0], -0.5, w - 0.5)
    p[:, _Y0] = np.clip(p[:, _Y0], -0.5, h - 0.5)
    g = np.hypot(p[:, _G1], p[:, _G2])
    scale = np.where(g > _G_MAX, _G_MAX / np.maximum(g, 1e-12), 1.0)
    p[:, _G1] *= scale
    p[:, _G2] *= scale
    return p


def _lm(
    grid: _Grid, data: np.ndarray, p: np.ndarray, max_iter: int, sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Levenberg-Marquardt (Marquardt's diagonal scaling) on all rows at once: data `(M, h*w)`, start `p`
    `(M, 8)`, noise `sigma` `(M,)` -> (parameters, cost = sum of squared residuals `(M,)`, converged)."""
    p = p.copy()
    # A cost change below 1e-3 of one pixel's noise variance (or 1e-6 of the cost, noiseless) is no change.
    tol = np.maximum(1e-3 * sigma**2, 1e-30)
    m = len(p)
    lam = np.full(m, 1e-3)
    model, jac = _jacobian(grid, p)
    res = data - model.reshape(m, -1)
    cost = np.einsum("ij,ij->i", res, res)
    a = np.einsum("mki,mli->mkl", jac, jac)
    grad = np.einsum("mki,mi->mk", jac, res)
    done = np.zeros(m, bool)
    eye = np.eye(8)
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if not len(act):
            break
        diag = np.diagonal(a[act], axis1=1, axis2=2)
        diag = np.maximum(diag, 1e-9 * diag.max(axis=1, keepdims=True) + 1e-30)
        lhs = a[act] + lam[act, None, None] * diag[:, :, None] * eye
        try:
            step = np.linalg.solve(lhs, grad[act][..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack(
                [np.linalg.lstsq(x, y, rcond=None)[0] for x, y in zip(lhs, grad[act], strict=True)]
            )
        trial = _project(p[act] + step, grid.h, grid.w)
        tres = data[act] - _model(grid, trial).reshape(len(act), -1)
        tcost = np.einsum("ij,ij->i", tres, tres)
        ok = np.isfinite(tcost) & (tcost < cost[act])
        # Converged: a relative cost change or a (scaled) step too small to matter.
        small = np.abs(cost[act] - tcost) <= np.maximum(1e-6 * cost[act], tol[act])
        # ... or a step (taken or not) that moves no shape parameter by 1e-5 (px, ln r, n, g) nor the flux
        # by 1e-5 of itself: what is left is float32 rounding.
        dp = np.abs(trial - p[act])
        moved = (dp[:, 2:].max(axis=1) < 1e-5) & (dp[:, _F] <= 1e-5 * np.abs(p[act, _F]) + 1e-30)
        good, bad = act[ok], act[~ok]
        lam[good] = np.maximum(lam[good] / 3.0, 1e-7)
        lam[bad] *= 4.0
        if len(good):
            p[good] = trial[ok]
            cost[good] = tcost[ok]
            mod, j = _jacobian(grid, p[good])
            r = data[good] - mod.reshape(len(good), -1)
            a[good] = np.einsum("mki,mli->mkl", j, j)
            grad[good] = np.einsum("mki,mi->mk", j, r)
        done[act[(ok & small) | moved]] = True
        done[act[lam[act] > 1e8]] = True
    return p, cost, done


def _starts(img: np.ndarray, psf_hlr: float) -> tuple[np.ndarray, np.ndarray]:
    """Start parameters from image moments `(N, 8)` (n left 0) and the noise sigma `(N,)` from the border."""
    num, h, w = img.shape
    bw = max(2, min(h, w) // 16)
    border = np.concatenate(
        [
            img[:, :bw].reshape(num, -1),
            img[:, -bw:].reshape(num, -1),
            img[:, bw:-bw, :bw].reshape(num, -1),
            img[:, bw:-bw, -bw:].reshape(num, -1),
        ],
        axis=1,
    )
    bg = np.median(border, axis=1)
    sigma = 1.4826 * np.median(np.abs(border - bg[:, None]), axis=1)
    sigma = np.where(sigma > 0, sigma, np.maximum(border.std(axis=1), 1e-12))
    d = img - bg[:, None, None]
    wgt = np.where(d > 2.0 * sigma[:, None, None], d, 0.0)
    tot = wgt.sum(axis=(1, 2))
    ys, xs = np.mgrid[:h, :w].astype(np.float64)
    safe = np.where(tot > 0, tot, 1.0)
    xc = np.where(tot > 0, (wgt * xs).sum(axis=(1, 2)) / safe, (w - 1) / 2)
    yc = np.where(tot > 0, (wgt * ys).sum(axis=(1, 2)) / safe, (h - 1) / 2)
    ddx, ddy = xs - xc[:, None, None], ys - yc[:, None, None]
    mxx = (wgt * ddx * ddx).sum(axis=(1, 2)) / safe
    myy = (wgt * ddy * ddy).sum(axis=(1, 2)) / safe
    mxy = (wgt * ddx * ddy).sum(axis=(1, 2)) / safe
    tr = np.maximum(mxx + myy, 1e-12)
    chi1, chi2 = (mxx - myy) / tr, 2.0 * mxy / tr
    chi = np.minimum(np.hypot(chi1, chi2), 0.95)
    gfac = np.where(chi > 0, 1.0 / (1.0 + np.sqrt(1.0 - chi * chi)), 0.0)  # distortion -> reduced shear
    # Half-light radius from the growth curve of the background-subtracted light about the centroid,
    # within 0.45 of the stamp (the corners hold noise only).
    rr = np.hypot(ddx, ddy).reshape(num, -1)
    order = np.argsort(rr, axis=1)
    r_sorted = np.take_along_axis(rr, order, axis=1)
    cum = np.cumsum(np.take_along_axis(d.reshape(num, -1), order, axis=1), axis=1)
    inside = r_sorted <= 0.45 * min(h, w)
    total = np.max(np.where(inside, cum, -np.inf), axis=1)
    half = np.argmax(cum >= 0.5 * total[:, None], axis=1)
    r_half = np.take_along_axis(r_sorted, half[:, None], axis=1)[:, 0]
    r0 = np.sqrt(np.maximum(r_half**2 - psf_hlr**2, 0.5**2))
    p = np.zeros((num, 8))
    p[:, _B] = bg
    p[:, _F] = np.maximum(total, sigma)
    p[:, _LNR] = np.log(np.clip(r0, R_MIN_PX, max(h, w) / 2))
    p[:, _X0], p[:, _Y0] = xc, yc
    p[:, _G1], p[:, _G2] = (
        chi1 / np.maximum(chi, 1e-12) * chi * gfac,
        chi2 / np.maximum(chi, 1e-12) * chi * gfac,
    )
    return p, sigma


def _kernel_hlr(ker: np.ndarray | None, s: int) -> float:
    if ker is None:
        return 0.0
    k = ker.shape[0] // 2, ker.shape[1] // 2
    r = np.hypot(
        *np.meshgrid(
            (np.arange(ker.shape[0]) - k[0]) / s, (np.arange(ker.shape[1]) - k[1]) / s, indexing="ij"
        )
    )
    order = np.argsort(r.ravel())
    cum = np.cumsum(ker.ravel()[order])
    return float(r.ravel()[order][np.searchsorted(cum, 0.5 * cum[-1])])


def fit_sersic_psf(
    images: np.ndarray,
    psf: np.ndarray | str | None,
    *,
    oversample: int = 2,
    max_iter: int = 40,
    min_snr: float = 5.0,
    truncate: float | None = None,
) -> dict[str, np.ndarray]:
    """Fit a PSF-convolved elliptical Sérsic + flat background to every stamp: images `(N, H, W)` float.

    psf: a spec string (`moffat:fwhm=2.0,beta=3.0`, `gaussian:fwhm=2`, `none`), a kernel `(K, K)` (odd
    sides) sampled at `oversample` times the pixel scale (see `psf_kernel`), or None (no PSF);
    truncate: the profile cut at this many r_eff, r_eff being the cut profile's own (GalSim's
    `trunc=` with `flux_untruncated=False`, as `synth_sersic` draws at 4; None: not cut).
    Returns `(N,)` float64 arrays: n, r_eff (circularised sqrt(a b), px), r_eff_major (px), q (b/a),
    theta_deg (major axis, counter-clockwise from +x in array coordinates), x0, y0 (0-based column /
    row), flux (of the whole profile, beyond the stamp too), background, snr (the fitted profile's
    matched-filter signal-to-noise), chi2 (mean squared residual over the noise variance); bool on_bound
    (n, r_eff or q ended on its bound), converged; and int8 flag: 0 good, 1 not converged in `max_iter`
    steps, 2 not a measurement (no galaxy: snr < `min_snr`, a non-finite stamp or result, or a fit on a
    bound). NaN parameters where there is no galaxy."""
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim != 3:
        raise UserError(f"fit_sersic_psf takes (N, H, W) images, got shape {arr.shape}")
    num, h, w = arr.shape
    ker = _as_kernel(psf, oversample)
    if truncate is not None and not truncate > 1.0:
        raise UserError(f"truncate is a radius in half-light radii and must be > 1, got {truncate}")
    grid = _Grid.make(h, w, oversample, ker, truncate)
    psf_hlr = _kernel_hlr(ker, oversample)
    finite = np.asarray(np.isfinite(arr).all(axis=(1, 2)))
    arr = np.where(finite[:, None, None], arr, 0.0)
    best = np.zeros((num, 8))
    cost = np.full(num, np.inf)
    conv = np.zeros(num, bool)
    sigma = np.ones(num)
    ns = len(_N_STARTS)
    for lo in range(0, num, _CHUNK):
        sl = slice(lo, min(lo + _CHUNK, num))
        p0, sigma[sl] = _starts(arr[sl], psf_hlr)
        k = len(p0)
        p0 = np.repeat(p0, ns, axis=0)
        p0[:, _N] = np.tile(_N_STARTS, k)
        data = np.repeat(arr[sl].reshape(k, -1), ns, axis=0)
        # Both starts for a few steps, then only the better one on to convergence: half the work of
        # running both to the end, and the starts have parted by then.
        p, c, _ = _lm(grid, data, _project(p0, h, w), _SCOUT_ITER, np.repeat(sigma[sl], ns))
        c = np.where(np.isfinite(c), c, np.inf).reshape(k, ns)
        rows = np.arange(k) * ns + np.argmin(c, axis=1)
        best[sl], cost[sl], conv[sl] = _lm(grid, data[rows], p[rows], max_iter, sigma[sl])
    return _summarise(grid, best, cost, conv, sigma, finite, min_snr)


def _summarise(
    grid: _Grid,
    p: np.ndarray,
    cost: np.ndarray,
    conv: np.ndarray,
    sigma: np.ndarray,
    finite: np.ndarray,
    min_snr: float,
) -> dict[str, np.ndarray]:
    """The public table of the best fits `p` `(N, 8)`."""
    h, w = grid.h, grid.w
    unit = (
        np.concatenate(
            [grid.observe(_profile(grid, p[i : i + _CHUNK], False)[0]) for i in range(0, len(p), _CHUNK)]
        )
        if len(p)
        else np.zeros((0, h, w))
    )
    snr = p[:, _F] * np.sqrt((unit.astype(np.float64) ** 2).sum(axis=(1, 2))) / sigma
    g = np.hypot(p[:, _G1], p[:, _G2])
    q = (1.0 - g) / (1.0 + g)
    r = np.exp(p[:, _LNR])
    tol = 1e-3
    on_bound = (
        (p[:, _N] <= N_BOUNDS[0] * (1 + tol))
        | (p[:, _N] >= N_BOUNDS[1] * (1 - tol))
        | (r <= R_MIN_PX * (1 + tol))
        | (r >= max(h, w) * (1 - tol))
        | (g >= _G_MAX * (1 - 1e-4))
    )
    failed = ~finite | ~np.isfinite(cost) | ~(snr >= min_snr)
    flag = np.where(failed | on_bound, 2, np.where(conv, 0, 1)).astype(np.int8)
    nan = np.where(failed, np.nan, 1.0)
    return {
        "n": p[:, _N] * nan,
        "r_eff": r * nan,
        "r_eff_major": r / np.sqrt(q) * nan,
        "q": q * nan,
        "theta_deg": np.degrees(0.5 * np.arctan2(p[:, _G2], p[:, _G1])) % 180.0 * nan,
        "x0": p[:, _X0] * nan,
        "y0": p[:, _Y0] * nan,
        "flux": p[:, _F] * nan,
        "background": p[:, _B] * nan,
        "snr": np.where(finite, snr, np.nan),
        "chi2": cost / (h * w * sigma**2),
        "on_bound": on_bound & ~failed,
        "converged": conv,
        "flag": flag,
    }
