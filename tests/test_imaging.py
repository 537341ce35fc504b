"""The torch-free imaging floor: value conversion, grids, slerp, file hashes, the export I/O contract; each once."""

from __future__ import annotations

import hashlib
import inspect
import re
import subprocess
import sys

import numpy as np
import pytest

from astrogan import imaging
from astrogan.imaging import (
    make_grid,
    model_to_unit,
    sha256_file,
    slerp,
    to_uint8,
    trunc_rows,
    uint8_to_unit,
    unit_to_uint8,
)


def test_to_uint8_layout_edges_and_rounding():
    # Values on the grid of the 256 levels map to their level; half steps round half to even; out of range clips.
    levels = np.arange(256, dtype=np.float64) / 127.5 - 1.0
    x = levels.astype(np.float32).reshape(1, 1, 16, 16)
    assert to_uint8(x).reshape(-1).tolist() == list(range(256))
    half = np.array([-1.0 + 0.5 / 127.5, -1.0 + 1.5 / 127.5, 1.0 - 0.5 / 127.5], np.float32)
    expected = np.rint((half + 1.0) * np.float32(127.5)).astype(np.uint8).tolist()
    assert to_uint8(half.reshape(1, 1, 1, 3)).reshape(-1).tolist() == expected
    clipped = to_uint8(np.array([-3.0, -1.0, 1.0, 5.0], np.float32).reshape(1, 1, 1, 4))
    assert clipped.reshape(-1).tolist() == [0, 0, 255, 255]
    out = to_uint8(np.zeros((2, 3, 4, 5), np.float32))
    assert out.shape == (2, 4, 5, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert (out == 128).all()  # round(127.5) is 128 (half to even)


def test_uint8_round_trip_through_model_and_unit_values():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    model = pixels.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(127.5) - 1.0
    assert np.array_equal(to_uint8(model), pixels)
    assert np.array_equal(unit_to_uint8(uint8_to_unit(pixels)), pixels)
    assert np.array_equal(unit_to_uint8(model_to_unit(model).transpose(0, 2, 3, 1)), pixels)
    assert uint8_to_unit(pixels).dtype == np.float32 and uint8_to_unit(pixels, np.float64).dtype == np.float64
    assert unit_to_uint8(pixels) is pixels  # uint8 passes through
    assert unit_to_uint8(np.array([-0.2, 0.5 / 255, 1.5 / 255, 1.3])).tolist() == [0, 0, 2, 255]


def test_grid_layout_and_gaps():
    images = np.stack([np.full((3, 4, 2), i + 1, np.uint8) for i in range(5)])
    grid = make_grid(images, ncols=2, pad_px=1, pad_value=9)
    assert grid.shape == (3 * (3 + 1) + 1, 2 * (4 + 1) + 1, 2) and grid.dtype == np.uint8
    for i in range(5):
        r, c = divmod(i, 2)
        y, x = 1 + r * 4, 1 + c * 5
        assert (grid[y : y + 3, x : x + 4] == i + 1).all()
    assert (grid[0] == 9).all() and (grid[:, 0] == 9).all() and (grid[4] == 9).all()  # frame and row gaps
    assert (grid[9:12, 6:10] == 9).all()  # the empty sixth cell stays background
    # Default columns are square-ish; scale repeats pixels; no border leaves the gap after each tile only.
    assert make_grid(images, pad_px=0).shape == (2 * 3, 3 * 4, 2)
    assert make_grid(images[:1], pad_px=0, scale=3).shape == (9, 12, 2)
    flat = make_grid(
        images[:2].astype(np.float64) / 10, ncols=2, pad_px=2, pad_value=1.0, border=False, dtype=float
    )
    assert flat.shape == (5, 12, 2) and flat.dtype == np.float64
    assert flat[0, 0, 0] == pytest.approx(0.1) and (flat[:, 4:6] == 1.0).all() and (flat[3:] == 1.0).all()
    with pytest.raises(ValueError):
        make_grid(images[0])


def test_slerp_keeps_the_norm_and_matches_the_closed_form():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(64), rng.standard_normal(64)
    t = np.linspace(0.0, 1.0, 7)
    path = slerp(a, b, t)
    assert path.shape == (7, 64) and path.dtype == np.float32
    np.testing.assert_allclose(path[0], a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(path[-1], b, rtol=1e-5, atol=1e-6)
    omega = np.arccos(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    closed = (np.sin((1 - t)[:, None] * omega) * a + np.sin(t[:, None] * omega) * b) / np.sin(omega)
    np.testing.assert_allclose(path, closed, rtol=1e-5, atol=1e-5)
    # Unit vectors stay on the sphere (a straight line would dip inside it).
    ua, ub = a / np.linalg.norm(a), b / np.linalg.norm(b)
    np.testing.assert_allclose(np.linalg.norm(slerp(ua, ub, t), axis=1), 1.0, rtol=1e-5)
    same = slerp(a, a, np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(same, np.tile(a, (3, 1)), rtol=1e-6)


def test_sha256_file_equals_hashlib(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (3 << 20) + 17, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == want and sha256_file(str(path), chunk=4096) == want
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()


def test_old_names_are_the_one_definition():
    from astrogan.data import preprocess
    from astrogan.data.sources import catalog
    from astrogan.metrics import inception, plots
    from astrogan.sampling import grids, post
    from astrogan.web import onnx_generator

    assert post.to_uint8 is to_uint8 and onnx_generator.to_uint8 is to_uint8
    assert grids.make_grid is make_grid and onnx_generator.slerp is slerp
    assert catalog.sha256_file is sha256_file and inception.sha256_file is sha256_file
    assert preprocess.to_uint8 is unit_to_uint8 and plots.make_grid is make_grid


def test_trunc_rows_gives_one_float32_factor_per_row():
    # A number, in any wrapping, is repeated for every row.
    for number in (0.7, np.float64(0.7), [0.7], np.asarray([[0.7]])):
        t = trunc_rows(number, 3)
        assert t.dtype == np.float32 and t.shape == (3,)
        np.testing.assert_array_equal(t, np.full(3, 0.7, np.float32))
    strided = np.asarray([0.5, 9.0, 1.0, 9.0, 0.25], np.float64)[::2]
    t = trunc_rows(strided, 3)
    assert t.dtype == np.float32 and t.flags.c_contiguous  # fed to ONNX Runtime as is
    np.testing.assert_array_equal(t, np.asarray([0.5, 1.0, 0.25], np.float32))
    assert trunc_rows(1.0, 0).shape == (0,)
    with pytest.raises(ValueError, match=r"shape \(3,\), got shape \(2,\)"):
        trunc_rows([0.5, 1.0], 3)


def test_the_export_io_contract_is_defined_once():
    from astrogan.export import onnx as export_onnx
    from astrogan.export import parity, torchscript
    from astrogan.web import onnx_generator

    names = ("LATENT_INPUT", "CLASS_INPUT", "TRUNC_INPUT", "IMAGE_OUTPUT", "META_KEY")
    assert [getattr(imaging, n) for n in names] == ["z", "c", "trunc", "images", "astrogan"]
    assignment = re.compile(rf"^({'|'.join(names)}|TRUNC_ARG)\s*=|^def _?trunc_rows\(", re.MULTILINE)
    for module in (export_onnx, parity, torchscript, onnx_generator):
        assert module.trunc_rows is trunc_rows
        assert not assignment.search(inspect.getsource(module)), f"{module.__name__} keeps its own copy"
    for module in (export_onnx, onnx_generator):  # the exporter writes and the server reads the same names
        assert [getattr(module, n) for n in names] == [getattr(imaging, n) for n in names]


@pytest.mark.slow  # starts a process
def test_imaging_imports_no_torch():
    code = "import sys, astrogan.imaging; print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
