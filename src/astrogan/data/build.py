"""`dataset build`: folders of pictures/FITS, or Galaxy10 -> the dataset artifact (manifest.json + images.h5).

Artifact layout (schema `astrogan.dataset`, version 1; DESIGN.md section 3):

- `images.h5`: one HDF5 dataset per image size, `(N, S, S, C)`, chunked one image per chunk, gzip level 4.
  The LARGEST size is named `images`, every other size `images_<S>` (e.g. `images_64`); all share the
  same N and order. uint8 for pictures; float32 in [0, 1] (stretched) for FITS-only builds unless
  `--dtype uint8`. Optional `labels` int64 `(N,)`. `meta`: one compound row per image with `source`,
  `crop_top`, `crop_left`, `crop_size` (pixels of the source, image order), `crop_index`,
  `source_height`, `source_width`, `flags` (comma separated), `stretch_black`, `stretch_white`
  (NaN for non-FITS rows), and its provenance: `source_file` (the file as its provenance table names
  it: the catalog's `local_path`, the `file` column of a synthetic `params.csv`, else the file name),
  `credit`, `licence` ("" when unknown), `params_table` (index into the manifest's `synthetic` list,
  -1 when none) and `params_row` (0-based data row of that table's `params.csv`, -1 when none).
- `manifest.json`: schema and version, counts, sizes (`image_sizes`, largest first, and `datasets`
  size -> HDF5 name), channels, dtype, value range, label names, preprocessing steps and parameters,
  sources (per-file sha256, and licence/credit/title from a `catalog.sqlite` or a `synth.json` in an
  input folder), credit and licence summaries (per source file), `synthetic` (one entry per
  `synth.json` folder: its settings, credit, licence and the parameters table's path, sha256 and
  row count, so true parameters can be joined to dataset images), and `content_hash`.
- `report.json`: every input file with its status (`converted`, `skipped`, `ignored`), reason and flags.

Provenance rules: a file that a `catalog.sqlite` lists with a status other than `ok` (failed,
skipped, not-found: found through `local_path` or the fetcher's `<source>/<safe item id>.<ext>`
name), or whose sha256 differs from its `ok` row, or that sits in a `synth.json` folder but is not
in its `params.csv`, is skipped with the reason in report.json: its credit would be a guess.

The content hash covers decoded pixels, labels and the preprocessing parameters (never paths or times),
so two builds from the same inputs with the same seed agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.data import fits_io, galaxy10, preprocess
from astrogan.data.preprocess import Decoded, SkipFile
from astrogan.imaging import sha256_file, uint8_to_unit
from astrogan.utils.atomic import atomic_dir, write_json
from astrogan.utils.errors import UserError

SCHEMA_NAME = "astrogan.dataset"
SCHEMA_VERSION = 1
CATALOG_NAME = "catalog.sqlite"
SYNTH_NAME = "synth.json"  # written by `astrogan synth` beside its stamps (settings, licence, credit)
SYNTH_PARAMS_NAME = "params.csv"  # the true parameters table `astrogan synth` writes beside synth.json
DTYPES = ("auto", "uint8", "float32")
_FLUSH_EVERY = 64
# Flags that mean the pixels may be worse than the file promised (the others record plain conversions).
WARN_FLAGS = frozenset({"nonfinite-filled", "upscaled", "float-minmax", "bands-averaged", "bands", "32-bit"})


def dataset_name(size_px: int, primary_size_px: int) -> str:
    """HDF5 dataset name for one image size: `images` for the largest, `images_<size>` for the others."""
    return "images" if size_px == primary_size_px else f"images_{size_px}"


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

    def count(self, status: str) -> int:
        return sum(1 for r in self.report if r["status"] == status)

    def skip_reasons(self) -> dict[str, int]:
        """Skipped files by reason kind (the reason up to its first bracket)."""
        return dict(Counter(r["reason"].split(" (")[0] for r in self.report if r["status"] == "skipped"))


# ----------------------------------------------------------------------------------------------------
# Inputs and catalogs


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


_CATALOG_COLUMNS = ("source", "item_id", "title", "page_url", "credit", "copyright", "licence")


@dataclass
class _Provenance:
    """Where input files came from: catalog rows (`ok` ones and the others) and synthetic folders."""

    ok_rows: dict[Path, dict[str, Any]] = field(default_factory=dict)  # file -> carried catalog fields
    ok_sha256: dict[Path, str] = field(default_factory=dict)  # file -> sha256 its `ok` row recorded
    ok_local: dict[Path, str] = field(default_factory=dict)  # file -> the row's local_path
    blocked: dict[Path, str] = field(default_factory=dict)  # file -> why its catalog row rules it out
    synthetic: list[dict[str, Any]] = field(default_factory=list)  # manifest entries, one per synth.json
    synth_by_folder: dict[Path, int] = field(default_factory=dict)  # resolved folder -> index in synthetic
    synth_rows: list[dict[str, int]] = field(default_factory=list)  # per table: params.csv file -> row


def _read_catalogs(catalogs: Iterable[Path], prov: _Provenance) -> None:
    """Index catalog rows by local file: `ok` rows carry credit/licence; any other status blocks the file.

    Rows that are not `ok` usually have no `local_path` (a failed re-fetch clears it while an older or
    damaged file stays on disk), so they also claim the fetcher's own file name for the item,
    `<catalog folder>/<source>/<safe_name(item_id)>.<ext>`.
    """
    for cat in catalogs:
        try:
            con = sqlite3.connect(f"file:{cat}?mode=ro", uri=True)
            try:
                cols = ", ".join(_CATALOG_COLUMNS)
                recs = con.execute(f"SELECT local_path, status, sha256, {cols} FROM items").fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            warnings.warn(f"ignoring catalog {cat}: {exc}", stacklevel=3)
            continue
        base = cat.parent.resolve()
        not_ok: list[tuple[Path, str]] = []
        for local_path, status, sha, *values in recs:
            fields = {k: v for k, v in zip(_CATALOG_COLUMNS, values, strict=True) if v not in (None, "")}
            if status == "ok" and local_path:
                local = (base / local_path).resolve()
                prov.ok_rows[local] = fields
                prov.ok_local[local] = str(local_path)
                if sha:
                    prov.ok_sha256[local] = str(sha)
                continue
            why = (
                f"catalog status not ok ({status or 'no status'} for {fields.get('source', '?')} "
                f"{fields.get('item_id', '?')} in {cat}): its credit and licence do not apply to this file"
            )
            for path in _catalog_candidates(base, local_path, fields):
                not_ok.append((path, why))
        for path, why in not_ok:
            if path not in prov.ok_rows:  # an `ok` row for the same file wins (e.g. two sources, one file)
                prov.blocked.setdefault(path, why)


def _catalog_candidates(base: Path, local_path: str | None, fields: dict[str, Any]) -> list[Path]:
    """Files on disk that a (not `ok`) catalog row may describe."""
    out = [(base / local_path).resolve()] if local_path else []
    source, item_id = fields.get("source"), fields.get("item_id")
    if source and item_id:
        # The fetchers' naming (sources.base.fetch_image); imported here so httpx loads only with a catalog.
        from astrogan.data.sources.http import safe_name

        folder = base / str(source)
        stem = safe_name(str(item_id))
        if folder.is_dir():
            out.extend(p.resolve() for p in folder.glob(f"{stem}.*") if p.name == stem + p.suffix)
    return out


def synth_credit(settings: dict[str, Any]) -> str:
    """The credit line of a synthetic folder: its synth.json `credit`, else one naming the generator."""
    if settings.get("credit"):
        return str(settings["credit"])
    generator = str(settings.get("generator") or "astrogan")
    if generator.endswith("synth_sersic"):
        return "synthetic Sérsic galaxies (astrogan synth sersic, rendered with GalSim)"
    return f"synthetic images ({generator})"


def _read_synths(synths: Iterable[Path], prov: _Provenance) -> None:
    """Read each synth.json and its params.csv: settings, credit, licence, table path/sha256, file -> row."""
    import csv

    for path in synths:
        folder = path.parent.resolve()
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(settings, dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            warnings.warn(f"ignoring {path}: {exc}", stacklevel=3)
            continue
        entry: dict[str, Any] = {
            "folder": str(folder),
            "settings": settings,
            "settings_sha256": _file_sha256(path)[0],
            "credit": synth_credit(settings),
            "licence": str(settings.get("licence") or "unknown"),
            "params": None,
            "num_images": 0,
        }
        rows: dict[str, int] = {}
        table = folder / str(settings.get("params_file") or SYNTH_PARAMS_NAME)
        if table.is_file():
            sha, num_bytes = _file_sha256(table)
            with open(table, newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                header = next(reader, [])
                key = header.index("file") if "file" in header else None
                for i, rec in enumerate(reader):
                    if key is not None and key < len(rec):
                        rows[rec[key]] = i
            entry["params"] = {
                "path": str(table),
                "file": table.name,
                "sha256": sha,
                "bytes": num_bytes,
                "num_rows": len(rows),
                "columns": header,
                "join": "params.csv `file` == images.h5 meta.source_file; row = meta.params_row",
            }
        else:
            warnings.warn(
                f"{path} has no {table.name} beside it: true parameters cannot be joined", stacklevel=3
            )
        prov.synth_by_folder[folder] = len(prov.synthetic)
        prov.synthetic.append(entry)
        prov.synth_rows.append(rows)


def _provenance_of(f: Path, sha: str, prov: _Provenance) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """(fields for the manifest source entry, per-image meta extras); raises SkipFile when unknown/unsafe."""
    if f in prov.blocked:
        raise SkipFile(prov.blocked[f])
    if f in prov.ok_rows:
        want = prov.ok_sha256.get(f)
        if want and want != sha:
            raise SkipFile(
                f"file differs from its catalog row (sha256 {sha[:12]} on disk, {want[:12]} fetched): "
                "re-run the fetch to repair it"
            )
        row = prov.ok_rows[f]
        credit = row.get("credit") or row.get("copyright") or ""
        return dict(row), (prov.ok_local[f], credit, row.get("licence", ""), -1, -1)
    table = prov.synth_by_folder.get(f.parent)
    if table is not None:
        entry = prov.synthetic[table]
        rows = prov.synth_rows[table]
        if entry["params"] is not None and f.name not in rows:
            raise SkipFile(
                f"not in the synthetic parameters table ({f.name} is missing from "
                f"{entry['params']['path']}): its provenance is unknown"
            )
        row_index = rows.get(f.name, -1)
        fields: dict[str, Any] = {
            "source": "synthetic",
            "credit": entry["credit"],
            "licence": entry["licence"],
            "synthetic": {"table": table, "file": f.name, "row": row_index},
        }
        return fields, (f.name, entry["credit"], entry["licence"], table, row_index)
    return {}, (f.name, "", "", -1, -1)


def _file_sha256(path: Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file."""
    return sha256_file(path), path.stat().st_size


