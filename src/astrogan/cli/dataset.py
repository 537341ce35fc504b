"""`astrogan dataset build|info|review`: pictures, FITS or Galaxy10 -> a dataset artifact, its summary, and the
pre-build review of raw pictures (flags, scores, suggested crops)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from astrogan.utils.errors import UserError

if TYPE_CHECKING:
    from rich.table import Table

    from astrogan.conditions import CondSpec
    from astrogan.data.build import BuildOptions, BuildResult
    from astrogan.data.review import ReviewResult
    from astrogan.data.science_inputs import ScienceOptions
    from astrogan.science import ScienceSpec

# The flags, for --help (kept in step with data/review_flags.FLAG_NAMES and DEFAULT_EXCLUDE by a test).
_FLAGS_HELP = "blank, seam, saturated, text, small_object, low_info, aspect, duplicate, small, large"
_DEFAULT_EXCLUDE_HELP = "blank,text,low_info,duplicate"

dataset_app = typer.Typer(
    help="Build and inspect dataset artifacts (manifest.json + images.h5).",
    no_args_is_help=True,
    add_completion=False,
)


# `dataset build`'s flags, grouped by concern (the signature below keeps their --help order).

# Pictures: the inputs, the target, and what is done to every picture.
_INPUTS = typer.Argument(
    None,
    help="Folders (searched recursively; symlinks to files and folders followed, loops reported) and "
    "files: JPEG/PNG/GIF/WebP/TIFF/FITS (an animation gives its first frame). Every path found is built or "
    "reported in report.json.",
)
_OUT = typer.Option(
    ...,
    "--out",
    "-o",
    help="Dataset directory to write (must not exist unless --overwrite). Leftovers of killed builds of "
    "it (.NAME.*.partial) are removed first.",
)
_IMAGE_SIZE = typer.Option("128", "--image-size", help="Side in pixels; several as 128,256,512.")
_CROP = typer.Option(
    "center",
    "--crop",
    help="Square crop before resizing: center, top-left, random; or pad (science builds): cut a centred "
    "--image-size square out of larger stamps and pad smaller ones, never resampled, so every image keeps "
    "the stamps' own pixel scale (COSMOS: 0.03 arcsec/px) and its WCS (CRPIX shifted). The padding is each "
    "band's median of the stamp's border pixels (plus noise with --pad-noise); padded images are flagged "
    "padded:<pixels per band>.",
)
_CROPS_PER_IMAGE = typer.Option(1, "--crops-per-image", help="Random crops per picture (--crop random).")
_RANDOM_CROP_MIN_SCALE = typer.Option(
    0.5, "--random-crop-min-scale", help="Smallest random crop side as a fraction of the short side."
)
_CHANNELS = typer.Option(
    None,
    "--channels",
    help="1 (luminance) or 3 (grey replicated). Default: 3, or the band count for FITS.",
)
_MIN_SIZE = typer.Option(
    None,
    "--min-size",
    help="Skip pictures whose short side is under this (px). Default 32; 1 with --crop pad (stamps are padded, "
    "never upscaled).",
)
_DEDUP = typer.Option(False, "--dedup", help="Drop exact (pixel sha256) and near (phash) duplicates.")
_DEDUP_BITS = typer.Option(
    8, "--dedup-bits", help="Near duplicates: largest phash Hamming distance in bits (of 64)."
)
_DEDUP_RMS = typer.Option(
    3.0, "--dedup-rms", help="Near duplicates: largest RMS difference of 32x32 grey thumbnails (0-255)."
)
_FILTER = typer.Option("lanczos", "--filter", help="Resize filter: lanczos, bicubic, area.")
_SEED = typer.Option(0, "--seed", help="Seed for random crops (same seed, same dataset).")
_GALAXY10 = typer.Option(
    None,
    "--galaxy10",
    help="Galaxy10 DECaLS file (Galaxy10_DECals.h5); keeps its labels and class names.",
)
_DTYPE = typer.Option(
    "auto", "--dtype", help="auto (float32 for FITS-only builds, else uint8), uint8 or float32."
)
_OVERWRITE = typer.Option(
    False,
    "--overwrite",
    help="Replace --out if it is a dataset (checked before building; replaced only after success).",
)

# FITS stretch: per image for FITS pictures; one per band for the whole dataset in science builds.
_STRETCH = typer.Option(
    "asinh",
    "--stretch",
    help="FITS stretch to [0, 1]: asinh, log, sqrt, linear (astropy.visualization; per image for FITS "
    "pictures, one per band for the whole dataset in science builds).",
)
_STRETCH_A = typer.Option(
    None, "--stretch-a", help="The stretch's parameter: asinh softening (default 0.1), log scale (1000)."
)
_BLACK_PERCENTILE = typer.Option(
    None, "--black-percentile", help="Percentile of the finite pixels shown black (default 0.5)."
)
_WHITE_PERCENTILE = typer.Option(
    None,
    "--white-percentile",
    help="Percentile shown white (default 99.9 in science builds, 99.5 for FITS pictures).",
)
_HEADROOM = typer.Option(
    None,
    "--headroom",
    help="FITS pictures: white at this many times the white percentile's level (default 1). With "
    "--stretch linear --white-percentile 100 --headroom 1.25 every peak sits at 0.8, so what a generator "
    "makes brighter than the peak is kept rather than clipped.",
)
_STRETCH_BLACK = typer.Option(
    None, "--stretch-black", help="Science build: flux shown black per band, e.g. 0,0,0,0 (else fitted)."
)
_STRETCH_WHITE = typer.Option(
    None,
    "--stretch-white",
    help="Science build: flux shown white per band, e.g. 10,20,30,40 (else fitted).",
)

# Science inputs: multi-band FITS cubes, per-band files or an HDF5 array; their padding and display.
_BANDS = typer.Option(
    None,
    "--bands",
    help="Science build: band names in order, e.g. g,r,i,z. Files named by --band-pattern "
    "(galaxy_0003_g.fits ...) make one image per stem; other FITS files are cubes with these planes.",
)
_BAND_PATTERN = typer.Option(
    "{stem}_{band}",
    "--band-pattern",
    help="Science build: how per-band files are named, without the FITS suffix ({stem}, {band}).",
)
_SCIENCE = typer.Option(
    False,
    "--science",
    help="Science build of FITS cubes, bands named by their headers (BANDS='g,r,i,z', BAND1.., FILTER1.., "
    "else b0, b1, ...): float32 flux, one stretch per band for the whole dataset.",
)
_HDU = typer.Option(None, "--hdu", help="Science build: the FITS HDU to read (0 = primary).")
_H5 = typer.Option(
    None,
    "--h5",
    help="Science build from an HDF5 array (N, B, H, W), (N, H, W, B) or (N, H, W), read in slices; taken "
    "in FITS order (row 0 = bottom) unless --h5-origin top.",
)
_H5_KEY = typer.Option("images", "--h5-key", help="The array's name in the --h5 file.")
_H5_LAYOUT = typer.Option(
    "auto",
    "--h5-layout",
    help="auto (the axis as long as --bands, else the smaller of axes 1 and 3 if <= 16), nchw or nhwc.",
)
_H5_PARAMS = typer.Option(
    None, "--h5-params", help="Other arrays of length N kept per image (meta params), e.g. mag,redshift."
)
_H5_ORIGIN = typer.Option(
    "bottom", "--h5-origin", help="Row 0 of the --h5 images: bottom (FITS order) or top (image order)."
)
_PAD_NOISE = typer.Option(
    False,
    "--pad-noise",
    help="With --crop pad: add Gaussian noise to the padding, sigma = the stamp border's robust std "
    "(MAD x 1.4826), seeded by (--seed, stamp name) so a build reproduces.",
)
_RGB = typer.Option(None, "--rgb", help="Science build: bands shown as R,G,B in colour pictures, e.g. i,r,g.")

# COSMOS: GalSim's real-galaxy catalogue and its stamps.
_COSMOS = typer.Option(
    None, "--cosmos", help="Science build from a COSMOS catalogue (GalSim's real-galaxy catalogue FITS)."
)
_COSMOS_DIR = typer.Option(None, "--cosmos-dir", help="Folder of the COSMOS stamp files.")
_MAX_MAG = typer.Option(None, "--max-mag", help="COSMOS: keep galaxies at most this magnitude.")
_MIN_MAG = typer.Option(None, "--min-mag", help="COSMOS: keep galaxies at least this magnitude.")
_EXCLUSION_LEVEL = typer.Option(
    "marginal",
    "--exclusion-level",
    help="COSMOS: none, bad_stamp, bad_fits or marginal (GalSim's levels).",
)
_MAX_NUM = typer.Option(None, "--max-num", help="COSMOS: at most this many galaxies.")

# Review: the verdicts of `astrogan dataset review` applied before the build.
_REVIEW = typer.Option(
    None,
    "--review",
    help="review.csv (or its folder) from `astrogan dataset review`: skip files flagged with one of "
    "--exclude-flags (matched by sha256, then by path under the input folder). Recorded in the manifest.",
)
_EXCLUDE_FLAGS = typer.Option(
    None,
    "--exclude-flags",
    help=f"With --review: flags whose files are skipped, comma separated, or 'none'. Default: "
    f"{_DEFAULT_EXCLUDE_HELP}. Flags: {_FLAGS_HELP}.",
)
_APPLY_CROPS = typer.Option(
    False,
    "--apply-crops",
    help="With --review: cut each kept file to its suggested crop (small object, blank margin) before "
    "the build's own square crop.",
)

# Labels: physical conditions stored per picture.
_LABELS = typer.Option(
    None,
    "--labels",
    help="CSV of physical labels (conditions), one row per picture, keyed by a file/filename/name/path "
    "column (base name, with or without extension; folders in front, e.g. a/img.png, tell same-named files "
    "apart). Pictures without a row are skipped and reported. "
    "Folders from `astrogan synth sersic` need none: their params.csv is used.",
)
_LABEL_COLUMNS = typer.Option(
    None,
    "--label-columns",
    help="Columns of the labels CSV to store, comma separated (e.g. sersic_n,half_light_radius_px,q). "
    "Default: every numeric column that varies (not index or seed). Columns ending in _px are "
    "rescaled to the stored image's pixels.",
)


@dataset_app.command("build")
def build(
    inputs: list[Path] = _INPUTS,
    out: Path = _OUT,
    image_size: str = _IMAGE_SIZE,
    crop: str = _CROP,
    pad_noise: bool = _PAD_NOISE,
    crops_per_image: int = _CROPS_PER_IMAGE,
    random_crop_min_scale: float = _RANDOM_CROP_MIN_SCALE,
    channels: int = _CHANNELS,
    min_size: int = _MIN_SIZE,
    dedup: bool = _DEDUP,
    dedup_bits: int = _DEDUP_BITS,
    dedup_rms: float = _DEDUP_RMS,
    filter: str = _FILTER,
    seed: int = _SEED,
    galaxy10: Path = _GALAXY10,
    stretch: str = _STRETCH,
    stretch_a: float = _STRETCH_A,
    black_percentile: float = _BLACK_PERCENTILE,
    white_percentile: float = _WHITE_PERCENTILE,
    headroom: float = _HEADROOM,
    dtype: str = _DTYPE,
    overwrite: bool = _OVERWRITE,
    labels: Path = _LABELS,
    label_columns: str = _LABEL_COLUMNS,
    review: Path = _REVIEW,
    exclude_flags: str = _EXCLUDE_FLAGS,
    apply_crops: bool = _APPLY_CROPS,
    bands: str = _BANDS,
    band_pattern: str = _BAND_PATTERN,
    science: bool = _SCIENCE,
    hdu: int = _HDU,
    h5: Path = _H5,
    h5_key: str = _H5_KEY,
    h5_layout: str = _H5_LAYOUT,
    h5_params: str = _H5_PARAMS,
    h5_origin: str = _H5_ORIGIN,
    cosmos: Path = _COSMOS,
    cosmos_dir: Path = _COSMOS_DIR,
    max_mag: float = _MAX_MAG,
    min_mag: float = _MIN_MAG,
    exclusion_level: str = _EXCLUSION_LEVEL,
    max_num: int = _MAX_NUM,
    stretch_black: str = _STRETCH_BLACK,
    stretch_white: str = _STRETCH_WHITE,
    rgb: str = _RGB,
) -> None:
    """Build a dataset: square crops (never squashed), resized with a named filter, deduplicated, reported."""
    flags = dict(locals())  # every flag by its parameter name, for the helpers below
    sci = _science_options(flags)
    opts = _build_options(flags, science=sci is not None)
    _print_build_summary(_build_quietly(flags, opts, sci))


def _build_options(flags: dict[str, Any], *, science: bool) -> BuildOptions:
    """The BuildOptions of `dataset build`'s flags (the FITS stretch flags only for picture builds)."""
    from astrogan.data.build import BuildOptions, parse_sizes

    crop = flags["crop"]
    if flags["pad_noise"] and crop != "pad":
        raise UserError("--pad-noise fills the padding of --crop pad: add --crop pad (science builds)")
    min_size = flags["min_size"]
    if min_size is None:
        min_size = 1 if crop == "pad" else 32
    fits_stretch = {k: flags[k] for k in ("stretch_a", "black_percentile", "white_percentile", "headroom")}
    return BuildOptions(
        image_sizes=parse_sizes(flags["image_size"]),
        crop=crop,
        crops_per_image=flags["crops_per_image"],
        random_crop_min_scale=flags["random_crop_min_scale"],
        channels=flags["channels"],
        min_size_px=min_size,
        dedup=flags["dedup"],
        near_dup_bits=flags["dedup_bits"],
        near_dup_rms=flags["dedup_rms"],
        filter=flags["filter"],
        seed=flags["seed"],
        stretch=flags["stretch"],
        dtype=flags["dtype"],
        **({} if science else {k: v for k, v in fits_stretch.items() if v is not None}),
    )


