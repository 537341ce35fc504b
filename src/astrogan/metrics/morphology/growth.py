"""Curves of growth of a whole batch of galaxies at once: statmorph's Petrosian and fractional-light radii.

The batch twin of `_reference._Growth` (the per-galaxy reference, kept for tests): the same radial
histograms (bins of `_DR` px, sub-pixels near the centre), the same running integrals and the same
bracketing rules, but as array operations over all galaxies, so that a 64 px stamp costs a few
microseconds of arithmetic instead of a few hundred NumPy calls. Galaxies keep their own postage
stamps: every image of the batch is the full frame, and `valid` marks each galaxy's stamp (pixels
outside it count neither as flux nor as area, as outside statmorph's cutout).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_ETA = 0.2  # Petrosian ratio (statmorph default)
_ANNULUS = 1.0  # annulus width in px
_DR = 0.05  # radius bin of the curves of growth, px
_H = 0.05  # radius step of the sampled curves (half the annulus width is a whole number of steps)
_SUB = 5  # sub-pixels per axis for pixels near an aperture centre
_SUB_RADIUS = 4.0  # px around the centre that are sub-sampled
_S = int(round(0.5 * _ANNULUS / _H))  # half the annulus, in steps
_SUB_OFF = (np.arange(_SUB) + 0.5) / _SUB - 0.5
_SUB_OY = np.repeat(_SUB_OFF, _SUB)  # sub-pixel offsets, row-major over the (y, x) sub-grid
_SUB_OX = np.tile(_SUB_OFF, _SUB)
_ARANGE100 = np.arange(100.0)
_PART = 16  # frames whose per-pixel arrays are made at once (a few hundred kB: they stay in cache)


def radius_grids(
    h: int,
    w: int,
    xc: np.ndarray,
    yc: np.ndarray,
    elong: np.ndarray | None = None,
    theta: np.ndarray | None = None,
    *,
    x0: np.ndarray | None = None,
    y0: np.ndarray | None = None,
) -> np.ndarray:
    """Circular (or elliptical: semi-major) radius of every pixel of `(h, w)` frames about each centre:
    `(N, h, w)`. Centres are relative to each frame's origin (x0, y0) (default 0): the differences are
    then taken exactly as in the origin's own coordinates. Made `_PART` frames at a time into the
    output (each frame's numbers are its own; the temporaries stay in cache)."""
    return _Radii(h, w, xc, yc, elong, theta, x0, y0).full()


class _Radii:
    """`radius_grids` on demand: the radii of some frames (`part`) or at some pixels (`at`), each
    number made by the same operations as in the whole grid (separable pieces, then per pixel)."""

    def __init__(
        self,
        h: int,
        w: int,
        xc: np.ndarray,
        yc: np.ndarray,
        elong: np.ndarray | None,
        theta: np.ndarray | None,
        x0: np.ndarray | None,
        y0: np.ndarray | None,
    ):
        n = len(xc)
        self.n, self.h, self.w = n, h, w
        zero = np.zeros(n)
        cols = np.arange(w, dtype=np.float64)[None, :] - (zero if x0 is None else x0)[:, None]
        rows = np.arange(h, dtype=np.float64)[None, :] - (zero if y0 is None else y0)[:, None]
        dx = (cols - xc[:, None])[:, None, :]  # (n, 1, w)
        dy = (rows - yc[:, None])[:, :, None]  # (n, h, 1)
        self.elliptical = elong is not None
        if elong is None:
            self.pieces: tuple[np.ndarray, ...] = (dx * dx, dy * dy)
        else:
            assert theta is not None
            c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
            self.pieces = (dx * c, dy * s, dy * c, dx * s, elong[:, None, None])

    def full(self) -> np.ndarray:
        """All the frames' radii `(N, h, w)`, made `_PART` frames at a time."""
        out = np.empty((self.n, self.h, self.w))
        for a in range(0, self.n, _PART):
            self.part(slice(a, a + _PART), out=out[a : a + _PART])
        return out

    def part(self, sel: slice | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Radii `(m, h, w)` of the frames `sel`."""
        if not self.elliptical:
            dx2, dy2 = self.pieces
            r = np.add(dx2[sel], dy2[sel], out=out)
            return np.sqrt(r, out=r)
        dxc, dys, dyc, dxs, el = self.pieces
        xp = np.add(dxc[sel], dys[sel], out=out)
        yp = dyc[sel] - dxs[sel]
        yp *= el[sel]
        xp *= xp
        yp *= yp
        xp += yp
        return np.sqrt(xp, out=xp)

    def at(self, g: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Radii at pixels (y, x) of frames g (arrays of one shape)."""
        if not self.elliptical:
            dx2, dy2 = self.pieces
            return np.sqrt(dx2[g, 0, x] + dy2[g, y, 0])
        dxc, dys, dyc, dxs, el = self.pieces
        xp = dxc[g, 0, x] + dys[g, y, 0]
        yp = dyc[g, y, 0] - dxs[g, 0, x]
        yp *= el[g, 0, 0]
        xp *= xp
        yp *= yp
        xp += yp
        return np.sqrt(xp, out=xp)


_NEAR: dict[float, tuple[np.ndarray, np.ndarray]] = {}


def _near_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets (dy, dx) from floor(centre) that can lie within `radius` of a centre in the cell."""
    if radius not in _NEAR:
        k = int(np.ceil(radius)) + 1
        dy, dx = (a.ravel() for a in np.mgrid[-k : k + 2, -k : k + 2])
        gap = lambda d: np.maximum(np.maximum(d - 1, -d), 0)  # noqa: E731  (distance from [0, 1])
        keep = np.hypot(gap(dx), gap(dy)) < radius
        _NEAR[radius] = (dy[keep], dx[keep])
    return _NEAR[radius]


def _first(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first True per row and whether there is one: `(N, K)` -> `(N,)`, `(N,)`."""
    return mask.argmax(axis=1), mask.any(axis=1)


def _rows(a: np.ndarray, j: np.ndarray) -> np.ndarray:
    """a[i, j[i]] for every row i (j is clipped into range)."""
    return np.take_along_axis(a, np.clip(j, 0, a.shape[1] - 1)[:, None], axis=1)[:, 0]


def _searchsorted_grid(grid: np.ndarray, x: np.ndarray, length: np.ndarray) -> np.ndarray:
    """np.searchsorted(grid[:length_i], x_i) per row for a uniform grid of step `_H` (exact: the guess
    from arithmetic is corrected against the grid's own values)."""
    j = np.clip(np.ceil((x - grid[0]) / _H).astype(np.int64), 0, length)
    for _ in range(2):  # rounding moves the guess by one step at most
        down = (j > 0) & (grid[np.clip(j - 1, 0, grid.size - 1)] >= x)
        j = j - down
        up = (j < length) & (grid[np.clip(j, 0, grid.size - 1)] < x)
        j = j + up
    return j


class GrowthBatch:
    """Curves of growth about one centre per galaxy (circular, or elliptical with semi-major radius).

    img: `(N, H, W)` sky-subtracted frames, zero outside each galaxy's stamp; valid: `(N, H, W)` bool
    stamps; bounds: `(N, 4)` int the stamps' (y0, y1, x0, x1) in the frame; xc, yc: `(N,)` centres in
    stamp pixels; elong, theta: `(N,)` ellipses (None: circles). Pixels within `sub_radius` of the
    centre are split into `_SUB` x `_SUB` sub-pixels, as in `_Growth`. Stamp coordinates make every
    number the same as `_Growth`'s on the stamp alone, to rounding (tested to 1e-9). Galaxies are grouped by their
    largest radius, so that one long ellipse does not lengthen every galaxy's histogram. keep_rad:
    keep the frames' radii as `rad` (without it, each group makes its frames' radii as it bins them).
    """

    def __init__(
        self,
        img: np.ndarray,
        valid: np.ndarray,
        bounds: np.ndarray,
        xc: np.ndarray,
        yc: np.ndarray,
        *,
        elong: np.ndarray | None = None,
        theta: np.ndarray | None = None,
        sub_radius: float = _SUB_RADIUS,
        keep_rad: bool = True,
    ):
        n, h, w = img.shape
        self.n = n
        bounds = np.asarray(bounds, dtype=np.int64)
        y0, x0 = bounds[:, 0].astype(np.float64), bounds[:, 2].astype(np.float64)
        radii = _Radii(h, w, xc, yc, elong, theta, x0, y0)
        rad = radii.full() if keep_rad else None
        self._rad = rad
        # The largest radius on a stamp is at one of its corners (radii are convex).
        g = np.arange(n)[:, None]
        cy = np.stack([bounds[:, 0], bounds[:, 0], bounds[:, 1] - 1, bounds[:, 1] - 1], axis=1)
        cx = np.stack([bounds[:, 2], bounds[:, 3] - 1, bounds[:, 2], bounds[:, 3] - 1], axis=1)
        rmax = (rad[g, cy, cx] if rad is not None else radii.at(g, cy, cx)).max(axis=1) + 1.0
        # Groups of galaxies whose largest radii differ by less than a third.
        order = np.argsort(rmax, kind="stable")
        self._groups: list[tuple[np.ndarray, _Group]] = []
        first = 0
        for k in range(1, n + 1):
            if k == n or rmax[order[k]] > 1.33 * rmax[order[first]] + 2.0:
                idx = np.sort(order[first:k])
                if k - first == n:  # one group (the usual case)
                    rows, parts = None, (bounds, xc, yc, elong, theta)
                else:
                    rows, parts = (
                        idx,
                        tuple(None if a is None else a[idx] for a in (bounds, xc, yc, elong, theta)),
                    )
                grp = _Group(img, valid, radii if rad is None else rad, rows, *parts, sub_radius, rmax[idx])
                self._groups.append((idx, grp))
                first = k

    @property
    def rad(self) -> np.ndarray:
        """Radius of every frame pixel about its galaxy's centre `(N, H, W)` (made with keep_rad)."""
        if self._rad is None:
            raise ValueError("GrowthBatch made with keep_rad=False keeps no radii")
        return self._rad

    def _gather(self, method: str, *per_galaxy: np.ndarray, args: tuple = ()) -> tuple[np.ndarray, ...]:
        """Call `method` of every group with its galaxies' rows of `per_galaxy`, and put the results back."""
        outs: list[np.ndarray] | None = None
        for idx, grp in self._groups:
            res = getattr(grp, method)(*(a[idx] for a in per_galaxy), *args)
            if outs is None:
                outs = [np.empty((self.n,) + r.shape[1:], dtype=r.dtype) for r in res]
            for o, r in zip(outs, res, strict=True):
                o[idx] = r
        return tuple(outs or ())

    def flux_area(self, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flux and area inside apertures of radii `(N, K)` (each pixel ramps in across its edge)."""
        return self._gather("flux_area", np.asarray(radii, dtype=np.float64))

    def petrosian(self, r_outer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Petrosian radii `(N,)` and flags `(N,)`, by `_Growth.petrosian`'s rules (statmorph's)."""
        return self._gather("petrosian", np.asarray(r_outer, dtype=np.float64))

    def radius_at_fraction(
        self, r_total: np.ndarray, fractions: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Radii `(N, F)` holding the given fractions of the flux inside `r_total (N,)`, and flags `(N,)`
        (first crossing on the fine grid, as `_Growth.radius_at_fraction`)."""
        return self._gather("radius_at_fraction", np.asarray(r_total, dtype=np.float64), args=(fractions,))


class _Group:
    """GrowthBatch's work for galaxies of similar extent (their histograms share one length)."""

    def __init__(
        self,
        img: np.ndarray,
        valid: np.ndarray,
        rad: np.ndarray | _Radii,
        rows: np.ndarray | None,
        bounds: np.ndarray,
        xc: np.ndarray,
        yc: np.ndarray,
        elong: np.ndarray | None,
        theta: np.ndarray | None,
        sub_radius: float,
        rmax: np.ndarray,
    ):
        """img, valid, rad: the batch's frames, stamps and radii `(N, H, W)` (or their `_Radii`);
        rows: the group's galaxies among them (None: all); the other arguments are the group's own."""
        h, w = img.shape[1:]
        n = len(rmax)
        self.n = n
        self.rmax = rmax
        nb_own = (self.rmax / _DR).astype(np.int64) + 2
        nb = int(nb_own.max())  # bins of the whole-pixel histograms
        grows = np.arange(n) if rows is None else rows  # the group's galaxies in the batch
        count = np.empty((n, nb), dtype=np.int64)  # whole numbers: their running sums are exact in int64
        flux = np.empty((n, nb))
        for a in range(0, n, _PART):
            # Bin indices, _PART galaxies at a time; pixels off the stamps go to one extra bin, dropped.
            sel = slice(a, a + _PART) if rows is None else rows[a : a + _PART]
            flat = ((rad.part(sel) if isinstance(rad, _Radii) else rad[sel]) / _DR).astype(np.int64)
            m = len(flat)
            flat += (np.arange(m) * nb)[:, None, None]
            flat = flat.reshape(-1)
            stamp = valid[sel].reshape(-1)
            if not stamp.all():
                flat[~stamp] = m * nb
            count[a : a + m] = np.bincount(flat, minlength=m * nb + 1)[:-1].reshape(m, nb)
            flux[a : a + m] = np.bincount(flat, weights=img[sel].reshape(-1), minlength=m * nb + 1)[
                :-1
            ].reshape(m, nb)
        near_count = near_flux = None
        if sub_radius > 0:
            # Frame pixels that can lie within sub_radius of a centre in the pixel cell [floor, floor + 1).
            dyo, dxo = _near_offsets(sub_radius)
            oy, ox = bounds[:, :1], bounds[:, 2:3]
            by = np.floor(yc).astype(np.int64)[:, None] + dyo[None, :] + oy
            bx = np.floor(xc).astype(np.int64)[:, None] + dxo[None, :] + ox
            inside = (by >= 0) & (by < h) & (bx >= 0) & (bx < w)
            pix = np.clip(by, 0, h - 1) * w + np.clip(bx, 0, w - 1)
            g = grows[:, None]
            # Stamp coordinates (as floats, like _Growth's) of the pixels really near the centre.
            sy_px, sx_px = (by - oy).astype(np.float64), (bx - ox).astype(np.float64)
            near = inside & valid.reshape(len(valid), -1)[g, pix]
            near &= np.hypot(sx_px - xc[:, None], sy_px - yc[:, None]) < sub_radius
            gi, ki = np.nonzero(near)
            pix = pix[gi, ki]
            pv = img.reshape(len(img), -1)[grows[gi], pix]
            # Whole near pixels leave the plain histograms (near pixels lie on the stamp: their own bins) ...
            near_rad = (
                rad.at(grows[gi], pix // w, pix % w)
                if isinstance(rad, _Radii)
                else rad.reshape(len(rad), -1)[grows[gi], pix]
            )
            nflat = (near_rad / _DR).astype(np.int64) + gi * nb
            count -= np.bincount(nflat, minlength=n * nb).reshape(n, nb)
            flux -= np.bincount(nflat, weights=pv, minlength=n * nb).reshape(n, nb)
            # ... and come back as sub-pixels.
            dx = (sx_px[gi, ki][:, None] + _SUB_OX[None, :]) - xc[gi][:, None]
            dy = (sy_px[gi, ki][:, None] + _SUB_OY[None, :]) - yc[gi][:, None]
            if elong is None:
                sr = np.hypot(dx, dy)
            else:
                c, s = np.cos(theta)[gi][:, None], np.sin(theta)[gi][:, None]
                sr = np.hypot(dx * c + dy * s, (-dx * s + dy * c) * elong[gi][:, None])
            sidx = np.minimum((sr / _DR).astype(np.int64), (nb_own - 1)[gi][:, None])
            # The sub-pixel histograms end a bin past their last sub-pixel: beyond it their running
            # integrals are linear, which the extrapolation below the last bin gives by itself.
            nbn = int(sidx.max()) + 2 if sidx.size else 2
            sflat = (sidx + (gi * nbn)[:, None]).ravel()
            sub_v = np.repeat(pv / _SUB**2, _SUB**2)
            near_count = np.bincount(sflat, minlength=n * nbn).reshape(n, nbn) / _SUB**2
            near_flux = np.bincount(sflat, weights=sub_v, minlength=n * nbn).reshape(n, nbn)
        hists = [count, flux] + ([near_count, near_flux] if near_count is not None else [])
        # Running integrals I(j) of the cumulative histograms at the bin centres c_j = (j + 1/2) _DR,
        # with the last cumulative value kept as the slope beyond the last centre.
        self._cum, self._int = [], []
        self._nbs = [hist.shape[1] for hist in hists]  # bins of each histogram
        for hist in hists:
            # Pixel counts add up exactly, as int64 (several times faster than float64's running sum).
            cum = np.cumsum(hist, axis=1).astype(np.float64, copy=False)
            integ = np.zeros(hist.shape)
            np.cumsum(cum[:, :-1] * _DR, axis=1, out=integ[:, 1:])
            self._cum.append(cum)
            self._int.append(integ)
        self.num = (((self.rmax + 1.0) / _H).astype(np.int64)) + 1  # fine-grid samples of each galaxy
        self._ck: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _interp(self, which: int, r: np.ndarray) -> np.ndarray:
        """Running integral `which` at radii r `(N, K)` (linear between centres, 0 below the first)."""
        integ, cum, nb = self._int[which], self._cum[which], self._nbs[which]
        t = r / _DR - 0.5
        finite = ~np.isnan(t)  # a NaN radius (a failed earlier step) must give NaN, not index garbage
        j = np.floor(np.where(finite, t, 0.0))
        below, beyond = j < 0, j >= nb - 1
        ji = np.clip(j, 0, nb - 1).astype(np.int64)
        base = np.take_along_axis(integ, ji, axis=1)
        slope = np.take_along_axis(cum, ji, axis=1) * _DR  # I(j + 1) - I(j), and the slope beyond
        frac = np.where(beyond, t - (nb - 1), t - j)
        return np.where(finite, np.where(below, 0.0, base + frac * slope), np.nan)

    def _box(self, which: int, r: np.ndarray, width: float) -> np.ndarray:
        return (self._interp(which, r + 0.5 * width) - self._interp(which, r - 0.5 * width)) / width

    def flux_area(self, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flux and area inside apertures of radii `(N, K)` (each pixel ramps in across its edge)."""
        r = np.asarray(radii, dtype=np.float64)
        area, flux = self._box(0, r, 1.0), self._box(1, r, 1.0)
        if len(self._int) > 2:
            area = area + self._box(2, r, 1.0 / _SUB)
            flux = flux + self._box(3, r, 1.0 / _SUB)
        return flux, area

    def curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fine grid r_k = k _H `(K,)` and flux and area of those apertures `(N, K)` (K: the largest
        galaxy's; beyond its own `num` a galaxy's curves are not used)."""
        if self._ck is None:
            num = int(self.num.max())
            rk = np.arange(num) * _H
            area = self._box_fine(0, num, int(round(0.5 / _DR)))
            flux = self._box_fine(1, num, int(round(0.5 / _DR)))
            if len(self._int) > 2:
                area += self._box_fine(2, num, int(round(0.5 / _SUB / _DR)))
                flux += self._box_fine(3, num, int(round(0.5 / _SUB / _DR)))
            self._ck = (rk, flux, area)
        return self._ck

    def _box_fine(self, which: int, num: int, half_steps: int) -> np.ndarray:
        """`_box` on the fine grid without searches (_H = _DR): r_k +- half a box is m _DR, midway
        between two bin centres, where the running integral is the mean of its neighbours (linear
        beyond the last centre, so a box wholly beyond it holds the whole histogram)."""
        integ, cum, nb = self._int[which], self._cum[which], self._nbs[which]
        full = min(num, nb + half_steps)  # samples whose box reaches back before the last centre
        size = full + half_steps
        inner = min(size, nb)
        mid = np.empty((self.n, size))
        mid[:, 0] = 0.0
        mid[:, 1:inner] = 0.5 * (integ[:, : inner - 1] + integ[:, 1:inner])
        if size > nb:
            last = (nb - 0.5) * _DR  # the last bin centre
            steps = np.arange(nb, size) * _DR - last
            mid[:, nb:size] = integ[:, -1:] + steps[None, :] * cum[:, -1:]
        out = np.empty((self.n, num))
        out[:, :full] = mid[:, half_steps : half_steps + full]
        out[:, half_steps:full] -= mid[:, : full - half_steps]  # r_k - half a box < 0 holds nothing
        out[:, :full] /= 2 * half_steps * _DR
        out[:, full:] = cum[:, -1:]
        return out

    def petrosian(self, r_outer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Petrosian radii `(N,)` and flags `(N,)`, by `_Growth.petrosian`'s rules (statmorph's).

        The Petrosian function is evaluated only where the rules look: at the fine-grid neighbours of
        the 100 coarse radii, then across the bracket of the first coarse root."""
        rk, f, a = self.curves()
        s = _S
        size = rk.size - 2 * s  # samples of the Petrosian function on the group's grid, at r_mid
        r_mid = rk[s:-s]
        rows = (np.arange(self.n) * rk.size)[:, None]

        def val_at(i: np.ndarray) -> np.ndarray:
            q = i + rows
            f0, f1, f2 = np.take(f, q), np.take(f, q + s), np.take(f, q + 2 * s)
            a0, a1, a2 = np.take(a, q), np.take(a, q + s), np.take(a, q + 2 * s)
            with np.errstate(all="ignore"):
                val = np.abs((f2 - f0) / (a2 - a0)) / np.abs(f1 / a1) - _ETA
            return np.where(np.isfinite(val), val, 1.0 - _ETA)

        length = self.num - 2 * s  # each galaxy's own samples
        coarse = _ARANGE100[None, :] * ((r_outer[:, None] - _ANNULUS) / 99) + _ANNULUS
        coarse[:, -1] = r_outer
        # np.interp on each galaxy's own range (clamped at its ends).
        t = np.clip((coarse - r_mid[0]) / _H, 0.0, (length - 1)[:, None].astype(np.float64))
        j0 = np.minimum(np.floor(t).astype(np.int64), (length - 2)[:, None])
        v0, v1 = val_at(j0), val_at(j0 + 1)
        cval = v0 + (t - j0) * (v1 - v0)
        j, has = _first(cval <= 0)
        rp = np.where(has, _rows(coarse, j), r_outer)
        flag = np.where(has & (j > 0), 0, 2)
        # The root on the fine grid, in the bracket [coarse[j - 1], coarse[j]]: its first sample <= 0.
        lo = _searchsorted_grid(r_mid, _rows(coarse, j - 1), length)
        hi = np.minimum(_searchsorted_grid(r_mid, _rows(coarse, j), length), length - 1)
        span = np.arange(max(int((hi - lo).max()) + 1, 1))[None, :]
        k, anyb = _first(
            (span <= (hi - lo)[:, None]) & (val_at(np.minimum(lo[:, None] + span, size - 1)) <= 0)
        )
        k = np.where(anyb, lo + k, hi)
        at_lo = k <= lo
        va = val_at(np.clip(k - 1, 0, size - 1)[:, None])[:, 0]
        vb = val_at(np.clip(k, 0, size - 1)[:, None])[:, 0]
        with np.errstate(all="ignore"):
            crossing = r_mid[np.clip(k - 1, 0, None)] + _H * va / (va - vb)
            root = np.where(at_lo, r_mid[np.clip(lo, 0, r_mid.size - 1)], crossing)
        ok = has & (j > 0)
        return np.where(ok, root, rp), flag

    def radius_at_fraction(
        self, r_total: np.ndarray, fractions: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Radii `(N, F)` holding the given fractions of the flux inside `r_total (N,)`, and flags `(N,)`
        (first crossing on the fine grid, as `_Growth.radius_at_fraction`)."""
        rk, f, _ = self.curves()
        total = self.flux_area(r_total[:, None])[0][:, 0]
        flag = np.where(total == 0, 2, np.where(total < 0, 2, 0))
        total = np.abs(total)
        n_own = np.minimum(_searchsorted_grid(rk, r_total, self.num), self.num)
        with np.errstate(all="ignore"):
            frac = np.abs(f) / total[:, None]
        inside = np.arange(rk.size)[None, :] < n_own[:, None]
        out = np.full((self.n, len(fractions)), np.nan)
        for i, q in enumerate(fractions):
            k, has = _first(inside & (frac > q))
            good = has & (k > 0) & (total > 0)
            v0, v1 = _rows(frac, k - 1), _rows(frac, k)
            with np.errstate(all="ignore"):
                r = rk[np.clip(k - 1, 0, None)] + _H * (q - v0) / (v1 - v0)
            out[:, i] = np.where(good, r, np.nan)
            flag = np.where(good, flag, 2)
        return out, flag
