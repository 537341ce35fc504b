"""The dataset reader (open_dataset) and the `astrogan dataset` CLI: sizes, errors, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from astrogan.cli.main import main
from astrogan.data.build import BuildOptions, build_dataset
from astrogan.data.dataset import open_dataset
from astrogan.utils.errors import UserError


@pytest.fixture()
def small_ds(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        small = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
        Image.fromarray(small).resize((48, 48), Image.Resampling.BICUBIC).save(src / f"{i}.png")
    res = build_dataset(
        [src], tmp_path / "ds", options=BuildOptions(image_sizes=(32, 16)), show_progress=False
    )
    return res.path


def test_reader_contract(small_ds):
    ds = open_dataset(small_ds)
    assert ds.path == small_ds and ds.num_images == 3 and ds.image_sizes == [32, 16] and ds.channels == 3
    assert ds.label_names is None and ds.labels() is None and ds.content_hash.startswith("sha256:")
    assert ds.manifest["schema"] == "astrogan.dataset" and ds.manifest["schema_version"] == 1
    assert ds.images().shape == (3, 32, 32, 3) and ds.images().dtype == np.uint8
    chunks = list(ds.iter_chunks(16, chunk_size=2))
    assert [c.shape[0] for c in chunks] == [2, 1]
    assert np.array_equal(np.concatenate(chunks), ds.images(16))


def test_reader_resizes_from_the_nearest_larger_size_and_refuses_to_upscale(small_ds):
    ds = open_dataset(small_ds)
    with pytest.warns(UserWarning, match="resizing from 16 px"):
        eight = ds.images(8)
    direct = np.asarray(Image.fromarray(ds.images(16)[0]).resize((8, 8), Image.Resampling.LANCZOS))
    assert eight.shape == (3, 8, 8, 3) and np.array_equal(eight[0], direct)
    with pytest.warns(UserWarning, match="resizing from 32 px"):
        assert ds.images(24).shape == (3, 24, 24, 3)
    with pytest.raises(UserError, match="stores sizes 16, 32"):
        ds.images(64)


def test_reader_errors(tmp_path, small_ds):
    with pytest.raises(UserError, match=r"no dataset at .* \(manifest.json missing\): build one with"):
        open_dataset(tmp_path / "nowhere")
    manifest = json.loads((small_ds / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (small_ds / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="schema version 99"):
        open_dataset(small_ds)
    (small_ds / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="unreadable manifest"):
        open_dataset(small_ds)


def test_a_damaged_images_h5_is_one_line_not_a_traceback(small_ds, capsys):
    """A truncated copy of images.h5 (an interrupted rsync, a full disk): named when opened, exit 2."""
    h5 = small_ds / "images.h5"
    h5.write_bytes(h5.read_bytes()[:5000])
    with pytest.raises(UserError, match=r"has an unreadable images.h5 \(.*truncated.*\): rebuild it"):
        open_dataset(small_ds)
    assert main(["dataset", "info", str(small_ds)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and "images.h5" in err


def test_an_images_h5_from_another_build_is_refused_in_one_line(tmp_path, small_ds, capsys):
    """An images.h5 copied over from another build (5 images, not 3): `info` must not print the manifest's
    count, and training must not read images the manifest does not describe."""
    src = tmp_path / "raw5"
    src.mkdir()
    for i in range(5):
        Image.fromarray(np.full((40, 40, 3), 40 * i, dtype=np.uint8)).save(src / f"{i}.png")
    other = build_dataset(
        [src], tmp_path / "ds5", options=BuildOptions(image_sizes=(32, 16)), show_progress=False
    )
    (small_ds / "images.h5").write_bytes((other.path / "images.h5").read_bytes())
    with pytest.raises(
        UserError, match=r"images.h5 holds \(5, 32, 32, 3\) where manifest.json says \(3, 32, 32, 3\)"
    ):
        open_dataset(small_ds)
    capsys.readouterr()  # what the build above printed is not the command's
    assert main(["dataset", "info", str(small_ds)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and "different builds" in err


def test_cli_missing_input_exits_2_with_one_line(tmp_path, capsys):
    code = main(["dataset", "build", str(tmp_path / "missing"), "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0
    assert err.startswith("error: no such input:") and "missing" in err
    assert not (tmp_path / "ds").exists()


def test_cli_build_and_info(tmp_path, capsys, small_ds):
    src = tmp_path / "raw"
    out = tmp_path / "cli_ds"
    assert (
        main(
            [
                "dataset",
                "build",
                str(src),
                "--out",
                str(out),
                "--image-size",
                "16,8",
                "--channels",
                "1",
                "--dedup",
            ]
        )
        == 0
    )
    ds = open_dataset(out)
    assert ds.channels == 1 and ds.image_sizes == [16, 8] and ds.images().shape == (3, 16, 16, 1)
    assert main(["dataset", "build", str(src), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["dataset", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3" in text and ds.content_hash[:20] in text and "16 px (images)" in text
    assert main(["dataset", "info", str(tmp_path / "none")]) == 2
    assert main(["dataset", "build", str(src), "--out", str(tmp_path / "x"), "--crop", "diagonal"]) == 2