# ----------------------------------------------------------------------------------------------------
# The HDF5 writer


_META_FIELDS = (
    ("source", "str"),
    ("crop_top", np.int32),
    ("crop_left", np.int32),
    ("crop_size", np.int32),
    ("crop_index", np.int32),
    ("source_height", np.int32),
    ("source_width", np.int32),
    ("flags", "str"),
    ("stretch_black", np.float64),
    ("stretch_white", np.float64),
    ("source_file", "str"),
    ("credit", "str"),
    ("licence", "str"),
    ("params_table", np.int32),
    ("params_row", np.int32),
)
_NO_PROVENANCE = ("", "", "", -1, -1)


class _Writer:
    """Appends images of every size (plus label and meta row) to images.h5, hashing pixels as it goes."""

    def __init__(
        self, path: Path, *, sizes: tuple[int, ...], channels: int, dtype: str, labelled: bool
    ) -> None:
        import h5py

        self.sizes, self.channels, self.dtype, self.labelled = sizes, channels, np.dtype(dtype), labelled
        self.fh = h5py.File(path, "w")
        self.names = {s: dataset_name(s, sizes[0]) for s in sizes}
        self.dsets = {
            s: self.fh.create_dataset(
                self.names[s],
                shape=(0, s, s, channels),
                maxshape=(None, s, s, channels),
                chunks=(1, s, s, channels),
                dtype=self.dtype,
                compression="gzip",
                compression_opts=4,
            )
            for s in sizes
        }
        self.hashers = {s: hashlib.sha256() for s in sizes}
        self.label_hasher = hashlib.sha256()
        self.buffers: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
        self.labels: list[int] = []
        self.meta: list[tuple[Any, ...]] = []
        self.num_written = 0

    def append(self, crops: dict[int, np.ndarray], *, label: int | None, meta: tuple[Any, ...]) -> None:
        for s in self.sizes:
            arr = np.ascontiguousarray(crops[s], dtype=self.dtype)
            assert arr.shape == (s, s, self.channels), arr.shape
            self.hashers[s].update(arr.tobytes())
            self.buffers[s].append(arr)
        if self.labelled:
            assert label is not None
            self.labels.append(int(label))
        self.meta.append(meta)
        if len(self.buffers[self.sizes[0]]) >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        n = len(self.buffers[self.sizes[0]])
        if not n:
            return
        for s in self.sizes:
            ds = self.dsets[s]
            ds.resize(self.num_written + n, axis=0)
            ds[self.num_written :] = np.stack(self.buffers[s])
            self.buffers[s] = []
        self.num_written += n

    def finish(self, label_names: Sequence[str] | None) -> dict[str, Any]:
        """Write labels and meta, close the file; returns the per-dataset digests for the content hash."""
        import h5py

        self.flush()
        digests: dict[str, Any] = {}
        for s in self.sizes:
            digests[self.names[s]] = {
                "shape": [self.num_written, s, s, self.channels],
                "dtype": self.dtype.name,
                "sha256": self.hashers[s].hexdigest(),
            }
        if self.labelled:
            labels = np.asarray(self.labels, dtype=np.int64)
            self.fh.create_dataset("labels", data=labels)
            if label_names:
                self.fh["labels"].attrs["names"] = json.dumps(list(label_names))
            digests["labels"] = {
                "shape": [len(labels)],
                "dtype": "int64",
                "sha256": hashlib.sha256(labels.tobytes()).hexdigest(),
            }
        str_dt = h5py.string_dtype("utf-8")
        dt = np.dtype([(name, str_dt if kind == "str" else kind) for name, kind in _META_FIELDS])
        meta = np.array(self.meta, dtype=dt) if self.meta else np.zeros(0, dtype=dt)
        self.fh.create_dataset("meta", data=meta)
        self.fh.close()
        return digests

    def close(self) -> None:
        try:
            self.fh.close()
        except Exception:  # already closed or broken: the temp dir is removed anyway
            pass


