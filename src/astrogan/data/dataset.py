"""Reading the dataset artifact (manifest.json + images.h5) into NumPy arrays; torch-free."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.conditions import CondSpec
from astrogan.data.artifact import (
    COND_DATASET,
    COND_MANIFEST_KEY,
    IMAGES_FILE,
    LABELS_DATASET,
    MANIFEST_FILE,
    META_DATASET,
    REQUIRED_MANIFEST_KEYS,
    SCHEMA_NAME,
    SCHEMA_VERSION,
)
from astrogan.science import ScienceSpec
from astrogan.utils.errors import UserError

SUPPORTED_SCHEMA_VERSION = SCHEMA_VERSION  # the newest version this reader understands: the one build writes

__all__ = ["SCHEMA_NAME", "SUPPORTED_SCHEMA_VERSION", "DatasetArtifact", "open_dataset"]


class DatasetArtifact:
    """A built dataset directory. Arrays: uint8 `(N, H, W, C)` (float32 in [0, 1] for FITS-derived data)."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.num_images: int = int(manifest["num_images"])
        self.image_sizes: list[int] = [int(s) for s in manifest["image_sizes"]]
        self.channels: int = int(manifest["channels"])
        self.dtype: str = str(manifest.get("dtype", "uint8"))
        names = manifest.get("label_names")
        self.label_names: list[str] | None = list(names) if names else None
        self.content_hash: str = str(manifest["content_hash"])
        self._datasets: dict[int, str] = {int(k): v for k, v in manifest["datasets"].items()}

    @property
    def h5_path(self) -> Path:
        return self.path / IMAGES_FILE

    @contextlib.contextmanager
    def _read_h5(self) -> Iterator[Any]:
        """images.h5 open for reading; UserError (one line) when it is damaged (a truncated copy, a bad disk)."""
        import h5py

        try:
            with h5py.File(self.h5_path, "r") as fh:
                yield fh
        except OSError as exc:
            raise UserError(
                f"dataset at {self.path} has an unreadable {IMAGES_FILE} ({' '.join(str(exc).split())}): "
                "rebuild it or copy it again"
            ) from None

    @property
    def image_size(self) -> int:
        """The primary (largest) stored size."""
        return self.image_sizes[0]

    def __repr__(self) -> str:
        return (
            f"DatasetArtifact({str(self.path)!r}, num_images={self.num_images}, sizes={self.image_sizes}, "
            f"channels={self.channels}, dtype={self.dtype})"
        )

    def _resolve_size(self, image_size: int | None) -> tuple[int, int | None]:
        """(stored size to read, target size when a resize is needed else None)."""
        if image_size is None or int(image_size) in self._datasets:
            return (self.image_sizes[0] if image_size is None else int(image_size)), None
        target = int(image_size)
        larger = sorted(s for s in self._datasets if s > target)
        if not larger:
            stored = ", ".join(str(s) for s in sorted(self._datasets))
            raise UserError(
                f"dataset {self.path} stores sizes {stored} px, none >= {target}: rebuild it with "
                f"`astrogan dataset build ... --image-size {target}`"
            )
        return larger[0], target

    def images(self, image_size: int | None = None) -> np.ndarray:
        """All images at `image_size` (default: the largest stored) as `(N, S, S, C)`, loaded into memory.

        A size that is not stored is resized (Pillow Lanczos) from the nearest larger stored size, with a
        warning.
        """
        stored, target = self._resolve_size(image_size)
        with self._read_h5() as fh:
            arr = np.asarray(fh[self._datasets[stored]])
        if target is None:
            return arr
        warnings.warn(
            f"dataset {self.path.name} has no {target} px images; resizing from {stored} px (Lanczos)",
            stacklevel=2,
        )
        return _resize_batch(arr, target)

    def iter_chunks(self, image_size: int | None = None, *, chunk_size: int = 256) -> Iterator[np.ndarray]:
        """Yield the images in order, `chunk_size` at a time, without loading all of them."""
        stored, target = self._resolve_size(image_size)
        with self._read_h5() as fh:
            ds = fh[self._datasets[stored]]
            for start in range(0, ds.shape[0], chunk_size):
                arr = np.asarray(ds[start : start + chunk_size])
                yield arr if target is None else _resize_batch(arr, target)

    def labels(self) -> np.ndarray | None:
        """int64 `(N,)` class labels, or None for an unlabelled dataset."""
        with self._read_h5() as fh:
            if LABELS_DATASET not in fh:
                return None
            return np.asarray(fh[LABELS_DATASET], dtype=np.int64)

    @property
    def cond_spec(self) -> CondSpec | None:
        """The physical conditions stored with the images (at the primary size), or None."""
        entry = self.manifest.get(COND_MANIFEST_KEY)
        return CondSpec.from_dict(entry) if entry else None

    def cond(
        self, image_size: int | None = None, columns: Sequence[str] | None = None
    ) -> tuple[np.ndarray, CondSpec]:
        """float32 `(N, K)` conditions for `columns` (default: all) at `image_size`, and their spec.

        Columns in pixels are rescaled from the primary size to `image_size`; the spec's range and
        mean/std are those of the returned values. UserError when the dataset has none or lacks a column.
        """
        full = self.cond_spec
        if full is None:
            raise UserError(
                f"dataset {self.path} has no physical conditions: build it with "
                "`astrogan dataset build ... --labels params.csv --label-columns a,b,c`"
            )
        spec, idx = full.select(list(columns) if columns else list(full.names))
        with self._read_h5() as fh:
            values = np.asarray(fh[COND_DATASET], dtype=np.float32)[:, idx]
        size = self.image_size if image_size is None else int(image_size)
        if size != self.image_size:
            values = spec.scale_lengths(values, size / self.image_size)
        return values, CondSpec.from_values(spec.names, values, units=spec.units)

    def meta(self) -> np.ndarray:
        """The per-image structured table (source, crop box, flags, stretch black/white); strings decoded."""
        with self._read_h5() as fh:
            data = fh[META_DATASET][()]
        for name in data.dtype.names or ():
            if data.dtype[name].kind == "O":
                data[name] = [v.decode() if isinstance(v, bytes) else v for v in data[name]]
        return data

    @property
    def science(self) -> ScienceSpec | None:
        """The science spec (bands, dataset-wide stretch, units, display) of a science build, else None."""
        return ScienceSpec.from_dict(self.manifest.get("science"))

    def headers(self) -> list[dict[str, Any]]:
        """The FITS cards kept per image (science builds: BUNIT, PIXSCALE, BANDS, the celestial WCS of the
        stored image at the largest size); one dict per image, empty for builds that keep none."""
        return self._json_column("header")

    def header(self, index: int) -> dict[str, Any]:
        """The cards kept for image `index` (see `headers`); `astropy.wcs.WCS(fits.Header(...))` reads the WCS."""
        return self.headers()[index]

    def params(self) -> list[dict[str, Any]]:
        """The per-image values a science source carried (`--h5-params`, catalogue columns), one dict each."""
        return self._json_column("params")

    def _json_column(self, name: str) -> list[dict[str, Any]]:
        meta = self.meta()
        if name not in (meta.dtype.names or ()):
            return [{} for _ in range(len(meta))]
        return [json.loads(v) if v else {} for v in meta[name]]

    def stretch_params(self, index: int) -> dict[str, Any] | None:
        """The stretch of image `index` (for fits_io.unstretch), or None for non-FITS images."""
        st = self.manifest.get("stretch")
        if not st:
            return None
        row = self.meta()[index]
        if not np.isfinite(row["stretch_black"]):
            return None
        return {
            "kind": st["kind"],
            "a": st["a"],
            "black": float(row["stretch_black"]),
            "white": float(row["stretch_white"]),
        }


