"""The artifact format module: names and layouts that the writer uses are the ones the reader finds."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from astrogan.data import artifact
from astrogan.data.build import BuildOptions, build_dataset
from astrogan.data.dataset import open_dataset
from astrogan.utils.errors import UserError


@pytest.fixture()
def built(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        small = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
        Image.fromarray(small).resize((40, 40), Image.Resampling.BICUBIC).save(src / f"{i}.png")
    opts = BuildOptions(image_sizes=(16, 32))
    return build_dataset([src], tmp_path / "ds", options=opts, show_progress=False)


def test_dataset_names_put_the_largest_size_first():
    assert artifact.dataset_name(64, 64) == "images" and artifact.dataset_name(32, 64) == "images_32"


def test_written_files_follow_the_format(built):
    ds = open_dataset(built.path)
    assert sorted(p.name for p in built.path.iterdir()) == sorted(
        [artifact.MANIFEST_FILE, artifact.IMAGES_FILE, artifact.REPORT_FILE]
    )
    m = ds.manifest
    assert (m["schema"], m["schema_version"]) == (artifact.SCHEMA_NAME, artifact.SCHEMA_VERSION)
    assert all(k in m for k in artifact.REQUIRED_MANIFEST_KEYS)
    assert m["datasets"] == {"32": "images", "16": "images_16"} and m["value_range"] == artifact.value_range(
        "uint8"
    )
    with h5py.File(ds.h5_path, "r") as fh:
        assert sorted(fh) == ["images", "images_16", artifact.META_DATASET]
        assert (
            fh["images"].chunks == (1, 32, 32, 3) and fh["images"].compression == artifact.IMAGE_COMPRESSION
        )
        assert fh[artifact.META_DATASET].dtype == artifact.meta_dtype()
    assert list(ds.meta().dtype.names) == [name for name, _ in artifact.META_FIELDS]


def test_content_hash_can_be_recomputed_from_the_manifest(built):
    m = open_dataset(built.path).manifest
    pre = m["preprocessing"]
    assert artifact.content_hash(pre["params"], pre["digests"]) == m["content_hash"] == built.content_hash


def test_reader_refuses_a_newer_schema(built):
    import json

    path = built.path / artifact.MANIFEST_FILE
    m = json.loads(path.read_text())
    m["schema_version"] = artifact.SCHEMA_VERSION + 1
    path.write_text(json.dumps(m))
    with pytest.raises(UserError, match="schema version"):
        open_dataset(built.path)


def test_the_writer_buffers_a_bounded_number_of_bytes_not_only_of_images(tmp_path, monkeypatch):
    """64 images are buffered before a write; at large sizes that many would not fit in memory (8192 px RGB:
    12.9 GB), so the buffer also goes to the file once it holds _FLUSH_BYTES (64 MiB; 1 MiB here)."""
    from astrogan.data import writer as writer_mod

    monkeypatch.setattr(writer_mod, "_FLUSH_BYTES", 2**20)
    side = 256  # 192 KiB per image: 6 fill 1 MiB
    writer = writer_mod.H5Writer(
        tmp_path / "images.h5", sizes=(side,), channels=3, dtype="uint8", labelled=False
    )
    try:
        image = np.zeros((side, side, 3), dtype=np.uint8)
        for i in range(20):
            writer.append({side: image}, label=None, meta=("x.png", 0, 0, side, i, side, side, "", 0.0, 0.0))
            assert writer.num_buffered_bytes < 2**20
        assert writer.num_written == 18 and writer.num_images == 20
    finally:
        writer.close()
