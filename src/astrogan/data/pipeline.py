"""One input -> images.h5 rows: decode, provenance, labels, size check, dedup, channels, crops, resize; report row.

Science stamps (multi-band flux) take their own road at the end: crop and resize in flux, one stretch, cards kept.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from astrogan.data import fits_io, galaxy10, preprocess, science_inputs
from astrogan.data.artifact import IMAGES_FILE
from astrogan.data.labels import NO_ROW_REASON, BuildLabels
from astrogan.data.preprocess import Decoded, SkipFile, resize_flux
from astrogan.data.provenance import (
    NO_PROVENANCE,
    Provenance,
    file_sha256,
    provenance_of,
    provenance_of_files,
)
from astrogan.data.science_inputs import Loaded, ScienceStamp
from astrogan.data.writer import H5Writer
from astrogan.imaging import uint8_to_unit
from astrogan.science import BandStretch, fits_to_image_order
from astrogan.utils.errors import UserError

if TYPE_CHECKING:
    from astrogan.data.build import BuildOptions
    from astrogan.data.review_report import ReviewPlan


def source_name(root: Path, f: Path, rel: str | None = None) -> str:
    """The name a build gives input file `f` found under `root` (meta `source`, sources `path`, review.csv
    `path`): `rel` when the walk gave one (symlinked files), else its path under `root`, else its name."""
    if rel is not None:
        return rel
    return f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name


def _meta_row(
    source: str,
    box: tuple[int, int, int],
    index: int,
    decoded: Decoded,
    flags: list[str],
    provenance: tuple[Any, ...],
    origin: tuple[int, int, int, int] | None = None,
) -> tuple:
    """One `meta` row, in artifact.META_FIELDS order.

    `origin` (top, left, height, width): where `decoded` was cut from its file (a review crop), so the crop
    box and the source size are recorded in the file's own pixels.
    """
    black = white = float("nan")
    if decoded.stretch is not None:
        black, white = decoded.stretch["black"], decoded.stretch["white"]
    top, left, side = box
    height, width = decoded.height, decoded.width
    if origin is not None:
        top, left, height, width = top + origin[0], left + origin[1], origin[2], origin[3]
    return (
        source,
        top,
        left,
        side,
        index,
        height,
        width,
        ",".join(flags),
        black,
        white,
        *provenance,
    )


def scale_cond(cond: np.ndarray, px_mask: np.ndarray, factor: float) -> np.ndarray:
    """float32 `(K,)`: the columns in pixels (`px_mask`) times `factor`, the others as given."""
    return np.where(px_mask, np.asarray(cond, np.float64) * factor, cond).astype(np.float32)


class PictureBuilder:
    """State of one build: options, dedup indexes, the writer (opened lazily at the first usable image).

    With `labels` every stored image gets a condition row; files without one are skipped.
    """

    def __init__(
        self,
        opts: BuildOptions,
        *,
        out_dir: Path,
        dtype: str,
        labelled: bool,
        default_channels: int | None,
        labels: BuildLabels | None = None,
        review: ReviewPlan | None = None,
    ) -> None:
        if opts.crop == "pad":
            raise UserError(
                "--crop pad keeps science stamps at their own pixel scale (--bands, --science, --h5, --cosmos); "
                "pictures take --crop center, top-left or random"
            )
        self.opts, self.out_dir, self.dtype, self.labelled = opts, out_dir, dtype, labelled
        self.labels = labels
        self.review = review
        self.channels = opts.channels or default_channels
        self.writer: H5Writer | None = None
        self.exact: dict[str, str] = {}
        self.near = preprocess.NearDuplicateIndex(max_bits=opts.near_dup_bits, max_rms=opts.near_dup_rms)
        self.flag_counts: Counter[str] = Counter()
        self.stretch_params = {
            "a": opts.stretch_a,
            "black_percentile": opts.black_percentile,
            "white_percentile": opts.white_percentile,
            "headroom": opts.headroom,
        }

    @property
    def num_images(self) -> int:
        """Images added so far (0 before the writer opens)."""
        return 0 if self.writer is None else self.writer.num_images

    def _open_writer(self, decoded: Decoded) -> H5Writer:
        if self.channels is None:  # FITS-only build: keep the band count when it is 1 or 3
            self.channels = decoded.pixels.shape[-1] if decoded.pixels.shape[-1] in (1, 3) else 1
        self.writer = H5Writer(
            self.out_dir / IMAGES_FILE,
            sizes=self.opts.image_sizes,
            channels=self.channels,
            dtype=self.dtype,
            labelled=self.labelled,
            cond_names=self.labels.columns if self.labels is not None else None,
        )
        return self.writer

    def _check_duplicate(self, decoded: Decoded, source: str) -> None:
        """Raise SkipFile for an exact or near duplicate of an earlier picture; else remember this one."""
        digest = preprocess.pixel_sha256(decoded.pixels)
        if digest in self.exact:
            raise SkipFile(f"exact duplicate (same pixels as {self.exact[digest]})")
        phash, thumb = preprocess.dedup_signature(decoded.pixels)
        hit = self.near.find(phash, thumb)
        if hit is not None:
            raise SkipFile(f"near duplicate (of {hit[0]}: phash {hit[1]} bits, thumbnail rms {hit[2]:.2f})")
        self.exact[digest] = source
        self.near.add(phash, thumb, source)

    def add(
        self,
        decoded: Decoded,
        *,
        source: str,
        rng_key: Sequence[int],
        label: int | None = None,
        provenance: tuple[Any, ...] = NO_PROVENANCE,
        cond: np.ndarray | None = None,
        origin: tuple[int, int, int, int] | None = None,
    ) -> dict:
        """Crop, convert and write one decoded picture; returns its report fields. Raises SkipFile.

        `provenance` = (source_file, credit, licence, params_table, params_row) for every crop's meta row.
        `cond` `(K,)`: the picture's conditions in its own pixels (conditioned builds).
        `origin` (top, left, height, width): `decoded` is a review crop of a file that size (see `_meta_row`).
        """
        opts = self.opts
        if min(decoded.height, decoded.width) < opts.min_size_px:
            raise SkipFile(f"too small ({decoded.width}x{decoded.height} px, --min-size {opts.min_size_px})")
        flags = list(decoded.flags)
        if opts.dedup:
            self._check_duplicate(decoded, source)
        writer = self.writer or self._open_writer(decoded)
        assert self.channels is not None
        pixels = preprocess.to_channels(decoded.pixels, self.channels, flags=flags)
        if self.dtype == "float32" and pixels.dtype == np.uint8:
            pixels = uint8_to_unit(pixels, np.float32)
        rng = np.random.default_rng([opts.seed, *rng_key])
        boxes = preprocess.crop_boxes(
            decoded.height,
            decoded.width,
            mode=opts.crop,
            num_crops=opts.crops_per_image,
            rng=rng,
            min_scale=opts.random_crop_min_scale,
        )
        first = writer.num_images
        for index, box in enumerate(boxes):
            top, left, side = box
            crop = pixels[top : top + side, left : left + side]
            crop_flags = list(flags)
            if side < opts.image_sizes[0]:
                crop_flags.append("upscaled")
            crops = {}
            for s in opts.image_sizes:
                out = preprocess.resize_square(crop, s, filter=opts.filter)
                crops[s] = preprocess.to_uint8(out) if self.dtype == "uint8" else out
            writer.append(
                crops,
                label=label,
                meta=_meta_row(source, box, index, decoded, crop_flags, provenance, origin),
                cond=self._crop_cond(cond, side),
            )
        all_flags = sorted(
            set(flags) | ({"upscaled"} if min(b[2] for b in boxes) < opts.image_sizes[0] else set())
        )
        for f in all_flags:
            self.flag_counts[f.split(":")[0]] += 1
        return {
            "flags": all_flags,
            "num_images": len(boxes),
            "first_index": first,
            "mode": decoded.mode,
            "width": decoded.width,
            "height": decoded.height,
        }

    def _crop_cond(self, cond: np.ndarray | None, side: int) -> np.ndarray | None:
        """The conditions of one crop in the stored image's pixels: px columns times primary size / side."""
        if self.labels is None:
            return None
        assert cond is not None, "a conditioned build needs a condition row for every image"
        # The crop (side px of the source) becomes the primary size: lengths in pixels scale with it.
        return scale_cond(cond, self.labels.px_mask, self.opts.image_sizes[0] / side)


