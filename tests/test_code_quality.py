"""Whole-tree checks: the layering contracts of DESIGN.md (import-linter), ruff, and a light `import astrogan`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.slow  # each test runs a tool or an interpreter in a child process


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed")
    proc = subprocess.run(
        [exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_ruff_is_clean():
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).exists():
        pytest.skip("ruff is not installed")
    proc = subprocess.run(
        [exe, "check", "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_import_astrogan_is_light():
    code = (
        "import sys, astrogan, astrogan.cli.main; print(sorted(m for m in ('torch', 'h5py', 'galsim', "
        "'onnxruntime', 'fastapi', 'matplotlib') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# Packages mypy passes cleanly on; add one when it does (DESIGN lists mypy, and the package ships py.typed).
TYPED = [
    "astrogan.utils",
    "astrogan.imaging",
    "astrogan.demo",
    "astrogan.conditions",
    "astrogan.science",
    "astrogan.data.cosmos",
    "astrogan.data.synth_galaxies",
    "astrogan.data.science_inputs",
    "astrogan.data.pipeline",
    "astrogan.data.build",
    "astrogan.data.dataset",
    "astrogan.data.writer",
    "astrogan.data.provenance",
    "astrogan.data.artifact",
    "astrogan.cli.dataset",
    "astrogan.metrics.bands",
    "astrogan.metrics.colours",
    "astrogan.metrics.plots",
    "astrogan.sampling.post",
    "astrogan.sampling.fits_out",
    "astrogan.sampling.video",
    "astrogan.sampling.average",
    "astrogan.sampling.interpolate",
    "astrogan.data.labels",
    "astrogan.data.review",
    "astrogan.data.review_flags",
    "astrogan.data.review_report",
    "astrogan.metrics.conditioning",
    "astrogan.metrics.composition",
    "astrogan.downstream",
    "astrogan.web",
    "astrogan.config",
    "astrogan.data.ada",
    "astrogan.data.augment",
    "astrogan.models.stylegan2",
    "astrogan.training.losses",
    "astrogan.training.state",
    "astrogan.training.resume",
    "astrogan.training.signals",
    "astrogan.models.io",
    "astrogan.sampling.features",
    "astrogan.cli.inspect",
    "astrogan.metrics.base",
    "astrogan.metrics.compute",
    "astrogan.metrics.distances",
    "astrogan.metrics.fid",
    "astrogan.metrics.memorization",
    "astrogan.metrics.prdc",
    "astrogan.metrics.protocols",
    "astrogan.metrics.report",
    "astrogan.metrics.spectrum",
]


def test_mypy_is_clean_on_the_typed_packages():
    exe = shutil.which("mypy") or str(Path(sys.executable).with_name("mypy"))
    if not Path(exe).exists():
        pytest.skip("mypy is not installed")
    args = [exe, "--config-file", str(ROOT / "pyproject.toml")]
    for pkg in TYPED:
        args += ["-p", pkg]  # -p also takes a single module
    proc = subprocess.run(args, cwd=ROOT / "src", capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]


MAX_FUNCTION_LINES = 120  # issue #18: a function longer than this is split into named steps


def test_no_function_in_src_reaches_the_size_limit():
    import ast

    sizes = []
    for path in sorted((ROOT / "src" / "astrogan").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sizes.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.name}"))
    too_long = [f"{where} ({n} lines)" for n, where in sizes if n >= MAX_FUNCTION_LINES]
    assert not too_long, "split these into named steps: " + ", ".join(too_long)
