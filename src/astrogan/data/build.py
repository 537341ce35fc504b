"""`dataset build`: pictures/FITS folders or Galaxy10 (+ labels CSV) -> the dataset artifact: options, run, manifest."""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.conditions import CondSpec
from astrogan.data import artifact, fits_io, galaxy10, preprocess
from astrogan.data.artifact import SCHEMA_NAME, SCHEMA_VERSION, dataset_name
from astrogan.data.labels import BuildLabels, parse_columns, resolve_labels
from astrogan.data.pipeline import PictureBuilder, build_file, build_galaxy10
from astrogan.data.provenance import (
    CATALOG_NAME,
    SYNTH_NAME,
    SYNTH_PARAMS_NAME,
    Provenance,
    credit_summary,
    licence_summary,
    read_catalogs,
    read_synths,
    synth_credit,
)
from astrogan.utils.atomic import atomic_dir, write_json
from astrogan.utils.errors import UserError

__all__ = [
    "CATALOG_NAME",
    "DTYPES",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SYNTH_NAME",
    "SYNTH_PARAMS_NAME",
    "WARN_FLAGS",
    "BuildOptions",
    "BuildResult",
    "build_dataset",
    "dataset_name",
    "parse_sizes",
    "synth_credit",
]

DTYPES = ("auto", "uint8", "float32")
# Flags that mean the pixels may be worse than the file promised (the others record plain conversions).
WARN_FLAGS = frozenset({"nonfinite-filled", "upscaled", "float-minmax", "bands-averaged", "bands", "32-bit"})


def parse_sizes(text: str | int | Sequence[int]) -> tuple[int, ...]:
    """`"128"` or `"128,256,512"` -> (512, 256, 128): distinct sizes, largest first."""
    if isinstance(text, int):
        parts: list[Any] = [text]
    elif isinstance(text, str):
        parts = [p for p in text.replace(" ", "").split(",") if p]
    else:
        parts = list(text)
    try:
        sizes = sorted({int(p) for p in parts}, reverse=True)
    except ValueError:
        raise UserError(
            f"cannot read image size {text!r}: use a number like 128 or a list like 64,128"
        ) from None
    if not sizes or any(s < 4 or s > 8192 for s in sizes):
        raise UserError(f"image sizes must be between 4 and 8192 pixels, got {text!r}")
    return tuple(sizes)


