"""`dataset review` measures: one score per defect on a downsampled copy of a picture, and the thresholds.

Every measure works on a `Work` copy (longest side at most WORK_SIDE_PX, area-averaged), so the scores
do not depend on the original resolution; boxes come back in work pixels and `Work.scale` maps them to
the original. Thresholds were calibrated with `bench/review_calibration.py` on the real pictures in
`../shared/data` (nasa-esa-press, hubble-showcase, galaxyzoo-examples) and defect copies made from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

WORK_SIDE_PX = 512  # longest side of the copy every score is measured on

# ---- blank / zero-filled regions -------------------------------------------------------------------
# A pixel of the <= 256 px blank copy (2x2 blocks) is flat when its 3x3 neighbourhood spans at most
# FLAT_RANGE grey levels (max over RGB): a zero fill stays flat through JPEG; so does clipped or very smooth
# sky, which the straightness test tells apart.
FLAT_RANGE = 2
# ... or dark (3x3 median <= DARK_LEVEL) spanning <= DARK_RANGE levels: a zero fill saved as JPEG rings
# near its edges (labelled set: rotated-tile recall 29% -> 34%, staircase 73% -> 82%; 2 more Saturns flagged).
DARK_LEVEL, DARK_RANGE = 10, 10
# A flat region counts from this fraction of the frame (smaller ones are dark patches, not mosaic gaps).
BLANK_MIN_REGION = 0.005
# Lengths below are fractions of the blank copy's "side", sqrt(height x width) (a 3:1 strip is not judged
# by its short side). Straight boundary: polygon segments (tolerance 1 px, or side / 256) at least this
# long. A planet's limb never qualifies (its chords at that sagitta are < 0.18 of the frame).
STRAIGHT_TOL_PX = 1.0
STRAIGHT_MIN_SEG = 0.2
# A flat region is a mosaic gap when this much of its inner boundary is straight at any angle (rotated tile
# wedges, staircases: 0.95-1.0 on the labelled set; Saturn's ring against black sky: 0.79) ...
BLANK_STRAIGHT_ANY = 0.9
# ... or it has axis-aligned straight edges this long: a staircase merged with clipped black sky; natural
# black sky has none ...
BLANK_STRAIGHT_AXIS = 0.3
# ... or straight edges at any angle this long, half of its boundary: rotated-tile wedges merged with sky.
BLANK_STRAIGHT_LONG = 1.2
# ... or it is a corner wedge: it touches two adjacent frame edges and its edge inside the frame lies within
# WEDGE_TOL_PX (90th percentile, blank-copy px) of one line at least WEDGE_MIN_LEN long (rotated tiles saved
# as JPEG: ringing and dark sky make that edge too ragged for the 1 px polygon). Labelled set: 188 of 250
# rotated tiles have a corner region within 1.5 px, none of the 946 clean pictures (closest 2.4 px).
WEDGE_TOL_PX = 1.5
WEDGE_MIN_LEN = 0.2
# Zero fill vs dark sky. A fill is exactly 0 or another constant (PNG/TIFF), or that but for JPEG ringing along its
# edge; dark sky has noise. Fill pixels: flat (FLAT_RANGE) and not clipped white (>= SAT_LEVEL: a clipped core
# cut by a seam is no gap). A flat region less than FILL_MIN fill is mostly dark noisy sky (flat only by the
# DARK_RANGE rule), perhaps merged with a wedge or cut by a seam: it is not judged whole, its fill parts are,
# one by one (a wedge is then cut from the sky along its own edge). Their corner-wedge test allows
# FILL_WEDGE_TOL_PX (their edge is where the exact fill stops, ragged by JPEG ringing and by sky pixels that are
# flat too) but needs FILL_WEDGE_MIN_LEN (a rotated tile's wedge runs along a whole tile side; a re-saved
# crabnebula.jpg had a 0.21-long dark sky corner within 1.4 px of a line). With FILL_ZERO_AXIS and FLAT_EDGE_PX
# below, labelled set (bench/review_calibration.py --num-galaxyzoo 120 --num-dups 30 --clean-run, seed 0): blank
# precision/recall 0.934/0.786 -> 0.966/0.903 (rotated tiles 0.748 -> 0.912, staircases 0.82 -> 0.892), blank
# on seam copies 18 -> 3; clean pictures flagged 13 -> 12 of 946. FILL_WEDGE_TOL_PX 2.5 would add one rotated
# tile and one false positive.
FILL_MIN = 0.5
# A fill part's axis-aligned edges count (BLANK_STRAIGHT_AXIS: a staircase merged with dark noisy sky) only when
# at least FILL_ZERO_AXIS of it is exactly 0: JPEG's 8x8 blocks cut axis-aligned edges into flat dark sky of
# any other level (a PNG Saturn saved as JPEG q92: axis 0.74 along the blocks around the planet and its ring).
FILL_ZERO_AXIS = 0.9
FILL_WEDGE_TOL_PX = 2.0
FILL_WEDGE_MIN_LEN = 0.4
# Straight edges within FLAT_EDGE_PX (blank-copy px) of another large flat area are no evidence: a brightness
# seam across flat black sky (PNG, or sky clipped to 0) leaves two flat halves with one straight edge between
# them; a gap's edge meets the picture. Labelled set (before -> after this rule): offset-seam copies taken for
# gaps 6 -> 2 (the seam found on 3 more), 2 staircases on flat sky (stardust.png, potw1451a.png) lost; 2 px
# reached no such edge (the step's own rows are not flat).
FLAT_EDGE_PX = 4
BLANK_MIN_WIDTH = 0.08  # contours narrower than this (a line of text cut out of the sky) are no evidence
# The flag: gap regions cover at least this fraction of the frame.
BLANK_FRAC = 0.01

# ---- stitching seams -------------------------------------------------------------------------------
SEAM_K_PX = 2  # rows averaged on each side of a candidate seam (pixels of the <= 256 px seam copy)
SEAM_EDGE_PX = 4  # steps this close to the frame's edge are not seams
SEAM_ALONG_PX = 5  # pixels averaged along the candidate line first
SEAM_MIN_LINE_PX = 48  # lines (or half lines) shorter than this are not measured
# A step votes only when <= this x (darker side + 5): a planet's limb on black sky does not.
SEAM_MAX_REL = 1.0
# The flag: at least this fraction of a row or column (or of one half) steps one way there, each column at
# its own sharpest step, in brightness (SEAM_FRAC) or roughness (SEAM_NOISE_FRAC). Calibrated on the 946 clean
# pictures in shared/data: 1.6% flagged (Jupiter's belts and Saturn's rings are straight steps too).
# SEAM_NOISE_FRAC: 0.4 -> 0.5 with roughness measured at the work resolution (denser roughness steps on clean
# pictures too): 1.6% flagged either way; 0.45 would flag 1.9%.
# SEAM_FRAC: 0.5 -> 0.55 with the votes of two neighbouring binned rows merged (a gain or offset step that falls
# inside one binned row split its votes in two): labelled set, seam recall 0.547 -> 0.609 (gain 0.49 -> 0.55,
# offset 0.54 -> 0.66), precision 0.940 -> 0.923, clean pictures flagged 1.6% -> 1.9%; 0.5 would flag 2.9%.
SEAM_FRAC = 0.55
SEAM_NOISE_FRAC = 0.5
# A roughness step votes only where its quieter side is at least SEAM_NOISE_FLOOR x the picture's roughness: a
# noise seam joins two noisy tiles; the edge of a flat fill against noisy sky is no noise seam (the blank flag's
# business). Clean pictures: the two copies of a survey cutout with a zero band along one edge (too narrow for a
# gap) scored seam_noise 1.0; flagged 19 -> 17 of 946 (0.1 alike), noise-seam copies flagged unchanged. With
# the blank changes above: seam precision/recall 0.923/0.609 -> 0.932/0.620 (gain 0.556, offset 0.664 -> 0.680,
# noise 0.624), clean pictures flagged 1.90% -> 1.80%.
SEAM_NOISE_FLOOR = 0.25

# ---- clipped cores, bloomed stars ------------------------------------------------------------------
SAT_LEVEL = 250  # a pixel is clipped when all of R, G, B are at least this (white plateau)
# The flag: the largest clipped component at least 3 px thick spans at least this fraction of the short side
# (a clipped core or a star with a bleed trail; single clipped star pixels and white lettering are normal).
SAT_EXTENT = 0.04

# ---- text, logos, scale bars -----------------------------------------------------------------------
TEXT_BAND = 0.22  # only components this close to an edge (fraction of the short side) count
TEXT_CONTRAST = 60  # top-hat contrast (grey levels) of glyph pixels over the local background
TEXT_MIN_H, TEXT_MAX_H = 0.012, 0.09  # glyph heights as fractions of the short side
TEXT_PEAK_TOL = 0.12  # glyphs of one row peak within this fraction of each other (one text colour)
TEXT_GLYPH_PEAK = 1.6  # a glyph's top-hat peaks at least this many times the ink threshold
# The flag: a row of aligned glyph-like components adding up to at least this many characters ...
TEXT_MIN_CHARS = 6
# ... or a solid bar (fill >= 0.8, 10-90% brightness spread along it <= BAR_UNIFORM of its median, top-hat
# contrast >= 2x the ink's) this long (fraction of the short side).
BAR_MIN_LEN = 0.07
BAR_UNIFORM = 0.12

# ---- the main object and low information ------------------------------------------------------------
# The flag: the main object's box side is at most this fraction of the frame's short side (galaxyzoo
# cutouts: 14% of them at 0.25, 19% at 0.3, mostly faint galaxies in wide fields).
SMALL_OBJECT = 0.25
CROP_PAD = 0.35  # the suggested crop adds this fraction of the object's side on every side
# The flag: the smoothed picture's 99.9th percentile (an object of 0.1% of the frame reaches it) is within
# this fraction of full scale of its median (clean pictures: 0.15 and up, but stardust.png at 0.02).
LOW_INFO_PERCENTILE = 99.9
LOW_INFO_CONTRAST = 0.05

# ---- shape and size (from the header) ---------------------------------------------------------------
ASPECT_MAX = 2.0  # long side / short side at or above this: a square crop loses half the picture
SMALL_SIDE_PX = 128  # short side under this: the build would upscale it
LARGE_SIDE_PX = 4096  # long side over this: an archive original to downsize (the build does it)

FLAG_NAMES = (
    "blank",
    "seam",
    "saturated",
    "text",
    "small_object",
    "low_info",
    "aspect",
    "duplicate",
    "small",
    "large",
)
# Flags whose files `exclude.txt` lists and `build --review` drops unless told otherwise. The others are
# fixed by the suggested crop (small_object), are notes (saturated stars, shape, size), or are not precise
# enough to drop unseen: seam (Jupiter's belts and Saturn's rings are straight steps too).
DEFAULT_EXCLUDE = ("blank", "text", "low_info", "duplicate")


@dataclass
class Work:
    """A picture prepared for review: `rgb` uint8 `(h, w, 3)` (longest side <= WORK_SIDE_PX), `grey` float32."""

    rgb: np.ndarray
    width: int  # original size, EXIF orientation applied
    height: int

    def __post_init__(self) -> None:
        # Channel by channel: reductions over a length-3 last axis are slow in NumPy.
        r, g, b = (self.rgb[..., i] for i in range(3))
        self.grey = 0.299 * r.astype(np.float32) + 0.587 * g + 0.114 * b  # ITU-R 601-2 luma
        self.mx = np.maximum(np.maximum(r, g), b)
        self.mn = np.minimum(np.minimum(r, g), b)

    @property
    def scale(self) -> float:
        """Original pixels per work pixel."""
        return max(self.width, self.height) / max(self.rgb.shape[:2])

    @property
    def short(self) -> int:
        return int(min(self.rgb.shape[:2]))


Box = tuple[float, float, float, float]  # (x0, y0, x1, y1), work pixels


def _fbox(box: tuple[int, int, int, int]) -> Box:
    """An integer (x0, y0, x1, y1) as a float Box."""
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


@dataclass
class Measured:
    """Scores (name -> number), the boxes that show each flag's cause, the crop candidates, in work pixels."""

    scores: dict[str, float] = field(default_factory=dict)
    regions: dict[str, list[Box]] = field(default_factory=dict)
    object_box: Box | None = None
    blank_free_box: Box | None = None
    blank_mask: np.ndarray | None = None
    text_row_box: Box | None = None  # the text flag's evidence: the best row of glyphs, the best bar
    bar_box: Box | None = None