def _build_quietly(flags: dict[str, Any], opts: BuildOptions, sci: ScienceOptions | None) -> BuildResult:
    """`build_dataset` on the flags' inputs, its warnings silenced (the summary table lists the flags)."""
    import warnings

    from astrogan.data.build import build_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a line per flag on top of the summary's rows would only repeat them
        return build_dataset(
            flags["inputs"] or [],
            flags["out"],
            options=opts,
            galaxy10_path=flags["galaxy10"],
            overwrite=flags["overwrite"],
            labels=flags["labels"],
            label_columns=flags["label_columns"],
            review=flags["review"],
            exclude_flags=flags["exclude_flags"],
            apply_crops=flags["apply_crops"],
            science=sci,
        )


def _science_options(flags: dict[str, Any]) -> ScienceOptions | None:
    """The ScienceOptions of `dataset build`'s flags (by parameter name), or None when none asks for a science
    build (--bands, --science, --h5, --cosmos); UserError for science-only flags without one."""
    from astrogan.data.science_inputs import ScienceOptions, parse_floats, parse_names

    if not (
        flags["bands"] is not None
        or flags["science"]
        or flags["h5"] is not None
        or flags["cosmos"] is not None
    ):
        given = [
            flag
            for flag, key in (
                ("--stretch-black", "stretch_black"),
                ("--stretch-white", "stretch_white"),
                ("--rgb", "rgb"),
                ("--hdu", "hdu"),
                ("--h5-params", "h5_params"),
                ("--cosmos-dir", "cosmos_dir"),
                ("--max-mag", "max_mag"),
                ("--min-mag", "min_mag"),
                ("--max-num", "max_num"),
                ("--pad-noise", "pad_noise"),
            )
            if flags[key] not in (None, False)
        ]
        if given:
            raise UserError(f"{given[0]} belongs to science builds: add --bands, --science, --h5 or --cosmos")
        return None
    if flags["headroom"] is not None:
        raise UserError(
            "--headroom is for FITS picture builds; a science build sets its white with --stretch-white"
        )
    percentiles = {k: flags[k] for k in ("black_percentile", "white_percentile") if flags[k] is not None}
    return ScienceOptions(
        bands=parse_names(flags["bands"]),
        cubes=bool(flags["science"]),
        band_pattern=flags["band_pattern"],
        hdu=flags["hdu"],
        h5=flags["h5"],
        h5_key=flags["h5_key"],
        h5_layout=flags["h5_layout"],
        h5_params=parse_names(flags["h5_params"], what="--h5-params") or (),
        h5_origin=flags["h5_origin"],
        cosmos=flags["cosmos"],
        cosmos_dir=flags["cosmos_dir"],
        max_mag=flags["max_mag"],
        min_mag=flags["min_mag"],
        exclusion_level=flags["exclusion_level"],
        max_num=flags["max_num"],
        stretch=flags["stretch"],
        stretch_a=flags["stretch_a"],
        stretch_black=parse_floats(flags["stretch_black"], what="--stretch-black"),
        stretch_white=parse_floats(flags["stretch_white"], what="--stretch-white"),
        rgb=parse_names(flags["rgb"], what="--rgb"),
        pad_noise=bool(flags["pad_noise"]),
        **percentiles,
    )


