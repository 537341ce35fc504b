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

from collections.abc import Generator, Sequence

import numpy as np

_SQUARE = [(i, j) for j in (-1, 0, 1) for i in (-1, 0, 1)]
# The quarter-pixel neighbours of a half-pixel grid point (doubled units: +-0.5, +-1), without the
# grid points themselves: (i, j) in halves of a doubled unit.
_QUARTER = [(i, j) for j in range(-2, 3) for i in range(-2, 3) if i % 2 or j % 2]
_WINDOWS: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


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


_RANKS: dict[int, np.ndarray] = {}


def _rank_image(half: int) -> np.ndarray:
    """Cached `(2 half + 1, 2 half + 1)` image of each offset's position in `window_offsets(half)`."""
    if half not in _RANKS:
        oy, ox, _ = window_offsets(half)
        ranks = np.empty((2 * half + 1, 2 * half + 1), dtype=np.int32)
        ranks[oy + half, ox + half] = np.arange(oy.size, dtype=np.int32)
        ranks.flags.writeable = False
        _RANKS[half] = ranks
    return _RANKS[half]


class _Window:
    """The aperture pixels any candidate within 1 px (per axis) of a window centre can weigh: those
    deeper than r_ap - 2 (weight 1 for every such candidate) and the ring out to r_ap + 2."""

    __slots__ = (
        "wx", "wy", "k", "rel", "win", "deep_rel", "ring_rel", "win_deep", "win_ring", "awin_ring", "oxr", "oyr",
        "tot_deep", "_back",
    )  # fmt: skip

    def __init__(self, s: _Search, wx: int, wy: int):
        self.wx, self.wy = wx, wy
        half = s.half
        if wy - half >= 0 and wy + half < s.h and wx - half >= 0 and wx + half < s.w:
            rel, k, oxr, oyr = s.interior()
        else:
            # Pixels off the stamp add nothing (statmorph's image ends there): the window keeps the
            # part of the offsets' rank image that lies on the stamp.
            y0, y1, x0, x1 = (
                max(0, wy - half),
                min(s.h, wy + half + 1),
                max(0, wx - half),
                min(s.w, wx + half + 1),
            )
            sub = _rank_image(half)[y0 - wy + half : y1 - wy + half, x0 - wx + half : x1 - wx + half]
            deep = np.flatnonzero(sub < s.num_deep)
            ring = np.flatnonzero((sub >= s.num_deep) & (sub < s.num_win))
            k = deep.size
            rels, xs, ys = (a[y0:y1, x0:x1].ravel() for a in s.stamp_grids())
            rel = np.concatenate([rels.take(deep), rels.take(ring)]) - (wy * s.wp + wx)
            oxr, oyr = xs.take(ring) - np.float32(wx), ys.take(ring) - np.float32(wy)
        self.k, self.rel = k, rel  # deep pixels first, then the ring
        self.deep_rel, self.ring_rel = rel[:k], rel[k:]
        self.oxr, self.oyr = oxr, oyr
        centre = s.off + (s.pad + wy) * s.wp + s.pad + wx
        self.win = win = s.flat[centre + rel]
        self.win_deep, self.win_ring = win[:k], win[k:]
        self.awin_ring = np.abs(self.win_ring)
        self.tot_deep = float(np.add.reduce(np.abs(self.win_deep)))
        self._back: tuple[np.ndarray, int] | None = None

    def back(self) -> tuple[np.ndarray, int]:
        """max(rel) - rel (all >= 0) and max(rel): flat[q - rel] is flat[q - max(rel):][max(rel) - rel]."""
        if self._back is None:
            top = int(self.rel.max()) if self.rel.size else 0
            self._back = (top - self.rel, top)
        return self._back


