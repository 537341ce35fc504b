"""`dataset build`: pictures/FITS folders, Galaxy10 (+ labels CSV) or multi-band science inputs -> the artifact."""

from __future__ import annotations

import errno
import math
import os
import stat
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from astrogan.conditions import CondSpec
from astrogan.data import artifact, fits_io, galaxy10, preprocess, science_inputs
from astrogan.data.artifact import SCHEMA_NAME, SCHEMA_VERSION, dataset_name
from astrogan.data.labels import BuildLabels, parse_columns, resolve_labels
from astrogan.data.pipeline import (
    PictureBuilder,
    ScienceBuilder,
    build_file,
    build_galaxy10,
    build_stamp,
    science_boxes,
)
from astrogan.data.preprocess import SkipFile
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
from astrogan.data.science_inputs import ScienceOptions
from astrogan.utils.atomic import announce, atomic_dir, clean_stale, write_json
from astrogan.utils.errors import UserError

if TYPE_CHECKING:
    from astrogan.data.review_report import ReviewPlan
    from astrogan.science import ScienceSpec

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
    "InputFile",
    "ScienceOptions",
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
    headroom: float = (
        1.0  # FITS pictures: white moved to headroom x the white percentile's level (fits_io.stretch)
    )
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
        if not (math.isfinite(self.headroom) and self.headroom >= 1.0):
            raise UserError(f"--headroom must be a number >= 1 (1: none), got {self.headroom}")


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
    notes: list[str] = field(default_factory=list)  # leftovers of killed builds removed or kept, a line each
    review: dict[str, Any] | None = None  # the manifest's `review` entry (builds with --review)
    science: ScienceSpec | None = None  # the manifest's `science` entry (science builds)

    def count(self, status: str) -> int:
        return sum(1 for r in self.report if r["status"] == status)

    def skip_reasons(self) -> dict[str, int]:
        """Skipped files by reason kind (the reason up to its first bracket)."""
        return dict(Counter(r["reason"].split(" (")[0] for r in self.report if r["status"] == "skipped"))


# ----------------------------------------------------------------------------------------------------
# Inputs
#
# Every path under the inputs is accounted for in report.json: a file is built, or it gets one row saying
# why not (the row of a folder that is not searched covers everything in it). Rules:
# - A symlink to a regular file, inside or outside the tree, is followed: the file is built (row `path`:
#   the file itself, `link`: where it was found). Symlinks to folders are followed too, each real folder
#   searched once: one pointing at a folder above it is a "symlink loop", one at a folder searched already
#   is "folder already searched". Dangling links and link cycles (a -> b -> a) get a row. No recursion.
# - A file reached twice (two links, a link and the file, an input named twice) is built once; the other
#   paths get "already listed (same file as ...)".
# - Hidden files and folders (name starting with a dot: .git, .DS_Store, partial builds) are ignored, one
#   row each (a hidden folder is not searched); so are catalog.sqlite and synth.json, which are read for
#   provenance. Unreadable folders, FIFOs, sockets and devices are skipped with a row (a FIFO is never read),
#   and so are files whose path is not UTF-8 text (a Latin-1 name from an old archive): names are stored.


@dataclass(frozen=True)
class InputFile:
    """One path found under the inputs: a file to build (`row` None) or the report row that says why not."""

    root: Path  # the input folder it was found under (resolved), or the file's folder
    path: Path  # the file to read (symlinks resolved); for a row, the path as found
    rel: str | None = None  # its name under `root` (meta `source`) when it differs from path-under-root
    link: Path | None = None  # the path it was found at, when symlinks led to it
    row: dict[str, Any] | None = None


