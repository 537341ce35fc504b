"""`astrogan generate|interpolate|average|progress-video` on odd flags: one line, exit 2, nothing left on disk."""

from __future__ import annotations

import pytest
import torch

from astrogan.models import ARCHS
from tests.helpers.conditions import SPEC
from tests.helpers.runs import write_run


def _run(root, name: str, **cfg_kw):
    """A tiny DCGAN run dir (16 px, untrained) with `cfg_kw` in its config: classes or conditions."""
    arch = ARCHS["dcgan"]
    cfg = arch.config_cls(**{"image_size": 16, **arch.tiny, **cfg_kw})
    torch.manual_seed(0)
    G = arch.build_generator(cfg).eval()
    run = root / name
    extra = {"step": 6, "kimg": 0.1, "run": name}
    return write_run(run, G, cfg, arch="dcgan", extra=extra, config={"arch": "dcgan", "image_size": 16})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample-cli")
    return {
        "plain": _run(root, "00000-plain"),
        "classes": _run(root, "00001-classes", num_classes=3),
        "cond": _run(root, "00002-cond", cond=SPEC.to_dict()),
    }


@pytest.mark.parametrize("batch_size", ["0", "-3"])
def test_generate_refuses_a_batch_size_below_one(runs, tmp_path, cli, batch_size):
    # Before: 0 was a traceback (range() step 0) and -3 wrote nothing yet said "wrote 4 images".
    out = tmp_path / "out"
    code, _, err = cli(
        ["generate", "--run", runs["plain"], "--seeds", "0-3", "--out", out, "--batch-size", batch_size]
    )
    assert code == 2 and "--batch-size" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("which", "flags", "message"),
    [
        ("classes", ["--class", "3"], "0..2"),
        ("classes", ["--class", "-1"], "0..2"),
        ("plain", ["--class", "1"], "unconditional"),
        ("cond", ["--class", "1"], "not classes"),
        ("cond", ["--cond", "sersic_n=99"], "sersic_n"),
        ("cond", ["--cond", "sersic_n=2", "--format", "fits"], None),
        ("cond", ["--cond-grid", "sersic_n=1:99:3"], "sersic_n"),
        ("cond", ["--cond-grid", "sersic_n=1:4:3", "--class", "0"], "not classes"),
    ],
)
def test_generate_refuses_a_bad_request_before_making_the_output_folder(
    runs, tmp_path, cli, which, flags, message
):
    # Before: the folder was made first, so a wrong --class or --cond left an empty --out behind.
    out = tmp_path / "new" / "out"
    if message is None:  # a good request, for contrast: the folder appears
        code, _, err = cli(["generate", "--run", runs[which], "--seeds", "0-1", "--out", out, *flags])
        assert code == 0, err
        assert sorted(p.name for p in out.iterdir()) == ["seed0000.fits", "seed0001.fits"]
        return
    code, _, err = cli(["generate", "--run", runs[which], "--seeds", "0-1", "--out", out, *flags])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["interpolate", "--rows", "2", "--steps", "3", "--seed", "-5"], "--seed must be in 0..4294967292"),
        (["interpolate", "--rows", "2", "--steps", "3", "--seed", "4294967295"], "--seed must be in"),
        (["interpolate", "--rows", "2", "--steps", "3", "--trunc", "nan"], "--trunc must be in (0, 2]"),
        (["interpolate", "--rows", "2", "--steps", "3", "--trunc", "-1"], "--trunc must be in (0, 2]"),
        (["average", "--num", "3", "--seed", "-1"], "--seed must be in 0..4294967293"),
        (["average", "--num", "3", "--seed", "4294967294"], "--seed must be in"),
    ],
)
def test_walks_refuse_seeds_and_truncation_that_generate_refuses(runs, tmp_path, cli, args, message):
    # Before: a negative --seed was a NumPy traceback, seeds past 2**32-1 were drawn, and interpolate took
    # any --trunc (NaN drew a black sheet with a RuntimeWarning).
    out = tmp_path / "sheet.png"
    code, _, err = cli([*args, "--run", runs["plain"], "--out", out])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "name", "message"),
    [
        (["interpolate", "--rows", "1", "--steps", "2"], "{dir}", "is a folder"),
        (["average", "--num", "2"], "{dir}", "is a folder"),
        (["progress-video"], "{dir}", "is a folder"),
        (["interpolate", "--rows", "1", "--steps", "2"], "sheet.jpg", "must end in .png"),
        (["average", "--num", "2"], "mean", "must end in .png"),
        (["progress-video"], "anim.png", "must end in .gif"),
    ],
)
def test_walks_refuse_an_out_that_is_a_folder_or_names_another_format(
    runs, tmp_path, cli, args, name, message
):
    # Before: a folder was an IsADirectoryError traceback naming a temp file, and sheet.jpg held PNG bytes.
    (tmp_path / "d").mkdir()
    out = tmp_path / "d" if name == "{dir}" else tmp_path / name
    code, _, err = cli([*args, "--run", runs["plain"], "--out", out])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and not any((tmp_path / "d").iterdir())


