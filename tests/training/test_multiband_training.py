"""Training on 1, 3, 4 and 5 bands: every architecture and both augmentations, composites in every picture."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from astrogan.config import TrainConfig
from astrogan.data.ada import AdaptiveAugment
from astrogan.data.augment import DiffAugment
from astrogan.imaging import make_grid, to_uint8
from astrogan.sampling.generator import load_generator
from astrogan.sampling.post import DISPLAY_KEY
from astrogan.sampling.video import load_snapshot_bands, progress_gif
from astrogan.science import DisplaySpec, ScienceSpec, display_uint8
from astrogan.training.loop import train
from astrogan.training.stats import read_stats
from astrogan.utils.errors import UserError
from tests.helpers.marks import slow_cases
from tests.helpers.science_data import blob_flux, write_science_dataset
from tests.helpers.training import tiny_train_config

SIZE = 16
NUM_SEEDS = 4  # snapshot grid 2 x 2


@pytest.fixture(scope="module")
def ds5(tmp_path_factory):
    """16 five-band (u, g, r, i, z) images, two classes."""
    root = tmp_path_factory.mktemp("ds5")
    spec = write_science_dataset(
        root,
        blob_flux(16, SIZE, num_bands=5, seed=3),
        labels=[i % 2 for i in range(16)],
        label_names=["a", "b"],
    )
    return root, spec


@pytest.fixture(scope="module")
def ds4(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds4")
    return root, write_science_dataset(
        root, blob_flux(16, SIZE, num_bands=4, seed=4), bands=("g", "r", "i", "z")
    )


def _cfg(ds, tmp_path, arch, **kw) -> TrainConfig:
    settings = dict(image_size=SIZE, log_every=1, name=arch, num_snapshot_seeds=NUM_SEEDS)
    return tiny_train_config(ds, tmp_path / "runs", arch, **{**settings, **kw})


def _tiles(grid: np.ndarray, n: int, size: int, pad: int = 2) -> np.ndarray:
    """The n tiles of a make_grid sheet (square-ish, border), row-major: (n, size, size, C)."""
    ncols = math.ceil(math.sqrt(n))
    out = []
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = pad + r * (size + pad), pad + c * (size + pad)
        out.append(grid[y : y + size, x : x + size])
    return np.stack(out)


def _check_science_run(run, spec: ScienceSpec, num_bands: int):
    """generator.json and config.json carry the spec; the snapshot is the composite the generator draws."""
    meta = json.loads((run / "checkpoints" / "generator.json").read_text())
    carried = ScienceSpec.from_dict(meta["extra"]["science"])
    assert carried.bands == spec.bands and carried.stretch == spec.stretch and carried.bunit == spec.bunit
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"]["science"] == spec.to_dict()  # the manifest's, as it is
    assert ScienceSpec.from_dict(config["science"]) == carried  # what the run draws with
    if num_bands > 1:
        assert carried.display is not None  # fitted to the data when the dataset records none

    gen = load_generator(run, device="cpu")
    assert gen.science == carried and gen.channels == num_bands
    seeds = list(range(NUM_SEEDS))
    values = gen.generate_tensor(seeds)
    expected = display_uint8(values.numpy(), carried)  # the Lupton composite of the run's mapping
    snap = Image.open(run / "snapshots" / "step-0000002.png")
    assert snap.mode == ("RGB" if num_bands > 1 else "L")
    assert DISPLAY_KEY in snap.text
    tiles = _tiles(np.asarray(snap).reshape(snap.height, snap.width, -1), NUM_SEEDS, SIZE)
    # The saved generator has spectral norm folded in: the same pixels up to rounding.
    assert np.abs(tiles.astype(int) - expected.astype(int)).max() <= 2
    if num_bands > 1:
        first_three = to_uint8(values.numpy()[:, :3])
        assert np.abs(tiles.astype(int) - first_three.astype(int)).mean() > 10  # not the first three bands
        assert np.array_equal(gen.generate(seeds), expected)
    # The bands beside the snapshot: every band of the same images.
    bands, ncols = load_snapshot_bands(run / "snapshots" / "step-0000002.npz")
    assert bands.shape == (NUM_SEEDS, num_bands, SIZE, SIZE) and ncols == 2
    assert np.abs(bands - values.numpy()).max() <= 1 / 127.5 + 1e-3
    return gen


ARCH_CASES = [
    ("dcgan", {}),
    ("dcgan-conditional", {"num_classes": 2}),
    ("fastgan", {}),
    ("stylegan2", {}),
]


# FastGAN takes seconds here: slow.
@pytest.mark.parametrize(
    ("name", "extra"), slow_cases(ARCH_CASES, lambda c: c[0] == "fastgan"), ids=[c[0] for c in ARCH_CASES]
)
def test_every_architecture_trains_on_five_bands(ds5, tmp_path, name, extra):
    ds, spec = ds5
    arch = name.split("-")[0]
    run = train(_cfg(ds, tmp_path, arch, aug_prob=0.3, **extra), show_progress=False)
    stats = read_stats(run)
    assert [r["step"] for r in stats] == [1, 2]
    assert all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in stats)
    gen = _check_science_run(run, spec, 5)
    # seed N gives the same image alone or in any batch, in every band
    batch = gen.generate_tensor(list(range(6)), batch_size=4)
    for s in (0, 5):
        assert torch.allclose(gen.generate_tensor([s], batch_size=1)[0], batch[s], atol=1e-5)
    shuffled = gen.flux([5, 2], batch_size=1)
    assert np.allclose(shuffled[1], gen.flux([2])[0], rtol=1e-5, atol=1e-5)
    assert gen.flux([0]).shape == (1, 5, SIZE, SIZE) and gen.flux([0]).dtype == np.float32


@pytest.mark.parametrize(
    ("arch", "aug"),
    [("stylegan2", {"aug": "ada", "aug_prob": 0.6}), ("dcgan", {"aug": "diffaugment", "aug_prob": 0.6})],
    ids=["ada", "diffaugment"],
)
def test_augmentations_train_on_four_bands(ds4, tmp_path, arch, aug):
    ds, spec = ds4
    run = train(
        _cfg(ds, tmp_path, arch, aug_types=("color", "translation", "cutout"), **aug), show_progress=False
    )
    stats = read_stats(run)
    assert all(math.isfinite(r["loss_d"]) for r in stats) and stats[-1]["aug_prob"] > 0
    _check_science_run(run, spec, 4)


@pytest.mark.parametrize("num_bands", [1, 3])
def test_one_and_three_band_science_runs(tmp_path, num_bands):
    bands = ("r",) if num_bands == 1 else ("g", "r", "i")
    ds = tmp_path / "ds"
    spec = write_science_dataset(ds, blob_flux(8, SIZE, num_bands=num_bands, seed=5), bands=bands)
    run = train(_cfg(ds, tmp_path, "dcgan"), show_progress=False)
    gen = _check_science_run(run, spec, num_bands)
    if num_bands == 3:  # three named bands are drawn (i, r, g) through Lupton, not as the raw channels
        values = gen.generate_tensor([0, 1])
        assert not np.array_equal(gen.generate([0, 1]), to_uint8(values.numpy()))


def test_augmentations_keep_every_band_and_pass_gradients():
    x = (torch.rand(3, 5, SIZE, SIZE) * 2 - 1).requires_grad_(True)
    for aug in (DiffAugment(("color", "translation", "cutout"), 1.0), AdaptiveAugment(5, p=1.0)):
        torch.manual_seed(0)
        y = aug(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
        (g,) = torch.autograd.grad(y.sum(), x)
        assert g.abs().sum() > 0
    with pytest.raises(ValueError, match="5"):
        AdaptiveAugment(5)(x[:, :4])


def test_progress_video_redraws_science_snapshots(ds5, tmp_path):
    ds, _ = ds5
    run = train(_cfg(ds, tmp_path, "dcgan", num_train_steps=2, evaluate_every=1), show_progress=False)
    gif = progress_gif(run, tmp_path / "r.gif", band="z")
    with Image.open(gif) as im:
        assert im.n_frames == 3  # steps 0, 1, 2
        im.seek(2)
        frame = np.asarray(im.convert("RGB"))
    # The last frame is the z band of the kept snapshot, grey (below the step label).
    bands, ncols = load_snapshot_bands(run / "snapshots" / "step-0000002.npz")
    grey = make_grid(to_uint8(bands[:, 4:5]), ncols=ncols)[..., 0]
    assert np.array_equal(frame[20:, :, 0], grey[20:]) and np.array_equal(frame[..., 0], frame[..., 1])
    other = progress_gif(run, tmp_path / "c.gif", rgb="z,r,u")
    with Image.open(other) as im:
        im.seek(2)
        colour = np.asarray(im.convert("RGB"))
    assert np.abs(colour[20:].astype(int) - frame[20:].astype(int)).max() > 0
    with pytest.raises(UserError, match="unknown band 'q': this run has bands u, g, r, i, z"):
        progress_gif(run, tmp_path / "x.gif", band="q")


def test_progress_video_of_a_picture_run_refuses_band_views(tiny_dataset, tmp_path):
    run = train(_cfg(tiny_dataset, tmp_path, "dcgan"), show_progress=False)
    assert not list((run / "snapshots").glob("*.npz"))  # picture runs keep only their PNGs
    with pytest.raises(UserError, match="--rgb maps named bands"):
        progress_gif(run, tmp_path / "x.gif", rgb="2,1,0")
    with pytest.raises(UserError, match="missing"):
        progress_gif(run, tmp_path / "x.gif", band="0")
    snap = Image.open(run / "snapshots" / "step-0000002.png")
    assert snap.mode == "RGB"  # a plain RGB run: its own channels, as before


def test_a_recorded_colour_mapping_is_kept_and_a_band_mismatch_refused(tmp_path):
    ds = tmp_path / "ds"
    spec = write_science_dataset(ds, blob_flux(8, SIZE, num_bands=4, seed=6), bands=("g", "r", "i", "z"))
    manifest = json.loads((ds / "manifest.json").read_text())
    chosen = DisplaySpec(rgb=("z", "i", "g"), minimum={"z": 0.4, "i": 0.4, "g": 0.4}, stretch=5.0, q=4.0)
    manifest["science"]["display"] = chosen.to_dict()
    (ds / "manifest.json").write_text(json.dumps(manifest))
    run = train(_cfg(ds, tmp_path, "dcgan"), show_progress=False)
    gen = load_generator(run, device="cpu")
    assert gen.science.display == chosen  # the dataset's own mapping, not refitted
    values = gen.generate_tensor([0, 1]).numpy()
    assert np.array_equal(gen.generate([0, 1]), display_uint8(values, gen.science))

    three = ScienceSpec(
        bands=("g", "r", "i"), stretch=spec.stretch.__class__.fit(blob_flux(2, SIZE, num_bands=3))
    )
    manifest["science"] = three.to_dict()
    (ds / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"names 3 band\(s\) \(g, r, i\) but stores 4 channel\(s\)"):
        train(_cfg(ds, tmp_path, "dcgan", name="mismatch"), show_progress=False)