# ----------------------------------------------------------------------------------------------------
# The build


def _meta_row(
    source: str,
    box: tuple[int, int, int],
    index: int,
    decoded: Decoded,
    flags: list[str],
    provenance: tuple[Any, ...],
) -> tuple:
    black = white = float("nan")
    if decoded.stretch is not None:
        black, white = decoded.stretch["black"], decoded.stretch["white"]
    top, left, side = box
    return (
        source,
        top,
        left,
        side,
        index,
        decoded.height,
        decoded.width,
        ",".join(flags),
        black,
        white,
        *provenance,
    )


class _Builder:
    """State of one build: options, dedup indexes, the writer (opened lazily at the first usable image)."""

    def __init__(
        self, opts: BuildOptions, *, out_dir: Path, dtype: str, labelled: bool, default_channels: int | None
    ) -> None:
        self.opts, self.out_dir, self.dtype, self.labelled = opts, out_dir, dtype, labelled
        self.channels = opts.channels or default_channels
        self.writer: _Writer | None = None
        self.exact: dict[str, str] = {}
        self.near = preprocess.NearDuplicateIndex(max_bits=opts.near_dup_bits, max_rms=opts.near_dup_rms)
        self.flag_counts: Counter[str] = Counter()
        self.num_upscaled = 0

    def _open_writer(self, decoded: Decoded) -> _Writer:
        if self.channels is None:  # FITS-only build: keep the band count when it is 1 or 3
            self.channels = decoded.pixels.shape[-1] if decoded.pixels.shape[-1] in (1, 3) else 1
        self.writer = _Writer(
            self.out_dir / "images.h5",
            sizes=self.opts.image_sizes,
            channels=self.channels,
            dtype=self.dtype,
            labelled=self.labelled,
        )
        return self.writer

    def add(
        self,
        decoded: Decoded,
        *,
        source: str,
        rng_key: Sequence[int],
        label: int | None = None,
        provenance: tuple[Any, ...] = _NO_PROVENANCE,
    ) -> dict:
        """Crop, convert and write one decoded picture; returns its report fields. Raises SkipFile.

        `provenance` = (source_file, credit, licence, params_table, params_row) for every crop's meta row.
        """
        opts = self.opts
        if min(decoded.height, decoded.width) < opts.min_size_px:
            raise SkipFile(f"too small ({decoded.width}x{decoded.height} px, --min-size {opts.min_size_px})")
        flags = list(decoded.flags)
        if opts.dedup:
            digest = preprocess.pixel_sha256(decoded.pixels)
            if digest in self.exact:
                raise SkipFile(f"exact duplicate (same pixels as {self.exact[digest]})")
            phash, thumb = preprocess.dedup_signature(decoded.pixels)
            hit = self.near.find(phash, thumb)
            if hit is not None:
                raise SkipFile(
                    f"near duplicate (of {hit[0]}: phash {hit[1]} bits, thumbnail rms {hit[2]:.2f})"
                )
            self.exact[digest] = source
            self.near.add(phash, thumb, source)
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
        first = writer.num_written + len(writer.buffers[opts.image_sizes[0]])
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
                crops, label=label, meta=_meta_row(source, box, index, decoded, crop_flags, provenance)
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


