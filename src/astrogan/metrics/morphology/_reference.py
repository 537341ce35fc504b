"""The fast morphology engine's per-galaxy reference: the plain pipeline the batched one is tested against.

`measure_batch_reference` measures one galaxy at a time with `_Growth` (curves of growth of one
galaxy) where `measure.measure_batch` runs each step for the whole batch; both must give the
same numbers (tests/metrics/morphology/test_metrics_morphology_growth.py). The plain helpers the batched engine replaced
live here too (one galaxy's radius grid, Gaussian smoothing and Gini segmap; one stamp's binning for
the Sérsic fit; one galaxy's asymmetry search), each the reference its batched twin is tested against.
The reference pipeline runs the lockstep asymmetry search on its galaxy alone, so that the rest of
the two pipelines can be compared number for number. Private: only the tests import it (no
production code does, and `astrogan.metrics.morphology` does not re-export it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from astrogan.metrics.morphology.asymmetry import asymmetry_search_batch, quadratic_step, window_offsets
from astrogan.metrics.morphology.growth import (
    _ANNULUS,
    _ARANGE100,
    _DR,
    _ETA,
    _H,
    _SUB,
    _SUB_OX,
    _SUB_OY,
    _SUB_RADIUS,
)
from astrogan.metrics.morphology.measure import (
    _PETRO_EXTENT_CAS,
    _PETRO_FRACTION_CAS,
    _PETRO_FRACTION_GINI,
    _STRUCT8,
    _indices,
    _moments,
    _nan_record,
    _ramp,
    _shape,
    _skybox,
    gini,
    m20,
)
from astrogan.metrics.morphology.sersic import fit_sersic_2d

# Half box widths of the curves of growth in fine steps (the steps are the bin width).
_HALF_STEPS_FAR = int(round(0.5 / _DR))
_HALF_STEPS_NEAR = int(round(0.5 / _SUB / _DR))


def measure_batch_reference(img: np.ndarray, seg: np.ndarray) -> tuple[list[dict[str, float]], np.ndarray]:
    """Every galaxy of a batch of sky-subtracted images `(N,H,W)` with main-source masks `(N,H,W)`.

    One galaxy at a time (the Sérsic fits, as in production, for the whole batch at once).
    Returns (one record per galaxy, flags int8 `(N,)`).
    """
    recs, flags, jobs = [], np.zeros(len(img), dtype=np.int8), []
    # Overflows, 0/0 and log(0) are expected inside (they become inf/NaN and are handled).
    with np.errstate(all="ignore"):
        for i in range(len(img)):
            rec, flag, job = _measure_one(img[i], seg[i])
            recs.append(rec)
            flags[i] = flag
            if job is not None:
                jobs.append((i, *job))
        if jobs:
            params, fit_flag = fit_sersic_2d([j[1] for j in jobs], np.array([j[2] for j in jobs]))
            for (i, *_), p, f in zip(jobs, params, fit_flag, strict=True):
                if f == 0:  # converged inside the box: a measurement (on a bound or stalled: NaN)
                    recs[i]["sersic_n"], recs[i]["sersic_rhalf"] = float(p[2]), float(p[1])
                # A poor Sérsic fit alone does not spoil the other measurements.
                flags[i] = max(flags[i], min(int(f), 1))
    return recs, flags


class _Growth:
    """Curves of growth about one centre (circular, or elliptical with semi-major radius `a`).

    Pixels within `_SUB_RADIUS` of the centre are split into `_SUB`x`_SUB` sub-pixels so that small
    apertures are measured nearly exactly; each (sub-)pixel contributes with a linear ramp of its size
    across the aperture edge, a close stand-in for exact overlap areas.
    """

    def __init__(
        self,
        img: np.ndarray,
        xc: float,
        yc: float,
        *,
        elong: float = 1.0,
        theta: float = 0.0,
        sub_radius: float = _SUB_RADIUS,
    ):
        h, w = img.shape
        yy, xx = _indices(h, w)
        self.rad = rad = _radius_grid(h, w, xc, yc, elong, theta)
        self.rmax = float(rad.max()) + 1.0
        self.nb = int(self.rmax / _DR) + 2
        # rad / _DR < nb - 1 by construction of nb, so no clipping is needed here.
        self.idx_all = (rad.ravel() / _DR).astype(np.int64)
        # Running integrals of the cumulative profiles at the bin centres c_k (mass sits at c_k);
        # the two end points make interpolation exact below 0 and linear beyond the last bin.
        centres = (np.arange(self.nb) + 0.5) * _DR
        self._far = centres[-1] + 1e3
        self.grid = np.concatenate([[-1.0], centres, [self._far]])
        # Only small apertures (r20 of compact galaxies) need sub-pixels: Petrosian radii do not.
        # Near pixels are looked for in a small box about the centre, not over the whole image.
        self.near_flat = None
        if sub_radius > 0:
            y0, y1 = max(0, int(np.floor(yc - sub_radius))), min(h, int(np.ceil(yc + sub_radius)) + 1)
            x0, x1 = max(0, int(np.floor(xc - sub_radius))), min(w, int(np.ceil(xc + sub_radius)) + 1)
            by, bx = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
            near = np.hypot(bx - xc, by - yc) < sub_radius
            if near.any():
                by, bx = by[near], bx[near]
                self.near_flat = (by * w + bx).astype(np.int64)
                sy = (by[:, None] + _SUB_OY).ravel()
                sx = (bx[:, None] + _SUB_OX).ravel()
                sr = self._radius(sx - xc, sy - yc, elong, theta)
                self.idx_nearpix = self.idx_all[self.near_flat]
                self.idx_near = np.minimum((sr / _DR).astype(np.int64), self.nb - 1)
        # Histograms (counts and flux; whole pixels outside the sub-pixel zone, then sub-pixels),
        # integrated together as the rows of one array.
        v = img.ravel()
        hists = [
            np.bincount(self.idx_all, minlength=self.nb).astype(np.float64),
            np.bincount(self.idx_all, weights=v, minlength=self.nb),
        ]
        if self.near_flat is not None:
            hists[0] = hists[0] - np.bincount(self.idx_nearpix, minlength=self.nb)
            hists[1] = hists[1] - np.bincount(self.idx_nearpix, weights=v[self.near_flat], minlength=self.nb)
            near_v = np.repeat(v[self.near_flat] / _SUB**2, _SUB**2)
            hists.append(np.bincount(self.idx_near, minlength=self.nb) / _SUB**2)
            hists.append(np.bincount(self.idx_near, weights=near_v, minlength=self.nb))
        integ = self._integral(np.array(hists))
        self.int_count_far, self.int_hist_far = integ[0], integ[1]
        if self.near_flat is not None:
            self.int_count_near, self.int_hist_near = integ[2], integ[3]
        self._integ = integ
        self._ck = None

    def _integral(self, hist: np.ndarray) -> np.ndarray:
        """Running integrals of the cumulative sums of `hist` (rows), `(..., nb)` -> `(..., nb + 2)`."""
        cum = np.cumsum(hist, axis=-1)
        integ = np.empty(hist.shape[:-1] + (self.nb + 2,))
        integ[..., :2] = 0.0
        np.cumsum(cum[..., :-1] * _DR, axis=-1, out=integ[..., 2:-1])
        integ[..., -1] = integ[..., -2] + cum[..., -1] * (self._far - self.grid[-2])
        return integ

    @staticmethod
    def _radius(dx: np.ndarray, dy: np.ndarray, elong: float, theta: float) -> np.ndarray:
        if elong == 1.0:
            return np.hypot(dx, dy)
        c, s = np.cos(theta), np.sin(theta)
        xp = dx * c + dy * s
        yp = -dx * s + dy * c
        return np.hypot(xp, yp * elong)

    def flux_area(self, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flux and area inside apertures of the given radii (any shape).

        A ramp of width `w` across the edge equals a box average of width `w` of the step-wise
        cumulative profile, so each curve is two interpolations of its running integral.
        """
        r = np.asarray(radii, dtype=np.float64)
        flux = self._box(self.int_hist_far, r, 1.0)
        area = self._box(self.int_count_far, r, 1.0)
        if self.near_flat is not None:
            flux = flux + self._box(self.int_hist_near, r, 1.0 / _SUB)
            area = area + self._box(self.int_count_near, r, 1.0 / _SUB)
        return flux, area

    def _box(self, integral: np.ndarray, r: np.ndarray, width: float) -> np.ndarray:
        hi = np.interp(r + 0.5 * width, self.grid, integral)
        lo = np.interp(r - 0.5 * width, self.grid, integral)
        return (hi - lo) / width

    def _curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flux and area of apertures on the fine grid r_k = k * _H (0 <= r_k <= rmax + 1)."""
        if self._ck is None:
            num = int((self.rmax + 1.0) / _H) + 1
            rk = np.arange(num) * _H
            a, f = self._box_fine(self._integ[:2], num, _HALF_STEPS_FAR)
            if self.near_flat is not None:
                a_near, f_near = self._box_fine(self._integ[2:], num, _HALF_STEPS_NEAR)
                f, a = f + f_near, a + a_near
            self._ck = (rk, f, a)
        return self._ck

    def _box_fine(self, integral: np.ndarray, num: int, half_steps: int) -> np.ndarray:
        """`_box` on the fine grid r_k = k * _H without interpolation searches: r_k +- half the box
        width is m * _DR, midway between two bin centres (or past the last one, where the running
        integral is linear towards the far point)."""
        nb = self.nb
        ext = np.empty(integral.shape[:-1] + (num + half_steps,))
        ext[..., :nb] = 0.5 * (integral[..., :nb] + integral[..., 1 : nb + 1])
        last = self.grid[-2]
        slope = (integral[..., -1:] - integral[..., -2:-1]) / (self._far - last)
        ext[..., nb:] = integral[..., -2:-1] + (np.arange(nb, num + half_steps) * _DR - last) * slope
        out = ext[..., half_steps : half_steps + num].copy()
        out[..., half_steps:] -= ext[..., : num - half_steps]  # r_k - width / 2 < 0 holds nothing
        return out / (2 * half_steps * _DR)

    def petrosian(self, r_outer: float) -> tuple[float, int]:
        """Petrosian radius (annulus mean / enclosed mean = eta) and a flag, by statmorph's rule: the
        first of 100 radii in [annulus width, r_outer] below eta brackets the root, which is then
        found on the fine grid (first sign change in the bracket, linear interpolation)."""
        rk, f, a = self._curves()
        s = int(round(0.5 * _ANNULUS / _H))
        ann = np.abs((f[2 * s :] - f[: -2 * s]) / (a[2 * s :] - a[: -2 * s]))
        val = ann / np.abs(f[s:-s] / a[s:-s]) - _ETA
        val = np.where(np.isfinite(val), val, 1.0 - _ETA)
        r_mid = rk[s:-s]
        # np.linspace(_ANNULUS, r_outer, 100), by its own arithmetic, without its call overhead.
        coarse = _ARANGE100 * ((r_outer - _ANNULUS) / 99) + _ANNULUS
        coarse[-1] = r_outer
        cval = np.interp(coarse, r_mid, val)
        below = np.flatnonzero(cval <= 0)
        if below.size == 0:
            return float(r_outer), 2
        j = int(below[0])
        if j == 0:
            return float(coarse[0]), 2
        lo, hi = np.searchsorted(r_mid, [coarse[j - 1], coarse[j]])
        seg = val[lo : hi + 1]
        k = int(np.argmax(seg <= 0)) if np.any(seg <= 0) else len(seg) - 1
        if k == 0:
            return float(r_mid[lo]), 0
        v0, v1 = seg[k - 1], seg[k]
        r0 = r_mid[lo + k - 1]
        return float(r0 + _H * v0 / (v0 - v1)), 0

    def radius_at_fraction(self, r_total: float, fractions: Sequence[float]) -> tuple[list[float], int]:
        """Radii holding the given fractions of the flux inside `r_total` (first crossing on the fine grid)."""
        rk, f, _ = self._curves()
        total = float(self.flux_area(np.array([r_total]))[0][0])
        flag = 0
        if total == 0:
            return [float("nan")] * len(fractions), 2
        if total < 0:
            flag, total = 2, abs(total)
        n = int(np.searchsorted(rk, r_total))
        frac = np.abs(f[:n]) / total
        out = []
        for q in fractions:
            up = np.flatnonzero(frac > q)
            if up.size == 0 or up[0] == 0:
                out.append(float("nan"))
                flag = 2
                continue
            k = int(up[0])
            v0, v1 = frac[k - 1], frac[k]
            out.append(float(rk[k - 1] + _H * (q - v0) / (v1 - v0)))
        return out, flag


def _measure_one(img: np.ndarray, seg: np.ndarray) -> tuple[dict[str, float], int, tuple | None]:
    """Everything but the Sérsic fit: (values, flag, (stamp, start parameters) of the fit or None)."""
    rec = _nan_record()
    if not seg.any():
        return rec, 2, None
    # Work in statmorph's "postage stamp": the segment's bounding box grown 2.5x (at least 48 px).
    ys, xs = np.nonzero(seg.any(axis=1))[0], np.nonzero(seg.any(axis=0))[0]
    dy, dx = ys[-1] + 1 - ys[0], xs[-1] + 1 - xs[0]
    cy, cx = ys[0] + dy // 2, xs[0] + dx // 2
    dist = max(int(max(dx, dy) * 2.5 / 2.0), 24)
    y_off, x_off = max(0, cy - dist), max(0, cx - dist)
    full_h, full_w = img.shape
    touches = bool(seg[0].any() or seg[-1].any() or seg[:, 0].any() or seg[:, -1].any())
    img = img[y_off : min(full_h, cy + dist), x_off : min(full_w, cx + dist)]
    seg = seg[y_off : min(full_h, cy + dist), x_off : min(full_w, cx + dist)]
    img_seg = np.where(seg, img, 0.0)
    tot = img_seg.sum()
    if tot <= 0:
        return rec, 2, None
    h, w = img.shape
    yy, xx = _indices(h, w)
    xc0 = float((img_seg * xx).sum() / tot)
    yc0 = float((img_seg * yy).sum() / tot)
    rec["xc_centroid"], rec["yc_centroid"] = xc0 + x_off, yc0 + y_off
    flag = 1 if touches else 0  # a source touching the border has truncated radii
    diag = float(np.hypot(h, w))  # statmorph's outer limit of the Petrosian search
    rp0, f = _Growth(img, xc0, yc0, sub_radius=0.0).petrosian(diag)
    flag = max(flag, f)

    box = _skybox(img, seg)
    if box.size:
        sky_asym = float(np.abs(box[::-1, ::-1] - box).sum() / box.size)
    else:
        sky_asym, flag = 0.0, max(flag, 1)

    # statmorph lets the asymmetry centre drift up to 0.25 rp from the centroid; when it drifts further
    # it starts again from the brightest pixel, and when that drifts too it keeps the centroid (bad).
    r_ap, reach = _PETRO_EXTENT_CAS * rp0, max(1.0, _PETRO_FRACTION_CAS * rp0)
    # The search itself is the batched one, run for this galaxy alone (a galaxy's search does not
    # depend on its batch; `_asymmetry_search` below is the plain search it is tested against).
    asym, xa, ya, drifted = _search_alone(img, xc0, yc0, r_ap, sky_asym, reach)
    if drifted:
        flag = max(flag, 1)
        iy, ix = np.unravel_index(int(np.argmax(img_seg)), img_seg.shape)
        asym, xa, ya, drifted = _search_alone(img, float(ix), float(iy), r_ap, sky_asym, reach)
        if drifted:
            flag, xa, ya = 2, xc0, yc0
    rec["asymmetry"], rec["xc_asymmetry"], rec["yc_asymmetry"] = asym, xa + x_off, ya + y_off

    ell, elong, theta = _shape(*_moments(img_seg, xa, ya))
    ell_c, _, theta_c = _shape(*_moments(img_seg, xc0, yc0))
    rec["ellipticity"], rec["orientation"] = ell_c, theta_c
    rec["elongation"] = 1.0 / (1.0 - ell_c)

    g_circ = _Growth(img, xa, ya)
    rp, f = g_circ.petrosian(diag)
    flag = max(flag, f)
    rec["rpetro_circ"] = rp
    (r20, r50, r80), f = g_circ.radius_at_fraction(_PETRO_EXTENT_CAS * rp, (0.2, 0.5, 0.8))
    flag = max(flag, f)
    rec["r20"], rec["r50"], rec["r80"] = r20, r50, r80
    if r20 > 0 and r80 > 0:
        rec["concentration"] = 5.0 * np.log10(r80 / r20)

    # Smoothness (Lotz et al. 2004 eq. 11) in the annulus [0.25, 1.5] rp about the asymmetry centre.
    boxcar = max(int(_PETRO_FRACTION_CAS * rp), 1)
    diff = img - ndi.uniform_filter(img, size=boxcar)
    diff = np.maximum(diff, 0.0)
    r = g_circ.rad  # circular radius about the asymmetry centre
    r_in, r_out = _PETRO_FRACTION_CAS * rp, _PETRO_EXTENT_CAS * rp
    wgt = _ramp(r_out - r + 0.5) - _ramp(r_in - r + 0.5)
    ann_flux = float((wgt * img).sum())
    if box.size:
        bd = box - ndi.uniform_filter(box, size=boxcar)
        sky_smooth = float(np.maximum(bd, 0).sum() / box.size)
    else:
        sky_smooth = 0.0
    if ann_flux > 0:
        rec["smoothness"] = float(((wgt * diff).sum() - np.pi * (r_out**2 - r_in**2) * sky_smooth) / ann_flux)
    else:
        flag = 2

    g_ell = _Growth(img, xa, ya, elong=elong, theta=theta)
    rpe, f = g_ell.petrosian(diag * elong)
    flag = max(flag, f)
    rec["rpetro_ellip"] = rpe
    gseg, f = _gini_segmap(img, rpe, xc0, yc0, elong, theta)
    flag = max(flag, f)
    if gseg.sum() > 1:
        rec["gini"] = gini(img[gseg])
        rec["m20"] = m20(img, gseg)

    if flag >= 2:
        # Keep positions, drop measurements that depend on the failed step.
        keep = {k: rec[k] for k in ("xc_centroid", "yc_centroid")}
        return _nan_record() | keep, flag, None
    return rec, flag, _sersic_start(img, g_ell, rec["concentration"], seg, xa, ya, ell, theta)


def _sersic_start(
    img: np.ndarray,
    g_ell: _Growth,
    conc: float,
    seg: np.ndarray,
    xa: float,
    ya: float,
    ell: float,
    theta: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """statmorph's starting point of the 2D Sérsic fit, or None where statmorph gives up (flag 2).

    n from the concentration (within [1, 3.5]); r_eff the elliptical half-light radius about the
    asymmetry centre (total: the light within the segment's outermost ellipse); the amplitude the
    mean brightness in the elliptical annulus at r_eff; centre and ellipse from the asymmetry centre.
    """
    n_guess = float(np.clip(10.0**-1.5 * conc**3.5, 1.0, 3.5)) if np.isfinite(conc) and conc > 0 else 2.0
    r_max = float(g_ell.rad[seg].max())
    (r_guess,), f = g_ell.radius_at_fraction(r_max, (0.5,))
    a_in, a_out = r_guess - 0.5 * _ANNULUS, r_guess + 0.5 * _ANNULUS
    if f >= 2 or not np.isfinite(r_guess) or a_in < 0:
        return None
    flux, area = g_ell.flux_area(np.array([a_in, a_out]))
    amp = (flux[1] - flux[0]) / (area[1] - area[0])
    if not amp > 0:
        return None
    return img, np.array([amp, r_guess, n_guess, xa, ya, ell, theta])


# ----------------------------------------------------------------------------------------------
# Plain versions of the helpers the batched engine replaced


def _radius_grid(h: int, w: int, xc: float, yc: float, elong: float, theta: float) -> np.ndarray:
    """Circular or elliptical radius of every pixel of an (h, w) image about (xc, yc), float64 (h, w).

    Same values as `_Growth._radius` on full coordinate arrays (to rounding: sqrt of the sum of
    squares, several times faster than hypot), built from a row and a column.
    """
    dx = np.arange(w, dtype=np.float64) - xc
    dy = (np.arange(h, dtype=np.float64) - yc)[:, None]
    if elong == 1.0:
        r = dx * dx + dy * dy
        return np.sqrt(r, out=r)
    c, s = np.cos(theta), np.sin(theta)
    xp = dx * c + dy * s
    yp = -dx * s + dy * c
    yp *= elong
    xp *= xp
    yp *= yp
    xp += yp
    return np.sqrt(xp, out=xp)


def _gaussian_band(n: int, sigma: float) -> np.ndarray:
    """(n, n) float32 matrix of scipy's truncated Gaussian kernel (radius int(4 sigma + 0.5)) with
    zeros outside: `band @ x` is `ndi.gaussian_filter1d(x, sigma, axis=0, mode="constant")`."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x * x)
    phi /= phi.sum()
    d = np.arange(n)[None, :] - np.arange(n)[:, None]  # j - i
    inside = np.abs(d) <= radius
    return np.where(inside, phi[np.clip(d + radius, 0, 2 * radius)], 0.0).astype(np.float32)


def _gaussian_filter_zero(img: np.ndarray, sigma: float) -> np.ndarray:
    """`ndi.gaussian_filter(img, sigma, mode="constant", cval=0)` in float32, as two matrix products
    (the separable filter with zero borders is a banded matrix per axis; BLAS beats the line loops)."""
    img = img.astype(np.float32)
    if not sigma > 1e-15:
        return img
    h, w = img.shape
    band_y = _gaussian_band(h, sigma)
    band_x = band_y if w == h else _gaussian_band(w, sigma)
    return band_y @ img @ band_x.T


def _gini_segmap(img: np.ndarray, rpe: float, xc: float, yc: float, elong: float, theta: float):
    """statmorph's Gini segmap: the smoothed image above its mean in the elliptical annulus at the
    Petrosian radius, centred on the centroid, over the annulus' full area (no mask, as statmorph)."""
    smooth = _gaussian_filter_zero(img, _PETRO_FRACTION_GINI * rpe)
    h, w = img.shape
    yy, xx = _indices(h, w)
    ra = _radius_grid(h, w, xc, yc, elong, theta)
    a_in, a_out = rpe - 0.5 * _ANNULUS, rpe + 0.5 * _ANNULUS
    wgt = _ramp(a_out - ra + 0.5) - _ramp(a_in - ra + 0.5)
    area = np.pi * (a_out**2 - np.sign(a_in) * a_in**2) / elong
    thr = float((wgt * smooth).sum() / max(area, 1e-12))
    above = smooth >= thr
    flag = 0
    if not above.any() or above.all():
        return above, 2
    labels, num = ndi.label(above, structure=_STRUCT8)
    if num > 1:
        flag = 1
        iy, ix = np.unravel_index(np.argmax(smooth), smooth.shape)
        above = labels == labels[iy, ix]
    return above, flag


def _bin_stamp(stamp: np.ndarray, xc: float, yc: float, full_px: float) -> np.ndarray:
    """Super-pixels of one stamp: `(4, M)` rows x, y (mean position), count, mean value.

    The stamp is tiled by 8x8 blocks anchored at the start centre (which lies in a middle 2x2 of its
    block); blocks within `full_px` (Chebyshev distance) of the centre are split into pixels, those
    within 2 `full_px` into 2x2 blocks, within 4 `full_px` into 4x4 blocks, and the rest kept whole.
    Pixels equal to 0 (masked, as statmorph's fit weights say) are left out.
    """
    h, w = stamp.shape
    ax, ay = int(np.floor(xc)) - 3, int(np.floor(yc)) - 3  # a block corner
    top, left = (-ay) % 8, (-ax) % 8  # padding that puts the block corner (ay, ax) at a multiple of 8
    hp, wp = -(-(top + h) // 8) * 8, -(-(left + w) // 8) * 8
    valid = stamp != 0
    planes = np.zeros((4, hp, wp))
    sl = (slice(top, top + h), slice(left, left + w))
    planes[0][sl] = valid * np.arange(w, dtype=np.float64)[None, :]
    planes[1][sl] = valid * np.arange(h, dtype=np.float64)[:, None]
    planes[2][sl] = valid
    planes[3][sl] = stamp
    # Distance of each 8x8 block's nearest pixel to the centre, per axis (block centre at corner + 3.5).
    cy8 = np.arange(hp // 8) * 8 + 3.5 - top
    cx8 = np.arange(wp // 8) * 8 + 3.5 - left
    d8 = np.maximum(
        np.maximum(np.abs(cy8 - yc) - 3.5, 0.0)[:, None], np.maximum(np.abs(cx8 - xc) - 3.5, 0.0)[None, :]
    )
    level8 = np.where(d8 < full_px, 1, np.where(d8 < 2 * full_px, 2, np.where(d8 < 4 * full_px, 4, 8)))
    parts = []
    sums = planes
    for size in (1, 2, 4, 8):
        if size > 1:  # 2x2 sums of the previous level: pairs of rows, then pairs of columns
            sums = sums[:, 0::2, :] + sums[:, 1::2, :]
            sums = sums[:, :, 0::2] + sums[:, :, 1::2]
        sel8 = level8 == size
        if not sel8.any():
            continue
        k = 8 // size
        sel = np.repeat(np.repeat(sel8, k, axis=0), k, axis=1) if k > 1 else sel8
        picked = sums[:, sel]
        parts.append(picked[:, picked[2] > 0])
    out = np.concatenate(parts, axis=1)
    out[:2] /= out[2]
    out[3] /= out[2]
    return out


def _search_alone(
    img: np.ndarray, x0: float, y0: float, r_ap: float, sky: float, reach: float
) -> tuple[float, float, float, bool]:
    """`asymmetry_search_batch` for one galaxy: (A, xc, yc, drifted)."""
    a, x, y, d = asymmetry_search_batch([img], *(np.array([v]) for v in (x0, y0, r_ap, sky, reach)))
    return float(a[0]), float(x[0]), float(y[0]), bool(d[0])


def _asymmetry_search(
    img: np.ndarray, x0: float, y0: float, r_ap: float, sky_asym: float, *, reach_px: float
) -> tuple[float, float, float, bool]:
    """Minimum CAS asymmetry (Lotz et al. 2004 eq. 10, sky term subtracted) over centres near (x0, y0),
    one galaxy at a time: the plain search `asymmetry.asymmetry_search_batch` is tested against.

    statmorph rotates by 180 degrees with bilinear interpolation (skimage, zero outside the stamp):
    about a centre whose doubled coordinates are u = a + fu, v = b + fv (a, b integers) the rotated
    image is the bilinear mix of four exact flips F[a..a+1, b..b+1]. A batch of candidate centres is
    scored at once (flips are gathers from the flipped, zero-padded stamp, in float32), and the search
    is a 3x3 pattern search from the centroid in steps of 1/2 then 1/4 px, ended by the minimum of a
    quadratic through the last 3x3 scores. Returns (A, xc, yc, drifted) where drifted says the
    centre left `reach_px` of the start.
    """
    search = _PlainSearch(img, x0, y0, r_ap, sky_asym, reach_px=reach_px)
    best = search.refine(*search.walk())
    ub, vb = best
    drifted = np.hypot(ub / 2.0 - x0, vb / 2.0 - y0) > reach_px
    return float(search.cache[best]), ub / 2.0, vb / 2.0, bool(drifted)


# The 3x3 pattern of the search, in steps: (i, j) row by row.
_SQUARE = [(i, j) for j in (-1, 0, 1) for i in (-1, 0, 1)]


class _PlainSearch:
    """One galaxy's asymmetry search (`_asymmetry_search`): its padded stamp and flips, and every score so far.

    Centres are doubled coordinates (u, v) = (2 x, 2 y), so the half-pixel grid of exact flips is integer.
    """

    def __init__(
        self, img: np.ndarray, x0: float, y0: float, r_ap: float, sky_asym: float, *, reach_px: float
    ) -> None:
        """The start, the padded stamp, its flip, and the window pixels any candidate aperture can touch."""
        self.h, self.w = h, w = img.shape
        # The doubled start; centres stay within `reach_px` (+1 px) of it.
        self.u0, self.v0 = float(round(2.0 * x0)), float(round(2.0 * y0))
        self.lim = 2.0 * reach_px + 2.0
        self.r_ap, self.sky_asym, self.reach_px = r_ap, sky_asym, reach_px
        self.half = half = int(np.ceil(r_ap + 1.0)) + 2  # window half size around the current best centre
        # Window pixels and their 180-degree images both lie within `half` (+2) px of a centre inside
        # the stamp, so this margin keeps every gather (including the bilinear neighbours) in bounds.
        self.pad = pad = half + int(np.ceil(reach_px)) + 6
        # float32 halves the memory traffic of the (candidates x pixels) arrays; A needs no more.
        padded = np.pad(img.astype(np.float32), pad)
        self.flat = padded.ravel()
        flipped = np.ascontiguousarray(padded[::-1, ::-1]).ravel()
        self.hp, self.wp = hp, wp = padded.shape
        self.shifted = flipped[wp + 1 :]
        # Window pixels any candidate aperture can touch, sorted by radius. Candidates lie within 1 px
        # per axis (sqrt 2 in all) of the window centre, so pixels deeper than r_ap - 2 have weight 1
        # and pixels beyond r_ap + 2 weight 0 for every candidate (the aperture edge ramp is 1 px wide).
        oy_i, ox_i, rc = window_offsets(half)
        num_win = int(np.searchsorted(rc, r_ap + 2.0, side="right"))
        self.oy_i, self.ox_i, rc = oy_i[:num_win], ox_i[:num_win], rc[:num_win]
        self.oy, self.ox = self.oy_i.astype(np.float32), self.ox_i.astype(np.float32)
        self.rel = self.oy_i * wp + self.ox_i
        self.num_deep = int(np.searchsorted(rc, r_ap - 2.0, side="left"))
        self.cache: dict[tuple[float, float], float] = {}
        self.windows: dict[tuple[int, int], tuple] = {}
        # (window x, y, a, b) -> F_{a,b} on its pixels; shift -> ring weights (interior windows).
        self.flips: dict[tuple[int, int, int, int], np.ndarray] = {}
        self.ring_cache: dict[tuple[float, float], np.ndarray] = {}

    def window(self, wx: int, wy: int) -> tuple:
        """Window pixels about (wx, wy) inside the stamp: flat indices, offsets, deep count, values."""
        key = (wx, wy)
        if key not in self.windows:
            h, w, half, rel, num_deep = self.h, self.w, self.half, self.rel, self.num_deep
            ox, oy = self.ox, self.oy
            idx = (self.pad + wy) * self.wp + self.pad + wx + rel
            interior = wy - half >= 0 and wy + half < h and wx - half >= 0 and wx + half < w
            if interior:
                srel, k, oxr, oyr = rel, num_deep, ox[num_deep:], oy[num_deep:]
            else:
                ys, xs = wy + self.oy_i, wx + self.ox_i
                sel = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)  # outside the stamp adds nothing
                idx, srel = idx[sel], rel[sel]
                k = int(np.count_nonzero(sel[:num_deep]))  # still sorted: the first k pixels are deep
                oxr, oyr = ox[sel][k:], oy[sel][k:]
            win = self.flat[idx]
            awin = np.abs(win)
            ones = np.ones(k, dtype=np.float32)
            self.windows[key] = (srel, k, oxr, oyr, win, awin, ones, float(awin[:k] @ ones), interior)
        return self.windows[key]

    def ring_weights(
        self, shifts: np.ndarray, oxr: np.ndarray, oyr: np.ndarray, interior: bool
    ) -> np.ndarray:
        """Aperture weights of the ring pixels for candidates at `shifts` (px, `(n, 2)`) from the window
        centre. Interior windows share their ring pixels, so the weights of a shift are kept and
        reused as the search walks (a few distinct shifts recur: multiples of 1/4 px)."""
        if interior:
            keys = [tuple(r) for r in shifts.tolist()]
            missing = [i for i, key in enumerate(keys) if key not in self.ring_cache]
            if missing:
                for i, row in zip(missing, self.ring_weights(shifts[missing], oxr, oyr, False), strict=True):
                    self.ring_cache[keys[i]] = row
            return np.stack([self.ring_cache[key] for key in keys])
        dx = oxr[None, :] + shifts[:, :1]
        dy = oyr[None, :] + shifts[:, 1:]
        dx *= dx
        dy *= dy
        dx += dy
        wgt = np.sqrt(dx, out=dx)
        np.subtract(np.float32(self.r_ap + 0.5), wgt, out=wgt)
        return np.minimum(np.maximum(wgt, 0.0, out=wgt), 1.0, out=wgt)  # np.clip, without its overhead

    def rotated_minus_window(
        self, cands: list[tuple[float, float]], wx: int, wy: int, srel: np.ndarray, win: np.ndarray
    ) -> np.ndarray:
        """The image rotated about each of `cands` minus the image, on the window pixels about (wx, wy)."""
        flips, wp = self.flips, self.wp
        # F_{a,b}[y, x] = padded[pad + b - y, pad + a - x] = flipped[hp - 1 - pad - b + y, wp - 1 - pad - a + x]
        # (indices counted from wp + 1, the start of shifted[0]).
        off0 = (self.hp - 1 - self.pad + wy) * wp + (wp - 1 - self.pad + wx) - (wp + 1)
        terms = []  # per candidate: [(weight, (a, b)), ...], the exact flips it mixes
        for u, v in cands:
            a, b = math.floor(u), math.floor(v)
            fu, fv = u - a, v - b
            mix = [((1 - fu) * (1 - fv), (a, b)), (fu * (1 - fv), (a + 1, b)), ((1 - fu) * fv, (a, b + 1))]
            mix.append((fu * fv, (a + 1, b + 1)))
            terms.append([(wgt_, ab) for wgt_, ab in mix if wgt_ != 0.0])
        # Exact flips are gathered once per window and kept: the half-step candidates of the finer
        # search and the quadratic step mix flips the coarse search already gathered.
        need = sorted({ab for t in terms for _, ab in t if (wx, wy, *ab) not in flips})
        single = all(len(t) == 1 for t in terms)
        if single and len(need) == len(terms):
            # New exact flips only (the coarse search): gathered in the candidates' order, kept as they
            # are for later mixes; the differences go to a new array.
            need = [t[0][1] for t in terms]
        if need:
            base = np.array([off0 - b * wp - a for a, b in need], dtype=np.int64)
            got = np.take(self.shifted, base[:, None] + srel[None, :])
            for ab, row in zip(need, got, strict=True):
                flips[(wx, wy, *ab)] = row
        if single:
            if len(need) == len(terms):
                rot = got - win
            else:
                rot = np.stack([flips[(wx, wy, *t[0][1])] for t in terms])
                rot -= win
        else:  # bilinear mixes: one small matrix product (weights x flips)
            refs = sorted({ab for t in terms for _, ab in t})
            col = {ab: i for i, ab in enumerate(refs)}
            mix_w = np.zeros((len(cands), len(refs)), dtype=np.float32)
            for i, t in enumerate(terms):
                for wgt_, ab in t:
                    mix_w[i, col[ab]] = wgt_
            rot = mix_w @ np.stack([flips[(wx, wy, *ab)] for ab in refs])
            rot -= win
        return rot

    def score(self, cands: list[tuple[float, float]], cu: float, cv: float) -> None:
        """A at doubled centres `cands`, on the window pixels about the doubled centre (cu, cv)."""
        wx, wy = int(round(cu / 2.0)), int(round(cv / 2.0))
        srel, k, oxr, oyr, win, awin, ones, tot_deep, interior = self.window(wx, wy)
        rot = self.rotated_minus_window(cands, wx, wy, srel, win)
        diff = np.abs(rot, out=rot)
        shift = np.array([(wx - u / 2.0, wy - v / 2.0) for u, v in cands], dtype=np.float32)
        wgt = self.ring_weights(shift, oxr, oyr, interior)
        tot = tot_deep + wgt @ awin[k:]
        num = diff[:, :k] @ ones + np.einsum("ij,ij->i", wgt, diff[:, k:])
        num = num - (k + wgt.sum(axis=1)) * self.sky_asym
        val = num / tot
        for c, x, t_ in zip(cands, val.tolist(), tot.tolist(), strict=True):
            self.cache[c] = x if t_ > 0 else np.inf

    def ok(self, c: tuple[float, float]) -> bool:
        """Whether doubled centre `c` is on the stamp and within the search's limit."""
        return (
            0 <= c[0] <= 2 * (self.w - 1)
            and 0 <= c[1] <= 2 * (self.h - 1)
            and abs(c[0] - self.u0) <= self.lim
            and abs(c[1] - self.v0) <= self.lim
        )

    def walk(self) -> tuple[tuple[float, float], float]:
        """The 3x3 pattern search from the start in (doubled) steps of 1 then 0.5: (best centre, last step)."""
        cache = self.cache
        best = (self.u0, self.v0)
        for step, tries in ((1.0, 2 * int(np.ceil(self.reach_px)) + 2), (0.5, 2)):
            for _ in range(tries):
                cu, cv = best
                cands = [(cu + step * i, cv + step * j) for i, j in _SQUARE]
                cands = [c for c in cands if self.ok(c)]
                new = [c for c in cands if c not in cache]
                if new:
                    self.score(new, cu, cv)
                nb = min(cands, key=lambda c: cache[c])
                if nb == best or cache[nb] >= cache[best]:
                    break
                best = nb
        return best, step

    def refine(self, best: tuple[float, float], step: float) -> tuple[float, float]:
        """Finer refinement (statmorph's Nelder-Mead ends anywhere): the minimum of a quadratic through
        the last 3x3 values, scored with bilinear rotation, kept if it is lower."""
        cache = self.cache
        cu, cv = best
        grid = [(cu + step * i, cv + step * j) for i, j in _SQUARE]
        if all(c in cache and np.isfinite(cache[c]) for c in grid):
            d = quadratic_step(np.array([cache[c] for c in grid]).reshape(3, 3), step)
            if d is not None:
                du, dv = d
                c = (cu + du, cv + dv)
                if (du or dv) and self.ok(c):
                    self.score([c], cu, cv)
                    if cache[c] < cache[best]:
                        best = c
        return best
