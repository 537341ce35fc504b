"""Batched 2D Sérsic fits: statmorph's model (astropy's Sersic2D) and starting point, fitted by
Levenberg-Marquardt for a whole batch of galaxies at once, on pixels binned away from the centre.

statmorph fits all seven parameters (amplitude, r_eff, n, centre, ellipticity, angle) to every pixel of
the postage stamp with astropy's LevMarLSQFitter; galaxies with a flat or irregular profile have
several local optima, and which one a fit lands in depends on the start and the path, so a different
model (a 1D profile with the ellipse fixed) ranks such galaxies differently. Here the same model is
fitted from the same start by the same method, vectorised across galaxies (one array operation per
iteration for the whole batch, with the analytic Jacobian), and with pixels away from the centre
averaged in 2x2, 4x4 and 8x8 blocks: a block of k pixels whose model is nearly linear across it
weighs sum_i (m_i - z_i)^2 = k (m - mean z)^2 + const, so the optimum hardly moves while the fit
touches a tenth to a fifth of the pixels.

Unlike statmorph (which bounds only n >= 0.01), every parameter that can run away is kept in a box
(projected steps, as astropy's fitter clips bounded parameters): n in [0.01, 10], r_eff in
[0.05 px, 2 stamp sides], amplitude positive, the centre on the stamp. On real galaxies and early
fakes an unbounded fit reaches r_eff ~ 1e17 px and n ~ 1e14; a fit that ends on a bound, or does not
converge, is flagged (1) and its n and r_eff are not used as measurements.
"""

from __future__ import annotations

import numpy as np
from scipy import special

#: Parameter order of the fits (astropy's Sersic2D; positions in stamp pixels, angle in radians).
PARAMS: tuple[str, ...] = ("amplitude", "r_eff", "n", "x_0", "y_0", "ellip", "theta")
_N_MIN = 0.01  # statmorph's lower bound on n (prevents overflows)
_N_MAX = 10.0  # above this a profile is a point source on any stamp: the fit has run away
_R_MIN_PX = 0.05  # r_eff below a twentieth of a pixel is a point source, not a measured radius
_R_MAX_SIDES = 2.0  # r_eff beyond two stamp sides is not constrained by the stamp's light
_E_MIN, _E_MAX = -4.0, 0.99  # ellipticity (b = a (1 - e)); see _param_box
_AMP_MIN = 1e-12  # the amplitude stays positive (a negative Sérsic galaxy is not a galaxy)
_FULL_RES_PX = 4  # 8x8 blocks within this (Chebyshev) distance of the start are fitted pixel by pixel
_MAX_ITER = 60
# Convergence: relative drop of the cost, or relative step of every parameter, below these (a
# tenth of a per cent in n is far below what tells galaxies apart).
_TOL_DROP, _TOL_STEP = 1e-5, 1e-3
_CHUNK = 256  # galaxies fitted together (one measuring chunk); bounds memory: the Jacobian is 7 x pixels each
_PART = 16  # galaxies binned at once (their planes stay in cache)
_FIT_PART = 64  # galaxies whose model and Jacobian are made at once (their temporaries stay in cache)