@dataclass(frozen=True)
class BuildOptions:
    """Everything that shapes the pixels (all of it goes into the content hash)."""

    image_sizes: tuple[int, ...] = (128,)
    crop: str = "center"
    crops_per_image: int = 1
    random_crop_min_scale: float = 0.5
    channels: int | None = None  # None: 3 for pictures, the band count (1 or 3) for FITS-only builds
    min_size_px: int = 32
    dedup: bool = False
    near_dup_bits: int = preprocess.DEFAULT_NEAR_DUP_BITS
    near_dup_rms: float = preprocess.DEFAULT_NEAR_DUP_RMS
    filter: str = "lanczos"
    seed: int = 0
    stretch: str = "asinh"
    stretch_a: float | None = None
    black_percentile: float = fits_io.DEFAULT_BLACK_PERCENTILE
    white_percentile: float = fits_io.DEFAULT_WHITE_PERCENTILE
    dtype: str = "auto"

    def __post_init__(self) -> None:
        # Sizes are kept distinct and largest first, whatever order they were given in.
        object.__setattr__(self, "image_sizes", parse_sizes(self.image_sizes))

    def check(self) -> None:
        if self.crop not in preprocess.CROP_MODES:
            raise UserError(f"unknown --crop {self.crop!r}: use one of {', '.join(preprocess.CROP_MODES)}")
        if self.crops_per_image < 1:
            raise UserError("--crops-per-image must be at least 1")
        if self.crops_per_image > 1 and self.crop != "random":
            raise UserError("--crops-per-image above 1 needs --crop random (other crops would repeat)")
        if not 0.0 < self.random_crop_min_scale <= 1.0:
            raise UserError("--random-crop-min-scale must be in (0, 1]")
        if self.channels not in (None, 1, 3):
            raise UserError(f"--channels must be 1 or 3, got {self.channels}")
        if self.filter not in preprocess.FILTERS:
            raise UserError(f"unknown --filter {self.filter!r}: use one of {', '.join(preprocess.FILTERS)}")
        if self.stretch not in fits_io.STRETCH_KINDS:
            raise UserError(
                f"unknown --stretch {self.stretch!r}: use one of {', '.join(fits_io.STRETCH_KINDS)}"
            )
        if self.dtype not in DTYPES:
            raise UserError(f"unknown --dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        if self.min_size_px < 1:
            raise UserError("--min-size must be at least 1 pixel")
        if not 0 <= self.near_dup_bits <= 64:
            raise UserError("the near-duplicate threshold must be between 0 and 64 bits")
        if not 0.0 <= self.black_percentile < self.white_percentile <= 100.0:
            raise UserError("need 0 <= black percentile < white percentile <= 100")


@dataclass
class BuildResult:
    """What a build did: where, how many, the hash, and one report row per input file."""

    path: Path
    num_images: int
    content_hash: str
    image_sizes: tuple[int, ...]
    channels: int
    dtype: str
    report: list[dict[str, Any]]
    flag_counts: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    cond_spec: CondSpec | None = None  # the stored conditions (primary size's pixels), if any
    num_unmatched_images: int = 0  # input pictures skipped for want of a labels row
    num_unmatched_rows: int = 0  # labels rows that named no input picture

    def count(self, status: str) -> int:
        return sum(1 for r in self.report if r["status"] == status)

    def skip_reasons(self) -> dict[str, int]:
        """Skipped files by reason kind (the reason up to its first bracket)."""
        return dict(Counter(r["reason"].split(" (")[0] for r in self.report if r["status"] == "skipped"))


# ----------------------------------------------------------------------------------------------------
# Inputs


def _collect_inputs(
    inputs: Sequence[str | os.PathLike[str]],
) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """(root, file) pairs in a stable order (sorted within each input), plus catalog and synth.json files."""
    seen: set[Path] = set()
    files: list[tuple[Path, Path]] = []
    catalogs: list[Path] = []
    synths: list[Path] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if not p.exists():
            raise UserError(f"no such input: {p}")
        if p.is_dir():
            root = p.resolve()
            for f in sorted(root.rglob("*")):
                rel_parts = f.relative_to(root).parts
                if any(part.startswith(".") for part in rel_parts) or not f.is_file():
                    continue  # hidden files and folders (.DS_Store, .git, partial builds)
                if f.name == CATALOG_NAME:
                    catalogs.append(f)
                    continue
                if f.name == SYNTH_NAME:
                    synths.append(f.resolve())
                    continue
                if f.resolve() not in seen:
                    seen.add(f.resolve())
                    files.append((root, f.resolve()))
        else:
            f = p.resolve()
            if f.name == CATALOG_NAME:
                catalogs.append(f)
            elif f.name == SYNTH_NAME:
                synths.append(f)
            elif f not in seen:
                seen.add(f)
                files.append((f.parent, f))
            # A single file named on its own still carries the provenance of its folder.
            if f.name not in (CATALOG_NAME, SYNTH_NAME):
                for name, found in ((CATALOG_NAME, catalogs), (SYNTH_NAME, synths)):
                    side = f.parent / name
                    if side.is_file() and side not in found:
                        found.append(side)
    return files, catalogs, list(dict.fromkeys(synths))


def _all_fits(files: Sequence[tuple[Path, Path]]) -> bool:
    """True when every supported input is a FITS file (and there is one): the build then stores float32."""
    candidates = [f for _, f in files if preprocess.is_supported(f)]
    return bool(candidates) and all(fits_io.is_fits_path(f) for f in candidates)


# ----------------------------------------------------------------------------------------------------
# The build


def build_dataset(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    options: BuildOptions | None = None,
    galaxy10_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    labels: str | os.PathLike[str] | None = None,
    label_columns: str | Sequence[str] | None = None,
) -> BuildResult:
    """Build the dataset artifact at `out` from folders/files of pictures and FITS, or from a Galaxy10 file.

    Unusable files are skipped and reported, never fatal; zero usable images is a UserError. The directory is
    built under a temp name and renamed at the end, so a failed build leaves nothing at `out`.

    `labels` (a CSV keyed by file name; see data/labels.py) stores its `label_columns` (default: every
    numeric column that varies) as conditions float32 `(N, K)`; folders from `astrogan synth` bring their
    own table. Pictures without a row are skipped and reported.
    """
    t0 = time.perf_counter()
    opts = options or BuildOptions()
    opts.check()
    out_path = Path(out).expanduser()
    if galaxy10_path is not None and inputs:
        raise UserError("--galaxy10 builds a labelled dataset on its own: leave out the other inputs")
    if galaxy10_path is None and not inputs:
        raise UserError("no inputs: give folders or files of pictures/FITS, or --galaxy10 FILE.h5")
    columns = parse_columns(label_columns)
    if galaxy10_path is not None and (labels is not None or columns is not None):
        raise UserError(
            "--labels/--label-columns label pictures by file name: leave them out with --galaxy10"
        )

    files: list[tuple[Path, Path]] = []
    prov = Provenance()
    num_g10 = 0
    if galaxy10_path is not None:
        num_g10, _ = galaxy10.check_file(galaxy10_path)
    else:
        files, catalogs, synths = _collect_inputs(inputs)
        read_catalogs(catalogs, prov)  # their warnings point at our caller (stacklevel 3)
        read_synths(synths, prov)
    cond_labels = resolve_labels(labels, columns, files=[f for _, f in files], prov=prov) if files else None
    if out_path.exists() and not overwrite:
        raise UserError(f"{out_path} already exists: pass --overwrite to replace it")
    all_fits = _all_fits(files)
    dtype = opts.dtype if opts.dtype != "auto" else ("float32" if all_fits else "uint8")
    label_names = list(galaxy10.CLASS_NAMES) if galaxy10_path is not None else None
    report: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []

    with atomic_dir(out_path, overwrite=overwrite) as tmp:
        builder = PictureBuilder(
            opts,
            out_dir=tmp,
            dtype=dtype,
            labelled=galaxy10_path is not None,
            default_channels=None if all_fits else 3,
            labels=cond_labels,
        )
        digests = _write_images(
            builder,
            files,
            prov,
            report,
            sources,
            galaxy10_path=galaxy10_path,
            num_g10=num_g10,
            label_names=label_names,
            show_progress=show_progress,
        )
        num_images = digests[dataset_name(opts.image_sizes[0], opts.image_sizes[0])]["shape"][0]
        assert builder.channels is not None and builder.writer is not None
        params = _hashed_params(opts, dtype=dtype, channels=builder.channels)
        content_hash = artifact.content_hash(params, digests)
        cond_entry = _cond_entry(cond_labels, builder.writer.cond_values(), opts.image_sizes[0])
        manifest = _manifest(
            opts,
            params=params,
            digests=digests,
            num_images=num_images,
            dtype=dtype,
            channels=builder.channels,
            label_names=label_names,
            labels=np.asarray(builder.writer.labels, dtype=np.int64) if builder.labelled else None,
            sources=sources,
            report=report,
            inputs=inputs,
            galaxy10_path=galaxy10_path,
            content_hash=content_hash,
            flag_counts=dict(builder.flag_counts),
            synthetic=prov.synthetic,
            cond=cond_entry,
        )
        write_json(tmp / artifact.MANIFEST_FILE, manifest)
        write_json(tmp / artifact.REPORT_FILE, _report(content_hash, report, cond_labels))
    if cond_labels is not None:
        _warn_unmatched(cond_labels)
    for flag, n in sorted(builder.flag_counts.items()):
        if flag in WARN_FLAGS:
            warnings.warn(f"{n} input(s) flagged {flag!r} (see report.json)", stacklevel=2)
    return BuildResult(
        path=out_path,
        num_images=num_images,
        content_hash=content_hash,
        image_sizes=opts.image_sizes,
        channels=builder.channels,
        dtype=dtype,
        report=report,
        flag_counts=dict(builder.flag_counts),
        wall_s=time.perf_counter() - t0,
        cond_spec=CondSpec.from_dict(cond_entry) if cond_entry else None,
        num_unmatched_images=cond_labels.num_unmatched_images if cond_labels else 0,
        num_unmatched_rows=len(cond_labels.unmatched_rows()) if cond_labels else 0,
    )


def _cond_entry(labels: BuildLabels | None, values: np.ndarray | None, primary_px: int) -> dict | None:
    """The manifest's `cond` entry: the CondSpec of the stored values `(N, K)` plus source and rescale rule."""
    if labels is None or values is None:
        return None
    spec = CondSpec.from_values(labels.columns, values)
    return {**spec.to_dict(), **labels.manifest_extras(primary_px)}


def _report(content_hash: str, report: list[dict[str, Any]], labels: BuildLabels | None) -> dict[str, Any]:
    """report.json: one row per input file, plus the labels rows that named no input (conditioned builds)."""
    doc = artifact.report_document(content_hash, report)
    if labels is not None:
        doc["labels"] = labels.report()
    return doc


def _warn_unmatched(labels: BuildLabels) -> None:
    """One warning per kind of mismatch between the labels table(s) and the input pictures."""
    where = ", ".join(str(t.path) for t in labels.tables)
    if labels.num_unmatched_images:
        warnings.warn(
            f"{labels.num_unmatched_images} input picture(s) have no row in {where}: not stored "
            "(see report.json)",
            stacklevel=3,
        )
    rows = len(labels.unmatched_rows())
    if rows:
        warnings.warn(f"{rows} row(s) of {where} name no input picture (listed in report.json)", stacklevel=3)


def _write_images(
    builder: PictureBuilder,
    files: list[tuple[Path, Path]],
    prov: Provenance,
    report: list[dict[str, Any]],
    sources: list[dict[str, Any]],
    *,
    galaxy10_path: str | os.PathLike[str] | None,
    num_g10: int,
    label_names: list[str] | None,
    show_progress: bool,
) -> dict[str, Any]:
    """Run every input through the pipeline into images.h5 (closed on return); returns the digests.

    Fills `report` (one row per input file) and `sources` (one entry per converted file); UserError when
    no input gave an image.
    """
    from astrogan.utils.log import progress

    bar_ctx: Any = progress() if show_progress else _NullProgress()  # Any: both have the calls used here
    try:
        with bar_ctx as bar:
            task = bar.add_task("dataset build", total=len(files) + num_g10, info="")
            for root, f in files:
                bar.update(task, info=f.name[:40])
                report.append(build_file(builder, root, f, prov, sources))
                bar.advance(task)
            if galaxy10_path is not None:
                build_galaxy10(builder, Path(galaxy10_path), report, sources, bar, task)
        if (
            builder.labels is not None
            and builder.labels.num_matched == 0
            and builder.labels.num_unmatched_images
        ):
            raise builder.labels.no_match_error([f for _, f in files if preprocess.is_supported(f)])
        if builder.num_images == 0:
            reasons = Counter(str(r["reason"]).split(" (")[0] for r in report if r["status"] != "converted")
            common = "; ".join(f"{n} {why}" for why, n in reasons.most_common(3)) or "no files found"
            raise UserError(
                f"no usable images in the inputs ({common}): check the paths, the file types and --min-size"
            )
        assert builder.writer is not None
        return builder.writer.finish(label_names)
    finally:
        if builder.writer is not None:
            builder.writer.close()


def _hashed_params(opts: BuildOptions, *, dtype: str, channels: int) -> dict[str, Any]:
    """The preprocessing parameters that enter the content hash (resolved values, no paths)."""
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "image_sizes": list(opts.image_sizes),
        "crop": opts.crop,
        "crops_per_image": opts.crops_per_image,
        "random_crop_min_scale": opts.random_crop_min_scale,
        "channels": channels,
        "min_size_px": opts.min_size_px,
        "dedup": opts.dedup,
        "near_dup_bits": opts.near_dup_bits,
        "near_dup_rms": opts.near_dup_rms,
        "filter": opts.filter,
        "seed": opts.seed,
        "stretch": opts.stretch,
        "stretch_a": opts.stretch_a,
        "black_percentile": opts.black_percentile,
        "white_percentile": opts.white_percentile,
        "dtype": dtype,
    }