# ----------------------------------------------------------------------------------------------------
# Blank regions


def _straightness(
    region: np.ndarray, origin: tuple[int, int], *, frame: tuple[int, int], short: int, ignore: np.ndarray
) -> tuple[float, float, float]:
    """(straight fraction of a region's boundary inside the frame, straight length / short side,
    axis-aligned straight length / short side).

    `region`: the region's mask cut out of the frame at `origin` (y, x); `frame`: the frame's (h, w).
    Contours narrower than BLANK_MIN_WIDTH of the short side (a line of lettering or a ring seen edge-on,
    cut out of the flat sky) and segments whose middle lies in `ignore` (bool, frame) give no straight
    evidence: their length only counts in the total.
    """
    from skimage.measure import approximate_polygon, find_contours

    h, w = frame
    total = straight = axis = 0.0
    min_len = STRAIGHT_MIN_SEG * short
    shift = np.array([origin[0] - 1.0, origin[1] - 1.0])  # padded cut-out -> frame coordinates
    for contour in find_contours(np.pad(region, 1).astype(np.float32), 0.5):
        extent = contour.max(axis=0) - contour.min(axis=0)
        if len(contour) < min_len or extent.min() < BLANK_MIN_WIDTH * short:  # a star or a text line
            total += float(np.hypot(*np.diff(contour, axis=0).T).sum())
            continue
        poly = approximate_polygon(contour, tolerance=max(STRAIGHT_TOL_PX, short / 256)) + shift
        a, b = poly[:-1], poly[1:]
        d = b - a
        length = np.hypot(d[:, 0], d[:, 1])
        # Segments along the frame's edge are the frame, not the region's shape.
        on_edge = np.zeros(len(length), bool)
        for ax, lim in ((0, -0.5), (0, h - 0.5), (1, -0.5), (1, w - 0.5)):
            on_edge |= (np.abs(a[:, ax] - lim) < 1.2) & (np.abs(b[:, ax] - lim) < 1.2)
        inner = ~on_edge
        mid = np.clip(np.rint((a + b) / 2).astype(int), 0, [h - 1, w - 1])
        long_ = inner & (length >= min_len) & ~ignore[mid[:, 0], mid[:, 1]]
        total += float(length[inner].sum())
        straight += float(length[long_].sum())
        flat_dir = (np.abs(d[:, 0]) <= 0.035 * length) | (np.abs(d[:, 1]) <= 0.035 * length)  # within 2 deg
        axis += float(length[long_ & flat_dir].sum())
    if total <= 0:
        return 0.0, 0.0, 0.0
    return straight / total, straight / short, axis / short