def _bin_frames(
    frames: np.ndarray,
    bounds: np.ndarray,
    xc: np.ndarray,
    yc: np.ndarray,
    full_px: float,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Super-pixels of every stamp, padded: `(N, M)` x, y (mean position, stamp pixels), sqrt(count)
    (0 for padding) and mean value times sqrt(count).

    Each stamp is tiled by 8x8 blocks anchored at its start centre (which lies in a middle 2x2 of its
    block); blocks within `full_px` (Chebyshev distance) of the centre are split into pixels, those
    within 2 `full_px` into 2x2 blocks, within 4 `full_px` into 4x4 blocks, and the rest kept whole.
    frames: `(N, H, W)` (or the frames `rows` of a larger batch), zero off each galaxy's stamp (zeros
    are left out, as statmorph's weights leave them out); bounds: `(N, 4)` the stamps' (y0, y1, x0,
    x1); xc, yc: `(N,)` starts in stamp pixels. Each frame is shifted so that its galaxy's blocks
    start at multiples of 8; the blocks, their sums and their order are those of
    `_reference._bin_stamp` on the stamp alone. Binned `_PART` galaxies at a time (each galaxy's
    sums are its own; the planes of a part stay in cache).
    """
    n = len(bounds)
    parts = [
        _bin_part(frames, range(a, min(n, a + _PART)) if rows is None else rows[a : a + _PART],
                  bounds[a : a + _PART], xc[a : a + _PART], yc[a : a + _PART], full_px)
        for a in range(0, n, _PART)
    ]  # fmt: skip
    # Every galaxy's super-pixels at the front of its row, level by level, in raster order.
    counts = np.concatenate([c for c, _ in parts], axis=1) if parts else np.zeros((4, 0), dtype=np.int64)
    starts = np.cumsum(counts, axis=0) - counts
    size_m = max(int(counts.sum(axis=0).max()) if n else 0, 1)
    out = np.zeros((4, n, size_m))
    for a, (cnt, picked) in zip(range(0, n, _PART), parts, strict=True):
        for lev, (gi, sums, vsums) in enumerate(picked):
            if gi.size:
                # gi is sorted: each galaxy's run starts at `first`.
                first = np.searchsorted(gi, np.arange(cnt.shape[1]))
                g = gi + a
                dest = starts[lev][g] + np.arange(gi.size) - first[gi]
                out[:3, g, dest] = sums
                out[3, g, dest] = vsums
    count = out[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        x, y, mean = out[0] / count, out[1] / count, out[3] / count
    sw = np.sqrt(count)
    empty = count == 0
    x[empty] = y[empty] = mean[empty] = 0.0
    return x, y, sw, mean * sw


def _bin_part(
    frames: np.ndarray,
    rows: range | np.ndarray,
    bounds: np.ndarray,
    xc: np.ndarray,
    yc: np.ndarray,
    full_px: float,
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """`_bin_frames` for the frames `rows`: super-pixel counts per level `(4, n)`, and per level the
    galaxy (in the part) of every kept super-pixel with its sums of x, y, count `(3, K)` and value `(K,)`."""
    n = len(bounds)
    h, w = frames.shape[1:]
    y0, x0 = bounds[:, 0], bounds[:, 2]
    ay = np.floor(yc).astype(np.int64) - 3 + y0  # block corners in frame pixels
    ax = np.floor(xc).astype(np.int64) - 3 + x0
    top, left = (-ay) % 8, (-ax) % 8  # shifts that put the corners (ay, ax) at multiples of 8
    hc, wc = -(-(h + 7) // 8) * 8, -(-(w + 7) // 8) * 8
    # planes: x and y (stamp pixels) of valid pixels, valid (whole numbers: float32 sums are exact and
    # move half the bytes); values (float64); each frame shifted by (top, left).
    values = np.zeros((n, hc, wc))
    for i, r in enumerate(rows):  # slice copies: far cheaper than one fancy-indexed scatter
        values[i, top[i] : top[i] + h, left[i] : left[i] + w] = frames[r]
    planes = np.empty((3, n, hc, wc), dtype=np.float32)
    np.not_equal(values, 0.0, out=planes[2])
    cols = np.arange(wc, dtype=np.float32)[None, None, :] - (left + x0)[:, None, None].astype(np.float32)
    rws = np.arange(hc, dtype=np.float32)[None, :, None] - (top + y0)[:, None, None].astype(np.float32)
    np.multiply(planes[2], cols, out=planes[0])
    np.multiply(planes[2], rws, out=planes[1])
    # Distance of each 8x8 block's nearest pixel to the centre (stamp pixels), per axis.
    cy8 = np.arange(hc // 8)[None, :] * 8 + 3.5 - top[:, None] - y0[:, None]
    cx8 = np.arange(wc // 8)[None, :] * 8 + 3.5 - left[:, None] - x0[:, None]
    d8 = np.maximum(
        np.maximum(np.abs(cy8 - yc[:, None]) - 3.5, 0.0)[:, :, None],
        np.maximum(np.abs(cx8 - xc[:, None]) - 3.5, 0.0)[:, None, :],
    )
    level8 = np.where(d8 < full_px, 1, np.where(d8 < 2 * full_px, 2, np.where(d8 < 4 * full_px, 4, 8)))
    picked = []  # per level: galaxy of every kept super-pixel, and its sums
    counts = np.zeros((4, n), dtype=np.int64)
    for lev, size in enumerate((1, 2, 4, 8)):
        if (
            size > 1
        ):  # 2x2 sums of the previous level (rows, then columns), as the per-stamp reference adds them
            planes = planes[..., 0::2, :] + planes[..., 1::2, :]
            planes = planes[..., 0::2] + planes[..., 1::2]
            values = values[..., 0::2, :] + values[..., 1::2, :]
            values = values[..., 0::2] + values[..., 1::2]
        gi, pi = _level_pixels(level8 == size, planes[2], 8 // size)
        picked.append((gi, planes.reshape(3, n, -1)[:, gi, pi], values.reshape(n, -1)[gi, pi]))
        counts[lev] = np.bincount(gi, minlength=n)
    return counts, picked


def _level_pixels(sel: np.ndarray, count: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Galaxy and flat index (on the level's grid) of the super-pixels with a count that lie in the
    selected 8x8 blocks `sel (n, H / 8, W / 8)`, galaxy by galaxy in raster order; count: the level's
    `(n, k H / 8, k W / 8)` pixel counts. Only the rows and columns of blocks that some galaxy
    selects are looked at (the centre's few blocks at the finest level)."""
    n, hb, wb = sel.shape
    rows, cols = np.flatnonzero(sel.any(axis=(0, 2))), np.flatnonzero(sel.any(axis=(0, 1)))
    if rows.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    sub = sel[:, r0:r1, c0:c1]
    if k > 1:
        sub = np.repeat(np.repeat(sub, k, axis=1), k, axis=2)
    sub &= count[:, r0 * k : r1 * k, c0 * k : c1 * k] > 0
    gi, pj = np.nonzero(sub.reshape(n, -1))
    cw = (c1 - c0) * k
    return gi, (pj // cw + r0 * k) * (wb * k) + (pj % cw + c0 * k)


def _bn(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """b_n (astropy's: half the light within r_eff) and its derivative in n (central difference)."""
    h = 1e-6 * np.maximum(n, 1e-3)
    bn = special.gammaincinv(2.0 * n, 0.5)
    dbn = (special.gammaincinv(2.0 * (n + h), 0.5) - special.gammaincinv(2.0 * (n - h), 0.5)) / (2.0 * h)
    return bn, dbn


def _residuals_and_jacobian(
    p: np.ndarray, x: np.ndarray, y: np.ndarray, zsw: np.ndarray, sw: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted residuals `(N, M)` and Jacobian `(N, 7, M)` of Sersic2D at params `p (N, 7)`.

    x, y, zsw, sw: `(N, M)` super-pixel positions, mean values times sqrt(counts), sqrt(counts) (0: padding).
    Made `_FIT_PART` galaxies at a time (each galaxy's numbers are its own; the temporaries stay in cache).
    """
    num, size = x.shape
    bn, dbn = _bn(p[:, 2])
    r = np.empty((num, size))
    jac = np.empty((num, 7, size))
    for a in range(0, num, _FIT_PART):
        sl = slice(a, a + _FIT_PART)
        _model_part(p[sl], bn[sl, None], dbn[sl, None], x[sl], y[sl], zsw[sl], sw[sl], r[sl], jac[sl])
    return r, jac


def _model_part(
    p: np.ndarray,
    bn: np.ndarray,
    dbn: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    zsw: np.ndarray,
    sw: np.ndarray,
    r: np.ndarray,
    jac: np.ndarray,
) -> None:
    """`_residuals_and_jacobian` for a few galaxies, into `r` and `jac`; bn, dbn: their `_bn` `(n, 1)`."""
    amp, re, n, x0, y0, e, th = (p[:, i : i + 1] for i in range(7))
    c, s = np.cos(th), np.sin(th)
    ia2 = 1.0 / (re * re)
    ib2 = ia2 / ((1.0 - e) * (1.0 - e))
    dx, dy = x - x0, y - y0
    xm = dx * c
    xm += dy * s
    ym = dy * c
    ym -= dx * s
    xa, yb = xm * ia2, ym * ib2
    q = xm * xa
    q += ym * yb  # (elliptical radius / r_eff)^2
    np.maximum(q, 1e-30, out=q)
    lq = np.log(q)
    u = np.exp(lq * (0.5 / n))  # (radius / r_eff)^(1/n)
    um1 = u - 1.0
    m = np.exp(um1 * -bn)  # model / amplitude
    m *= sw
    ma = m * amp
    np.subtract(ma, zsw, out=r)
    # d model / d q = gq / q with gq = -bn * model * u / (2 n); the geometric parameters act through q.
    gq = ma * u
    gq *= -bn / (2.0 * n)
    g = gq / q
    jac[:, 0] = m
    np.multiply(gq, -2.0 / re, out=jac[:, 1])
    t = lq * u
    t *= bn * 0.5 / (n * n)
    um1 *= dbn
    t -= um1
    np.multiply(ma, t, out=jac[:, 2])
    g2 = g * -2.0
    np.multiply(g2, xa * c - yb * s, out=jac[:, 3])
    np.multiply(g2, xa * s + yb * c, out=jac[:, 4])
    yb *= ym
    np.multiply(g, yb, out=jac[:, 5])
    jac[:, 5] *= 2.0 / (1.0 - e)
    xm *= ym
    np.multiply(g, xm, out=jac[:, 6])
    jac[:, 6] *= 2.0 * (ia2 - ib2)


def _postfit(p: np.ndarray) -> np.ndarray:
    """statmorph's post-fit fix: the equivalent model with a > 0 and ellipticity in [0, 1]."""
    p = p.copy()
    p[:, 1] = np.abs(p[:, 1])
    e = p[:, 5]
    e = np.where(e > 1.0, 2.0 - e, e)
    neg = e < 0
    p[neg, 1] *= 1.0 - e[neg]
    p[neg, 6] += np.pi / 2
    e = np.where(neg, e / (e - 1.0), e)
    p[:, 5] = e
    return p


def fit_sersic_2d(
    stamps: list[np.ndarray], p0: np.ndarray, *, full_res_px: float = _FULL_RES_PX, max_iter: int = _MAX_ITER
) -> tuple[np.ndarray, np.ndarray]:
    """Fit Sersic2D to every stamp from its start.

    stamps: N sky-subtracted images `(h_i, w_i)`; p0: `(N, 7)` starting parameters in `PARAMS` order,
    positions in stamp pixels. Returns (params `(N, 7)` after statmorph's post-fit fix, flag `(N,)`:
    0 good, 1 suspect (a parameter on its bound, or not converged: not a measurement), 2 failed (NaN
    parameters)).
    """
    h = max((st.shape[0] for st in stamps), default=1)
    w = max((st.shape[1] for st in stamps), default=1)
    frames = np.zeros((len(stamps), h, w))
    bounds = np.zeros((len(stamps), 4), dtype=np.int64)
    for i, st in enumerate(stamps):
        frames[i, : st.shape[0], : st.shape[1]] = st
        bounds[i] = (0, st.shape[0], 0, st.shape[1])
    return fit_sersic_frames(frames, bounds, p0, full_res_px=full_res_px, max_iter=max_iter)


def fit_sersic_frames(
    frames: np.ndarray,
    bounds: np.ndarray,
    p0: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    full_res_px: float = _FULL_RES_PX,
    max_iter: int = _MAX_ITER,
) -> tuple[np.ndarray, np.ndarray]:
    """`fit_sersic_2d` on stamps held in frames `(N, H, W)` (zero off the stamps; bounds `(N, 4)` their
    (y0, y1, x0, x1)); positions in p0 are in stamp pixels, as the results. rows: the frames to fit,
    one per row of bounds and p0 (default: all, in order)."""
    num = len(bounds)
    p = np.asarray(p0, dtype=np.float64).reshape(num, 7).copy()
    flag = np.zeros(num, dtype=np.int8)
    p[:, 2] = np.maximum(p[:, 2], _N_MIN)
    bounds = np.asarray(bounds, dtype=np.int64)
    picks = np.arange(num) if rows is None else np.asarray(rows)
    for start in range(0, num, _CHUNK):
        sl = slice(start, start + _CHUNK)
        x, y, sw, zsw = _bin_frames(frames, bounds[sl], p[sl, 3], p[sl, 4], full_res_px, rows=picks[sl])
        lo, hi = _param_box(bounds[sl])
        p[sl], flag[sl] = _fit_chunk(x, y, sw, zsw, p[sl], lo, hi, max_iter=max_iter)
    return p, flag


def _param_box(bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds `(N, 7)` of the parameters for stamps with (y0, y1, x0, x1) `bounds (N, 4)`.

    The angle stays free. The ellipticity may go below 0 (b > a: statmorph's post-fit fix swaps the
    axes) down to -4 (axis ratio 1/5 the other way) and up to 0.99; unbounded, it ran to -1e9, and
    the fix turned that into r_eff ~ 1e11."""
    num = len(bounds)
    side = np.maximum(bounds[:, 1] - bounds[:, 0], bounds[:, 3] - bounds[:, 2]).astype(np.float64)
    lo = np.full((num, 7), -np.inf)
    hi = np.full((num, 7), np.inf)
    lo[:, 0] = _AMP_MIN
    lo[:, 1], hi[:, 1] = _R_MIN_PX, _R_MAX_SIDES * side
    lo[:, 2], hi[:, 2] = _N_MIN, _N_MAX
    lo[:, 3], hi[:, 3] = 0.0, (bounds[:, 3] - bounds[:, 2]) - 1.0
    lo[:, 4], hi[:, 4] = 0.0, (bounds[:, 1] - bounds[:, 0]) - 1.0
    lo[:, 5], hi[:, 5] = _E_MIN, _E_MAX
    return lo, hi


def _fit_chunk(
    x: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray,
    z: np.ndarray,
    p: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt on a chunk of binned stamps (`_bin_frames`) from `p (N, 7)`, every step
    projected into the box [lo, hi] `(N, 7)`."""
    num = len(p)
    flag = np.zeros(num, dtype=np.int8)
    p = np.clip(p, lo, hi)

    with np.errstate(all="ignore"):
        r, jac = _residuals_and_jacobian(p, x, y, z, sw)
        cost = np.einsum("ij,ij->i", r, r)
        jtj = np.matmul(jac, jac.transpose(0, 2, 1))
        jtr = np.matmul(jac, r[:, :, None])[:, :, 0]
        lam = np.full(num, 1e-3)
        converged = np.zeros(num, dtype=bool)
        active = np.flatnonzero(np.isfinite(cost))
        eye = np.eye(7)
        pix = (x, y, z, sw) if active.size == num else None  # the super-pixels of the active fits
        for _ in range(max_iter):
            if active.size == 0:
                break
            if pix is None:  # the active fits changed: gather theirs once
                pix = (x[active], y[active], z[active], sw[active])
            a = jtj[active]
            diag = np.maximum(np.einsum("nii->ni", a), 1e-30)
            aug = a + (lam[active, None] * diag)[:, :, None] * eye
            # Singular systems (e.g. a model flat in some parameter) get no step: they count as stalled.
            ok_sys = np.isfinite(aug).all(axis=(1, 2)) & (np.abs(np.linalg.det(aug)) > 0)
            step = np.zeros((active.size, 7))
            if ok_sys.any():
                step[ok_sys] = -np.linalg.solve(aug[ok_sys], jtr[active][ok_sys][:, :, None])[:, :, 0]
            trial = np.clip(p[active] + step, lo[active], hi[active])  # astropy clips bounded parameters
            rt, jt = _residuals_and_jacobian(trial, *pix)
            ct = np.einsum("ij,ij->i", rt, rt)
            better = np.isfinite(ct) & (ct < cost[active]) & ok_sys
            acc, rej = active[better], active[~better]
            rel_drop = (cost[acc] - ct[better]) / np.maximum(cost[acc], 1e-300)
            rel_step = np.max(np.abs(trial[better] - p[acc]) / (np.abs(p[acc]) + 1e-8), axis=1)
            p[acc], cost[acc] = trial[better], ct[better]
            every = bool(better.all())
            jb, rb = (jt, rt) if every else (jt[better], rt[better])
            jtj[acc] = np.matmul(jb, jb.transpose(0, 2, 1))
            jtr[acc] = np.matmul(jb, rb[:, :, None])[:, :, 0]
            lam[acc] = np.maximum(lam[acc] / 3.0, 1e-9)
            lam[rej] *= 4.0
            stop = np.zeros(num, dtype=bool)
            stop[acc] = (rel_drop < _TOL_DROP) | (rel_step < _TOL_STEP)
            stop[rej] = lam[rej] > 1e8  # no downhill step left: a (local) optimum
            converged |= stop
            if stop[active].any():
                active, pix = active[~stop[active]], None
    # On a bound (to rounding): the optimum lies outside the box, so the value is not a measurement.
    tol = 1e-9 * np.maximum(np.abs(p), 1.0)
    on_bound = ((p - lo <= tol) | (hi - p <= tol)).any(axis=1)
    p = _postfit(p)
    on_bound |= p[:, 1] > hi[:, 1]  # the fix lengthened r_eff beyond its bound (e < 0)
    bad = ~np.isfinite(p).all(axis=1) | ~np.isfinite(cost)
    flag[~converged | on_bound] = 1
    flag[bad] = 2
    p[bad] = np.nan
    return p, flag