def _steps(opts: BuildOptions, *, channels: int, dtype: str, has_fits: bool) -> list[str]:
    """The preprocessing steps of a build, in order, as sentences for the manifest."""
    steps = [
        "decode (EXIF orientation applied; CMYK/palette/16-bit -> 8-bit RGB or grey; alpha composited on "
        "black)"
    ]
    if has_fits:
        steps.append(
            f"FITS: first HDU with data, non-finite pixels filled with black, {opts.stretch} stretch "
            f"per image (black/white from percentiles {opts.black_percentile}/{opts.white_percentile}; "
            "per-image values in sources[].stretch and meta.stretch_black/white), flipped to image order"
        )
    if opts.min_size_px:
        steps.append(f"skip pictures whose short side is under {opts.min_size_px} px")
    if opts.dedup:
        steps.append(
            "drop exact duplicates (sha256 of decoded pixels) and near duplicates (imagehash.phash "
            f"Hamming distance <= {opts.near_dup_bits} of 64 bits AND 32x32 grey thumbnail RMS "
            f"difference <= {opts.near_dup_rms} of 255); the first file in sorted order stays"
        )
    steps.append(
        f"convert to {channels} channel(s) "
        f"({'ITU-R 601-2 luminance' if channels == 1 else 'grey replicated'})"
    )
    if opts.crop == "random":
        steps.append(
            f"{opts.crops_per_image} random square crop(s) per picture, side uniform in "
            f"[{opts.random_crop_min_scale}, 1] x short side, seeded by (seed, file sha256)"
        )
    else:
        steps.append(
            f"one {opts.crop} square crop of the short side (cropped before resizing: never squashed)"
        )
    steps.append(f"resize to {', '.join(str(s) for s in opts.image_sizes)} px with Pillow {opts.filter}")
    steps.append(f"store as {dtype}" + (" (0..255)" if dtype == "uint8" else " (stretched values in [0, 1])"))
    return steps


