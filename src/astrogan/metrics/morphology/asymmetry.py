"""The asymmetry centres of a whole batch of galaxies, searched in lockstep (statmorph's minimised CAS A).

The batch twin of `_reference._asymmetry_search` (the per-galaxy search, kept for tests):
the same pattern search, the same rotations and the same aperture weights, but every galaxy's search
is a generator of score requests, and each round scores the requests of all galaxies with a few
array operations (one gather, one subtraction, segment sums). A galaxy's search then costs the
arithmetic on its pixels instead of a few hundred NumPy calls.

The rotation by 180 degrees about a centre whose doubled coordinates are (u, v) is statmorph's
(skimage's bilinear rotation, zero outside the stamp): with u = a + fu, v = b + fv (a, b integers)
it is the bilinear mix of the exact flips F_{a,b}[y, x] = img[b - y, a - x] and their neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence

import numpy as np

_SQUARE = [(i, j) for j in (-1, 0, 1) for i in (-1, 0, 1)]
# The quarter-pixel neighbours of a half-pixel grid point (doubled units: +-0.5, +-1), without the
# grid points themselves: (i, j) in halves of a doubled unit.
_QUARTER = [(i, j) for j in range(-2, 3) for i in range(-2, 3) if i % 2 or j % 2]
_QUARTER_DU = np.array([0.5 * i for i, _ in _QUARTER])
_QUARTER_DV = np.array([0.5 * j for _, j in _QUARTER])
_WINDOWS: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
# A search: yields score requests, returns (A, xc, yc, drifted).
_Walk = Generator[tuple, None, tuple[float, float, float, bool]]


def window_offsets(half: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached pixel offsets (dy, dx) of a (2 half + 1)^2 window and their radii, sorted by radius."""
    if half not in _WINDOWS:
        oy, ox = np.mgrid[-half : half + 1, -half : half + 1]
        rc = np.hypot(oy, ox).ravel()
        order = np.argsort(rc, kind="stable")
        out = (oy.ravel()[order].astype(np.int64), ox.ravel()[order].astype(np.int64), rc[order])
        for arr in out:
            arr.flags.writeable = False
        _WINDOWS[half] = out
    return _WINDOWS[half]