def build_file(
    builder: PictureBuilder,
    root: Path,
    f: Path,
    prov: Provenance,
    sources: list[dict[str, Any]],
    *,
    rel: str | None = None,
    link: Path | None = None,
) -> dict[str, Any]:
    """Add one input file (picture or FITS) to the build; returns its report row, appends its source entry.

    `f` is the file itself (symlinks resolved). `rel` names it in the dataset (meta `source`, sources
    `path`); default its path under `root`, else its name. `link`: the path it was found at through
    symlinks (recorded in the row).
    """
    opts = builder.opts
    rel = source_name(root, f, rel)
    row: dict[str, Any] = {"path": str(f), "status": "skipped", "reason": None, "flags": []}
    if link is not None:
        row["link"] = str(link)
    if not preprocess.is_supported(f):
        row.update(status="ignored", reason=f"not a picture or FITS file name ({f.suffix or 'no suffix'})")
        return row
    try:
        sha, num_bytes = file_sha256(f)
    except OSError as exc:
        row["reason"] = f"cannot read ({exc.strerror or exc})"
        return row
    row.update(sha256=sha, bytes=num_bytes)
    decision = builder.review.decide(rel, sha) if builder.review is not None else None
    if decision is not None:
        row["review"] = _review_note(decision)
        if decision.action == "exclude":  # before decoding: the review has seen this very file
            row["reason"] = decision.reason
            return row
    origin = None
    try:
        fields, provenance = provenance_of(f, sha, prov)
        cond = None
        if builder.labels is not None:
            cond = builder.labels.lookup(f)
            if cond is None:
                raise SkipFile(NO_ROW_REASON)  # before decoding: a conditional dataset needs every row
        if fits_io.is_fits_path(f):
            decoded = preprocess.decode_fits(
                f, stretch_kind=opts.stretch, stretch_params=builder.stretch_params
            )
        else:
            decoded = preprocess.decode_image(f)
        if decision is not None and decision.action == "crop":
            decoded, origin = _review_crop(builder, decoded, decision, rel, sha, row)
        info = builder.add(
            decoded, source=rel, rng_key=[int(sha[:15], 16)], provenance=provenance, cond=cond, origin=origin
        )
    except SkipFile as exc:
        row["reason"] = str(exc)
        return row
    row.update(status="converted", **info)
    src: dict[str, Any] = {
        "path": rel,
        "root": str(root),
        "sha256": sha,
        "bytes": num_bytes,
        "num_images": info["num_images"],
        "first_index": info["first_index"],
    }
    if decoded.stretch is not None:
        src["stretch"] = decoded.stretch
    if decision is not None:
        src["review"] = row["review"]
    src.update(fields)
    if "synthetic" in fields:
        prov.synthetic[fields["synthetic"]["table"]]["num_images"] += info["num_images"]
    sources.append(src)
    return row


