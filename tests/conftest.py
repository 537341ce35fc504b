"""Shared test setup: quiet progress bars, few threads, the real data in ../shared/data, a tiny dataset and the CLI.

The layout mirrors src/astrogan (tests/data for astrogan.data, tests/web for astrogan.web, ...); the floor
modules (imaging, science, conditions, config), the code-quality checks and the end-to-end test sit at the top.
tests/ is a package: every module is ``tests.<area>.test_*``, so basenames may repeat across areas. Plain
helpers shared by several modules are in tests/helpers (``from tests.helpers.<module> import ...``); fixtures
are here, or in the conftest.py of the one area that uses them (tests/web, tests/data/sources).

Markers (pyproject.toml): ``slow`` on every test that starts a process (a subprocess, torchrun,
`astrogan serve`, spawned multiprocessing workers) or a browser, and on the heaviest of the rest (seconds
each; a parametrized test marks only its heavy cases, with tests.helpers.marks.slow_cases); ``gpu`` on tests
that need a CUDA device. ``pytest -m "not slow" -n 2`` is the fast loop (pytest-xdist, a file per worker);
the plain ``pytest`` (CI, the README) runs everything, in one process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.paths import SHARED_DATA

os.environ.setdefault("ASTROGAN_QUIET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-image dataset artifact of blob galaxies at 16 and 32 px, built with the real builder."""
    from PIL import Image

    from tests.helpers.datasets import build
    from tests.helpers.images import blob_images

    root = tmp_path_factory.mktemp("tinyds")
    raw = root / "raw"
    raw.mkdir()
    for i, img in enumerate(blob_images(32, 48, seed=1)):
        Image.fromarray(img).save(raw / f"blob-{i:03d}.png")
    out = root / "ds"
    build([raw], out, image_sizes=(32, 16), min_size_px=16)
    return out


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `astrogan ARGS...` in this process: `cli(args)` -> (exit code, stdout, stderr) of that call."""
    from astrogan.cli.main import main

    def run(args) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