_RANKS: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _rank_image(half: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached, in row-major order over the `(2 half + 1)^2` window: each offset's position in
    `window_offsets(half)` (int32), and its dy and dx (int64)."""
    if half not in _RANKS:
        oy, ox, _ = window_offsets(half)
        side = 2 * half + 1
        ranks = np.empty((side, side), dtype=np.int32)
        ranks[oy + half, ox + half] = np.arange(oy.size, dtype=np.int32)
        gy, gx = np.divmod(np.arange(side * side, dtype=np.int64), side)
        out = (ranks.ravel(), gy - half, gx - half)
        for arr in out:
            arr.flags.writeable = False
        _RANKS[half] = out
    return _RANKS[half]


class _Geometry:
    """The pixels of every window of one search wholly on the stamp: those deeper than r_ap - 2 px
    then the ring out to r_ap + 2 px (ranks below num_deep, then below num_win, of
    `window_offsets(half)`), each part in row-major order, so gathers run through memory. A window
    that the stamp's edge clips keeps a subsequence: the rows on the stamp are a slice of each part
    (`rows`: where each row starts), the columns on it a mask. Searches of one batch with the same
    aperture share it."""

    __slots__ = (
        "half",
        "k",
        "rel",
        "ox_d",
        "ox_r",
        "oxr",
        "oyr",
        "_oy",
        "_rows",
        "back",
        "top",
        "fwd",
        "rmin",
    )

    def __init__(self, half: int, num_deep: int, num_win: int, wp: int):
        ranks, gy, gx = _rank_image(half)
        in_deep = ranks < num_deep
        deep = np.flatnonzero(in_deep)
        ring = np.flatnonzero((ranks < num_win) != in_deep)  # num_deep <= rank < num_win
        idx = np.concatenate([deep, ring])
        oy, ox = gy.take(idx), gx.take(idx)
        k = deep.size
        self.half, self.k = half, k
        self.rel = rel = oy * wp + ox  # ascending within each part (|dx| <= half < wp / 2)
        self.ox_d, self.ox_r = ox[:k], ox[k:]
        self.oxr, self.oyr = ox[k:].astype(np.float32), oy[k:].astype(np.float32)
        self._oy = oy
        self._rows: tuple[list[int], list[int]] | None = None
        self.back, self.top = _back(rel, k)
        self.rmin = _ends(rel, k)[0]
        self.fwd = rel - self.rmin

    def rows(self) -> tuple[list[int], list[int]]:
        """Where each row (dy = -half .. half, and one past) starts in the deep part and in the ring."""
        if self._rows is None:
            bounds = np.arange(-self.half, self.half + 2)
            deep, ring = self._oy[: self.k], self._oy[self.k :]
            self._rows = (np.searchsorted(deep, bounds).tolist(), np.searchsorted(ring, bounds).tolist())
        return self._rows


def _ends(rel: np.ndarray, k: int) -> tuple[int, int]:
    """min and max of window offsets `rel` (deep part `rel[:k]` and ring `rel[k:]`, each ascending)."""
    firsts = [int(rel[i]) for i in (0, k) if i < rel.size]
    lasts = [int(rel[i]) for i in (k - 1, rel.size - 1) if 0 <= i < rel.size]
    return (min(firsts), max(lasts)) if firsts else (0, 0)


def _back(rel: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """max(rel) - rel (all >= 0) and max(rel): flat[q - rel] is flat[q - max(rel):][max(rel) - rel]."""
    top = _ends(rel, k)[1]
    return top - rel, top


class _Window:
    """The aperture pixels any candidate within 1 px (per axis) of a window centre can weigh: those
    deeper than r_ap - 2 (weight 1 for every such candidate) and the ring out to r_ap + 2."""

    __slots__ = (
        "wx", "wy", "k", "size", "rel", "win", "win_deep", "win_ring", "awin_ring", "oxr", "oyr",
        "tot_deep", "back", "top", "base", "row",
    )  # fmt: skip

    def __init__(self, s: _Search, wx: int, wy: int):
        self.wx, self.wy = wx, wy
        geo = s.geometry()
        half = geo.half
        centre = s.off + (s.pad + wy) * s.wp + s.pad + wx
        if wy - half >= 0 and wy + half < s.h and wx - half >= 0 and wx + half < s.w:
            rel, k, oxr, oyr = geo.rel, geo.k, geo.oxr, geo.oyr
            self.back, self.top = geo.back, geo.top
            win = s.flat[centre + geo.rmin :].take(geo.fwd)
        else:
            # Pixels off the stamp add nothing (statmorph's image ends there): the window keeps the
            # rows and columns of the offsets that lie on the stamp.
            lo, hi = max(-wy, -half) + half, min(s.h - wy, half + 1) + half
            rows_d, rows_r = geo.rows()
            d0, d1, r0, r1 = rows_d[lo], rows_d[hi], rows_r[lo], rows_r[hi]
            rel_d, rel_r = geo.rel[d0:d1], geo.rel[geo.k + r0 : geo.k + r1]
            oxr, oyr = geo.oxr[r0:r1], geo.oyr[r0:r1]
            xa, xb = -wx, s.w - wx
            if xa > -half or xb <= half:
                md, mr = geo.ox_d[d0:d1], geo.ox_r[r0:r1]
                md = (md >= xa) & (md < xb)
                mr = (mr >= xa) & (mr < xb)
                rel_d, rel_r, oxr, oyr = rel_d[md], rel_r[mr], oxr[mr], oyr[mr]
            k = rel_d.size
            rel = np.concatenate([rel_d, rel_r])
            self.back, self.top = _back(rel, k)
            win = s.flat.take(rel + centre)
        self.k, self.size, self.rel = k, rel.size, rel  # deep pixels first, then the ring
        self.oxr, self.oyr = oxr, oyr
        self.win = win
        self.win_deep, self.win_ring = win[:k], win[k:]
        self.awin_ring = np.abs(self.win_ring)
        self.tot_deep = float(np.add.reduce(np.abs(self.win_deep)))
        # flat[base + b wp + a:][back] is F_{a,b} on the window's pixels (see `flip_base`).
        self.base = s.off + (s.pad - wy) * s.wp + s.pad - wx - self.top
        self.row = (k, rel.size - k, self.tot_deep, s.sky, s.r_ap + 0.5, wx, wy)  # see `_Rows`


class _Search:
    """One galaxy's search: its padded stamp (flat, from `off`), its windows, its scores."""

    def __init__(
        self, flat: np.ndarray, off: int, shape: tuple[int, int], pad: int,
        x0: float, y0: float, r_ap: float, sky: float, reach: float,
        geometries: dict[tuple[int, int, int, int], _Geometry] | None = None,
    ):  # fmt: skip
        self.flat, self.off, self.pad = flat, off, pad
        self.h, self.w = shape
        self.wp = self.w + 2 * pad
        self.x0, self.y0, self.r_ap, self.sky, self.reach = x0, y0, r_ap, sky, reach
        self.half = half_window(r_ap)
        # Ranks (in window_offsets order, by radius) below num_deep lie deeper than r_ap - 2 px, and
        # below num_win within r_ap + 2 px.
        rc = window_offsets(self.half)[2]
        self.num_win = int(np.searchsorted(rc, r_ap + 2.0, side="right"))
        self.num_deep = int(np.searchsorted(rc[: self.num_win], r_ap - 2.0, side="left"))
        self._geometries = {} if geometries is None else geometries
        self._geo: _Geometry | None = None
        self.windows: dict[tuple[int, int], _Window] = {}
        self.last: _Window | None = None
        self.cache: dict[tuple[float, float], float] = {}
        self.u0, self.v0 = float(round(2.0 * x0)), float(round(2.0 * y0))
        lim = 2.0 * reach + 2.0
        self.umin, self.umax = max(0.0, self.u0 - lim), min(2.0 * (self.w - 1), self.u0 + lim)
        self.vmin, self.vmax = max(0.0, self.v0 - lim), min(2.0 * (self.h - 1), self.v0 + lim)

    def geometry(self) -> _Geometry:
        """The window pixels of this search (shared by the searches of a batch with the same aperture
        and padded width); made on first use."""
        if self._geo is None:
            key = (self.half, self.num_deep, self.num_win, self.wp)
            if key not in self._geometries:
                self._geometries[key] = _Geometry(*key)
            self._geo = self._geometries[key]
        return self._geo

    def window(self, cu: float, cv: float) -> _Window:
        """A window for candidates within 1/2 px (per axis) of the doubled centre (cu, cv): the last one
        used if its centre is within 1/2 px of (cu, cv) (a walk that crosses half pixels keeps its
        window), else the one about the nearest pixel."""
        last = self.last
        if last is not None and abs(cu / 2.0 - last.wx) <= 0.5 and abs(cv / 2.0 - last.wy) <= 0.5:
            return last
        key = (int(round(cu / 2.0)), int(round(cv / 2.0)))
        if key not in self.windows:
            self.windows[key] = _Window(self, *key)
        self.last = self.windows[key]
        return self.last

    def flip_base(self, win: _Window, a: int, b: int) -> int:
        """Flat index q with F_{a,b} at the window pixel of offset rel equal to flat[q - rel]."""
        return self.off + (self.pad + b - win.wy) * self.wp + self.pad + a - win.wx

    def ok(self, c: tuple[float, float]) -> bool:
        """Whether a doubled centre lies on the stamp and within the search's reach (+1 px)."""
        return self.umin <= c[0] <= self.umax and self.vmin <= c[1] <= self.vmax

    def walk(self) -> _Walk:
        """The search: yields requests, finds their scores in `cache`; returns (A, xc, yc, drifted).

        A 3x3 pattern search from the start in steps of 1/2 px (exact flips), then of 1/4 px (the
        quarter-pixel neighbours of the best half-pixel point are scored at once), ended by the minimum
        of a quadratic through the last 3x3 scores, kept if it is lower.
        """
        cache, ok = self.cache, self.ok
        umin, umax, vmin, vmax = self.umin, self.umax, self.vmin, self.vmax
        best = (self.u0, self.v0)
        for _ in range(2 * math.ceil(self.reach) + 2):
            cu, cv = best
            if umin <= cu - 1.0 and cu + 1.0 <= umax and vmin <= cv - 1.0 and cv + 1.0 <= vmax:
                cands = [(cu + i, cv + j) for i, j in _SQUARE]  # all on the stamp and within reach
            else:
                cands = [
                    (u, v)
                    for i, j in _SQUARE
                    if umin <= (u := cu + i) <= umax and vmin <= (v := cv + j) <= vmax
                ]
            new = [c for c in cands if c not in cache]
            if new:
                yield ("exact", self, self.window(cu, cv), new)
            nb = min(cands, key=cache.__getitem__)
            if nb == best or cache[nb] >= cache[best]:
                break
            best = nb
        # A walk that ran out of tries has not scored the half-pixel neighbours of its last point.
        cu, cv = best
        new = [c for i, j in _SQUARE if ok(c := (cu + i, cv + j)) and c not in cache]
        if new:
            yield ("exact", self, self.window(cu, cv), new)
        yield ("quarter", self, self.window(cu, cv), best)
        step = 0.5
        for _ in range(2):
            cu, cv = best
            cands = [
                (u, v)
                for i, j in _SQUARE
                if umin <= (u := cu + step * i) <= umax and vmin <= (v := cv + step * j) <= vmax
            ]
            nb = min(cands, key=cache.__getitem__)
            if nb == best or cache[nb] >= cache[best]:
                break
            best = nb
        # statmorph's Nelder-Mead ends anywhere: the minimum of a quadratic through the last 3x3 values.
        cu, cv = best
        grid = [(cu + step * i, cv + step * j) for i, j in _SQUARE]
        if all(c in cache and math.isfinite(cache[c]) for c in grid):
            d = _quadratic_step([cache[c] for c in grid], step)
            if d is not None:
                du, dv = d
                c = (cu + du, cv + dv)
                if (du or dv) and ok(c):
                    yield ("mix", self, self.window(cu, cv), c)
                    if cache[c] < cache[best]:
                        best = c
        ub, vb = best
        drifted = np.hypot(ub / 2.0 - self.x0, vb / 2.0 - self.y0) > self.reach
        return float(cache[best]), ub / 2.0, vb / 2.0, bool(drifted)


def quadratic_step(z: np.ndarray, step: float) -> tuple[float, float] | None:
    """(du, dv) from the middle of a 3x3 grid of scores `z` (spacing `step`, indexed [v, u]) to the
    minimum of the quadratic through them, each clipped to half a step; None without a minimum."""
    return _quadratic_step([float(v) for v in np.asarray(z, dtype=np.float64).ravel()], step)


def _quadratic_step(z: list[float], step: float) -> tuple[float, float] | None:
    """`quadratic_step` on the 9 scores in row-major order ([v, u]), as Python floats (the same IEEE
    double arithmetic as NumPy's scalars, without their overhead)."""
    gx, gy = 0.5 * (z[5] - z[3]), 0.5 * (z[7] - z[1])
    hxx, hyy = z[5] - 2 * z[4] + z[3], z[7] - 2 * z[4] + z[1]
    hxy = 0.25 * (z[8] - z[6] - z[2] + z[0])
    det = hxx * hyy - hxy * hxy
    if not (det > 0 and hxx > 0):
        return None
    du = step * float(min(max(-(hyy * gx - hxy * gy) / det, -0.5), 0.5))
    dv = step * float(min(max(-(hxx * gy - hxy * gx) / det, -0.5), 0.5))
    return du, dv


def half_window(r_ap: float) -> int:
    """Half size of the window about a centre that holds every pixel of the aperture (1 px ramp) of any
    candidate within 1 px per axis, with margin."""
    return int(np.ceil(r_ap + 1.0)) + 2


class _Segments:
    """Sums of consecutive segments of given lengths (zeros allowed) of arrays: np.add.reduceat from
    starts found once. Each sum depends on its own segment only, so a galaxy gets the same numbers
    alone or in a batch."""

    __slots__ = ("num", "starts", "full", "every")

    def __init__(self, lens: np.ndarray):
        self.num = len(lens)
        starts = np.cumsum(lens) - lens
        self.every = bool(self.num and lens.all())
        if self.every:
            self.starts, self.full = starts, None
        else:
            self.full = lens > 0
            self.starts = starts[self.full]

    def sum(self, x: np.ndarray) -> np.ndarray:
        """`(num,)` float64 segment sums of `x`."""
        if self.every:
            return np.add.reduceat(x, self.starts).astype(np.float64)
        out = np.zeros(self.num)
        if self.starts.size:
            out[self.full] = np.add.reduceat(x, self.starts)
        return out


class _Rows:
    """Per-row (candidate) window data: sizes, and ring pixels of all rows laid end to end.

    reps: how many rows each (search, window) pair stands for (consecutive rows share it)."""

    def __init__(self, wins: Sequence[_Window], reps: Sequence[int] | None = None):
        # Per window: deep and ring sizes, total |image| of the deep pixels, the search's sky
        # asymmetry and aperture edge r_ap + 1/2, and the window centre (all exact in float64).
        table = np.array([w.row for w in wins])
        if reps is None:
            ring_wins: Sequence[_Window] = wins
        else:
            ring_wins = [w for w, m in zip(wins, reps, strict=True) for _ in range(m)]
            table = table.repeat(reps, axis=0)
        sizes = table[:, :2].astype(np.int64)
        self.sizes = sizes  # `(rows, 2)`: deep and ring pixels of every row
        self.kd, self.kr = sizes[:, 0], sizes[:, 1]
        self.tot_deep, self.sky, self.wx, self.wy = table[:, 2], table[:, 3], table[:, 5], table[:, 6]
        self.awin_ring = np.concatenate([w.awin_ring for w in ring_wins])
        self.oxr = np.concatenate([w.oxr for w in ring_wins])
        self.oyr = np.concatenate([w.oyr for w in ring_wins])
        self.r_edge = table[:, 4].astype(np.float32).repeat(self.kr)
        self.ring = _Segments(self.kr)

    def shifts(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dx and dy of every row's ring pixels from doubled centres (u, v)."""
        dx = self.oxr + np.repeat((self.wx - u / 2.0).astype(np.float32), self.kr)
        dy = self.oyr + np.repeat((self.wy - v / 2.0).astype(np.float32), self.kr)
        return dx, dy

    def ring_weights(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Aperture weights (1 px ramp at r_ap + 1/2) of every row's ring pixels for doubled centres (u, v)."""
        dx, dy = self.shifts(u, v)
        dx *= dx
        dy *= dy
        dx += dy
        return self.ramp(dx)

    def ramp(self, d2: np.ndarray) -> np.ndarray:
        """Aperture weights from squared distances `d2` (overwritten)."""
        wgt = np.sqrt(d2, out=d2)
        np.subtract(self.r_edge, wgt, out=wgt)
        return np.minimum(np.maximum(wgt, 0.0, out=wgt), 1.0, out=wgt)  # np.clip, without its overhead

    def finish(self, num: np.ndarray, wgt: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """A per row from the sum of |rotated - image| over the aperture (times `scale`: mixes are
        scored unnormalised) and the ring weights: sky term subtracted, divided by the total |image|."""
        area = self.kd + self.ring.sum(wgt)
        wgt_img = wgt * self.awin_ring
        tot = self.tot_deep + self.ring.sum(wgt_img)
        val = (num / scale - area * self.sky) / tot  # 0/0 and x/0 (tot 0): replaced below
        return np.where(tot > 0, val, np.inf)


_BLOCK = 1 << 18  # pixels (float32) scored together: the block's passes stay in the core's cache
_QBLOCK = 1 << 17  # window pixels of the quarter-pixel requests scored together (about 25 arrays of them)


def _blocks(reqs: list[tuple], sizes: Sequence[int], limit: int) -> list[list[int]]:
    """Consecutive runs of request indices whose `sizes` add up to about `limit` (at least one each)."""
    out: list[list[int]] = []
    cur: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if cur and total + size > limit:
            out.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += size
    if cur:
        out.append(cur)
    return out


def _score_exact(reqs: list[tuple]) -> None:
    """Score candidates at exact flips (whole doubled coordinates): |F_{u,v} - img| summed.

    Each request's candidates share its window, so they are scored as one block `(m, L)` laid end to
    end with the other requests' blocks: one gather per candidate (from a view of the flat array, no
    index array), one absolute value and one segment sum for all. Requests go in runs of about
    `_BLOCK` pixels through one buffer, so that every pass over them stays in cache.
    """
    sizes = [len(req[3]) * req[2].size for req in reqs]
    runs = _blocks(reqs, sizes, _BLOCK)
    buf = np.empty(max(sum(sizes[i] for i in run) for run in runs), dtype=np.float32)
    for run in runs:
        _score_exact_run([reqs[i] for i in run], buf)


def _score_exact_run(reqs: list[tuple], buf: np.ndarray) -> None:
    ms = [len(req[3]) for req in reqs]
    pos = 0
    for m, (_, s, win, cands) in zip(ms, reqs, strict=True):
        end = pos + m * win.size
        blk = buf[pos:end].reshape(m, win.size)
        flat, back, base, wp = s.flat, win.back, win.base, s.wp
        for row, (u, v) in zip(blk, cands, strict=True):
            # flat[q - rel] as a gather from the view that starts at q - max(rel): no index array.
            # (take(indices, axis, out, mode), positional: the call costs less; every index is in
            # range, so "wrap" only skips the checks of "raise", which would buffer `out`.)
            flat[base + int(v) * wp + int(u) :].take(back, None, row, "wrap")
        np.subtract(blk, win.win, out=blk)
        pos = end
    diff = np.abs(buf[:pos], out=buf[:pos])
    rows = _Rows([req[2] for req in reqs], ms)
    uv = np.array([c for req in reqs for c in req[3]])
    wgt = rows.ring_weights(uv[:, 0], uv[:, 1])
    pos = wpos = 0
    for m, req in zip(ms, reqs, strict=True):
        k, size = req[2].k, req[2].size
        blk = diff[pos : pos + m * size].reshape(m, size)
        np.multiply(blk[:, k:], wgt[wpos : wpos + m * (size - k)].reshape(m, size - k), out=blk[:, k:])
        pos += m * size
        wpos += m * (size - k)
    # Deep and (weighted) ring sums of every row, alternating.
    sums = _Segments(rows.sizes.ravel()).sum(diff).reshape(-1, 2)
    vals = rows.finish(sums[:, 0] + sums[:, 1], wgt).tolist()
    i = 0
    for m, (_, s, _, cands) in zip(ms, reqs, strict=True):
        s.cache.update(zip(cands, vals[i : i + m], strict=True))
        i += m


def _gather_layers(
    reqs: list[tuple], rows: _Rows, q: Sequence[int], shifts: Sequence[tuple[int, int]]
) -> list[np.ndarray]:
    """Exact flips F at flat index q + da + db wp (one layer per (da, db) in `shifts`) on every
    request's deep pixels (end to end), then on every ring (`rows.kd.sum()` onwards): gathers from
    views, request by request."""
    kd, kr = rows.kd.tolist(), rows.kr.tolist()
    dtot = sum(kd)
    layers = [np.empty(dtot + sum(kr), dtype=np.float32) for _ in shifts]
    d0, r0 = 0, dtot
    for req, qg, k, r in zip(reqs, q, kd, kr, strict=True):
        s, w = req[1], req[2]
        bd, br = w.back[:k], w.back[k:]
        d1, r1 = d0 + k, r0 + r
        for (da, db), layer in zip(shifts, layers, strict=True):
            view = s.flat[qg + db * s.wp + da - w.top :]
            view.take(bd, None, layer[d0:d1], "wrap")
            view.take(br, None, layer[r0:r1], "wrap")
        d0, r0 = d1, r1
    return layers


_LAYERS = [(da, db) for db in (-1, 0, 1) for da in (-1, 0, 1)]


def _score_quarter(reqs: list[tuple]) -> None:
    """Score the 16 quarter-pixel neighbours of each request's best half-pixel point (doubled (U, V)).

    All are mixes of the 9 exact flips F_{U+da, V+db} (da, db in -1..1), gathered once per galaxy as
    9 layers; a mix of 2 (4) flips at weight 1/2 (1/4) is scored unnormalised as |sum - 2 img|
    (|sum - 4 img|), the same numbers scaled by a power of two. The ring weights of the 16 share
    their squared x (y) distances: 5 columns (rows) of them. Requests go in runs of about `_QBLOCK`
    window pixels (their layers and sums stay in the shared cache).
    """
    for run in _blocks(reqs, [req[2].size for req in reqs], _QBLOCK):
        _score_quarter_run([reqs[i] for i in run])


def _score_quarter_run(reqs: list[tuple]) -> None:
    searches = [r[1] for r in reqs]
    wins = [r[2] for r in reqs]
    U = np.array([r[3][0] for r in reqs])
    V = np.array([r[3][1] for r in reqs])
    rows = _Rows(wins)
    q = [
        s.flip_base(w, int(u), int(v))
        for s, w, u, v in zip(searches, wins, U.tolist(), V.tolist(), strict=True)
    ]
    layers = dict(zip(_LAYERS, _gather_layers(reqs, rows, q, _LAYERS), strict=True))
    dtot = int(rows.kd.sum())  # layers: deep pixels, then rings
    img = np.concatenate([w.win_deep for w in wins] + [w.win_ring for w in wins])
    img2, img4 = 2 * img, 4 * img
    # Sums of horizontal pairs (odd i, even j), vertical pairs (even i, odd j), and of two horizontal
    # pairs (odd i, odd j).
    sums: dict[tuple[int, int], np.ndarray] = {}
    for i, j in _QUARTER:
        if i % 2 and not j % 2:
            a, b = layers[((i - 1) // 2, j // 2)], layers[((i + 1) // 2, j // 2)]
        elif j % 2 and not i % 2:
            a, b = layers[(i // 2, (j - 1) // 2)], layers[(i // 2, (j + 1) // 2)]
        else:
            continue
        sums[(i, j)] = a + b
    for i, j in _QUARTER:
        if i % 2 and j % 2:
            sums[(i, j)] = sums[(i, j - 1)] + sums[(i, j + 1)]
    # Squared ring distances per column i (row j) of the 5x5 quarter grid about (U, V).
    dx2, dy2 = {}, {}
    for t in range(-2, 3):
        dx, dy = rows.shifts(U + 0.5 * t, V + 0.5 * t)
        dx2[t], dy2[t] = np.multiply(dx, dx, out=dx), np.multiply(dy, dy, out=dy)
    deep_segs = _Segments(rows.kd)
    vals = np.empty((len(_QUARTER), len(reqs)))
    for n, (i, j) in enumerate(_QUARTER):
        m = 4 if i % 2 and j % 2 else 2
        diff = sums[(i, j)]
        diff -= img4 if m == 4 else img2
        np.abs(diff, out=diff)
        wgt = rows.ramp(dx2[i] + dy2[j])
        ring = diff[dtot:]
        ring *= wgt
        num = deep_segs.sum(diff[:dtot]) + rows.ring.sum(ring)
        vals[n] = rows.finish(num, wgt, scale=m)
    # The doubled centres U + i/2, V + j/2 of each request's 16, kept where they are on the stamp and
    # within reach.
    u = U[None, :] + _QUARTER_DU[:, None]
    v = V[None, :] + _QUARTER_DV[:, None]
    for s, us, vs, xs in zip(searches, u.T.tolist(), v.T.tolist(), vals.T.tolist(), strict=True):
        ok = s.ok
        s.cache.update((c, x) for c, x in zip(zip(us, vs, strict=True), xs, strict=True) if ok(c))


def _score_mix(reqs: list[tuple]) -> None:
    """Score one candidate per request at any centre: the bilinear mix of (up to) 4 exact flips."""
    searches = [r[1] for r in reqs]
    wins = [r[2] for r in reqs]
    rows = _Rows(wins)
    u = np.array([r[3][0] for r in reqs])
    v = np.array([r[3][1] for r in reqs])
    a, b = np.floor(u), np.floor(v)
    fu, fv = (u - a).astype(np.float32), (v - b).astype(np.float32)
    q = [
        s.flip_base(w, int(ai), int(bi))
        for s, w, ai, bi in zip(searches, wins, a.tolist(), b.tolist(), strict=True)
    ]
    one = np.float32(1.0)
    weights = [(one - fu) * (one - fv), fu * (one - fv), (one - fu) * fv, fu * fv]
    # F_{a+1,b}[y, x] = flat[q + 1 - rel], F_{a,b+1} = flat[q + wp - rel].
    flips = _gather_layers(reqs, rows, q, [(0, 0), (1, 0), (0, 1), (1, 1)])
    win_deep = np.concatenate([w.win_deep for w in wins])
    win_ring = np.concatenate([w.win_ring for w in wins])
    dtot = win_deep.size
    rot_d = np.zeros(dtot, dtype=np.float32)
    rot_r = np.zeros(win_ring.size, dtype=np.float32)
    for w, layer in zip(weights, flips, strict=True):
        rot_d += np.repeat(w, rows.kd) * layer[:dtot]
        rot_r += np.repeat(w, rows.kr) * layer[dtot:]
    rot_d -= win_deep
    rot_r -= win_ring
    wgt = rows.ring_weights(u, v)
    rot_r = np.abs(rot_r, out=rot_r)
    rot_r *= wgt
    vals = rows.finish(_Segments(rows.kd).sum(np.abs(rot_d, out=rot_d)) + rows.ring.sum(rot_r), wgt)
    for r, val in zip(reqs, vals.tolist(), strict=True):
        r[1].cache[r[3]] = val


_SCORERS = {"exact": _score_exact, "quarter": _score_quarter, "mix": _score_mix}


def asymmetry_search_batch(
    imgs: Sequence[np.ndarray],
    x0: np.ndarray,
    y0: np.ndarray,
    r_ap: np.ndarray,
    sky: np.ndarray,
    reach: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Minimum CAS asymmetry (Lotz et al. 2004 eq. 10, sky term subtracted) over centres near (x0, y0).

    imgs: N stamps `(h_i, w_i)`; x0, y0: `(N,)` starts (stamp pixels); r_ap: `(N,)` aperture radii;
    sky: `(N,)` the sky's asymmetry per pixel; reach: `(N,)` how far (px) the centre may drift.
    Returns A, xc, yc `(N,)` and drifted `(N,)` bool (the centre left `reach` of the start).
    Pixels are float32 (A needs no more; half the memory traffic).
    """
    n = len(imgs)
    searches = []
    geometries: dict[tuple[int, int, int, int], _Geometry] = {}  # shared by searches of one aperture
    for k, im in enumerate(imgs):
        h, w = im.shape
        p = half_window(float(r_ap[k])) + 6  # every gather (window, flips, bilinear neighbours) in bounds
        padded = np.zeros((h + 2 * p, w + 2 * p), dtype=np.float32)  # one galaxy's: a few hundred kB
        padded[p : p + h, p : p + w] = im
        x, y, r, sk, re = (float(a[k]) for a in (x0, y0, r_ap, sky, reach))
        searches.append(_Search(padded.reshape(-1), 0, (h, w), p, x, y, r, sk, re, geometries))
    out = np.zeros((4, n))
    # The walks waiting for scores, by kind of request (in galaxy order), each with its request.
    waiting: dict[str, list[tuple[int, _Walk, tuple]]] = {kind: [] for kind in _SCORERS}
    with np.errstate(all="ignore"):  # scores of apertures without light: x/0, replaced by inf
        for k, s in enumerate(searches):
            gen = s.walk()
            req = next(gen)  # every walk scores its start's 3x3 first
            waiting[req[0]].append((k, gen, req))
        while any(waiting.values()):
            for kind, scorer in _SCORERS.items():
                if waiting[kind]:
                    scorer([req for _, _, req in waiting[kind]])
            walks = sorted((w for ws in waiting.values() for w in ws), key=lambda w: w[0])
            waiting = {kind: [] for kind in _SCORERS}
            for k, gen, _ in walks:
                try:
                    req = next(gen)
                except StopIteration as stop:
                    out[:, k] = stop.value
                else:
                    waiting[req[0]].append((k, gen, req))
    return out[0], out[1], out[2], out[3].astype(bool)