def _review_note(decision: Any) -> dict[str, Any]:
    """The report row's / source entry's `review` field: what the review said and what the build did."""
    note: dict[str, Any] = {"action": decision.action}
    if decision.row is not None:
        note.update(path=decision.row.path, flags=list(decision.row.flags))
    if decision.action == "exclude":
        note["excluded_flags"] = list(decision.excluded_flags)
    return note


def _review_crop(
    builder: PictureBuilder, decoded: Decoded, decision: Any, rel: str, sha: str, row: dict[str, Any]
) -> tuple[Decoded, tuple[int, int, int, int] | None]:
    """The review's suggested crop of a decoded picture (before the build's own crop), and its origin.

    The row's recorded size must be the picture's: otherwise the box may not mean the same pixels, the
    picture is built uncropped and the row counts as stale.
    """
    assert builder.review is not None and decision.row is not None and decision.row.crop is not None
    x0, y0, x1, y1 = decision.row.crop
    fits = (decision.row.width, decision.row.height) == (decoded.width, decoded.height)
    fits = fits and x1 <= decoded.width and y1 <= decoded.height
    builder.review.record_crop(rel, sha, decision.row, applied=fits)
    if not fits:
        row["review"]["action"] = "stale"
        row["review"]["why"] = (
            f"review.csv says {decision.row.width}x{decision.row.height} px, the file decodes to "
            f"{decoded.width}x{decoded.height} px: not cropped"
        )
        return decoded, None
    row["review"]["crop"] = [x0, y0, x1, y1]
    cut = Decoded(
        pixels=np.ascontiguousarray(decoded.pixels[y0:y1, x0:x1]),
        mode=decoded.mode,
        flags=[*decoded.flags, "review-cropped"],
        stretch=decoded.stretch,
    )
    return cut, (y0, x0, decoded.height, decoded.width)


