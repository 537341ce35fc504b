"""`astrogan dataset build|info|review`: pictures, FITS or Galaxy10 -> a dataset artifact, its summary, and the
pre-build review of raw pictures (flags, scores, suggested crops)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from astrogan.conditions import CondSpec
    from astrogan.data.build import BuildResult
    from astrogan.data.review import ReviewResult

# The flags, for --help (kept in step with data/review_flags.FLAG_NAMES and DEFAULT_EXCLUDE by a test).
_FLAGS_HELP = "blank, seam, saturated, text, small_object, low_info, aspect, duplicate, small, large"
_DEFAULT_EXCLUDE_HELP = "blank,text,low_info,duplicate"

dataset_app = typer.Typer(
    help="Build and inspect dataset artifacts (manifest.json + images.h5).",
    no_args_is_help=True,
    add_completion=False,
)


@dataset_app.command("build")
def build(
    inputs: list[Path] = typer.Argument(
        None,
        help="Folders (searched recursively; symlinks to files and folders followed, loops reported) and "
        "files: JPEG/PNG/TIFF/FITS. Every path found is built or reported in report.json.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Dataset directory to write (must not exist unless --overwrite). Leftovers of killed builds of "
        "it (.NAME.*.partial) are removed first.",
    ),
    image_size: str = typer.Option("128", "--image-size", help="Side in pixels; several as 128,256,512."),
    crop: str = typer.Option(
        "center", "--crop", help="Square crop before resizing: center, top-left, random."
    ),
    crops_per_image: int = typer.Option(
        1, "--crops-per-image", help="Random crops per picture (--crop random)."
    ),
    random_crop_min_scale: float = typer.Option(
        0.5, "--random-crop-min-scale", help="Smallest random crop side as a fraction of the short side."
    ),
    channels: int = typer.Option(
        None,
        "--channels",
        help="1 (luminance) or 3 (grey replicated). Default: 3, or the band count for FITS.",
    ),
    min_size: int = typer.Option(32, "--min-size", help="Skip pictures whose short side is under this (px)."),
    dedup: bool = typer.Option(
        False, "--dedup", help="Drop exact (pixel sha256) and near (phash) duplicates."
    ),
    dedup_bits: int = typer.Option(
        8, "--dedup-bits", help="Near duplicates: largest phash Hamming distance in bits (of 64)."
    ),
    dedup_rms: float = typer.Option(
        3.0, "--dedup-rms", help="Near duplicates: largest RMS difference of 32x32 grey thumbnails (0-255)."
    ),
    filter: str = typer.Option("lanczos", "--filter", help="Resize filter: lanczos, bicubic, area."),
    seed: int = typer.Option(0, "--seed", help="Seed for random crops (same seed, same dataset)."),
    galaxy10: Path = typer.Option(
        None,
        "--galaxy10",
        help="Galaxy10 DECaLS file (Galaxy10_DECals.h5); keeps its labels and class names.",
    ),
    stretch: str = typer.Option("asinh", "--stretch", help="FITS stretch to [0, 1]: asinh, log, linear."),
    dtype: str = typer.Option(
        "auto", "--dtype", help="auto (float32 for FITS-only builds, else uint8), uint8 or float32."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace --out if it is a dataset (checked before building; replaced only after success).",
    ),
    labels: Path = typer.Option(
        None,
        "--labels",
        help="CSV of physical labels (conditions), one row per picture, keyed by a file/filename/name/path "
        "column (base name, with or without extension). Pictures without a row are skipped and reported. "
        "Folders from `astrogan synth sersic` need none: their params.csv is used.",
    ),
    label_columns: str = typer.Option(
        None,
        "--label-columns",
        help="Columns of the labels CSV to store, comma separated (e.g. sersic_n,half_light_radius_px,q). "
        "Default: every numeric column that varies (not index or seed). Columns ending in _px are "
        "rescaled to the stored image's pixels.",
    ),
    review: Path = typer.Option(
        None,
        "--review",
        help="review.csv (or its folder) from `astrogan dataset review`: skip files flagged with one of "
        "--exclude-flags (matched by sha256, then by path under the input folder). Recorded in the manifest.",
    ),
    exclude_flags: str = typer.Option(
        None,
        "--exclude-flags",
        help=f"With --review: flags whose files are skipped, comma separated, or 'none'. Default: "
        f"{_DEFAULT_EXCLUDE_HELP}. Flags: {_FLAGS_HELP}.",
    ),
    apply_crops: bool = typer.Option(
        False,
        "--apply-crops",
        help="With --review: cut each kept file to its suggested crop (small object, blank margin) before "
        "the build's own square crop.",
    ),
) -> None:
    """Build a dataset: square crops (never squashed), resized with a named filter, deduplicated, reported."""
    import warnings

    from astrogan.data.build import BuildOptions, build_dataset, parse_sizes

    opts = BuildOptions(
        image_sizes=parse_sizes(image_size),
        crop=crop,
        crops_per_image=crops_per_image,
        random_crop_min_scale=random_crop_min_scale,
        channels=channels,
        min_size_px=min_size,
        dedup=dedup,
        near_dup_bits=dedup_bits,
        near_dup_rms=dedup_rms,
        filter=filter,
        seed=seed,
        stretch=stretch,
        dtype=dtype,
    )
    with warnings.catch_warnings():
        # The summary table below lists the flags; one line each on top of it would only repeat them.
        warnings.simplefilter("ignore")
        result = build_dataset(
            inputs or [],
            out,
            options=opts,
            galaxy10_path=galaxy10,
            overwrite=overwrite,
            labels=labels,
            label_columns=label_columns,
            review=review,
            exclude_flags=exclude_flags,
            apply_crops=apply_crops,
        )
    _print_build_summary(result)


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
    table.add_row("files converted", str(result.count("converted")))
    table.add_row("files skipped", str(result.count("skipped")))
    for reason, n in sorted(result.skip_reasons().items(), key=lambda kv: -kv[1]):
        table.add_row("  skipped: " + reason, str(n))
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
            f"{st['black_percentile']}/{st['white_percentile']}",
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
