"""`dataset review`: scan raw pictures before a build and flag, with a score each, what curation would drop or crop.

Each picture is decoded once at reduced size (JPEG draft mode, then area-averaged to at most WORK_SIDE_PX) and
measured by `review_flags`; its nominal size comes from the header. Near duplicates use the build's own
`--dedup` test (imagehash phash + thumbnail RMS). The outputs (review.csv, exclude.txt, review.html with
thumbs/) go to a new folder, written atomically; nothing in the inputs is changed.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from astrogan.data import fits_io, preprocess
from astrogan.data import review_flags as rf
from astrogan.data import review_report as rr
from astrogan.data.preprocess import SkipFile
from astrogan.data.provenance import file_sha256
from astrogan.utils.atomic import atomic_dir
from astrogan.utils.errors import UserError

THUMB_SIDE_PX = 192
# Crops that would keep less than this fraction of the short side are not suggested for blank regions (such
# a picture is mostly gap: drop it instead).
MIN_BLANK_CROP = 0.35


@dataclass
class ReviewResult:
    """What a review found: where it wrote, one row per file (scores, flags, crop), counts, time."""

    path: Path
    rows: list[dict[str, Any]]
    excluded: list[str]
    exclude_flags: frozenset[str]
    wall_s: float = 0.0
    flag_counts: dict[str, int] = field(default_factory=dict)

    @property
    def num_files(self) -> int:
        return len(self.rows)


def load_work(path: str | os.PathLike[str]) -> tuple[rf.Work, list[str]]:
    """Decode a picture or FITS file to a review copy; returns (Work, decode flags). Raises SkipFile.

    Large JPEGs are decoded with Pillow's draft mode (the DCT scaled down by 2-8x), so an 8000 px original
    costs about as much as a 1000 px one; the size recorded is the header's, EXIF orientation applied.
    """
    path = os.fspath(path)
    if fits_io.is_fits_path(path):
        decoded = preprocess.decode_fits(path)  # stretched as the build stretches by default
        px = decoded.pixels
        if px.shape[-1] not in (1, 3):
            px = px.mean(axis=-1, keepdims=True)
        rgb = np.ascontiguousarray(preprocess.to_uint8(preprocess.to_channels(px, 3)))
        return _work_from(Image.fromarray(rgb), decoded.width, decoded.height), list(decoded.flags)
    if os.path.getsize(path) == 0:
        raise SkipFile("empty file (0 bytes)")
    flags: list[str] = []
    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = preprocess.exif_orientation(img)
            if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: the oriented picture is height x width
                width, height = height, width
            if img.format == "JPEG" and max(width, height) > 2 * rf.WORK_SIDE_PX:
                f = rf.WORK_SIDE_PX / max(width, height)
                img.draft("RGB", (max(1, int(img.size[0] * f)), max(1, int(img.size[1] * f))))
            img.load()
            oriented = ImageOps.exif_transpose(img) or img
            arr = preprocess._to_uint8_array(oriented, flags)  # the build's own conversions (flags alike)
    except SkipFile:
        raise
    except Exception as exc:
        raise preprocess.picture_error(exc) from None
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return _work_from(Image.fromarray(np.ascontiguousarray(arr)), width, height), flags


def _work_from(img: Image.Image, width: int, height: int) -> rf.Work:
    """The review copy: `img` area-averaged so its longest side is at most WORK_SIDE_PX."""
    if max(img.size) > rf.WORK_SIDE_PX:
        f = rf.WORK_SIDE_PX / max(img.size)
        size = (max(1, round(img.size[0] * f)), max(1, round(img.size[1] * f)))
        img = img.resize(size, Image.Resampling.BOX)
    return rf.Work(np.asarray(img.convert("RGB")), width=width, height=height)


def _to_original(box: rf.Box, work: rf.Work) -> tuple[float, float, float, float]:
    """A work-pixel box in original pixels (clipped to the frame)."""
    sx, sy = work.width / work.rgb.shape[1], work.height / work.rgb.shape[0]
    x0, y0, x1, y1 = box
    return (
        max(0.0, x0 * sx),
        max(0.0, y0 * sy),
        min(float(work.width), x1 * sx),
        min(float(work.height), y1 * sy),
    )


def suggest_crop(
    work: rf.Work, measured: rf.Measured, flags: list[str]
) -> tuple[tuple[int, int, int, int] | None, str]:
    """(box (x0, y0, x1, y1) in original pixels, reason) of the suggested square crop, or (None, "").

    Around the main object when it is a small part of the frame (padded by CROP_PAD, moved inside the frame);
    else the largest square free of blank regions, when there are some and it keeps MIN_BLANK_CROP of the side.
    """
    if "small_object" in flags and measured.object_box is not None:
        box = rf.square_crop(_to_original(measured.object_box, work), width=work.width, height=work.height)
        if box is not None:
            return box, "small_object"
    if "blank" in flags and measured.blank_free_box is not None:
        x0, y0, x1, y1 = _to_original(measured.blank_free_box, work)
        side = int(min(x1 - x0, y1 - y0))
        if side >= MIN_BLANK_CROP * min(work.width, work.height):
            left, top = int(np.ceil(x0)), int(np.ceil(y0))
            side = min(side, work.width - left, work.height - top)
            return (left, top, left + side, top + side), "blank"
    return None, ""


def review_file(path: Path) -> tuple[dict[str, Any], rf.Work]:
    """Scores, flags, regions (original pixels) and suggested crop of one file (no duplicate test). Raises SkipFile."""
    work, _ = load_work(path)
    measured = rf.measure_all(work)
    scores = dict(measured.scores)
    scores["aspect"] = max(work.width, work.height) / max(1, min(work.width, work.height))
    scores["short_side_px"] = min(work.width, work.height)
    scores["long_side_px"] = max(work.width, work.height)
    flags = rf.picture_flags(scores)
    crop, crop_reason = suggest_crop(work, measured, flags)
    regions = {k: [_to_original(b, work) for b in boxes] for k, boxes in measured.regions.items() if boxes}
    row = {
        "width": work.width,
        "height": work.height,
        "flags": flags,
        "crop": crop,
        "crop_reason": crop_reason,
        "regions": regions,
        **{k: scores[k] for k in rr.SCORE_COLUMNS if k in scores},
    }
    return row, work


def _check_out(out: Path, inputs: Sequence[str | os.PathLike[str]], overwrite: bool) -> None:
    """UserError before any work when `out` cannot take the review."""
    real = out.expanduser().resolve()
    for raw in inputs:
        p = Path(raw).expanduser().resolve()
        if p.is_dir() and (real == p or real.is_relative_to(p)):
            raise UserError(
                f"--out {out} is inside the input {raw}: its thumbnails would become inputs of the next build"
            )
        if real == p or p.is_relative_to(real):
            raise UserError(f"input {raw} is inside --out {out}: --overwrite would delete it")
    if not os.path.lexists(out):
        return
    if not overwrite:
        raise UserError(f"{out} already exists: pass --overwrite to replace it")
    if out.is_symlink() or not out.is_dir():
        raise UserError(f"{out} is not a review folder: remove it yourself if you mean it")
    if any(os.scandir(out)) and not (out / rr.CSV_FILE).is_file():
        raise UserError(f"{out} is not a review folder (no {rr.CSV_FILE}): remove it yourself if you mean it")


def review_pictures(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    exclude_flags: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> ReviewResult:
    """Review every picture/FITS file under `inputs` into folder `out` (review.csv, exclude.txt, review.html).

    Files are found and named exactly as `dataset build` finds and names them (same walk, same `path`), so
    `build --review out/review.csv` matches them (by sha256 first: a moved folder still matches).
    `exclude_flags`: the flags whose files exclude.txt lists (comma separated; default DEFAULT_EXCLUDE).
    """
    from astrogan.data.build import _collect_inputs
    from astrogan.data.pipeline import source_name
    from astrogan.utils.log import progress

    t0 = time.perf_counter()
    if not inputs:
        raise UserError("no inputs: give folders or files of pictures/FITS to review")
    exclude = rr.parse_flags(exclude_flags)
    out_path = Path(out).expanduser()
    _check_out(out_path, inputs, overwrite)
    entries = [
        e for e in _collect_inputs(inputs).entries if e.row is None and preprocess.is_supported(e.path)
    ]
    if not entries:
        raise UserError("no pictures or FITS files in the inputs: check the paths and the file types")
    rows: list[dict[str, Any]] = []
    near = preprocess.NearDuplicateIndex()
    first_of: dict[str, str] = {}
    with atomic_dir(out_path, overwrite=overwrite) as tmp:
        (tmp / rr.THUMBS_DIR).mkdir()
        with progress(disable=None if show_progress else True) as bar:
            task = bar.add_task("dataset review", total=len(entries), info="")
            for i, e in enumerate(entries):
                bar.update(task, info=e.path.name[:40])
                rel = source_name(e.root, e.path, e.rel)
                rows.append(_review_entry(e.root, e.path, rel, tmp, i, near, first_of))
                bar.advance(task)
        rr.write_csv(tmp / rr.CSV_FILE, rows)
        excluded = rr.write_exclude(tmp / rr.EXCLUDE_FILE, rows, exclude)
        shown = [str(Path(p).expanduser().resolve()) for p in inputs]
        rr.write_html(tmp / rr.HTML_FILE, rows, inputs=shown, exclude=exclude)
    counts = Counter(f for r in rows for f in r.get("flags") or ())
    return ReviewResult(
        path=out_path,
        rows=rows,
        excluded=excluded,
        exclude_flags=exclude,
        wall_s=time.perf_counter() - t0,
        flag_counts=dict(counts),
    )


def _review_entry(
    root: Path,
    path: Path,
    rel: str,
    out_dir: Path,
    index: int,
    near: preprocess.NearDuplicateIndex,
    first_of: dict[str, str],
) -> dict[str, Any]:
    """One review.csv row (thumbnail written under out_dir); unreadable files get a row saying why."""
    row: dict[str, Any] = {"path": rel, "root": str(root), "status": "unreadable", "flags": []}
    try:
        sha, num_bytes = file_sha256(path)
    except OSError as exc:
        row["reason"] = f"cannot read ({exc.strerror or exc})"
        return row
    row.update(sha256=sha, bytes=num_bytes)
    try:
        measured, work = review_file(path)
    except SkipFile as exc:
        row["reason"] = str(exc)
        return row
    row.update(measured, status="ok")
    # Duplicates: the same bytes, or the build's near-duplicate test; the first file in walk order stays.
    dup = first_of.get(sha)
    phash, thumb = preprocess.dedup_signature(work.rgb)
    if dup is None:
        hit = near.find(phash, thumb)
        if hit is not None:
            dup, bits, rms = hit
            row.update(dup_bits=float(bits), dup_rms=float(rms))
    else:
        row.update(dup_bits=0.0, dup_rms=0.0)
    if dup is not None:
        row["duplicate_of"] = dup
        row["flags"] = [f for f in rf.FLAG_NAMES if f in {*row["flags"], "duplicate"}]
    else:
        first_of[sha] = rel
        near.add(phash, thumb, rel)
    thumb_name = f"{rr.THUMBS_DIR}/{index:06d}.jpg"
    img = Image.fromarray(work.rgb)
    img.thumbnail((THUMB_SIDE_PX, THUMB_SIDE_PX), Image.Resampling.BOX)
    img.save(out_dir / thumb_name, quality=85)
    row["thumb"] = thumb_name
    return row