@dataclass
class Collected:
    """What `_collect_inputs` found: every path in walk order, plus the provenance files to read."""

    entries: list[InputFile] = field(default_factory=list)
    catalogs: list[Path] = field(default_factory=list)
    synths: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[tuple[Path, Path]]:
        """(root, file) of the files to build, in order."""
        return [(e.root, e.path) for e in self.entries if e.row is None]


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    """A folder's entries sorted by name (raises OSError when it cannot be read)."""
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _kind_of(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


def _why_unreachable(path: Path, exc: OSError) -> str:
    """The reason of a path that cannot be stat'ed (following links)."""
    if path.is_symlink():
        if exc.errno == errno.ELOOP:
            return "symlink loop (too many levels of symbolic links)"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            try:
                where = os.readlink(path)
            except OSError:
                where = "?"
            return f"dangling symlink (points to {where}, which does not exist)"
    return f"cannot read ({exc.strerror or exc})"


def _is_utf8(path: Path) -> bool:
    """False for a path holding bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Walker:
    """Walks the inputs in a stable order (sorted names, depth first) and accounts for every path."""

    def __init__(self) -> None:
        self.out = Collected()
        self.seen: dict[Path, Path] = {}  # resolved file -> where it was first found
        self.folders: dict[tuple[int, int], Path] = {}  # (device, inode) of searched folders -> path

    def skip(self, root: Path, path: Path, reason: str, *, status: str = "skipped") -> None:
        row = {"path": str(path), "status": status, "reason": reason, "flags": []}
        self.out.entries.append(InputFile(root, path, row=row))

    def file(self, root: Path, found: Path, real: Path, rel: str | None) -> None:
        """A regular file at `found` (`real`: symlinks resolved)."""
        if not _is_utf8(found) or not _is_utf8(real):  # meta, review.csv and labels keep names as UTF-8 text
            self.skip(root, found, "file name is not UTF-8 text (rename it, e.g. with convmv -t utf8)")
            return
        link = found if found != real else None
        if found.name in (CATALOG_NAME, SYNTH_NAME):
            if found.name == CATALOG_NAME:
                if found not in self.out.catalogs:
                    self.out.catalogs.append(found)
                what = "credits and licences"
            else:
                if real not in self.out.synths:
                    self.out.synths.append(real)
                what = "the synthetic folder's settings"
            self.skip(root, found, f"provenance file ({what} are read from it)", status="ignored")
            return
        if real in self.seen:
            self.skip(root, found, f"already listed (same file as {self.seen[real]})")
            return
        self.seen[real] = found
        if rel is not None and real.is_relative_to(root):
            rel = None  # inside its input: named by its real place there, as without links
        self.out.entries.append(InputFile(root, real, rel=rel, link=link))

    def folder(
        self, root: Path, found: Path, st: os.stat_result, above: tuple[tuple[int, int], ...], linked: bool
    ) -> bool:
        """Whether folder `found` (reached through a symlink: `linked`) is searched; else its row is written."""
        key = (st.st_dev, st.st_ino)
        if key in above:
            what = "symlink loop" if linked else "folder loop"  # a bind mount can loop too
            self.skip(root, found, f"{what} (points to {os.path.realpath(found)}, a folder above it)")
            return False
        if key in self.folders:
            self.skip(root, found, f"folder already searched (same folder as {self.folders[key]})")
            return False
        self.folders[key] = found
        return True

    def walk(self, root: Path) -> None:
        """Everything under input folder `root` (resolved), depth first in name order, without recursion."""
        st = os.stat(root)
        if not self.folder(root, root, st, (), False):
            return
        try:
            listing = _scandir(root)
        except OSError as exc:
            self.skip(root, root, f"cannot read folder ({exc.strerror or exc})")
            return
        # Each frame: the folder's remaining entries, its path under root, the keys of the folders above,
        # and whether a symlink led there (then its files' real paths differ from the paths found).
        Frame = tuple[Iterator[os.DirEntry[str]], str, tuple[tuple[int, int], ...], bool]
        stack: list[Frame] = [(iter(listing), "", ((st.st_dev, st.st_ino),), False)]
        while stack:
            it, prefix, above, via_link = stack[-1]
            entry = next(it, None)
            if entry is None:
                stack.pop()
                continue
            found = Path(entry.path)
            rel = prefix + entry.name
            if entry.name.startswith("."):
                try:
                    why = "hidden folder (name starts with a dot; not searched)" if entry.is_dir() else ""
                except OSError:
                    why = ""
                self.skip(root, found, why or "hidden file (name starts with a dot)", status="ignored")
                continue
            is_link = entry.is_symlink()
            try:
                st = os.stat(found) if is_link else entry.stat(follow_symlinks=False)
            except OSError as exc:
                self.skip(root, found, _why_unreachable(found, exc))
                continue
            if stat.S_ISDIR(st.st_mode):
                if not self.folder(root, found, st, above, via_link or is_link):
                    continue
                try:
                    sub = _scandir(found)
                except OSError as exc:
                    self.skip(root, found, f"cannot read folder ({exc.strerror or exc})")
                    continue
                stack.append((iter(sub), rel + "/", (*above, (st.st_dev, st.st_ino)), via_link or is_link))
            elif stat.S_ISREG(st.st_mode):
                linked = via_link or is_link
                real = Path(os.path.realpath(found)) if linked else found
                self.file(root, found, real, rel if linked else None)
            else:
                self.skip(root, found, f"not a regular file ({_kind_of(st.st_mode)})")

    def single(self, p: Path) -> None:
        """An input file named on its own (symlinks followed)."""
        f = p.resolve()
        st = os.stat(f)
        if not stat.S_ISREG(st.st_mode):
            self.skip(f.parent, p, f"not a regular file ({_kind_of(st.st_mode)})")
            return
        # catalog.sqlite/synth.json are read where they really are (links resolved), as before.
        found = f if f.name in (CATALOG_NAME, SYNTH_NAME) else p.absolute()
        self.file(f.parent, found, f, None)
        # A single file named on its own still carries the provenance of its folder.
        if f.name not in (CATALOG_NAME, SYNTH_NAME):
            for name, known in ((CATALOG_NAME, self.out.catalogs), (SYNTH_NAME, self.out.synths)):
                side = f.parent / name
                if side.is_file() and side not in known:
                    known.append(side)


def _collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> Collected:
    """Every path under the inputs in a stable order (sorted within each input), plus catalog and synth.json
    files. UserError for an input that does not exist (a dangling or looping link named as an input too)."""
    walker = _Walker()
    for raw in inputs:
        p = Path(raw).expanduser()
        if not p.exists():
            if p.is_symlink():
                try:
                    os.stat(p)
                except OSError as exc:
                    raise UserError(f"input {p}: {_why_unreachable(p, exc)}") from None
            raise UserError(f"no such input: {p}")
        if p.is_dir():
            walker.walk(p.resolve())
        else:
            walker.single(p)
    out = walker.out
    out.synths = list(dict.fromkeys(out.synths))
    return out


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
    review: str | os.PathLike[str] | None = None,
    exclude_flags: str | None = None,
    apply_crops: bool = False,
    science: ScienceOptions | None = None,
) -> BuildResult:
    """Build the dataset artifact at `out` from folders/files of pictures and FITS, or from a Galaxy10 file.

    Unusable files are skipped and reported, never fatal; zero usable images is a UserError. Every path under
    the inputs is either built or has a row in report.json (see `_collect_inputs` for symlinks, hidden and
    unreadable folders). The directory is built under a temp name and renamed at the end, so a failed or
    killed build leaves nothing at `out`; a failure removes its partial folder, and the next build of the
    same `out` removes the partials of killed ones (`utils.atomic.clean_stale`, one line in `notes`).
    Conflicts at `out` are UserErrors before any picture is read: it exists without `overwrite`, or with
    `overwrite` it is not a dataset folder (or an empty one), is a symlink, or holds one of the inputs.

    `labels` (a CSV keyed by file name; see data/labels.py) stores its `label_columns` (default: every
    numeric column that varies) as conditions float32 `(N, K)`; folders from `astrogan synth` bring their
    own table. Pictures without a row are skipped and reported.

    `review` (the review.csv of `astrogan dataset review`, or its folder): files flagged with one of
    `exclude_flags` (comma separated; default review_flags.DEFAULT_EXCLUDE, "none" for none) are skipped
    before decoding; with `apply_crops` the others are cut to their suggested crop before the build's own
    crop. Files match by sha256 (then path); the manifest's `review` entry records the csv's sha256, every
    file excluded (with its flags) and cropped (with its box); report rows and sources carry `review`.

    `science` makes it a science build (multi-band float flux with one dataset-wide stretch; see
    `_build_science`).
    """
    t0 = time.perf_counter()
    opts = options or BuildOptions()
    opts.check()
    out_path = Path(out).expanduser()
    if science is not None:
        _refuse_with_science(opts, galaxy10_path, labels, label_columns, review, exclude_flags, apply_crops)
        return _build_science(
            inputs, out_path, opts, science, overwrite=overwrite, show_progress=show_progress
        )
    columns = _check_picture_args(opts, inputs, galaxy10_path, labels, label_columns)
    plan = _review_plan(review, exclude_flags, apply_crops, galaxy10=galaxy10_path is not None)
    notes, note = _notes()

    # The target first: leftovers of killed builds go, and every conflict is known before any work.
    for line in clean_stale(out_path):
        note(line)
    _check_target(out_path, [*inputs, *([galaxy10_path] if galaxy10_path is not None else [])], overwrite)

    # Provenance and labels are read here, not in a helper: their warnings point at our caller (stacklevel 3).
    collected, prov, num_g10 = Collected(), Provenance(), 0
    if galaxy10_path is not None:
        num_g10, _ = galaxy10.check_file(galaxy10_path)
    else:
        collected = _collect_inputs(inputs)
        read_catalogs(collected.catalogs, prov)
        read_synths(collected.synths, prov)
    files = collected.files
    cond_labels = resolve_labels(labels, columns, files=[f for _, f in files], prov=prov) if files else None
    report: list[dict[str, Any]] = []

    with atomic_dir(out_path, overwrite=overwrite, notify=note) as tmp:
        builder = _picture_builder(
            opts, tmp, files, labelled=galaxy10_path is not None, labels=cond_labels, review=plan
        )
        written = _write_pictures(
            builder,
            collected.entries,
            prov,
            report,
            inputs=inputs,
            galaxy10_path=galaxy10_path,
            num_g10=num_g10,
            show_progress=show_progress,
        )
    # The finish's warnings, from here for the same reason (stacklevel 3 in the helpers, 2 here).
    if cond_labels is not None:
        _warn_unmatched(cond_labels)
    if plan is not None:
        plan.warn()
    for flag, n in sorted(builder.flag_counts.items()):
        if flag in WARN_FLAGS:
            warnings.warn(f"{n} input(s) flagged {flag!r} (see report.json)", stacklevel=2)
    return _picture_result(out_path, builder, report, *written, notes=notes, wall_s=time.perf_counter() - t0)


def _check_picture_args(
    opts: BuildOptions,
    inputs: Sequence[str | os.PathLike[str]],
    galaxy10_path: str | os.PathLike[str] | None,
    labels: str | os.PathLike[str] | None,
    label_columns: str | Sequence[str] | None,
) -> list[str] | None:
    """UserError for picture-build arguments that do not go together; returns the parsed label columns."""
    if opts.crop == "pad":
        raise UserError(
            "--crop pad keeps a science stamp's pixel scale: use it with --science, --bands, --h5 or --cosmos"
        )
    if galaxy10_path is not None and inputs:
        raise UserError("--galaxy10 builds a labelled dataset on its own: leave out the other inputs")
    if galaxy10_path is None and not inputs:
        raise UserError("no inputs: give folders or files of pictures/FITS, or --galaxy10 FILE.h5")
    columns = parse_columns(label_columns)
    if galaxy10_path is not None and (labels is not None or columns is not None):
        raise UserError(
            "--labels/--label-columns label pictures by file name: leave them out with --galaxy10"
        )
    return columns


def _picture_builder(
    opts: BuildOptions,
    out_dir: Path,
    files: Sequence[tuple[Path, Path]],
    *,
    labelled: bool,
    labels: BuildLabels | None,
    review: ReviewPlan | None,
) -> PictureBuilder:
    """The picture path's setup: float32 for FITS-only inputs under --dtype auto (their band count kept)."""
    all_fits = _all_fits(files)
    return PictureBuilder(
        opts,
        out_dir=out_dir,
        dtype=opts.dtype if opts.dtype != "auto" else ("float32" if all_fits else "uint8"),
        labelled=labelled,
        default_channels=None if all_fits else 3,
        labels=labels,
        review=review,
    )


def _write_pictures(
    builder: PictureBuilder,
    entries: list[InputFile],
    prov: Provenance,
    report: list[dict[str, Any]],
    *,
    inputs: Sequence[str | os.PathLike[str]],
    galaxy10_path: str | os.PathLike[str] | None,
    num_g10: int,
    show_progress: bool,
) -> tuple[int, str, dict[str, Any] | None]:
    """Every input into `builder.out_dir` (images.h5, manifest.json, report.json); fills `report`.

    Returns (images stored, content hash, the manifest's `cond` entry).
    """
    opts, plan, cond_labels = builder.opts, builder.review, builder.labels
    label_names = list(galaxy10.CLASS_NAMES) if galaxy10_path is not None else None
    sources: list[dict[str, Any]] = []
    digests = _write_images(
        builder,
        entries,
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
    params = _hashed_params(opts, dtype=builder.dtype, channels=builder.channels)
    if plan is not None:  # only then: the hashes of builds without a review stay as they were
        params["review"] = {"exclude_flags": sorted(plan.exclude), "apply_crops": plan.apply_crops}
    content_hash = artifact.content_hash(params, digests)
    cond_entry = _cond_entry(cond_labels, builder.writer.cond_values(), opts.image_sizes[0])
    manifest = _manifest(
        opts,
        params=params,
        digests=digests,
        num_images=num_images,
        dtype=builder.dtype,
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
        review=plan.summary() if plan is not None else None,
    )
    write_json(builder.out_dir / artifact.MANIFEST_FILE, manifest)
    write_json(builder.out_dir / artifact.REPORT_FILE, _report(content_hash, report, cond_labels))
    return num_images, content_hash, cond_entry


def _picture_result(
    out_path: Path,
    builder: PictureBuilder,
    report: list[dict[str, Any]],
    num_images: int,
    content_hash: str,
    cond_entry: dict[str, Any] | None,
    *,
    notes: list[str],
    wall_s: float,
) -> BuildResult:
    """The BuildResult of a finished picture build (`num_images` .. `cond_entry`: what `_write_pictures` returns)."""
    cond_labels, plan = builder.labels, builder.review
    assert builder.channels is not None
    return BuildResult(
        path=out_path,
        num_images=num_images,
        content_hash=content_hash,
        image_sizes=builder.opts.image_sizes,
        channels=builder.channels,
        dtype=builder.dtype,
        report=report,
        flag_counts=dict(builder.flag_counts),
        wall_s=wall_s,
        cond_spec=CondSpec.from_dict(cond_entry) if cond_entry else None,
        num_unmatched_images=cond_labels.num_unmatched_images if cond_labels else 0,
        num_unmatched_rows=len(cond_labels.unmatched_rows()) if cond_labels else 0,
        notes=notes,
        review=plan.summary() if plan is not None else None,
    )


def _notes() -> tuple[list[str], Any]:
    """(the build's notes, the function that adds one line to them and shows it once)."""
    notes: list[str] = []

    def note(line: str) -> None:
        if line not in notes:  # atomic_dir looks again: a partial kept in use would be named twice
            notes.append(line)
            announce(line)

    return notes, note


# ----------------------------------------------------------------------------------------------------
# Science builds: multi-band flux (FITS cubes, per-band files, HDF5 arrays, COSMOS) -> float32 bands


def _refuse_with_science(
    opts: BuildOptions,
    galaxy10_path: Any,
    labels: Any,
    label_columns: Any,
    review: Any,
    exclude_flags: Any,
    apply_crops: bool,
) -> None:
    """UserError (one line) for build options that a science build does not take."""
    if galaxy10_path is not None:
        raise UserError("--galaxy10 builds a picture dataset: leave it out of science builds")
    if labels is not None or label_columns is not None:
        raise UserError(
            "--labels/--label-columns are read by picture builds only: keep per-image values with --h5-params"
        )
    if review is not None or exclude_flags is not None or apply_crops:
        raise UserError("--review/--exclude-flags/--apply-crops act on picture builds, not science builds")
    if opts.channels is not None:
        raise UserError(
            "--channels does not apply to science builds: every band is a channel (pick them with --bands)"
        )
    if opts.dtype == "uint8":
        raise UserError("science builds store float32 (stretched flux in [0, 1]): leave out --dtype uint8")
    if opts.dedup:
        raise UserError("--dedup compares pictures: leave it out of science builds")


def _build_science(
    inputs: Sequence[str | os.PathLike[str]],
    out_path: Path,
    opts: BuildOptions,
    sci: ScienceOptions,
    *,
    overwrite: bool,
    show_progress: bool,
) -> BuildResult:
    """A science build: every input is a `ScienceStamp` (float flux, FITS order) -> float32 `(N, S, S, B)`.

    Pass 1 fits ONE BandStretch and DisplaySpec on up to `sci.fit_sample` evenly spaced stamps (the same
    inputs give the same dataset). Pass 2 fills each stamp's non-finite pixels with its band's black, flips
    it to image order (science.fits_to_image_order), crops and resizes it in flux, stretches it and writes it
    with its cards (WCS fitted to the crop). Broken stamps get one report row each; the build goes on.
    """
    from astrogan.utils.log import progress

    t0 = time.perf_counter()
    sci.check(num_inputs=len(inputs))
    if sci.pad_noise and opts.crop != "pad":
        raise UserError("--pad-noise fills the padding of --crop pad: add --crop pad")
    notes, note = _notes()
    for line in clean_stale(out_path):
        note(line)
    _check_target(out_path, [*inputs, *(p for p in (sci.h5, sci.cosmos) if p is not None)], overwrite)
    collected = _collect_inputs(inputs) if inputs else Collected()
    prov = Provenance()
    read_catalogs(collected.catalogs, prov)
    read_synths(collected.synths, prov)
    source = science_inputs.open_stamps(sci, [(e.root, e.path, e.rel, e.row) for e in collected.entries])
    report: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    # None: ASTROGAN_QUIET decides; a disabled Rich Progress takes the same calls and draws nothing
    with progress(disable=None if show_progress else True) as bar:
        task = bar.add_task("fit stretch", total=None, info="")
        fit = science_inputs.fit_science(
            source, sci, boxes=lambda s: science_boxes(opts, s), bar=bar, task=task
        )
        bar.update(task, description="dataset build", total=len(source), completed=0)
        with atomic_dir(out_path, overwrite=overwrite, notify=note) as tmp:
            builder = ScienceBuilder(
                opts, out_dir=tmp, bands=fit.bands, stretch=fit.stretch, pad_noise=sci.pad_noise
            )
            digests = _write_stamps(builder, source, prov, report, sources, bar=bar, task=task)
            spec, entry = _science_spec(fit, builder, sci, source)
            params = _hashed_params(opts, dtype="float32", channels=builder.channels)
            for key in ("stretch", "stretch_a", "black_percentile", "white_percentile"):
                del params[key]  # the per-image stretch of picture builds: the spec below replaces it
            params["science"] = {**sci.hashed(), "spec": spec.to_dict()}
            content_hash = artifact.content_hash(params, digests)
            manifest = _manifest(
                opts,
                params=params,
                digests=digests,
                num_images=builder.num_images,
                dtype="float32",
                channels=builder.channels,
                label_names=None,
                labels=None,
                sources=sources,
                report=report,
                inputs=[*inputs, *(p for p in (sci.h5, sci.cosmos) if p is not None)],
                galaxy10_path=None,
                content_hash=content_hash,
                flag_counts=dict(builder.flag_counts),
                synthetic=prov.synthetic,
                science={"steps": _science_steps(opts, sci, spec), "spec": spec.to_dict(), "inputs": entry},
            )
            write_json(tmp / artifact.MANIFEST_FILE, manifest)
            write_json(tmp / artifact.REPORT_FILE, _report(content_hash, report, None))
    for flag, n in sorted(builder.flag_counts.items()):
        if flag in WARN_FLAGS or flag.endswith("-mixed"):
            warnings.warn(f"{n} image(s) flagged {flag!r} (see report.json)", stacklevel=3)
    return BuildResult(
        path=out_path,
        num_images=builder.num_images,
        content_hash=content_hash,
        image_sizes=opts.image_sizes,
        channels=builder.channels,
        dtype="float32",
        report=report,
        flag_counts=dict(builder.flag_counts),
        wall_s=time.perf_counter() - t0,
        notes=notes,
        science=spec,
    )


def _write_stamps(
    builder: ScienceBuilder,
    source: science_inputs.StampSource,
    prov: Provenance,
    report: list[dict[str, Any]],
    sources: list[dict[str, Any]],
    *,
    bar: Any,
    task: Any,
) -> dict[str, Any]:
    """Every stamp of `source` into images.h5 (closed on return); returns the digests. Fills `report`: one row
    per item for files (cubes, stems), else one row for the file or catalogue plus one per stamp skipped."""
    try:
        if isinstance(source, science_inputs.FileStamps):
            for item in source.iter_stamps():
                if item.row is not None:
                    report.append(dict(item.row))
                else:
                    bar.update(task, info=item.name[-40:])
                    report.append(build_stamp(builder, item, prov, sources))
                bar.advance(task)
            report.extend(source.extra_rows())
        else:
            _write_one_source(builder, source, report, sources, bar=bar, task=task)
        if builder.num_images == 0:
            reasons = Counter(str(r["reason"]).split(" (")[0] for r in report if r["status"] == "skipped")
            common = "; ".join(f"{n} {why}" for why, n in reasons.most_common(3)) or "no files found"
            raise UserError(
                f"no usable images in the inputs ({common}): check the paths, --bands and --min-size"
            )
        return builder.writer.finish(None)
    finally:
        builder.writer.close()


def _write_one_source(
    builder: ScienceBuilder,
    source: science_inputs.H5Stamps | science_inputs.CosmosStamps,
    report: list[dict[str, Any]],
    sources: list[dict[str, Any]],
    *,
    bar: Any,
    task: Any,
) -> None:
    """The stamps of one HDF5 array or COSMOS selection: a row for it, then a row per stamp skipped."""
    entry = source.describe()
    credit, licence = str(entry.get("credit") or ""), str(entry.get("licence") or "")
    skipped = []
    for item in source.iter_stamps():
        try:
            if item.stamp is None:
                raise SkipFile(item.reason or "unreadable")
            builder.add(item.stamp, provenance=(item.name, credit, licence, -1, -1))
        except SkipFile as exc:
            skipped.append({"path": item.name, "status": "skipped", "reason": str(exc), "flags": []})
        bar.advance(task)
    path = str(source.path.resolve())
    status = "converted" if builder.num_images else "skipped"
    row: dict[str, Any] = {"path": path, "status": status, "reason": None, "flags": []}
    row["num_images"] = builder.num_images
    if not builder.num_images:
        row["reason"] = "no usable images (see the rows of its images)"
    report.extend([row, *skipped])
    sources.append({**entry, "num_images": builder.num_images, "first_index": 0})


def _science_spec(
    fit: science_inputs.Fit, builder: ScienceBuilder, sci: ScienceOptions, source: Any
) -> tuple[ScienceSpec, dict[str, Any]]:
    """(the dataset's ScienceSpec, the manifest's `science_inputs` entry). BUNIT and pixel scale are the
    stored images' when they all agree, else None and a `*-mixed` flag (images not carrying the commonest)."""
    bunit, bunit_mixed = builder.agreed(builder.bunits)
    scale, scale_mixed = builder.agreed(builder.scales)
    flags = []
    for flag, mixed, tally in (
        ("bunit-mixed", bunit_mixed, builder.bunits),
        ("pixscale-mixed", scale_mixed, builder.scales),
    ):
        if mixed:
            flags.append(flag)
            builder.flag_counts[flag] = sum(tally.values()) - tally.most_common(1)[0][1]
    spec = fit.spec(bunit=bunit, pixel_scale_arcsec=scale)
    entry = {
        "mode": sci.mode,
        "band_pattern": sci.band_pattern if sci.bands and sci.mode == "files" else None,
        "hdu": sci.hdu,
        "fit": {
            "sample_size": sci.fit_sample,
            "num_sampled_crops": fit.num_sampled,
            "black_percentile": sci.black_percentile,
            "white_percentile": sci.white_percentile,
            "black_given": sci.stretch_black is not None,
            "white_given": sci.stretch_white is not None,
            "rgb_given": sci.rgb is not None,
        },
        "bunit_seen": {str(k): v for k, v in builder.bunits.items()},
        "pixel_scale_arcsec_seen": {str(k): v for k, v in builder.scales.items()},
        "flags": flags,
    }
    return spec, entry


def _science_steps(opts: BuildOptions, sci: ScienceOptions, spec: ScienceSpec) -> list[str]:
    """The preprocessing steps of a science build, in order, as sentences for the manifest."""
    how = {
        "files": f"FITS cubes (HDU {sci.hdu if sci.hdu is not None else 'first with image data'})"
        + (
            f" and one file per band named {sci.band_pattern}"
            if sci.bands
            else ", bands named by their headers"
        ),
        "h5": f"HDF5 array {sci.h5_key} ({'FITS order' if sci.h5_origin == 'bottom' else 'image order, flipped'})",
        "cosmos": "COSMOS stamps (astrogan.data.cosmos)",
    }[sci.mode]
    st = spec.stretch
    limits = (
        "given"
        if sci.stretch_black and sci.stretch_white
        else (
            f"fitted: percentiles {sci.black_percentile}/{sci.white_percentile} of up to {sci.fit_sample} evenly "
            "spaced inputs"
        )
    )
    return [
        f"read {how} as float32 flux per band ({', '.join(spec.bands)}); skip stamps with an all-NaN band, "
        "bands of different shapes, a missing band file or the wrong band count",
        f"skip stamps whose short side is under {opts.min_size_px} px",
        "fill non-finite pixels with the band's black (flagged nonfinite-filled)",
        "flip to image order (astrogan.science.fits_to_image_order; row 0 on top)",
        _science_crop_step(opts, sci),
        f"resize the FLUX to {', '.join(str(s) for s in opts.image_sizes)} px with Pillow {opts.filter} (32-bit "
        "float, not clipped; values are interpolated, not flux-conserving); a crop of the size is kept as is",
        f"one dataset-wide {st.kind} stretch per band (astropy ManualInterval(black, white) then "
        f"{st.kind.capitalize()}Stretch, a={st.a:g}; black/white {limits}); "
        "undo with science.ScienceSpec.from_dict(manifest['science']).stretch.inverse",
        "store float32 (N, S, S, bands), stretched values in [0, 1]; meta.header keeps BUNIT, PIXSCALE of the "
        "stored pixels, BANDS and the celestial WCS cut to the crop and scaled to the largest size",
    ]


def _science_crop_step(opts: BuildOptions, sci: ScienceOptions) -> str:
    """The manifest's sentence for a science build's crop (pad: cut or pad, never resampled)."""
    if opts.crop != "pad":
        return (
            f"one {opts.crop} square crop"
            + (
                f" ({opts.crops_per_image} per stamp, seeded by (seed, name))"
                if opts.crop == "random"
                else ""
            )
            + ", cut before resizing"
        )
    size = opts.image_sizes[0]
    noise = (
        " + Gaussian noise of sigma = 1.4826 MAD of the border, seeded by (seed, stamp name)"
        if sci.pad_noise
        else ""
    )
    return (
        f"cut a centred {size} px square out of larger stamps and pad smaller ones (the square starts at FITS row "
        f"(H-{size})//2 and column (W-{size})//2), never resampled, so the stored pixels keep the stamps' pixel "
        f"scale; padding = each band's median of the stamp's border pixels{noise}; padded images are flagged "
        "padded:<n>; meta crop_top/crop_left can be negative; the celestial WCS moves by a CRPIX shift"
    )


def _review_plan(
    review: str | os.PathLike[str] | None, exclude_flags: str | None, apply_crops: bool, *, galaxy10: bool
) -> ReviewPlan | None:
    """The ReviewPlan of `--review` (None without it); UserError for review flags without a review."""
    if review is None:
        if exclude_flags is not None or apply_crops:
            raise UserError(
                "--exclude-flags and --apply-crops act on a review: give --review REVIEW/review.csv"
            )
        return None
    if galaxy10:
        raise UserError("--review applies to picture folders, not to --galaxy10")
    from astrogan.data.review_report import ReviewPlan

    return ReviewPlan.load(review, exclude_flags=exclude_flags, apply_crops=apply_crops)


def _check_target(out_path: Path, inputs: Sequence[str | os.PathLike[str]], overwrite: bool) -> None:
    """UserError when `out_path` cannot take the build; called before any work (nothing is changed)."""
    if not os.path.lexists(out_path):
        return
    if not overwrite:
        raise UserError(f"{out_path} already exists: pass --overwrite to replace it")
    hint = "--overwrite replaces only a dataset folder: remove it yourself if you mean it"
    if out_path.is_symlink():
        raise UserError(f"{out_path} is a symlink: give the folder it points to as --out ({hint})")
    if not out_path.is_dir():
        raise UserError(f"{out_path} exists and is not a folder ({hint})")
    try:
        with os.scandir(out_path) as entries:  # closed at once: no ResourceWarning
            empty = not any(entries)
    except OSError as exc:
        raise UserError(f"cannot read {out_path} ({exc.strerror or exc})") from None
    if not empty and not (out_path / artifact.MANIFEST_FILE).is_file():
        raise UserError(f"{out_path} is not a dataset (no {artifact.MANIFEST_FILE}): {hint}")
    real_out = out_path.resolve()
    for raw in inputs:
        p = Path(raw).expanduser().resolve()
        if p == real_out or p.is_relative_to(real_out):
            raise UserError(f"input {raw} is inside --out {out_path}: --overwrite would delete it")


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
    entries: list[InputFile],
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

    Fills `report` (one row per path found, in walk order) and `sources` (one entry per converted file);
    UserError when no input gave an image.
    """
    from astrogan.utils.log import progress

    try:
        with progress(disable=None if show_progress else True) as bar:  # None: ASTROGAN_QUIET decides
            task = bar.add_task("dataset build", total=len(entries) + num_g10, info="")
            for e in entries:
                if e.row is not None:  # found but not to be built: its row says why
                    report.append(dict(e.row))
                else:
                    bar.update(task, info=e.path.name[:40])
                    report.append(build_file(builder, e.root, e.path, prov, sources, rel=e.rel, link=e.link))
                bar.advance(task)
            if galaxy10_path is not None:
                build_galaxy10(builder, Path(galaxy10_path), report, sources, bar, task)
        if (
            builder.labels is not None
            and builder.labels.num_matched == 0
            and builder.labels.num_unmatched_images
        ):
            supported = [e.path for e in entries if e.row is None and preprocess.is_supported(e.path)]
            raise builder.labels.no_match_error(supported)
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
        "headroom": opts.headroom,
        "dtype": dtype,
    }


def _steps(
    opts: BuildOptions, *, channels: int, dtype: str, has_fits: bool, review: dict[str, Any] | None = None
) -> list[str]:
    """The preprocessing steps of a build, in order, as sentences for the manifest."""
    steps = [
        "decode (EXIF orientation applied; CMYK/palette/16-bit -> 8-bit RGB or grey; alpha composited on "
        "black; the first frame of an animation)"
    ]
    if has_fits:
        steps.append(
            f"FITS: first HDU with data, non-finite pixels filled with black, {opts.stretch} stretch "
            f"per image (black/white from percentiles {opts.black_percentile}/{opts.white_percentile}"
            f"{'' if opts.headroom == 1 else f', white x {opts.headroom:g} (headroom)'}; "
            "per-image values in sources[].stretch and meta.stretch_black/white), flipped to image order"
        )
    if review is not None:
        flags = ", ".join(review["exclude_flags"]) or "none"
        steps.append(
            f"review {review['csv']} (sha256 {review['sha256'][:12]}): skip files flagged {flags}"
            + ("; cut the others to their suggested crop first" if review["apply_crops"] else "")
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
        "headroom": opts.headroom,
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
    review: dict[str, Any] | None = None,
    science: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest.json of a build (keys documented in artifact.py); `science`: the science build's
    `steps`, `science` and `science_inputs` entries."""
    sizes = list(opts.image_sizes)
    has_fits = any(s.get("stretch") for s in sources)
    counts = Counter(r["status"] for r in report)
    label_counts = None
    if labels is not None and label_names:
        values, n = np.unique(labels, return_counts=True)
        label_counts = {label_names[int(k)]: int(v) for k, v in zip(values, n, strict=True)}
    manifest = {
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
            "steps": _steps(opts, channels=channels, dtype=dtype, has_fits=has_fits, review=review),
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
        "review": review,
        "sources": sources,
    }
    if science is not None:
        manifest["preprocessing"]["steps"] = science["steps"]  # type: ignore[index]
        manifest[artifact.SCIENCE_MANIFEST_KEY] = science["spec"]
        manifest["science_inputs"] = science["inputs"]
    return manifest