def build_galaxy10(
    builder: PictureBuilder, path: Path, report: list, sources: list, bar: Any, task: Any
) -> None:
    """Add every Galaxy10 image (with its label) to the build; one report row for the file, first."""
    sha, num_bytes = file_sha256(path)
    num_converted = 0
    for start, images, labels in galaxy10.iter_chunks(path):
        for i in range(len(images)):
            index = start + i
            source = f"{path.name}#{index}"
            decoded = Decoded(pixels=images[i], mode="RGB" if images.shape[-1] == 3 else "L")
            try:
                builder.add(
                    decoded,
                    source=source,
                    rng_key=[index],
                    label=int(labels[i]),
                    provenance=(f"{path.name}#{index}", galaxy10.CREDIT, "", -1, -1),
                )
                num_converted += 1
            except SkipFile as exc:
                report.append(
                    {"path": f"{path}#{index}", "status": "skipped", "reason": str(exc), "flags": []}
                )
            bar.advance(task)
    report.insert(
        0,
        {
            "path": str(path),
            "status": "converted",
            "reason": None,
            "flags": [],
            "sha256": sha,
            "bytes": num_bytes,
            "num_images": num_converted,
        },
    )
    sources.append(
        {
            "path": path.name,
            "root": str(path.parent.resolve()),
            "sha256": sha,
            "bytes": num_bytes,
            "title": "Galaxy10 DECaLS",
            "credit": galaxy10.CREDIT,
            "page_url": galaxy10.DOWNLOAD_URL,
            "num_images": num_converted,
            "first_index": 0,
        }
    )


# ----------------------------------------------------------------------------------------------------
# Science stamps: flux cropped and resized (or, --crop pad, cut and padded) BEFORE one dataset-wide stretch,
# cards kept per image

# The third seed word of the pad noise, (seed, name key, PAD_STREAM): a stream apart from the random crops'.
PAD_STREAM = 0x9AD


def crop_header(
    header: dict[str, Any], *, box: tuple[int, int, int], height: int, width: int, size_px: int
) -> dict[str, Any]:
    """The cards of one stored crop: the celestial WCS cut to the crop and scaled to `size_px`, PIXSCALE
    (arcsec) of the stored pixels; other cards as given.

    `box` is (top, left, side) in image order of a `height x width` stamp; top/left may be negative (a
    `--crop pad` box reaching past the stamp). The cut shifts CRPIX by the crop's origin in FITS pixels
    (what `WCS.slice` does with step 1; FITS row 0 is the bottom of the picture): CRPIX1 - left, CRPIX2 - y0
    with y0 = height - top - side. The resize convention: FITS pixel i covers [i - 0.5, i + 0.5] (1-based)
    and Pillow resamples the crop's edges [0.5, side + 0.5] onto [0.5, size_px + 0.5], so with
    f = size_px / side: CRPIX' = (CRPIX - 0.5) f + 0.5 and CDELT' = CDELT / f (the cards are in astropy's
    PC + CDELT form, so this scales the CD matrix too). A pad box has f = 1: only CRPIX moves.
    """
    top, left, side = box
    factor = size_px / side
    out = {k: v for k, v in header.items() if not science_inputs.WCS_KEY.fullmatch(k)}
    cards = science_inputs.celestial_cards(header)
    scale = science_inputs.pixel_scale_arcsec(header)
    if scale is not None:  # 12 digits: the WCS cards astropy writes carry 14, so the last ones are noise
        out["PIXSCALE"] = float(f"{scale / factor:.12g}")
    if not cards:
        return out
    out.update(cards)
    if (top, left, side, factor) == (0, 0, height, 1.0) and width == height:
        return out  # the whole stamp at its own size: nothing to correct
    y0 = height - top - side  # the crop's lowest row in FITS order
    for i, start in ((1, left), (2, y0)):
        out[f"CRPIX{i}"] = float((cards[f"CRPIX{i}"] - start - 0.5) * factor + 0.5)
        out[f"CDELT{i}"] = float(cards.get(f"CDELT{i}", 1.0)) / factor
    return out