class _Search:
    """One galaxy's search: its padded stamp inside the batch's flat array, its windows, its scores."""

    def __init__(
        self, flat: np.ndarray, off: int, shape: tuple[int, int], pad: int,
        x0: float, y0: float, r_ap: float, sky: float, reach: float,
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
        self._interior: tuple[np.ndarray, int, np.ndarray, np.ndarray] | None = None
        self.windows: dict[tuple[int, int], _Window] = {}
        self.grids: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.last: _Window | None = None
        self.cache: dict[tuple[float, float], float] = {}
        self.u0, self.v0 = float(round(2.0 * x0)), float(round(2.0 * y0))
        lim = 2.0 * reach + 2.0
        self.umin, self.umax = max(0.0, self.u0 - lim), min(2.0 * (self.w - 1), self.u0 + lim)
        self.vmin, self.vmax = max(0.0, self.v0 - lim), min(2.0 * (self.h - 1), self.v0 + lim)

    def interior(self) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
        """A window wholly on the stamp: offsets rel = dy wp + dx of its deep pixels then its ring
        (each part in row-major order: gathers then run through memory), the deep count, and the
        ring's dx, dy (float32). The same for every such window; made on first use."""
        if self._interior is None:
            half, side = self.half, 2 * self.half + 1
            ranks = _rank_image(half)
            deep = np.flatnonzero(ranks < self.num_deep)
            ring = np.flatnonzero((ranks >= self.num_deep) & (ranks < self.num_win))
            oy, ox = np.divmod(np.concatenate([deep, ring]), side)
            oy -= half
            ox -= half
            k = deep.size
            self._interior = (oy * self.wp + ox, k, ox[k:].astype(np.float32), oy[k:].astype(np.float32))
        return self._interior

    def stamp_grids(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per stamp pixel: y wp + x (int64), x and y (float32); `(h, w)` each, made on first use."""
        if self.grids is None:
            yy, xx = np.indices((self.h, self.w))
            self.grids = (yy * self.wp + xx, xx.astype(np.float32), yy.astype(np.float32))
        return self.grids

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

    def walk(self) -> Generator[tuple, None, tuple[float, float, float, bool]]:
        """The search: yields requests, finds their scores in `cache`; returns (A, xc, yc, drifted).

        A 3x3 pattern search from the start in steps of 1/2 px (exact flips), then of 1/4 px (the
        quarter-pixel neighbours of the best half-pixel point are scored at once), ended by the minimum
        of a quadratic through the last 3x3 scores, kept if it is lower.
        """
        cache, ok = self.cache, self.ok
        umin, umax, vmin, vmax = self.umin, self.umax, self.vmin, self.vmax
        best = (self.u0, self.v0)
        for _ in range(2 * int(np.ceil(self.reach)) + 2):
            cu, cv = best
            cands = [
                (u, v) for i, j in _SQUARE if umin <= (u := cu + i) <= umax and vmin <= (v := cv + j) <= vmax
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
        if all(c in cache and np.isfinite(cache[c]) for c in grid):
            d = quadratic_step(np.array([cache[c] for c in grid]).reshape(3, 3), step)
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
    gx, gy = 0.5 * (z[1, 2] - z[1, 0]), 0.5 * (z[2, 1] - z[0, 1])
    hxx, hyy = z[1, 2] - 2 * z[1, 1] + z[1, 0], z[2, 1] - 2 * z[1, 1] + z[0, 1]
    hxy = 0.25 * (z[2, 2] - z[2, 0] - z[0, 2] + z[0, 0])
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


def _segsum(x: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Sums of consecutive segments of lengths `lens` (zeros allowed) of `x`: `(len(lens),)` float64.
    Each sum depends on its own segment only (np.add.reduceat), so a galaxy gets the same numbers
    alone or in a batch."""
    out = np.zeros(len(lens))
    full = lens > 0
    if full.any():
        starts = np.concatenate([[0], np.cumsum(lens[:-1])])[full]
        out[full] = np.add.reduceat(x, starts)
    return out


class _Rows:
    """Per-row (candidate) window data: sizes, and ring pixels of all rows laid end to end."""

    def __init__(self, searches: Sequence[_Search], wins: Sequence[_Window]):
        self.wins = wins
        self.kd = np.array([w.k for w in wins], dtype=np.int64)
        self.kr = np.array([w.rel.size - w.k for w in wins], dtype=np.int64)
        self.awin_ring = np.concatenate([w.awin_ring for w in wins])
        self.oxr = np.concatenate([w.oxr for w in wins])
        self.oyr = np.concatenate([w.oyr for w in wins])
        self.tot_deep = np.array([w.tot_deep for w in wins])
        self.sky = np.array([s.sky for s in searches])
        self.r_edge = np.repeat(np.array([s.r_ap + 0.5 for s in searches], dtype=np.float32), self.kr)
        self.wx = np.array([w.wx for w in wins], dtype=np.float64)
        self.wy = np.array([w.wy for w in wins], dtype=np.float64)

    def concat(self, name: str) -> np.ndarray:
        """A window array (`rel`, `win`) of every row, end to end."""
        return np.concatenate([getattr(w, name) for w in self.wins])

    def ring_weights(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Aperture weights (1 px ramp at r_ap + 1/2) of every row's ring pixels for doubled centres (u, v)."""
        dx = self.oxr + np.repeat((self.wx - u / 2.0).astype(np.float32), self.kr)
        dy = self.oyr + np.repeat((self.wy - v / 2.0).astype(np.float32), self.kr)
        dx *= dx
        dy *= dy
        dx += dy
        wgt = np.sqrt(dx, out=dx)
        np.subtract(self.r_edge, wgt, out=wgt)
        return np.minimum(np.maximum(wgt, 0.0, out=wgt), 1.0, out=wgt)  # np.clip, without its overhead

    def finish(self, num: np.ndarray, wgt: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """A per row from the sum of |rotated - image| over the aperture (times `scale`: mixes are
        scored unnormalised) and the ring weights: sky term subtracted, divided by the total |image|."""
        area = self.kd + _segsum(wgt, self.kr)
        tot = self.tot_deep + _segsum(wgt * self.awin_ring, self.kr)
        with np.errstate(all="ignore"):
            val = (num / scale - area * self.sky) / tot
        return np.where(tot > 0, val, np.inf)


def _score_exact(reqs: list[tuple]) -> None:
    """Score candidates at exact flips (whole doubled coordinates): |F_{u,v} - img| summed.

    Each request's candidates share its window, so they are scored as one block `(m, L)` laid end to
    end with the other requests' blocks: one gather, one absolute value and one segment sum for all.
    """
    flat = reqs[0][1].flat
    blocks, pos = [], 0
    for _, _, win, cands in reqs:
        m, size = len(cands), win.rel.size
        blocks.append((pos, m, size))
        pos += m * size
    got = np.empty(pos, dtype=np.float32)
    for (start, m, size), (_, s, win, cands) in zip(blocks, reqs, strict=True):
        back, top = win.back()
        blk = got[start : start + m * size].reshape(m, size)
        for row, (u, v) in zip(blk, cands, strict=True):
            # flat[q - rel] as a gather from the view that starts at q - max(rel): no index array.
            q = s.flip_base(win, int(u), int(v))
            np.take(flat[q - top :], back, out=row, mode="clip")
        np.subtract(blk, win.win, out=blk)
    diff = np.abs(got, out=got)
    searches = [req[1] for req in reqs for _ in req[3]]
    wins = [req[2] for req in reqs for _ in req[3]]
    rows = _Rows(searches, wins)
    u = np.array([c[0] for req in reqs for c in req[3]])
    v = np.array([c[1] for req in reqs for c in req[3]])
    wgt = rows.ring_weights(u, v)
    wpos = 0
    for (start, m, size), req in zip(blocks, reqs, strict=True):
        k = req[2].k
        ring = wgt[wpos : wpos + m * (size - k)].reshape(m, size - k)
        blk = diff[start : start + m * size].reshape(m, size)
        np.multiply(blk[:, k:], ring, out=blk[:, k:])
        wpos += m * (size - k)
    # Deep and (weighted) ring sums of every row, alternating.
    lens = np.stack([rows.kd, rows.kr], axis=1).ravel()
    sums = _segsum(diff, lens).reshape(-1, 2)
    vals = rows.finish(sums[:, 0] + sums[:, 1], wgt)
    i = 0
    for _, s, _, cands in reqs:
        for c in cands:
            s.cache[c] = float(vals[i])
            i += 1


def _score_quarter(reqs: list[tuple]) -> None:
    """Score the 16 quarter-pixel neighbours of each request's best half-pixel point (doubled (U, V)).

    All are mixes of the 9 exact flips F_{U+da, V+db} (da, db in -1..1), gathered once per galaxy as
    9 layers; a mix of 2 (4) flips at weight 1/2 (1/4) is scored unnormalised as |sum - 2 img|
    (|sum - 4 img|), the same numbers scaled by a power of two.
    """
    searches = [r[1] for r in reqs]
    wins = [r[2] for r in reqs]
    U = np.array([r[3][0] for r in reqs])
    V = np.array([r[3][1] for r in reqs])
    rows = _Rows(searches, wins)
    flat = searches[0].flat
    q = np.array([s.flip_base(w, int(u), int(v)) for s, w, u, v in zip(searches, wins, U, V, strict=True)])
    # Layer (da, db) holds F_{U+da, V+db} on every galaxy's deep pixels, then on every ring: gathers
    # from views (flat[q - rel] = flat[q - max(rel):][max(rel) - rel]), galaxy by galaxy.
    dstart = np.concatenate([[0], np.cumsum(rows.kd)])
    rstart = np.concatenate([[0], np.cumsum(rows.kr)])
    layers: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for db in (-1, 0, 1):
        for da in (-1, 0, 1):
            layers[(da, db)] = (
                np.empty(dstart[-1], dtype=np.float32),
                np.empty(rstart[-1], dtype=np.float32),
            )
    for g, (s, w) in enumerate(zip(searches, wins, strict=True)):
        back, top = w.back()
        bd, br = back[: w.k], back[w.k :]
        for (da, db), (ld, lr) in layers.items():
            view = flat[q[g] + db * s.wp + da - top :]
            np.take(view, bd, out=ld[dstart[g] : dstart[g + 1]], mode="clip")
            np.take(view, br, out=lr[rstart[g] : rstart[g + 1]], mode="clip")
    win_deep, win_ring = rows.concat("win_deep"), rows.concat("win_ring")
    img2 = (2 * win_deep, 2 * win_ring)
    img4 = (4 * win_deep, 4 * win_ring)
    # Sums of horizontal pairs (odd i, even j), vertical pairs (even i, odd j), and of two horizontal
    # pairs (odd i, odd j).
    sums: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for i, j in _QUARTER:
        if i % 2 and not j % 2:
            a, b = layers[((i - 1) // 2, j // 2)], layers[((i + 1) // 2, j // 2)]
        elif j % 2 and not i % 2:
            a, b = layers[(i // 2, (j - 1) // 2)], layers[(i // 2, (j + 1) // 2)]
        else:
            continue
        sums[(i, j)] = (a[0] + b[0], a[1] + b[1])
    for i, j in _QUARTER:
        if i % 2 and j % 2:
            a, b = sums[(i, j - 1)], sums[(i, j + 1)]
            sums[(i, j)] = (a[0] + b[0], a[1] + b[1])
    for i, j in _QUARTER:
        m = 4 if i % 2 and j % 2 else 2
        ref = img4 if m == 4 else img2
        deep, ring = sums[(i, j)]
        deep -= ref[0]
        ring -= ref[1]
        u, v = U + 0.5 * i, V + 0.5 * j
        wgt = rows.ring_weights(u, v)
        ring = np.abs(ring, out=ring)
        ring *= wgt
        num = _segsum(np.abs(deep, out=deep), rows.kd) + _segsum(ring, rows.kr)
        vals = rows.finish(num, wgt, scale=m)
        for k, s in enumerate(searches):
            c = (float(u[k]), float(v[k]))
            if s.ok(c):
                s.cache[c] = float(vals[k])


def _score_mix(reqs: list[tuple]) -> None:
    """Score one candidate per request at any centre: the bilinear mix of (up to) 4 exact flips."""
    searches = [r[1] for r in reqs]
    wins = [r[2] for r in reqs]
    rows = _Rows(searches, wins)
    flat = searches[0].flat
    u = np.array([r[3][0] for r in reqs])
    v = np.array([r[3][1] for r in reqs])
    a, b = np.floor(u), np.floor(v)
    fu, fv = (u - a).astype(np.float32), (v - b).astype(np.float32)
    q = np.array(
        [s.flip_base(w, int(ai), int(bi)) for s, w, ai, bi in zip(searches, wins, a, b, strict=True)]
    )
    wp = np.array([s.wp for s in searches], dtype=np.int64)
    one = np.float32(1.0)
    terms = [(0, (one - fu) * (one - fv)), (1, fu * (one - fv)), (wp, (one - fu) * fv), (wp + 1, fu * fv)]
    win_deep, win_ring = rows.concat("win_deep"), rows.concat("win_ring")
    deep_rel, ring_rel = rows.concat("deep_rel"), rows.concat("ring_rel")
    rot_d = np.zeros(win_deep.size, dtype=np.float32)
    rot_r = np.zeros(win_ring.size, dtype=np.float32)
    for shift, w in terms:
        # F_{a+1,b}[y, x] = flat[q + 1 - rel], F_{a,b+1} = flat[q + wp - rel].
        rot_d += np.repeat(w, rows.kd) * np.take(flat, np.repeat(q + shift, rows.kd) - deep_rel)
        rot_r += np.repeat(w, rows.kr) * np.take(flat, np.repeat(q + shift, rows.kr) - ring_rel)
    rot_d -= win_deep
    rot_r -= win_ring
    wgt = rows.ring_weights(u, v)
    rot_r = np.abs(rot_r, out=rot_r)
    rot_r *= wgt
    vals = rows.finish(_segsum(np.abs(rot_d, out=rot_d), rows.kd) + _segsum(rot_r, rows.kr), wgt)
    for k, r in enumerate(reqs):
        r[1].cache[r[3]] = float(vals[k])


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
    pads = [half_window(r) + 6 for r in r_ap]  # every gather (window, flips, bilinear neighbours) in bounds
    sizes = [(im.shape[0] + 2 * p) * (im.shape[1] + 2 * p) for im, p in zip(imgs, pads, strict=True)]
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    flat = np.zeros(int(offs[-1]), dtype=np.float32)
    searches = []
    for k, (im, p) in enumerate(zip(imgs, pads, strict=True)):
        h, w = im.shape
        flat[offs[k] : offs[k + 1]].reshape(h + 2 * p, w + 2 * p)[p : p + h, p : p + w] = im
        args = (float(a[k]) for a in (x0, y0, r_ap, sky, reach))
        searches.append(_Search(flat, int(offs[k]), (h, w), p, *args))
    out = np.zeros((4, n))
    active: dict[int, tuple[Generator, tuple]] = {}
    for k, s in enumerate(searches):
        gen = s.walk()
        active[k] = (gen, next(gen))  # every walk scores its start's 3x3 first
    while active:
        for kind, scorer in _SCORERS.items():
            reqs = [req for _, req in active.values() if req[0] == kind]
            if reqs:
                scorer(reqs)
        for k in list(active):
            gen = active[k][0]
            try:
                active[k] = (gen, next(gen))
            except StopIteration as stop:
                out[:, k] = stop.value
                del active[k]
    return out[0], out[1], out[2], out[3].astype(bool)