def build_dataset(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    options: BuildOptions | None = None,
    galaxy10_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> BuildResult:
    """Build the dataset artifact at `out` from folders/files of pictures and FITS, or from a Galaxy10 file.

    Unusable files are skipped and reported, never fatal; zero usable images is a UserError. The directory is
    built under a temp name and renamed at the end, so a failed build leaves nothing at `out`.
    """
    from astrogan.utils.log import progress

    t0 = time.perf_counter()
    opts = options or BuildOptions()
    opts.check()
    out_path = Path(out).expanduser()
    if galaxy10_path is not None and inputs:
        raise UserError("--galaxy10 builds a labelled dataset on its own: leave out the other inputs")
    if galaxy10_path is None and not inputs:
        raise UserError("no inputs: give folders or files of pictures/FITS, or --galaxy10 FILE.h5")

    files: list[tuple[Path, Path]] = []
    prov = _Provenance()
    num_g10 = 0
    if galaxy10_path is not None:
        num_g10, _ = galaxy10.check_file(galaxy10_path)
    else:
        files, catalogs, synths = _collect_inputs(inputs)
        _read_catalogs(catalogs, prov)
        _read_synths(synths, prov)
    if out_path.exists() and not overwrite:
        raise UserError(f"{out_path} already exists: pass --overwrite to replace it")
    candidates = [f for _, f in files if preprocess.is_supported(f)]
    all_fits = bool(candidates) and all(fits_io.is_fits_path(f) for f in candidates)
    dtype = opts.dtype if opts.dtype != "auto" else ("float32" if all_fits else "uint8")
    default_channels = None if all_fits else 3

    report: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    label_names = list(galaxy10.CLASS_NAMES) if galaxy10_path is not None else None
    stretch_params = {
        "a": opts.stretch_a,
        "black_percentile": opts.black_percentile,
        "white_percentile": opts.white_percentile,
    }

    with atomic_dir(out_path, overwrite=overwrite) as tmp:
        builder = _Builder(
            opts,
            out_dir=tmp,
            dtype=dtype,
            labelled=galaxy10_path is not None,
            default_channels=default_channels,
        )
        try:
            with progress() if show_progress else _NullProgress() as bar:
                task = bar.add_task("dataset build", total=len(files) + num_g10, info="")
                for root, f in files:
                    bar.update(task, info=f.name[:40])
                    row = _build_one_file(builder, root, f, opts, stretch_params, prov, sources)
                    report.append(row)
                    bar.advance(task)
                if galaxy10_path is not None:
                    _build_galaxy10(builder, Path(galaxy10_path), report, sources, bar, task)
            if (
                builder.writer is None
                or builder.writer.num_written + len(builder.writer.buffers[opts.image_sizes[0]]) == 0
            ):
                reasons = Counter(
                    str(r["reason"]).split(" (")[0] for r in report if r["status"] != "converted"
                )
                common = "; ".join(f"{n} {why}" for why, n in reasons.most_common(3)) or "no files found"
                raise UserError(
                    f"no usable images in the inputs ({common}): check the paths, the file types "
                    f"and --min-size"
                )
            digests = builder.writer.finish(label_names)
        finally:
            if builder.writer is not None:
                builder.writer.close()
        num_images = digests[dataset_name(opts.image_sizes[0], opts.image_sizes[0])]["shape"][0]
        assert builder.channels is not None
        params = _hashed_params(opts, dtype=dtype, channels=builder.channels)
        content_hash = (
            "sha256:"
            + hashlib.sha256(
                json.dumps({"params": params, "datasets": digests}, sort_keys=True).encode()
            ).hexdigest()
        )
        labels = None
        if builder.labelled:
            import h5py

            with h5py.File(tmp / "images.h5", "r") as fh:
                labels = np.asarray(fh["labels"])
        manifest = _manifest(
            opts,
            params=params,
            digests=digests,
            num_images=num_images,
            dtype=dtype,
            channels=builder.channels,
            label_names=label_names,
            labels=labels,
            sources=sources,
            report=report,
            inputs=inputs,
            galaxy10_path=galaxy10_path,
            content_hash=content_hash,
            flag_counts=dict(builder.flag_counts),
            synthetic=prov.synthetic,
        )
        write_json(tmp / "manifest.json", manifest)
        write_json(
            tmp / "report.json",
            {
                "schema": "astrogan.dataset-report",
                "schema_version": 1,
                "content_hash": content_hash,
                "files": report,
            },
        )
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
    )