def _corner_wedge(
    region: np.ndarray, origin: tuple[int, int], *, frame: tuple[int, int]
) -> tuple[float, float]:
    """(length / side, misfit px) of a region as a corner wedge: its edge inside the frame fitted by one line.

    A rotated tile's wedge is a triangle between two adjacent frame edges and one straight line; JPEG ringing
    and dark sky make that line ragged by a few pixels, too much for the polygon test of `_straightness`
    but not for a least-squares line. Misfit: the 90th percentile distance of the edge pixels to the line.
    Regions that do not touch two adjacent frame edges score (0, inf).
    """
    h, w = frame
    y0, x0 = origin
    y1, x1 = y0 + region.shape[0], x0 + region.shape[1]
    top, bottom, left, right = y0 == 0, y1 == h, x0 == 0, x1 == w
    if not ((top or bottom) and (left or right)) or (top and bottom) or (left and right):
        return 0.0, np.inf
    # Edge pixels: region pixels next to a non-region pixel; beyond the frame's edge counts as region (the
    # frame's edge is no edge of the wedge), beyond the cut-out's other sides as not.
    padded = np.pad(region, 1)
    padded[0, :], padded[-1, :] = top, bottom
    padded[:, 0], padded[:, -1] = left, right
    edge = region & ~ndi.binary_erosion(padded)[1:-1, 1:-1]
    ys, xs = np.nonzero(edge)
    if len(ys) < 8:
        return 0.0, np.inf
    pts = np.stack([ys, xs], axis=1).astype(np.float64)
    centre = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - centre, full_matrices=False)
    along, across = (pts - centre) @ vt[0], (pts - centre) @ vt[1]
    side = float(np.sqrt(h * w))
    return float(np.ptp(along)) / side, float(np.percentile(np.abs(across), 90))