def test_fits_from_an_exported_model_carry_the_same_header_as_from_its_run(runs, tmp_path, cli):
    # Before: `generate --model model.onnx --format fits` wrote no RUNID, STEP or ARCH (the web's FITS had them).
    from astropy.io import fits

    from astrogan.export import export_generator

    model = export_generator(runs["plain"], fmt="onnx", out_dir=tmp_path / "export").model_path
    for flag, path, out in (("--run", runs["plain"], "from-run"), ("--model", model, "from-onnx")):
        code, _, err = cli(
            ["generate", flag, path, "--seeds", "7", "--format", "fits", "--out", tmp_path / out]
        )
        assert code == 0, err
    with (
        fits.open(tmp_path / "from-run" / "seed0007.fits") as a,
        fits.open(tmp_path / "from-onnx" / "seed0007.fits") as b,
    ):
        assert (
            a[0].header["RUNID"] == "00000-plain"
            and a[0].header["STEP"] == 6
            and a[0].header["ARCH"] == "dcgan"
        )
        assert list(b[0].header.items()) == list(a[0].header.items())


def test_progress_video_refuses_frames_shorter_than_a_gif_can_hold(tmp_path, cli):
    # Before: 0 and -5 were taken and wrote a GIF with no frame duration (viewers pick their own pace).
    import numpy as np
    from PIL import Image

    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    for step in (1, 2):
        Image.fromarray(np.full((64, 64, 3), 60 * step, np.uint8)).save(
            run / "snapshots" / f"step-{step:07d}.png"
        )
    for frame_ms in ("0", "-5", "9"):
        code, out, err = cli(["progress-video", "--run", run, "--frame-ms", frame_ms])
        assert code == 2 and "--frame-ms" in out + err, out + err
    assert not (run / "progress.gif").exists()
    assert cli(["progress-video", "--run", run, "--frame-ms", "10"])[0] == 0
    with Image.open(run / "progress.gif") as gif:
        assert gif.n_frames == 2 and gif.info["duration"] == 10


def test_generate_names_an_out_that_is_a_file(runs, tmp_path, cli):
    # Before: "error: [Errno 17] File exists: '.../notes.txt'", which does not say what is wrong with it.
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    code, _, err = cli(["generate", "--run", runs["plain"], "--seeds", "0", "--out", out])
    assert code == 2 and "is a file: give a folder" in err and len(err.strip().splitlines()) == 1, err
    assert out.read_text() == "mine"


@pytest.mark.parametrize("fmt", ["png", "fits"])
def test_generate_draws_a_repeated_seed_once_and_counts_the_files_it_wrote(
    runs, tmp_path, cli, monkeypatch, fmt
):
    # Before: --seeds 1,1,2,1 wrote seed0001 and seed0002 but said "wrote 4 images", and grid.png held 4 tiles.
    from PIL import Image

    monkeypatch.setenv("ASTROGAN_QUIET", "0")  # for the note and the count
    out = tmp_path / "out"
    code, _, err = cli(
        ["generate", "--run", runs["plain"], "--seeds", "1,1,2,1", "--format", fmt, "--grid", "--out", out]
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", f"seed0001.{fmt}", f"seed0002.{fmt}"]
    assert "seed(s) 1 listed more than once" in err
    assert ("wrote 2 images" if fmt == "png" else "wrote 2 FITS cubes") in err
    with Image.open(out / "grid.png") as sheet:  # two 16 px tiles side by side, 2 px gaps around them
        assert sheet.size == (2 + 2 * 18, 2 + 18)


def test_a_damaged_generator_json_is_one_warning_line(runs, tmp_path, cli, monkeypatch):
    # Before: "…/sampling/generator.py:259: UserWarning: …" and then the Python source line under it.
    import shutil
    import sys
    import warnings

    run = tmp_path / "run"
    shutil.copytree(runs["plain"], run)
    (run / "checkpoints" / "generator.json").write_text('{"broken')
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # Show warnings as Python does outside pytest (which records them): formatwarning's text to stderr.
        monkeypatch.setattr(
            warnings,
            "showwarning",
            lambda msg, cat, filename, lineno, file=None, line=None: sys.stderr.write(
                warnings.formatwarning(msg, cat, filename, lineno, line)
            ),
        )
        code, _, err = cli(["generate", "--run", run, "--seeds", "0", "--out", tmp_path / "out"])
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "a save was cut short" in lines[0], err
    assert (tmp_path / "out" / "seed0000.png").is_file()
