"""Writing images.h5 in the artifact's layout: every size, labels, conditions and meta rows, hashed as they go."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.data import artifact

_FLUSH_EVERY = 64  # images buffered per size before they go to the file (one resize per flush)
# ... or fewer when they are large: 64 images of 8192 px RGB would be 12.9 GB in memory (--image-size allows it).
_FLUSH_BYTES = 64 * 2**20
# HDF5 filters of float32 images (stretched science flux, FITS pictures): byte shuffle + deflate level 1. Measured
# on 1000 images each (write, random read per image, size kept; 2-core CPU): bench/fits_build.py's 64 px 4-band
# cubes: gzip-4 3.0 ms, 0.36 ms, 88 %; shuffle+gzip-1 1.5 ms, 0.20 ms, 80 %; lzf 0.57 ms, 0.03 ms, 100 %; none
# 0.04 ms, 0.02 ms, 100 %. COSMOS-like 64 px stamps (sky noise, one band): gzip-4 0.55 ms, 90 %; shuffle+gzip-1
# 0.26 ms, 83 %; lzf 0.21 ms, 100 %. Padded stamps (flat sky around a 21 px galaxy): every deflate keeps 11 %,
# none 100 %. Noise fills the low mantissa bytes, which nothing compresses: shuffle lets deflate see the high
# bytes apart. Shuffle and deflate come with every HDF5 library (lzf is h5py's own). uint8 pictures keep the
# artifact's gzip-4. The content hash is of the pixel bytes, not of the file: filters never change it.
FLOAT_FILTERS: dict[str, Any] = {"compression": "gzip", "compression_opts": 1, "shuffle": True}


def image_filters(dtype: Any) -> dict[str, Any]:
    """The h5py `create_dataset` filter arguments for images of `dtype` (see FLOAT_FILTERS)."""
    if np.dtype(dtype).kind == "f":
        return dict(FLOAT_FILTERS)
    return {"compression": artifact.IMAGE_COMPRESSION, "compression_opts": artifact.IMAGE_COMPRESSION_LEVEL}


class H5Writer:
    """Appends images of every size (plus label, conditions and meta row) to images.h5, hashing pixels as it goes.

    `cond_names` (K columns) makes every `append` take a float32 `(K,)` condition row (primary size's pixels).
    `science_meta` adds the `header` and `params` columns (artifact.SCIENCE_META_FIELDS) to the meta table.
    """

    def __init__(
        self,
        path: Path,
        *,
        sizes: tuple[int, ...],
        channels: int,
        dtype: str,
        labelled: bool,
        cond_names: Sequence[str] | None = None,
        science_meta: bool = False,
    ) -> None:
        import h5py

        self.science_meta = science_meta
        self.sizes, self.channels, self.dtype, self.labelled = sizes, channels, np.dtype(dtype), labelled
        self.cond_names = list(cond_names) if cond_names else None
        self.fh = h5py.File(path, "w")
        self.names = {s: artifact.dataset_name(s, sizes[0]) for s in sizes}
        self.dsets = {
            s: self.fh.create_dataset(
                self.names[s],
                shape=(0, s, s, channels),
                maxshape=(None, s, s, channels),
                chunks=(1, s, s, channels),
                dtype=self.dtype,
                **image_filters(self.dtype),
            )
            for s in sizes
        }
        self.hashers = {s: hashlib.sha256() for s in sizes}
        self.buffers: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
        self.labels: list[int] = []
        self.cond: list[np.ndarray] = []  # float32 (K,) per image, when cond_names is set
        self.meta: list[tuple[Any, ...]] = []
        self.meta_hasher = hashlib.sha256()
        self.num_written = 0
        self.num_buffered_bytes = 0

    @property
    def num_images(self) -> int:
        """Images appended so far (written or still buffered)."""
        return self.num_written + len(self.buffers[self.sizes[0]])

    def append(
        self,
        crops: dict[int, np.ndarray],
        *,
        label: int | None,
        meta: tuple[Any, ...],
        cond: np.ndarray | None = None,
    ) -> None:
        """Add one image: `crops[size]` `(S, S, C)` for every size, its label, conditions `(K,)` and meta row."""
        for s in self.sizes:
            arr = np.ascontiguousarray(crops[s], dtype=self.dtype)
            assert arr.shape == (s, s, self.channels), arr.shape
            self.hashers[s].update(arr.data)  # the C-ordered bytes tobytes() gives, without the copy
            self.buffers[s].append(arr)
            self.num_buffered_bytes += arr.nbytes
        if self.labelled:
            assert label is not None
            self.labels.append(int(label))
        if self.cond_names is not None:
            assert cond is not None, "a conditioned build needs a condition row for every image"
            row = np.asarray(cond, dtype=np.float32)
            assert row.shape == (len(self.cond_names),), row.shape
            self.cond.append(row)
        self.meta.append(meta)
        if self.science_meta:  # the kept cards and values are part of what a science build stores
            self.meta_hasher.update(repr(meta[-2:]).encode())
        if len(self.buffers[self.sizes[0]]) >= _FLUSH_EVERY or self.num_buffered_bytes >= _FLUSH_BYTES:
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
        self.num_buffered_bytes = 0

    def cond_values(self) -> np.ndarray | None:
        """float32 `(N, K)` conditions appended so far, or None for an unconditioned build."""
        if self.cond_names is None:
            return None
        return np.stack(self.cond) if self.cond else np.zeros((0, len(self.cond_names)), np.float32)

    def finish(self, label_names: Sequence[str] | None) -> dict[str, Any]:
        """Write labels, conditions and meta, close the file; returns the per-dataset digests for the hash."""
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
            self.fh.create_dataset(artifact.LABELS_DATASET, data=labels)
            if label_names:
                self.fh[artifact.LABELS_DATASET].attrs[artifact.LABEL_NAMES_ATTR] = json.dumps(
                    list(label_names)
                )
            digests[artifact.LABELS_DATASET] = {
                "shape": [len(labels)],
                "dtype": "int64",
                "sha256": hashlib.sha256(labels.tobytes()).hexdigest(),
            }
        cond = self.cond_values()
        if cond is not None:
            self.fh.create_dataset(artifact.COND_DATASET, data=cond)
            self.fh[artifact.COND_DATASET].attrs["names"] = json.dumps(self.cond_names)
            # Column names and value bytes: a changed value or a renamed column changes the content hash.
            digests[artifact.COND_DATASET] = {
                "shape": list(cond.shape),
                "dtype": "float32",
                "names": self.cond_names,
                "sha256": hashlib.sha256(np.ascontiguousarray(cond).tobytes()).hexdigest(),
            }
        if self.science_meta:
            digests[artifact.META_DATASET] = {
                "columns": ["header", "params"],
                "sha256": self.meta_hasher.hexdigest(),
            }
        dt = artifact.meta_dtype(science=self.science_meta)
        meta = np.array(self.meta, dtype=dt) if self.meta else np.zeros(0, dtype=dt)
        self.fh.create_dataset(artifact.META_DATASET, data=meta)
        self.fh.close()
        return digests

    def close(self) -> None:
        try:
            self.fh.close()
        except Exception:  # already closed or broken: the temp dir is removed anyway
            pass
