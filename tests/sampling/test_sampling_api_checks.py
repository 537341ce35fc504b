"""`astrogan.load_generator(...)` checks its requests as the CLI does: one-line UserError, no NumPy/range errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import astrogan
from astrogan.models import ARCHS
from astrogan.utils.errors import UserError
from tests.helpers.runs import write_run


def _open(root, **cfg_kw):
    """The API's generator of a tiny DCGAN run dir (16 px, untrained), `cfg_kw` in its config."""
    arch = ARCHS["dcgan"]
    cfg = arch.config_cls(**{"image_size": 16, **arch.tiny, **cfg_kw})
    torch.manual_seed(0)
    G = arch.build_generator(cfg).eval()
    run = root / "00000-api"
    write_run(run, G, cfg, arch="dcgan", extra={"step": 1, "run": run.name}, config={"arch": "dcgan"})
    return astrogan.load_generator(run, device="cpu")


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    return _open(tmp_path_factory.mktemp("api"))


@pytest.mark.parametrize(
    ("seeds", "kwargs", "message"),
    [
        ([0], {"trunc": float("nan")}, "trunc must be in (0, 2], got nan"),
        ([0], {"trunc": float("inf")}, "trunc must be in (0, 2], got inf"),
        ([0], {"trunc": 0.0}, "trunc must be in (0, 2], got 0.0"),
        ([0], {"trunc": "tame"}, "trunc must be a number in (0, 2], got 'tame'"),
        ([0], {"batch_size": 0}, "batch_size must be a whole number of at least 1, got '0'"),
        ([0], {"batch_size": 2.5}, "batch_size must be a whole number of at least 1, got '2.5'"),
        ([-1], {}, "seed -1 is out of range 0..4294967295"),
        ([2**32], {}, "seed 4294967296 is out of range 0..4294967295"),
        ([1.5], {}, "seed 1.5 is not a whole number"),
        ([3.0], {}, "seed 3.0 is not a whole number"),
        ([True], {}, "seed True is not a whole number"),
    ],
)
def test_generate_refuses_what_the_cli_refuses(gen, seeds, kwargs, message):
    # Before: trunc=nan drew black images, 2**32 and 1.5 were drawn (1.5 as seed 1), -1 was NumPy's
    # "expected non-negative integer" and batch_size=0 range()'s "arg 3 must not be zero".
    for call in (gen.generate, gen.flux, gen.generate_tensor):
        with pytest.raises(UserError) as info:
            call(seeds, **kwargs)
        assert message in str(info.value) and "\n" not in str(info.value)


def test_numpy_integer_seeds_draw_what_python_ints_draw(gen):
    np.testing.assert_array_equal(gen.generate(np.array([5, 7], dtype=np.uint32)), gen.generate([5, 7]))


def test_an_exported_model_refuses_the_same_seeds(tmp_path):
    from astrogan.web.onnx_generator import write_tiny_model

    onnx_gen = astrogan.load_generator(write_tiny_model(tmp_path / "model.onnx"))
    for bad, message in (([-1], "out of range"), ([2**32], "out of range"), ([2.5], "not a whole number")):
        with pytest.raises(UserError, match=message):
            onnx_gen.generate(bad)


def test_average_and_interpolation_refuse_a_batch_size_below_one(gen):
    # Before: average_image(batch_size=0) was range()'s "arg 3 must not be zero".
    from astrogan.sampling.average import average_image
    from astrogan.sampling.interpolate import interpolation_sheet

    for call in (
        lambda: average_image(gen, num=2, batch_size=0),
        lambda: interpolation_sheet(gen, rows=1, steps=2, batch_size=0),
    ):
        with pytest.raises(UserError, match="batch_size must be a whole number of at least 1"):
            call()


def test_class_labels_must_be_whole_numbers(tmp_path):
    # Before: labels=[1.7] drew class 1, labels=True class 1, and labels=2.0 was "'float' object is not iterable".
    cgen = _open(tmp_path, num_classes=3)
    for bad in ([1.7], 2.0, True, [0, True], "1"):
        with pytest.raises(UserError, match=r"is not a whole number: classes are 0\.\.2$"):
            cgen.generate([0, 1] if isinstance(bad, list) else [0], labels=bad)
    one = cgen.generate([4, 5], labels=np.int64(2))
    np.testing.assert_array_equal(one, cgen.generate([4, 5], labels=np.array([2, 2])))
    np.testing.assert_array_equal(one, cgen.generate([4, 5], labels=[2, 2]))