def _is_gap(
    region: np.ndarray,
    sl: tuple[slice, ...],
    *,
    frame: tuple[int, int],
    ignore: np.ndarray,
    wedge_tol: float = WEDGE_TOL_PX,
    wedge_min: float = WEDGE_MIN_LEN,
    axis: bool = True,
) -> bool:
    """Whether a flat region (bool mask cut out of the frame at `sl`) is a mosaic gap: straight-edged
    (BLANK_STRAIGHT_ANY / _AXIS / _LONG) or a corner wedge within `wedge_tol` px of one line."""
    h, w = frame
    origin = (sl[0].start, sl[1].start)
    # Lengths in units of the frame's geometric mean side: a 3:1 strip is not judged by its short side.
    any_frac, any_len, axis_len = _straightness(
        region, origin, frame=frame, short=int(np.sqrt(h * w)), ignore=ignore
    )
    long_edges = any_len >= BLANK_STRAIGHT_LONG and any_frac >= 0.5
    if any_frac >= BLANK_STRAIGHT_ANY or (axis and axis_len >= BLANK_STRAIGHT_AXIS) or long_edges:
        return True
    wedge_len, misfit = _corner_wedge(region, origin, frame=frame)
    return wedge_len >= wedge_min and misfit <= wedge_tol


def measure_blank(work: Work, out: Measured) -> None:
    """Scores `blank_frac` (gap area / frame) and `blank_border` (1 when a gap touches the frame's edge).

    A gap: a flat region (FLAT_RANGE) of at least BLANK_MIN_REGION of the frame whose boundary is straight
    (BLANK_STRAIGHT_ANY), has long axis-aligned straight edges (BLANK_STRAIGHT_AXIS), long straight edges
    making half of it (BLANK_STRAIGHT_LONG) or is a corner wedge cut by one line (WEDGE_TOL_PX). A region that
    is mostly dark noisy sky (under FILL_MIN exact fill), or fails as a whole, is judged by its fill parts
    instead. Runs after measure_text: edges along lettering, and edges that meet another large flat area
    (FLAT_EDGE_PX), do not count.
    """
    hi, lo = work.mx, work.mx
    f = 1
    while max(hi.shape) > 256:  # gaps are large: a <= 256 px copy finds them, 4x cheaper
        hh, ww = hi.shape[0] // 2 * 2, hi.shape[1] // 2 * 2
        hi = np.maximum.reduce([hi[y:hh:2, x:ww:2] for y in (0, 1) for x in (0, 1)])
        lo = np.minimum.reduce([lo[y:hh:2, x:ww:2] for y in (0, 1) for x in (0, 1)])
        f *= 2
    h, w = hi.shape
    spread = ndi.maximum_filter(hi, 3) - ndi.minimum_filter(lo, 3)
    # A zero fill saved as JPEG rings near its edges: there "flat" means dark and nearly flat.
    flat = (spread <= FLAT_RANGE) | ((spread <= DARK_RANGE) & (ndi.median_filter(hi, 3) <= DARK_LEVEL))
    # Edges along lettering found by measure_text are no evidence: a line of text along the frame on black
    # sky cuts a long straight edge into it.
    lettering = np.zeros((h, w), bool)
    for box in (out.text_row_box, out.bar_box):
        if box is not None:
            x0, y0, x1, y1 = (int(v) // f for v in box)
            lettering[max(0, y0 - 3) : y1 + 4, max(0, x0 - 3) : x1 + 4] = True
    # Opened: flat specks along a gap's edge (dark sky next to it) would make the edge ragged.
    flat = ndi.binary_opening(flat, structure=np.ones((3, 3), bool))
    labels, _ = ndi.label(flat)
    areas = np.bincount(labels.ravel())
    fill = (spread <= FLAT_RANGE) & (hi < SAT_LEVEL)
    # Large flat areas: an edge between two of them (a seam's step across flat black sky, both halves flat) is
    # no gap's edge; a gap's edge meets the picture.
    big, _ = ndi.label(ndi.binary_opening(fill, structure=np.ones((3, 3), bool)))
    big_areas = np.bincount(big.ravel())
    big_areas[0] = 0
    flat_big = big_areas[big] >= BLANK_MIN_REGION * h * w

    def evidence(part: np.ndarray, at: tuple[slice, ...]) -> np.ndarray:
        """Where straight edges are no evidence for `part`: lettering, other large flat areas."""
        others = flat_big.copy()
        others[at] &= ~part
        return lettering | ndi.binary_dilation(others, iterations=FLAT_EDGE_PX)

    gap = np.zeros((h, w), bool)
    boxes: list[Box] = []
    touches = 0.0
    slices = ndi.find_objects(labels)
    for k in np.flatnonzero(areas >= BLANK_MIN_REGION * h * w):
        if k == 0:
            continue
        sl = slices[k - 1]
        region = labels[sl] == k
        # Dark noisy sky (little exact fill) is not judged whole: a wedge merged with it, or a seam's dark half.
        dark_sky = np.count_nonzero(fill[sl] & region) < FILL_MIN * areas[k]
        if not dark_sky and _is_gap(region, sl, frame=(h, w), ignore=evidence(region, sl)):
            found = [(sl, region)]
        else:  # its fill parts, one by one
            core = ndi.binary_opening(fill[sl] & region, structure=np.ones((3, 3), bool))
            sub, _ = ndi.label(core)
            sub_areas = np.bincount(sub.ravel())
            found = []
            for j, s2 in enumerate(ndi.find_objects(sub), start=1):
                if s2 is None or sub_areas[j] < BLANK_MIN_REGION * h * w:
                    continue
                part = sub[s2] == j
                s2 = tuple(slice(a.start + b.start, a.start + b.stop) for a, b in zip(sl, s2, strict=True))
                if _is_gap(
                    part,
                    s2,
                    frame=(h, w),
                    ignore=evidence(part, s2),
                    wedge_tol=FILL_WEDGE_TOL_PX,
                    wedge_min=FILL_WEDGE_MIN_LEN,
                    axis=float(np.mean(hi[s2][part] == 0)) >= FILL_ZERO_AXIS,
                ):
                    found.append((s2, part))
        for s2, part in found:
            gap[s2] |= part
            boxes.append((s2[1].start * f, s2[0].start * f, s2[1].stop * f, s2[0].stop * f))
            if s2[0].start == 0 or s2[1].start == 0 or s2[0].stop == h or s2[1].stop == w:
                touches = 1.0
    out.scores["blank_frac"] = float(gap.mean())
    out.scores["blank_border"] = touches
    out.regions["blank"] = boxes
    if f > 1:  # back to work pixels (the last odd row/column, dropped by the binning, is never a gap)
        full = np.zeros(work.mx.shape, bool)
        up = np.repeat(np.repeat(gap, f, axis=0), f, axis=1)
        full[: up.shape[0], : up.shape[1]] = up
        gap = full
    out.blank_mask = gap
    if boxes:
        out.blank_free_box = _largest_free_square(gap)
        _drop_text_in_gaps(out)


def _drop_text_in_gaps(out: Measured) -> None:
    """Text evidence lying mostly (>= 50%) in a blank gap is the gap's edge or a wedge's tip: not text."""
    assert out.blank_mask is not None
    near = ndi.binary_dilation(out.blank_mask, iterations=3)
    for attr, score in (("text_row_box", "text_chars"), ("bar_box", "scale_bar")):
        box = getattr(out, attr)
        if box is None:
            continue
        x0, y0, x1, y1 = (int(v) for v in box)
        if near[y0:y1, x0:x1].mean() >= 0.5:
            setattr(out, attr, None)
            out.scores[score] = 0.0
    boxes = [b for b in (out.text_row_box, out.bar_box) if b is not None]
    out.regions["text"] = boxes if boxes and picture_flags(out.scores).count("text") else []


def _largest_free_square(gap: np.ndarray) -> Box | None:
    """The largest axis-aligned square (work px) that holds no gap pixel, from a chessboard distance map.

    The gap is grown by 1% of the short side (at least 3 px) first: the flat test stops a pixel or two short of
    a gap's edge, and JPEG ringing lines it.
    """
    margin = max(3, int(round(0.01 * min(gap.shape))))
    free = np.pad(~ndi.binary_dilation(gap, iterations=margin), 1, constant_values=False)
    dist = ndi.distance_transform_cdt(free, metric="chessboard")[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    r = int(dist[y, x]) - 1  # the square [x - r, x + r] holds no gap pixel
    if r < 4:
        return None
    return (float(x - r), float(y - r), float(x + r + 1), float(y + r + 1))


# ----------------------------------------------------------------------------------------------------
# Seams


def _bin2(a: np.ndarray) -> np.ndarray:
    """float `(h, w)` -> `(h // 2, w // 2)` 2x2 means."""
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    return (a[0:h:2, 0:w:2] + a[1:h:2, 0:w:2] + a[0:h:2, 1:w:2] + a[1:h:2, 1:w:2]) * 0.25


def _row_steps(img: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(near, far) `(h, w)`: mean of rows [y, y+k) minus [y-k, y), and of rows [y+k, y+3k) minus [y-3k, y-k),
    for each row boundary y (0 where the windows leave the frame)."""
    h = img.shape[0]
    c = np.cumsum(np.pad(img.astype(np.float64), ((1, 0), (0, 0))), axis=0)
    near, far = np.zeros(img.shape), np.zeros(img.shape)
    y = np.arange(3 * k, h - 3 * k + 1)
    near[y] = (c[y + k] - 2 * c[y] + c[y - k]) / k
    far[y] = ((c[y + 3 * k] - c[y + k]) - (c[y - k] - c[y - 3 * k])) / (2 * k)
    return near, far


def _step_votes(
    img: np.ndarray, k: int, tau: float, *, max_rel: float, min_level: float = -np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Per row boundary and column: the column's step is up / down there. A vote needs a step above `tau`
    that is the column's largest within 3 rows (a curved edge peaks at a different row in each column, a
    straight row-aligned one in all) and that is a step, not a ramp or a line (see below), whose lower side
    is at least `min_level`."""
    near, far = _row_steps(img, k)
    a = np.abs(near)
    peak = a >= tau
    for off in range(1, 4):
        peak[off:] &= a[off:] > a[:-off]
        peak[:-off] &= a[:-off] >= a[off:]
    # A step: far = near. A ramp: far = 4 near. A line or spike: far = 0.
    peak &= (far * near > 0) & (np.abs(far) >= 0.5 * a) & (np.abs(far) <= 2.0 * a)
    # A seam is a modest change; an object's edge on black sky (a planet's limb) is not.
    lo = np.minimum(img, np.roll(img, -k, axis=0))
    peak &= (a <= max_rel * (lo + 5.0)) & (lo >= min_level)
    return peak & (near > 0), peak & (near < 0)


def _net_fraction(
    up: np.ndarray, down: np.ndarray, valid: np.ndarray, *, merge: bool = False
) -> tuple[float, int]:
    """(score, row): the largest net fraction of a row's valid columns voting one way; with `merge`, of a row's
    and the next row's votes together (a step inside one binned row splits its votes between the boundaries
    on either side of it; a column votes at most once in 4 rows, so none is counted twice)."""
    n = valid.sum(axis=1)
    votes = (up & valid).sum(axis=1) - (down & valid).sum(axis=1)
    if merge:
        votes[:-1] += votes[1:]
    net = np.abs(votes) / np.maximum(n, 1)
    net[n < 0.5 * valid.shape[1]] = 0.0  # rows mostly in a blank gap
    net[:SEAM_EDGE_PX] = 0.0  # the frame's own edge rows (vignetting, JPEG borders)
    net[-SEAM_EDGE_PX:] = 0.0
    i = int(np.argmax(net))
    return float(net[i]), i


def measure_seam(work: Work, out: Measured) -> None:
    """Scores `seam` / `seam_noise`: the largest fraction of a row or column (or of one half: a chip seam
    may run half the frame) along which the picture steps one way in brightness / roughness.

    Each column votes at the row where its own step peaks (see `_step_votes`), so texture and curved edges
    spread their votes over many rows while a seam gathers them on one. Measured on a copy of at most
    256 px (a seam is long and straight: it survives the binning; roughness is measured before it); blank
    gaps do not vote.
    """
    g = work.grey
    gap = out.blank_mask if out.blank_mask is not None and out.blank_mask.any() else None
    # Roughness is taken at the work resolution, then binned with the picture: binned first, a tile's extra
    # noise is averaged away before it is measured (noise seams: recall 43% -> 61% on the labelled set).
    rough = np.abs(g - ndi.uniform_filter(g, 3))
    scale = 1
    while max(g.shape) > 256:
        g = _bin2(g)
        rough = _bin2(rough)
        gap = None if gap is None else _bin2(gap.astype(np.float32)) > 0
        scale *= 2
    # Per-pixel noise of the seam copy (>= 0.5: quantisation) and the roughness map's own level.
    sigma = max(1.4826 * float(np.median(np.abs(g - ndi.uniform_filter(g, 3))[::2, ::2])), 0.5)
    sigma_r = max(1.4826 * float(np.median(rough[::2, ::2])), 0.5)
    valid_all = np.ones(g.shape, bool) if gap is None else ~ndi.binary_dilation(gap, iterations=3)
    for x0, y0, x1, y1 in out.regions.get("text", []):  # lettering: its baseline is a row of steps
        ya, xa = max(0, int(y0) // scale - 2), max(0, int(x0) // scale - 2)
        valid_all[ya : int(y1) // scale + 3, xa : int(x1) // scale + 3] = False
    best: dict[str, tuple[float, tuple[int, int, int, int] | None]] = {
        "seam": (0.0, None),
        "seam_noise": (0.0, None),
    }
    for axis in (0, 1):
        gg, rr, vv = (g, rough, valid_all) if axis == 0 else (g.T, rough.T, valid_all.T)
        if min(gg.shape) < 24:
            continue
        # Averaged along the line: a seam keeps its row, noise and texture shrink.
        gl = ndi.uniform_filter1d(gg, SEAM_ALONG_PX, axis=1)
        rl = ndi.uniform_filter1d(rr, SEAM_ALONG_PX, axis=1)
        votes = {
            "seam": _step_votes(gl, SEAM_K_PX, 2.0 * sigma / np.sqrt(SEAM_ALONG_PX), max_rel=SEAM_MAX_REL),
            "seam_noise": _step_votes(
                rl,
                2 * SEAM_K_PX,
                max(0.5 * sigma_r, 0.3) / np.sqrt(SEAM_ALONG_PX),
                max_rel=np.inf,
                min_level=SEAM_NOISE_FLOOR * sigma_r,
            ),
        }
        w = gg.shape[1]
        for lo, hi in ((0, w), (0, w // 2), (w // 2, w)):
            if hi - lo < SEAM_MIN_LINE_PX:  # on short lines a chance majority is too likely
                continue
            for name, (up, down) in votes.items():
                score, i = _net_fraction(up[:, lo:hi], down[:, lo:hi], vv[:, lo:hi], merge=name == "seam")
                if score > best[name][0]:
                    best[name] = (score, (axis, i * scale, lo * scale, hi * scale))
    out.scores["seam"] = best["seam"][0]
    out.scores["seam_noise"] = best["seam_noise"][0]
    for name, limit in (("seam", SEAM_FRAC), ("seam_noise", SEAM_NOISE_FRAC)):
        score, where = best[name]
        if where is not None and score >= limit:
            axis, row, lo, hi = where
            x0, y0, x1, y1 = (lo, row - 1, hi, row + 1) if axis == 0 else (row - 1, lo, row + 1, hi)
            out.regions["seam"] = [(float(x0), float(y0), float(x1), float(y1))]
            break


# ----------------------------------------------------------------------------------------------------
# Saturation


def measure_saturation(work: Work, out: Measured) -> None:
    """Scores `sat_extent` (largest clipped component / short side) and `sat_frac` (clipped fraction)."""
    clipped = work.mn >= SAT_LEVEL
    out.scores["sat_frac"] = float(clipped.mean())
    if not clipped.any():
        out.scores["sat_extent"] = 0.0
        return
    # Each clipped component is measured by its core, the pixels whose 3x3 neighbourhood is all clipped
    # (parts at least 3 px thick): a clipped core or a bleed trail has one, white lettering's strokes do not,
    # and a white scale bar's is a thin line.
    labels, _ = ndi.label(clipped, structure=np.ones((3, 3)))
    core = np.where(ndi.binary_erosion(clipped, structure=np.ones((3, 3), bool)), labels, 0)
    best, box = 0.0, None
    for sl in ndi.find_objects(core):
        if sl is None:
            continue
        hh, ww = sl[0].stop - sl[0].start + 2, sl[1].stop - sl[1].start + 2  # + the eroded rim
        ext = max(hh, ww)
        if min(hh, ww) < max(5, 0.02 * work.short) and ext >= 4 * min(hh, ww):  # a bar or a line
            continue
        if ext > best:
            best, box = ext, (sl[1].start - 1, sl[0].start - 1, sl[1].stop + 1, sl[0].stop + 1)
    out.scores["sat_extent"] = best / work.short
    if box is not None and best / work.short >= SAT_EXTENT:
        out.regions["saturated"] = [_fbox(box)]


# ----------------------------------------------------------------------------------------------------
# Text and scale bars


def measure_text(work: Work, out: Measured) -> None:
    """Scores `text_chars` (characters in the best aligned row near an edge) and `scale_bar` (bar length).

    Ink: pixels that stand TEXT_CONTRAST grey levels (and 6 noise sigmas) above or below their surroundings
    (a top-hat wider than a glyph) within TEXT_BAND of an edge. Glyphs: ink components of glyph height;
    a row of them shares a baseline and a peak brightness (text has one colour, stars do not). Bars:
    horizontal ink runs at least BAR_MIN_LEN long, thin, solid, of twice the ink contrast and of uniform
    brightness along their length (a diffraction spike fades).
    """
    g = work.grey
    h, w = g.shape
    short = work.short
    sigma = 1.4826 * float(np.median(np.abs(g - ndi.uniform_filter(g, 3))[::2, ::2]))
    contrast = max(TEXT_CONTRAST, 6.0 * sigma)
    size = max(5, int(round(TEXT_MAX_H * short * 1.5)))
    band = np.ones((h, w), bool)
    edge = max(2, int(TEXT_BAND * short))
    band[edge:-edge, edge:-edge] = False
    bar_run = max(3, int(round(BAR_MIN_LEN * short)))
    best_chars, best_box = 0, None
    bar_len, bar_box = 0.0, None
    for sign in (1.0, -1.0):
        tophat = _tophat(g, size, sign)
        ink = (tophat >= contrast) & band
        if not ink.any():
            continue
        # Opening with a horizontal line (min then max along rows): only runs >= bar_run survive.
        run = ndi.minimum_filter1d(ink.view(np.uint8), bar_run, axis=1)
        bars = ndi.maximum_filter1d(run, bar_run, axis=1).astype(bool) if run.any() else run.astype(bool)
        if bars.any():
            blabels, _ = ndi.label(bars, structure=np.ones((3, 3)))
            for i, sl in enumerate(ndi.find_objects(blabels), start=1):
                ch, cw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
                mine = blabels[sl] == i
                solid = mine.sum() >= 0.8 * ch * cw and ch <= 0.03 * short + 2
                # Along its length a bar keeps its brightness and its contrast (a spike fades).
                along = np.where(mine, g[sl], np.nan)
                prof = np.nanmean(along, axis=0)
                strong = float(np.median(tophat[sl][mine])) >= 2.0 * contrast
                p10, p50, p90 = np.nanpercentile(prof, [10, 50, 90])  # robust to the bar's two end columns
                if solid and strong and p90 - p10 <= BAR_UNIFORM * max(float(p50), 1.0):
                    if cw / short > bar_len:
                        bar_len, bar_box = cw / short, (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
        labels, _ = ndi.label(ink, structure=np.ones((3, 3)))
        comps = []
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            ch, cw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            if TEXT_MIN_H * short <= ch <= TEXT_MAX_H * short and cw <= 12 * ch:
                mine = labels[sl] == i
                # Glyph strokes stand well clear of the ink threshold; noise clumps just pass it.
                if float(tophat[sl][mine].max()) < TEXT_GLYPH_PEAK * contrast:
                    continue
                peak = float((sign * g[sl])[mine].max())
                comps.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop, peak))
        chars, box = _best_text_row(comps)
        if chars > best_chars:
            best_chars, best_box = chars, box
    out.scores["text_chars"] = float(best_chars)
    out.scores["scale_bar"] = bar_len
    if best_box is not None and best_chars >= TEXT_MIN_CHARS:
        out.text_row_box = _fbox(best_box)
    if bar_box is not None:
        out.bar_box = _fbox(bar_box)
    boxes = [b for b in (out.text_row_box, out.bar_box) if b is not None]
    if boxes:
        out.regions["text"] = boxes


def _tophat(g: np.ndarray, size: int, sign: float) -> np.ndarray:
    """White (sign 1) or black (-1) top-hat of `g` with a `size` square: contrast over the local background.

    On pictures over 256 px the background (opening / closing) is taken on a 2x2-binned copy with a half
    size square and repeated back: 4x cheaper, and a background wider than any glyph is as smooth either way.
    """
    op = ndi.grey_opening if sign > 0 else ndi.grey_closing
    if min(g.shape) <= 256:
        background = op(g, size=size)
    else:
        small = op(_bin2(g), size=max(3, size // 2))
        up = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
        background = np.pad(up, ((0, g.shape[0] - up.shape[0]), (0, g.shape[1] - up.shape[1])), mode="edge")
    return sign * (g - background)


def _best_text_row(
    comps: list[tuple[int, int, int, int, float]],
) -> tuple[int, tuple[int, int, int, int] | None]:
    """(characters, box) of the best row of components (x0, y0, x1, y1, peak) that share a baseline and a peak
    brightness (within TEXT_PEAK_TOL) with small gaps between them."""
    if not comps:
        return 0, None
    comps.sort()
    best, best_box = 0, None
    used = [False] * len(comps)
    for i, (_x0, y0, x1, y1, peak) in enumerate(comps):
        if used[i]:
            continue
        row = [comps[i]]
        hmax = y1 - y0
        bottom, right = y1, x1
        for j in range(i + 1, len(comps)):
            a0, b0, a1, b1, pj = comps[j]
            hj = b1 - b0
            gap = a0 - right
            if gap > 3 * max(hmax, hj):
                break
            if gap > 1.5 * max(hmax, hj):
                continue
            same_line = abs(b1 - bottom) <= 0.35 * max(hmax, hj) and max(hmax, hj) <= 2.5 * min(hmax, hj)
            if same_line and abs(pj - peak) <= TEXT_PEAK_TOL * max(abs(peak), 1.0):
                row.append(comps[j])
                used[j] = True
                right = max(right, a1)
                hmax = max(hmax, hj)
        # A component wider than a glyph is letters run together: count them by width.
        chars = sum(max(1, int(round((c[2] - c[0]) / (0.6 * (c[3] - c[1]))))) for c in row)
        if len(row) >= 2 and chars > best:
            best = chars
            best_box = (
                min(c[0] for c in row),
                min(c[1] for c in row),
                max(c[2] for c in row),
                max(c[3] for c in row),
            )
    return best, best_box


# ----------------------------------------------------------------------------------------------------
# The main object and low information


def measure_object(work: Work, out: Measured) -> None:
    """Scores `object_size` (main object's box side / short side, at most 1) and `contrast` (smoothed p99.9 -
    median, fraction of full scale).

    The main object: the connected component above the sky (median + 5 noise sigmas of the smoothed picture,
    and at least 4% of the way to its peak) with the most light above the sky.
    """
    g = work.grey
    smooth = ndi.gaussian_filter(g, 1.5)
    # Percentiles of every 2nd pixel each way: as good on >= 128 px pictures, 4x cheaper.
    sky, top = (float(v) for v in np.percentile(smooth[::2, ::2], [50, LOW_INFO_PERCENTILE]))
    out.scores["contrast"] = max(0.0, (top - sky) / 255.0)
    resid = (g - smooth)[::2, ::2]
    # Noise of the smoothed picture: 1.4826 MAD of the residual x 0.19 (a 1.5 px Gaussian's noise gain).
    sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) * 0.19 + 0.3
    peak = float(smooth.max())
    level = sky + max(5.0 * sigma, 0.04 * (peak - sky), 2.0)
    above = smooth > level
    out.scores["object_size"] = 1.0
    if not above.any():
        return
    labels, n = ndi.label(above)
    light = ndi.sum_labels(smooth - sky, labels, index=np.arange(1, n + 1))
    k = int(np.argmax(light)) + 1
    sl = ndi.find_objects(labels)[k - 1]
    y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
    side = max(y1 - y0, x1 - x0)
    out.scores["object_size"] = min(1.0, side / work.short)
    out.object_box = (float(x0), float(y0), float(x1), float(y1))
    if side / work.short <= SMALL_OBJECT:
        out.regions["small_object"] = [out.object_box]


def square_crop(
    box: Box, *, width: int, height: int, pad: float = CROP_PAD
) -> tuple[int, int, int, int] | None:
    """A padded square (x0, y0, x1, y1) around `box`, moved inside a `width x height` frame; None if it can't fit."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * pad)
    side = int(round(max(side, 8)))
    if side >= min(width, height):
        return None
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return left, top, left + side, top + side


def measure_all(work: Work) -> Measured:
    """Every picture measure of one `Work` copy (duplicates and header sizes are measured elsewhere)."""
    out = Measured()
    measure_text(work, out)
    measure_blank(work, out)  # lettering joins the sky; text lying in a gap is dropped (a wedge's tip)
    measure_seam(work, out)  # ignores blank gaps and text lines (a row of glyphs steps along its baseline)
    measure_saturation(work, out)
    measure_object(work, out)
    return out


def picture_flags(scores: dict[str, float]) -> list[str]:
    """The flags the picture scores raise (FLAG_NAMES order)."""
    raised = {
        "blank": scores.get("blank_frac", 0.0) >= BLANK_FRAC,
        "seam": scores.get("seam", 0.0) >= SEAM_FRAC or scores.get("seam_noise", 0.0) >= SEAM_NOISE_FRAC,
        "saturated": scores.get("sat_extent", 0.0) >= SAT_EXTENT,
        "text": scores.get("text_chars", 0.0) >= TEXT_MIN_CHARS or scores.get("scale_bar", 0.0) > 0,
        # A nearly empty picture has no main object to cut out (its brightest speck is not one).
        "small_object": scores.get("object_size", 1.0) <= SMALL_OBJECT
        and scores.get("contrast", 1.0) >= LOW_INFO_CONTRAST,
        "low_info": scores.get("contrast", 1.0) < LOW_INFO_CONTRAST,
        "aspect": scores.get("aspect", 1.0) >= ASPECT_MAX,
        "duplicate": bool(scores.get("duplicate", 0.0)),
        "small": scores.get("short_side_px", SMALL_SIDE_PX) < SMALL_SIDE_PX,
        "large": scores.get("long_side_px", 0) > LARGE_SIDE_PX,
    }
    return [f for f in FLAG_NAMES if raised[f]]


# Each flag's score column(s) and rule, in words (review.html and `--help` show them).
FLAG_RULES: dict[str, tuple[str, str]] = {
    "blank": (
        "blank_frac",
        f"straight-edged flat (zero-filled) regions cover >= {BLANK_FRAC:.0%} of the frame",
    ),
    "seam": (
        "seam",
        f">= {SEAM_FRAC:.0%} of a row/column (or half; two neighbouring binned rows counted together) steps "
        f"one way in brightness, or >= "
        f"{SEAM_NOISE_FRAC:.0%} in noise (seam_noise)",
    ),
    "saturated": ("sat_extent", f"a clipped white component spans >= {SAT_EXTENT:.0%} of the short side"),
    "text": (
        "text_chars",
        f">= {TEXT_MIN_CHARS} aligned glyphs near an edge, or a solid bar >= {BAR_MIN_LEN:.0%} of the side "
        "(scale_bar)",
    ),
    "small_object": ("object_size", f"the main object's box is <= {SMALL_OBJECT:.0%} of the short side"),
    "low_info": ("contrast", f"smoothed 99.9th percentile within {LOW_INFO_CONTRAST:.0%} of the median"),
    "aspect": ("aspect", f"long side / short side >= {ASPECT_MAX:g}"),
    "duplicate": ("dup_bits", "phash and thumbnail match an earlier file (the build's --dedup rule)"),
    "small": ("width", f"short side < {SMALL_SIDE_PX} px"),
    "large": ("width", f"long side > {LARGE_SIDE_PX} px"),
}