def _build_one_file(
    builder: _Builder,
    root: Path,
    f: Path,
    opts: BuildOptions,
    stretch_params: dict,
    prov: _Provenance,
    sources: list[dict[str, Any]],
) -> dict[str, Any]:
    rel = f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name
    row: dict[str, Any] = {"path": str(f), "status": "skipped", "reason": None, "flags": []}
    if not preprocess.is_supported(f):
        row.update(status="ignored", reason=f"not a picture or FITS file name ({f.suffix or 'no suffix'})")
        return row
    try:
        sha, num_bytes = _file_sha256(f)
    except OSError as exc:
        row["reason"] = f"cannot read ({exc.strerror or exc})"
        return row
    row.update(sha256=sha, bytes=num_bytes)
    try:
        fields, provenance = _provenance_of(f, sha, prov)
        if fits_io.is_fits_path(f):
            decoded = preprocess.decode_fits(f, stretch_kind=opts.stretch, stretch_params=stretch_params)
        else:
            decoded = preprocess.decode_image(f)
        info = builder.add(decoded, source=rel, rng_key=[int(sha[:15], 16)], provenance=provenance)
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
    src.update(fields)
    if "synthetic" in fields:
        prov.synthetic[fields["synthetic"]["table"]]["num_images"] += info["num_images"]
    sources.append(src)
    return row


