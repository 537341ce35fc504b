"""The dataset artifact's format (schema, file and HDF5 names, layouts, content hash), shared by writer and reader.

Layout (schema `astrogan.dataset`, version 1; DESIGN.md section 3):

- `images.h5`: one HDF5 dataset per image size, `(N, S, S, C)`, chunked one image per chunk, gzip level 4.
  The LARGEST size is named `images`, every other size `images_<S>` (e.g. `images_64`); all share the
  same N and order. uint8 for pictures; float32 in [0, 1] (stretched) for FITS-only builds unless
  `--dtype uint8`. Optional `labels` int64 `(N,)` (attribute `names`: the class names as JSON). `meta`:
  one compound row per image with `source`, `crop_top`, `crop_left`, `crop_size` (pixels of the source,
  image order), `crop_index`, `source_height`, `source_width`, `flags` (comma separated),
  `stretch_black`, `stretch_white` (NaN for non-FITS rows), and its provenance: `source_file` (the file
  as its provenance table names it: the catalog's `local_path`, the `file` column of a synthetic
  `params.csv`, else the file name), `credit`, `licence` ("" when unknown), `params_table` (index into
  the manifest's `synthetic` list, -1 when none) and `params_row` (0-based data row of that table's
  `params.csv`, -1 when none). Optional `cond` float32 `(N, K)` (attribute `names`): physical
  conditions (continuous labels from `--labels CSV` or a synth folder's `params.csv`) in the LARGEST
  size's pixels: columns in pixels (names ending `_px`) were multiplied by `size / crop side` per
  image; other units are unchanged. Readers rescale pixel columns for the other sizes.
- `manifest.json`: schema and version, counts, sizes (`image_sizes`, largest first, and `datasets`
  size -> HDF5 name), channels, dtype, value range, label names, preprocessing steps and parameters,
  sources (per-file sha256, and licence/credit/title from a `catalog.sqlite` or a `synth.json` in an
  input folder), credit and licence summaries (per source file), `synthetic` (one entry per
  `synth.json` folder: its settings, credit, licence and the parameters table's path, sha256 and
  row count, so true parameters can be joined to dataset images), `cond` (null, or the conditions'
  `CondSpec`: names, units, low/high, mean/std at the largest size, plus `size_px`, `source` (the
  tables with path, sha256 and key column), `rescale` (in words) and the unmatched counts), `review`
  (null, or what `--review review.csv` did: the csv's path and sha256, the flags excluded, counts,
  `excluded` (file, flags) and `cropped` (file, box in the source's pixels); meta rows of a cropped file
  carry the flag `review-cropped`), and `content_hash`.
- Science builds (`--bands`, `--science`, `--h5`, `--cosmos`; data/science_inputs.py): `images` are float32
  `(N, S, S, B)`, one channel per band, image order (row 0 on top), each band mapped to [0, 1] by ONE
  dataset-wide stretch; the manifest's `science` holds `ScienceSpec.to_dict()` (bands, stretch kind/a and
  per-band black/white, BUNIT and pixel scale of the stored pixels when every image agrees, else null,
  the Lupton display mapping) and `science_inputs` the source, the fit and the units seen; `stretch` is
  null (no per-image stretch). `meta` adds `header` and `params` (JSON strings): the cards of each stored
  image (BUNIT, PIXSCALE in arcsec of the stored pixels, BANDS, identity cards, the celestial WCS cut to
  the crop and scaled to the largest size) and its per-image values. A source that is one file (`--h5`,
  `--cosmos`) gets one report row, plus a row per image skipped; per-band files get one row per stem
  (`files`: the band files).
- `report.json`: every path found under the inputs with its status (`converted`, `skipped`, `ignored`),
  reason and flags: pictures and FITS files, and one row for each path not built (not a picture name;
  hidden file or folder; catalog.sqlite/synth.json, read for provenance; dangling symlink; symlink loop;
  unreadable folder; folder or file reached twice; FIFO or device). A file found through symlinks has
  `path` (the file itself) and `link` (where it was found). With conditions, `labels`: the tables, the
  counts and the first 200 rows that matched no picture.
- Permissions: folder and files get the modes `mkdir`/`open` give under the builder's umask.

The content hash covers decoded pixels, labels, conditions and the preprocessing parameters (never paths or times),
so two builds from the same inputs with the same seed agree.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

SCHEMA_NAME = "astrogan.dataset"
SCHEMA_VERSION = 1
REPORT_SCHEMA_NAME = "astrogan.dataset-report"
REPORT_SCHEMA_VERSION = 1

MANIFEST_FILE = "manifest.json"
IMAGES_FILE = "images.h5"
REPORT_FILE = "report.json"

LABELS_DATASET = "labels"
LABEL_NAMES_ATTR = "names"
META_DATASET = "meta"
# Physical conditions (continuous labels): float32 (N, K) in the primary (largest) size's pixels; the
# manifest's "cond" entry holds their CondSpec (names, units, range, mean/std) at that size.
COND_DATASET = "cond"
COND_MANIFEST_KEY = "cond"
# Every image dataset: one image per chunk (random access for training), gzip level 4.
IMAGE_COMPRESSION = "gzip"
IMAGE_COMPRESSION_LEVEL = 4

# The keys a reader needs; open_dataset refuses a manifest without them.
REQUIRED_MANIFEST_KEYS = ("num_images", "image_sizes", "channels", "content_hash", "datasets")

# The `meta` table's columns in order ("str": a UTF-8 variable-length string).
META_FIELDS: tuple[tuple[str, Any], ...] = (
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
# Science builds add, per image, the FITS cards kept (JSON object: BUNIT, PIXSCALE, BANDS, the celestial WCS
# of the stored image) and the per-image values of the source (JSON object: --h5-params, catalogue values).
SCIENCE_META_FIELDS: tuple[tuple[str, Any], ...] = (("header", "str"), ("params", "str"))
# The manifest key of a science build's ScienceSpec (astrogan.science.ScienceSpec.to_dict()).
SCIENCE_MANIFEST_KEY = "science"


def dataset_name(size_px: int, primary_size_px: int) -> str:
    """HDF5 dataset name for one image size: `images` for the largest, `images_<size>` for the others."""
    return "images" if size_px == primary_size_px else f"images_{size_px}"


def meta_dtype(*, science: bool = False) -> np.dtype:
    """The NumPy compound dtype of the `meta` table (strings as h5py UTF-8 strings); `science` adds
    SCIENCE_META_FIELDS."""
    import h5py

    str_dt = h5py.string_dtype("utf-8")
    fields = META_FIELDS + (SCIENCE_META_FIELDS if science else ())
    return np.dtype([(name, str_dt if kind == "str" else kind) for name, kind in fields])


def value_range(dtype: str) -> list[int] | list[float]:
    """The stored value range: 0..255 for uint8, [0, 1] (stretched) for float32."""
    return [0, 255] if dtype == "uint8" else [0.0, 1.0]


def content_hash(params: dict[str, Any], digests: dict[str, Any]) -> str:
    """`sha256:<hex>` of the hashed preprocessing parameters and the per-dataset digests (sorted JSON)."""
    payload = json.dumps({"params": params, "datasets": digests}, sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def report_document(content_hash: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    """The report.json of a build: one row per input file (status, reason, flags), tied to the hash."""
    return {
        "schema": REPORT_SCHEMA_NAME,
        "schema_version": REPORT_SCHEMA_VERSION,
        "content_hash": content_hash,
        "files": files,
    }
