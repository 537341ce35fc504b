"""`dataset build` on the real pictures in ../shared/data (skipped when the folder is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from astrogan.data.build import BuildOptions, build_dataset
from astrogan.data.dataset import open_dataset


def test_hubble_showcase_all_96_at_32px(shared_data, tmp_path):
    src = shared_data / "hubble-showcase"
    res = build_dataset([src], tmp_path / "ds", options=BuildOptions(image_sizes=(32,)), show_progress=False)
    ds = open_dataset(res.path)
    assert ds.num_images == 96 == res.count("converted") and res.count("skipped") == 0
    imgs = ds.images()
    assert imgs.shape == (96, 32, 32, 3) and imgs.dtype == np.uint8
    assert 5 < imgs.mean() < 200 and imgs.std() > 10  # real pictures, not blank
    assert {s["path"] for s in ds.manifest["sources"]} == {p.name for p in src.glob("*.png")}


@pytest.mark.slow  # heavy: builds the real Galaxy Zoo set
def test_galaxyzoo_subset_at_32px_with_dedup(shared_data, tmp_path):
    files = sorted((shared_data / "galaxyzoo-examples").glob("*.jpg"))[::13][:60]
    opts = BuildOptions(image_sizes=(32,), dedup=True)
    res = build_dataset(files, tmp_path / "ds", options=opts, show_progress=False)
    ds = open_dataset(res.path)
    assert res.count("converted") + res.count("skipped") == len(files) == 60
    assert all(
        r["reason"].startswith(("exact duplicate", "near duplicate"))
        for r in res.report
        if r["status"] == "skipped"
    )
    assert ds.num_images == res.count("converted") >= 40
    assert ds.images().shape == (ds.num_images, 32, 32, 3)
    again = build_dataset(files, tmp_path / "again", options=opts, show_progress=False)
    assert again.content_hash == res.content_hash
