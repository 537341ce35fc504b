"""`astrogan demo --quick`: the whole road end to end, writing every picture and an index.html that shows them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from astrogan.cli.main import main

pytestmark = pytest.mark.slow  # spawns processes or a browser


def test_quick_demo_writes_the_whole_page(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    page = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert page == out / "index.html"
    html = page.read_text()
    assert "trained for 8 of 8 planned steps" in html and "Training finished." in html  # --quick: 8 steps
    # 8 steps may leave fakes too faint to measure: then the page says so instead of a number.
    assert re.search(
        r"morphology distance \d+\.\dx the real-vs-real floor over 48 fakes|morphology could not", html
    )
    assert (out / "fidelity" / "metrics.json").is_file()
    for name in (
        "real-grid.png",
        "final-grid.png",
        "interpolation.png",
        "average-64.png",
        "progress.gif",
        "training-curves.png",
    ):
        assert (out / name).is_file(), name
        assert name in html
    for src in re.findall(r"src='([^']+)'", html):
        assert (out / src).is_file(), src  # every picture on the page exists
    with Image.open(out / "final-grid.png") as im:
        assert im.size == (8 * 66 + 2, 8 * 66 + 2)  # 8x8 grid of 64 px images with 2 px gaps
    with Image.open(out / "progress.gif") as im:
        assert im.n_frames >= 2
    runs = list((out / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "checkpoints" / "generator.safetensors").is_file()


def test_demo_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    assert "not an astrogan demo folder" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_a_demo_cut_short_by_its_time_cap_says_so():
    from astrogan.training.demo import DemoConfig, _how_it_stopped

    cfg = DemoConfig(num_train_steps=1100, max_train_minutes=7.5)
    assert _how_it_stopped(cfg, 1100) == "Training finished."
    assert "cut short by the 7.5-minute safety cap" in _how_it_stopped(cfg, 137)


def test_fidelity_line_reports_the_morphology_ratio(tmp_path):
    """The page's fidelity figure is measured: blob galaxies against themselves give a small ratio,
    blank fakes give none (they cannot be measured) rather than a made-up number."""
    import numpy as np

    from astrogan.training.demo import _fidelity

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]

    def blobs(n):
        out = np.empty((n, 32, 32, 3), np.uint8)
        for i in range(n):
            cy, cx, r = 16 + rng.normal(0, 1.5), 16 + rng.normal(0, 1.5), rng.uniform(2.5, 5)
            img = 220 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) + rng.normal(8, 3, (32, 32))
            out[i] = np.clip(img, 0, 255).astype(np.uint8)[:, :, None]
        return out

    line = _fidelity(blobs(160), blobs(80), tmp_path / "a", seed=0)
    ratio = float(re.search(r"morphology distance (\d+\.\d)x", line).group(1))
    assert 0 < ratio < 5 and "over 80 fakes" in line
    blank = _fidelity(blobs(160), np.zeros((80, 32, 32, 3), np.uint8), tmp_path / "b", seed=0)
    assert (
        blank.startswith("morphology could not be measured")
        or float(re.search(r"(\d+\.\d)x", blank).group(1)) > 3 * ratio
    )
