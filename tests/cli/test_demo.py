"""`astrogan demo --quick`: the whole road end to end, writing every picture and an index.html that shows them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from astrogan.cli.main import main

pytestmark = pytest.mark.slow  # spawns processes or a browser


def test_quick_demo_writes_the_whole_page(tmp_path, capsys):
    import json

    import torch

    out = tmp_path / "demo"
    threads = torch.get_num_threads()
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu", "--threads", "1"]) == 0
    assert torch.get_num_threads() == threads  # the caller's thread count is given back
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
    assert "on 1 thread<" in html or "on 1 thread " in html
    config = json.loads((runs[0] / "config.json").read_text())
    model = config["model"]
    assert config["train"]["mirror"] == "dihedral"  # the reals' eight views (demo.run DemoConfig.mirror)
    assert model["ngf"] == 16  # the CPU preset's DCGAN
    assert model["output_upsample"] == "bilinear"  # no checkerboard on the pixels (demo.run `_arch_settings`)


def test_demo_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    assert "not an astrogan demo folder" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_train_seed_changes_the_training_run_and_nothing_else(tmp_path, capsys):
    import json

    def quick(out: Path, *extra: str) -> tuple[str, int, bytes]:
        args = ["demo", "--quick", "--out", str(out), "--device", "cpu", "--threads", "1", *extra]
        assert main(args) == 0
        (run,) = (out / "runs").iterdir()
        manifest = json.loads((out / "dataset" / "manifest.json").read_text())
        seed = json.loads((run / "config.json").read_text())["train"]["seed"]
        return manifest["content_hash"], seed, (run / "checkpoints" / "generator.safetensors").read_bytes()

    hash_a, seed_a, weights_a = quick(tmp_path / "a", "--seed", "0")
    hash_b, seed_b, weights_b = quick(tmp_path / "b", "--seed", "0", "--train-seed", "3")
    assert hash_a == hash_b  # the same pictures, built the same way
    assert (seed_a, seed_b) == (0, 3) and weights_a != weights_b


def test_a_rerun_in_a_demo_folder_builds_only_its_own_raw_pictures(tmp_path, capsys):
    import json

    out = tmp_path / "demo"
    left = out / "raw" / "hubble-xdf"  # what an earlier, larger demo in this folder left behind
    left.mkdir(parents=True)
    (out / ".astrogan-demo").touch()
    for i in range(24, 40):
        Image.new("RGB", (80, 80), (i, i, i)).save(left / f"hxdf-{i:04d}.png")
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu", "--threads", "1"]) == 0
    assert (
        json.loads((out / "dataset" / "manifest.json").read_text())["num_images"] == 48
    )  # 24 crops + 24 Sérsic
    assert len(list(left.iterdir())) == 24
    assert "on 48 real and synthetic galaxy pictures" in (out / "index.html").read_text()