def _stretch_section(opts: BuildOptions) -> dict[str, Any]:
    """The manifest's `stretch` entry of a build with FITS inputs (the per-image values are in meta)."""
    if opts.stretch_a is not None:
        a = opts.stretch_a
    elif opts.stretch == "asinh":
        a = fits_io.DEFAULT_ASINH_A
    elif opts.stretch == "log":
        a = fits_io.DEFAULT_LOG_SCALE
    else:
        a = 1.0
    return {
        "kind": opts.stretch,
        "a": a,
        "black_percentile": opts.black_percentile,
        "white_percentile": opts.white_percentile,
        "per_image": "meta.stretch_black/white; undo with astrogan.data.fits_io.unstretch",
    }


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("astrogan")
    except PackageNotFoundError:  # running from a source tree without installing
        return "unknown"


def _manifest(
    opts: BuildOptions,
    *,
    params: dict,
    digests: dict,
    num_images: int,
    dtype: str,
    channels: int,
    label_names: list[str] | None,
    labels: np.ndarray | None,
    sources: list[dict[str, Any]],
    report: list[dict[str, Any]],
    inputs: Sequence,
    galaxy10_path: Any,
    content_hash: str,
    flag_counts: dict[str, int],
    synthetic: list[dict[str, Any]] | None = None,
    cond: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest.json of a build (keys documented in artifact.py)."""
    sizes = list(opts.image_sizes)
    has_fits = any(s.get("stretch") for s in sources)
    counts = Counter(r["status"] for r in report)
    label_counts = None
    if labels is not None and label_names:
        values, n = np.unique(labels, return_counts=True)
        label_counts = {label_names[int(k)]: int(v) for k, v in zip(values, n, strict=True)}
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "created_by": f"astrogan {_package_version()}",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "content_hash": content_hash,
        "num_images": int(num_images),
        "image_size": sizes[0],
        "image_sizes": sizes,
        "datasets": {str(s): dataset_name(s, sizes[0]) for s in sizes},
        "channels": int(channels),
        "dtype": dtype,
        "value_range": artifact.value_range(dtype),
        "layout": "NHWC, rows top to bottom",
        "label_names": label_names,
        "num_classes": len(label_names) if label_names else 0,
        "label_counts": label_counts,
        artifact.COND_MANIFEST_KEY: cond,
        "preprocessing": {
            "steps": _steps(opts, channels=channels, dtype=dtype, has_fits=has_fits),
            "params": params,
            "digests": digests,
        },
        "stretch": _stretch_section(opts) if has_fits else None,
        "inputs": [str(Path(p).expanduser().resolve()) for p in inputs]
        + ([str(Path(galaxy10_path).resolve())] if galaxy10_path is not None else []),
        "counts": {
            "files": len(report),
            "converted": counts.get("converted", 0),
            "skipped": counts.get("skipped", 0),
            "ignored": counts.get("ignored", 0),
        },
        "flags": flag_counts,
        "credits": credit_summary(sources),
        "licences": licence_summary(sources),
        "synthetic": list(synthetic or []),
        "sources": sources,
    }


class _NullProgress:
    """Stand-in for the Rich progress bar when show_progress is False."""

    def __enter__(self) -> _NullProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None

    def advance(self, *args: Any, **kwargs: Any) -> None:
        return None