def _name_key(name: str) -> int:
    """A stable integer from a stamp's name: the seed of its random crops (same name, same crops)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:15], 16)


def _round_sig(value: float) -> float:
    return float(f"{value:.6g}")


class ScienceBuilder:
    """State of a science build: options, bands, the dataset-wide stretch, the float32 writer (one channel per
    band), and tallies of the units and pixel scales the images carry.

    `pad_noise` (with `--crop pad`): padded pixels get Gaussian noise of the stamp border's robust std on top
    of the border's median, seeded by (build seed, stamp name), so the same build gives the same pixels.
    """

    def __init__(
        self,
        opts: BuildOptions,
        *,
        out_dir: Path,
        bands: Sequence[str],
        stretch: BandStretch,
        pad_noise: bool = False,
    ) -> None:
        self.opts, self.bands, self.stretch = opts, tuple(bands), stretch
        self.pad_noise = pad_noise
        self.channels = len(self.bands)
        self.writer = H5Writer(
            out_dir / IMAGES_FILE,
            sizes=opts.image_sizes,
            channels=self.channels,
            dtype="float32",
            labelled=False,
            science_meta=True,
        )
        self.flag_counts: Counter[str] = Counter()
        self.bunits: Counter[str | None] = Counter()
        self.scales: Counter[float | None] = Counter()

    @property
    def num_images(self) -> int:
        return self.writer.num_images

    def boxes(self, stamp: ScienceStamp) -> list[tuple[int, int, int]]:
        """The stamp's square crops `(top, left, side)` in image order (random ones seeded by its name)."""
        return science_boxes(self.opts, stamp)

    def _filled(self, flux: np.ndarray, flags: list[str]) -> np.ndarray:
        """Flux with non-finite pixels set to their band's black (flagged), so resizing cannot spread them."""
        bad = ~np.isfinite(flux)
        num_bad = int(bad.sum())
        if not num_bad:
            return flux
        flags.append(f"nonfinite-filled:{num_bad}")
        black = np.asarray(self.stretch.black, dtype=np.float32)[:, None, None]
        return np.where(bad, black, flux).astype(np.float32)

    def pad_fill(self, stamp: ScienceStamp, size_px: int) -> np.ndarray:
        """float32 `(B, S, S)`: what `--crop pad` puts around a small stamp, per band the median of the
        stamp's border pixels (`preprocess.border_sky`; the band's black if none is finite), plus with
        `pad_noise` Gaussian noise of the border's robust std (MAD x 1.4826) from
        `default_rng([seed, name key, PAD_STREAM])`: the same stamp in the same build gets the same noise."""
        med, std = preprocess.border_sky(np.asarray(stamp.flux))
        black = np.asarray(self.stretch.black, dtype=np.float64)
        med = np.where(np.isfinite(med), med, black)
        fill = np.broadcast_to(med[:, None, None], (len(med), size_px, size_px)).astype(np.float32)
        if self.pad_noise:
            rng = np.random.default_rng([self.opts.seed, _name_key(stamp.source), PAD_STREAM])
            noise = rng.standard_normal((len(med), size_px, size_px), dtype=np.float32)
            fill = fill + noise * np.nan_to_num(std, nan=0.0).astype(np.float32)[:, None, None]
        return fill

    def add(self, stamp: ScienceStamp, *, provenance: tuple[Any, ...] = NO_PROVENANCE) -> dict[str, Any]:
        """Crop, resize (flux), stretch and write one stamp; returns its report fields. Raises SkipFile.

        With `--crop pad` the primary size is a cut or a padding of the stamp (`preprocess.pad_cut`), not a
        resample: the stored pixels keep the stamp's pixel scale; padded images are flagged `padded:<n>`
        (n pixels per band are padding). Other sizes are resized from it.
        """
        opts, sizes = self.opts, self.opts.image_sizes
        why = science_inputs.stamp_problem(stamp, self.bands)
        if why is not None:
            raise SkipFile(why)
        _, height, width = stamp.flux.shape
        if min(height, width) < opts.min_size_px:
            raise SkipFile(f"too small ({width}x{height} px, --min-size {opts.min_size_px})")
        flags = list(stamp.flags)
        img = fits_to_image_order(self._filled(np.asarray(stamp.flux, dtype=np.float32), flags))
        params = json.dumps(stamp.params, sort_keys=True, default=science_inputs.json_value)
        boxes = self.boxes(stamp)
        pad = opts.crop == "pad"
        first = self.writer.num_images
        seen = set(flags)
        for index, (top, left, side) in enumerate(boxes):
            crop_flags = list(flags)
            if pad:
                padded = preprocess.num_padded((top, left, side), height, width)
                fill = self.pad_fill(stamp, side) if padded else None
                crop = preprocess.pad_cut(img, (top, left, side), fill)
                if padded:
                    crop_flags.append(f"padded:{padded}")
            else:
                crop = img[:, top : top + side, left : left + side]
                if side < sizes[0]:
                    crop_flags.append("upscaled")
            crops = {
                s: np.moveaxis(self.stretch.forward(resize_flux(crop, s, filter=opts.filter)), 0, -1)
                for s in sizes
            }
            header = crop_header(
                stamp.header, box=(top, left, side), height=height, width=width, size_px=sizes[0]
            )
            self.bunits[header.get("BUNIT")] += 1
            scale = header.get("PIXSCALE")
            self.scales[None if scale is None else _round_sig(scale)] += 1
            text = json.dumps(header, sort_keys=True, default=science_inputs.json_value)
            meta = (stamp.source, top, left, side, index, height, width, ",".join(crop_flags))
            self.writer.append(crops, label=None, meta=(*meta, np.nan, np.nan, *provenance, text, params))
            seen.update(crop_flags)
        all_flags = sorted(seen)
        for f in all_flags:
            self.flag_counts[f.split(":")[0]] += 1
        return {
            "flags": all_flags,
            "num_images": len(boxes),
            "first_index": first,
            "width": width,
            "height": height,
        }

    def agreed(self, tally: Counter[Any]) -> tuple[Any, bool]:
        """(the one value every stored image carries, else None; whether they disagree)."""
        if len(tally) == 1:
            return next(iter(tally)), False
        return None, len(tally) > 1