def _build_galaxy10(builder: _Builder, path: Path, report: list, sources: list, bar: Any, task: Any) -> None:
    sha, num_bytes = _file_sha256(path)
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
) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("astrogan")
    except PackageNotFoundError:  # running from a source tree without installing
        __version__ = "unknown"

    sizes = list(opts.image_sizes)
    has_fits = any(s.get("stretch") for s in sources)
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
    steps.append(f"resize to {', '.join(str(s) for s in sizes)} px with Pillow {opts.filter}")
    steps.append(f"store as {dtype}" + (" (0..255)" if dtype == "uint8" else " (stretched values in [0, 1])"))

    credits = Counter(s.get("credit") or s.get("copyright") or "unknown" for s in sources)
    licences = Counter(s.get("licence") or "unknown" for s in sources)
    counts = Counter(r["status"] for r in report)
    manifest: dict[str, Any] = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "created_by": f"astrogan {__version__}",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "content_hash": content_hash,
        "num_images": int(num_images),
        "image_size": sizes[0],
        "image_sizes": sizes,
        "datasets": {str(s): dataset_name(s, sizes[0]) for s in sizes},
        "channels": int(channels),
        "dtype": dtype,
        "value_range": [0, 255] if dtype == "uint8" else [0.0, 1.0],
        "layout": "NHWC, rows top to bottom",
        "label_names": label_names,
        "num_classes": len(label_names) if label_names else 0,
        "label_counts": (
            {label_names[int(k)]: int(v) for k, v in zip(*np.unique(labels, return_counts=True), strict=True)}
            if labels is not None and label_names
            else None
        ),
        "preprocessing": {"steps": steps, "params": params, "digests": digests},
        "stretch": (
            {
                "kind": opts.stretch,
                "a": opts.stretch_a
                if opts.stretch_a is not None
                else (
                    fits_io.DEFAULT_ASINH_A
                    if opts.stretch == "asinh"
                    else fits_io.DEFAULT_LOG_SCALE
                    if opts.stretch == "log"
                    else 1.0
                ),
                "black_percentile": opts.black_percentile,
                "white_percentile": opts.white_percentile,
                "per_image": "meta.stretch_black/white; undo with astrogan.data.fits_io.unstretch",
            }
            if has_fits
            else None
        ),
        "inputs": [str(Path(p).expanduser().resolve()) for p in inputs]
        + ([str(Path(galaxy10_path).resolve())] if galaxy10_path is not None else []),
        "counts": {
            "files": len(report),
            "converted": counts.get("converted", 0),
            "skipped": counts.get("skipped", 0),
            "ignored": counts.get("ignored", 0),
        },
        "flags": flag_counts,
        "credits": dict(sorted(credits.items())),
        "licences": dict(sorted(licences.items())),
        "synthetic": list(synthetic or []),
        "sources": sources,
    }
    return manifest


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