def _resize_batch(arr: np.ndarray, size_px: int) -> np.ndarray:
    from astrogan.data.preprocess import resize_square

    return (
        np.stack([resize_square(a, size_px, filter="lanczos") for a in arr])
        if len(arr)
        else np.zeros((0, size_px, size_px, arr.shape[-1]), dtype=arr.dtype)
    )


def open_dataset(path: str | os.PathLike[str]) -> DatasetArtifact:
    """Open a dataset directory built by `astrogan dataset build`; UserError if missing or unreadable."""
    p = Path(path).expanduser()
    manifest_path = p / MANIFEST_FILE
    if not manifest_path.is_file():
        raise UserError(f"no dataset at {p} (manifest.json missing): build one with `astrogan dataset build`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"dataset at {p} has an unreadable manifest.json ({exc}): rebuild it") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA_NAME:
        raise UserError(
            f"{manifest_path} is not an astrogan dataset manifest: build one with `astrogan dataset build`"
        )
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SUPPORTED_SCHEMA_VERSION or version < 1:
        raise UserError(
            f"dataset at {p} has schema version {version}; this astrogan reads version "
            f"{SUPPORTED_SCHEMA_VERSION}: rebuild it or upgrade astrogan"
        )
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
    if missing:
        raise UserError(f"dataset at {p} has a manifest without {', '.join(missing)}: rebuild it")
    if not (p / IMAGES_FILE).is_file():
        raise UserError(f"dataset at {p} has no images.h5: rebuild it with `astrogan dataset build`")
    ds = DatasetArtifact(p, manifest)
    with ds._read_h5() as fh:  # a damaged file is named here, not as a traceback at the first read
        _check_shapes(ds, fh)
    return ds


def _check_shapes(ds: DatasetArtifact, fh: Any) -> None:
    """UserError (one line) unless every stored size holds the manifest's `(N, S, S, C)`: an images.h5
    copied from another build would otherwise train on, or count, images the manifest does not describe."""
    for size, name in sorted(ds._datasets.items(), reverse=True):
        want = (ds.num_images, size, size, ds.channels)
        got = tuple(fh[name].shape) if name in fh else None
        if got != want:
            held = f"holds {got}" if got is not None else f"has no {name!r}"
            raise UserError(
                f"dataset at {ds.path}: {IMAGES_FILE} {held} where manifest.json says {want} "
                "(N, size, size, channels): the two come from different builds; rebuild it or copy both again"
            )