def science_boxes(opts: BuildOptions, stamp: ScienceStamp) -> list[tuple[int, int, int]]:
    """Square crops `(top, left, side)` of a stamp in image order, as `crop_boxes` cuts pictures (`--crop pad`:
    one box of the largest size, which may reach past the stamp)."""
    height, width = stamp.flux.shape[-2:]
    return preprocess.crop_boxes(
        int(height),
        int(width),
        mode=opts.crop,
        num_crops=opts.crops_per_image,
        rng=np.random.default_rng([opts.seed, _name_key(stamp.source)]),
        min_scale=opts.random_crop_min_scale,
        size_px=opts.image_sizes[0],
    )


def build_stamp(
    builder: ScienceBuilder, item: Loaded, prov: Provenance, sources: list[dict[str, Any]]
) -> dict[str, Any]:
    """Add one file-based item (a cube, or the band files of a stem) to a science build; returns its report
    row and appends its source entry."""
    paths = [p for _, p in item.files]
    cube = len(paths) == 1 and not item.files[0][0]  # else the band files of one stem
    row: dict[str, Any] = {
        "path": str(paths[0]) if cube else str((item.root or Path()) / item.name),
        "status": "skipped",
        "reason": None,
        "flags": [],
    }
    files: list[dict[str, Any]] = []
    try:
        for band, p in item.files:
            sha, num_bytes = file_sha256(p)
            files.append({"band": band or None, "path": str(p), "sha256": sha, "bytes": num_bytes})
    except OSError as exc:
        row["reason"] = f"cannot read ({exc.strerror or exc})"
        return row
    where: dict[str, Any] = (
        {"sha256": files[0]["sha256"], "bytes": files[0]["bytes"]} if cube else {"files": files}
    )
    row.update(where)
    try:
        if item.stamp is None:
            raise SkipFile(item.reason or "unreadable")
        pairs = [(p, f["sha256"]) for p, f in zip(paths, files, strict=True)]
        if cube:
            fields, provenance = provenance_of(pairs[0][0], pairs[0][1], prov)
        else:
            fields, provenance = provenance_of_files(pairs, prov, stem=Path(item.name).name)
        info = builder.add(item.stamp, provenance=provenance)
    except SkipFile as exc:
        row["reason"] = str(exc)
        return row
    row.update(status="converted", bands=list(builder.bands), **info)
    src = {"path": item.name, "root": str(item.root), **where, "num_images": info["num_images"]}
    src.update(first_index=info["first_index"], **fields)
    if "synthetic" in fields:
        prov.synthetic[fields["synthetic"]["table"]]["num_images"] += info["num_images"]
    sources.append(src)
    return row