def _print_build_summary(result: BuildResult) -> None:
    import os

    from rich.table import Table

    from astrogan.utils.log import console

    if os.environ.get("ASTROGAN_QUIET") == "1":
        return
    table = Table(title=f"dataset {result.path}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("images", str(result.num_images))
    table.add_row("sizes", ", ".join(f"{s} px" for s in result.image_sizes))
    table.add_row("channels / dtype", f"{result.channels} / {result.dtype}")
    if result.science is not None:
        _add_science_rows(table, result.science)
    table.add_row("files converted", str(result.count("converted")))
    table.add_row("files skipped", str(result.count("skipped")))
    reasons = sorted(result.skip_reasons().items(), key=lambda kv: -kv[1])
    for reason, n in reasons[:8]:  # science reasons name their stamp: many can differ, report.json has all
        table.add_row("  skipped: " + reason, str(n))
    if len(reasons) > 8:
        table.add_row(f"  skipped: {len(reasons) - 8} other reasons", str(sum(n for _, n in reasons[8:])))
    if result.count("ignored"):
        table.add_row("paths ignored (not pictures, hidden, provenance)", str(result.count("ignored")))
    for flag, n in sorted(result.flag_counts.items()):
        table.add_row("  flagged: " + flag, str(n))
    if result.review is not None:
        counts = result.review["counts"]
        table.add_row(
            "review",
            f"{result.review['csv']} (excluding: {', '.join(result.review['exclude_flags']) or 'none'})",
        )
        table.add_row(
            "  excluded / cropped / kept", f"{counts['excluded']} / {counts['cropped']} / {counts['kept']}"
        )
        if counts["unreviewed"] or counts["stale"]:
            table.add_row("  unreviewed / changed since", f"{counts['unreviewed']} / {counts['stale']}")
    if result.cond_spec is not None:
        _add_cond_rows(table, result.cond_spec, result.image_sizes[0])
        table.add_row("  pictures without a labels row", str(result.num_unmatched_images))
        table.add_row("  labels rows without a picture", str(result.num_unmatched_rows))
    table.add_row("content hash", result.content_hash)
    table.add_row("wall time", f"{result.wall_s:.1f} s")
    console.print(table)
    console.print(f"details per file: {result.path / 'report.json'}")


def _add_cond_rows(table: Table, spec: CondSpec, size_px: int) -> None:
    """One summary row per condition column: its stored range, unit and mean."""
    table.add_row("conditions", f"{spec.dim} column(s); px columns in pixels of the {size_px} px images")
    for i, name in enumerate(spec.names):
        unit = f" {spec.units[i]}" if spec.units[i] else ""
        table.add_row(f"  {name}", f"{spec.low[i]:.4g} .. {spec.high[i]:.4g}{unit} (mean {spec.mean[i]:.4g})")


def _add_science_rows(table: Table, spec: ScienceSpec) -> None:
    """Rows for a science dataset: bands, the stretch and each band's black/white, units, scale, display."""
    st = spec.stretch
    table.add_row("bands", ", ".join(spec.bands))
    a = f" a={st.a:g}" if st.kind in ("asinh", "log") else ""
    table.add_row("stretch", f"{st.kind}{a}, one per band for the whole dataset (black .. white flux)")
    for band, black, white in zip(spec.bands, st.black, st.white, strict=True):
        table.add_row(f"  {band}", f"{black:.6g} .. {white:.6g}")
    table.add_row("BUNIT", spec.bunit or "unknown (not in the headers, or they differ)")
    scale = spec.pixel_scale_arcsec
    table.add_row("pixel scale", f"{scale:.6g} arcsec/px" if scale is not None else "unknown")
    d = spec.display_or_default()
    shown = ",".join(b or "mean" for b in d.rgb)
    table.add_row("display", f"Lupton RGB of {shown} (Q={d.q:g}, stretch={d.stretch:.4g})")


@dataset_app.command("info")
def info(path: Path = typer.Argument(..., help="Dataset directory (from `astrogan dataset build`).")) -> None:
    """Print a dataset's summary: count, sizes, channels, labels, sources, hash."""
    from rich.console import Console
    from rich.table import Table

    from astrogan.data.dataset import open_dataset

    ds = open_dataset(path)
    m = ds.manifest
    table = Table(title=f"dataset {ds.path}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("images", str(ds.num_images))
    table.add_row("sizes", ", ".join(f"{s} px ({m['datasets'][str(s)]})" for s in ds.image_sizes))
    table.add_row("channels / dtype", f"{ds.channels} / {ds.dtype}")
    if ds.science is not None:
        _add_science_rows(table, ds.science)
    if ds.label_names:
        counts = m.get("label_counts") or {}
        table.add_row(
            "labels", "; ".join(f"{i} {n} ({counts.get(n, 0)})" for i, n in enumerate(ds.label_names))
        )
    else:
        table.add_row("labels", "none")
    if ds.cond_spec is not None:
        _add_cond_rows(table, ds.cond_spec, ds.image_size)
    counts = m.get("counts", {})
    table.add_row(
        "files",
        f"{counts.get('converted', '?')} converted, {counts.get('skipped', '?')} skipped, "
        f"{counts.get('ignored', 0)} ignored",
    )
    table.add_row("sources", ", ".join(m.get("inputs", [])) or "?")
    for credit, n in list((m.get("credits") or {}).items())[:10]:
        table.add_row("  credit", f"{credit} ({n})")
    for licence, n in (m.get("licences") or {}).items():
        table.add_row("  licence", f"{licence} ({n})")
    if m.get("stretch"):
        st = m["stretch"]
        table.add_row(
            "stretch",
            f"{st['kind']} a={st['a']} black/white percentiles "
            f"{st['black_percentile']}/{st['white_percentile']}"
            + (f", headroom {st['headroom']:g}" if st.get("headroom", 1) != 1 else ""),
        )
    table.add_row("content hash", ds.content_hash)
    table.add_row("created", f"{m.get('created_at', '?')} by {m.get('created_by', '?')}")
    Console(highlight=False).print(table)


@dataset_app.command("review")
def review(
    inputs: list[Path] = typer.Argument(
        ..., help="Folders (searched as `dataset build` searches them) and files of raw pictures/FITS."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder to write review.html, review.csv, exclude.txt and thumbs/ (must not exist unless "
        "--overwrite; not inside an input).",
    ),
    exclude_flags: str = typer.Option(
        None,
        "--exclude-flags",
        help=f"Flags whose files exclude.txt lists, comma separated, or 'none'. Default: "
        f"{_DEFAULT_EXCLUDE_HELP}. Flags: {_FLAGS_HELP}.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it is a review folder."),
) -> None:
    """Flag raw pictures before a build (blank regions, seams, clipping, text, small objects, low information,
    shape, duplicates, size), each with a score and a documented threshold; nothing in the inputs changes."""
    from astrogan.data.review import review_pictures

    result = review_pictures(inputs, out, exclude_flags=exclude_flags, overwrite=overwrite)
    _print_review_summary(result)


def _print_review_summary(result: ReviewResult) -> None:
    import os

    from rich.table import Table

    from astrogan.data.review_flags import FLAG_NAMES
    from astrogan.utils.log import console

    if os.environ.get("ASTROGAN_QUIET") == "1":
        return
    table = Table(title=f"review {result.path}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("files", str(result.num_files))
    unreadable = sum(1 for r in result.rows if r.get("status") != "ok")
    if unreadable:
        table.add_row("  unreadable", str(unreadable))
    for flag in FLAG_NAMES:
        if result.flag_counts.get(flag):
            mark = " (excluded)" if flag in result.exclude_flags else ""
            table.add_row(f"  flagged: {flag}{mark}", str(result.flag_counts[flag]))
    table.add_row("crops suggested", str(sum(1 for r in result.rows if r.get("crop"))))
    table.add_row("in exclude.txt", str(len(result.excluded)))
    table.add_row(
        "wall time", f"{result.wall_s:.1f} s ({result.num_files / max(result.wall_s, 1e-9):.0f} files/s)"
    )
    console.print(table)
    console.print(f"contact sheet: {result.path / 'review.html'}")


def register(app: typer.Typer) -> None:
    """Add `astrogan dataset ...` to the root app."""
    app.add_typer(dataset_app, name="dataset")
