"""Science images out: FITS cubes in physical units (round trip, orientation, header), composites, band views."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from astropy.io import fits
from PIL import Image
from torch import nn

from astrogan.cli.main import main
from astrogan.conditions import CondSpec
from astrogan.config import TrainConfig
from astrogan.imaging import to_uint8
from astrogan.sampling.average import average_image
from astrogan.sampling.fits_out import generate_fits
from astrogan.sampling.generator import Generator, load_generator
from astrogan.sampling.post import DISPLAY_KEY, make_view
from astrogan.science import BandStretch, ScienceSpec, display_uint8
from astrogan.training import loop as loop_mod
from astrogan.training.loop import train
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import latents_for_seeds
from tests.helpers.processes import BLOCK_TORCH
from tests.helpers.science_data import blob_flux, write_science_dataset
from tests.helpers.training import tiny_train_config

SIZE = 16
BANDS = ("u", "g", "r", "i", "z")
STRETCH = BandStretch(kind="asinh", a=0.1, black=(0.0, -0.5, 0.0, 0.2, 0.0), white=(1.0, 2.0, 4.0, 8.0, 16.0))


class TableGenerator(nn.Module):
    """A stand-in network: for the latent of seed k it returns table[k] (N, C, H, W) in [-1, 1]."""

    def __init__(
        self, table: torch.Tensor, *, num_classes: int = 0, cond_spec: CondSpec | None = None
    ) -> None:
        super().__init__()
        self.z_dim, self.image_size, self.channels = 8, table.shape[-1], table.shape[1]
        self.num_classes, self.cond_spec = num_classes, cond_spec
        self.register_buffer("table", table)
        self.register_buffer("keys", torch.from_numpy(latents_for_seeds(list(range(len(table))), self.z_dim)))

    def forward(self, z, c=None, *, trunc=1.0):
        idx = torch.cdist(z / trunc, self.keys).argmin(dim=1)  # exactly the seed's latent: distance 0
        return self.table[idx]


def _stamps(num: int = 3) -> np.ndarray:
    """Fluxes inside each band's [black, white], FITS order; a marker at row 0, column 0 (bottom-left) = white."""
    rng = np.random.default_rng(7)
    black, white = np.array(STRETCH.black), np.array(STRETCH.white)
    unit = rng.uniform(0.02, 0.6, (num, len(BANDS), SIZE, SIZE))
    flux = (black[None, :, None, None] + unit * (white - black)[None, :, None, None]).astype(np.float32)
    flux[:, :, 0, 0] = white  # the marker, the brightest pixel of every band
    return flux


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """(input flux FITS order, spec, training tensor (N, B, H, W) in [-1, 1] through the loop's own loader)."""
    ds = tmp_path_factory.mktemp("rt")
    flux = _stamps()
    spec = write_science_dataset(
        ds, flux, bands=BANDS, stretch=STRETCH, bunit="nJy", pixel_scale_arcsec=0.168
    )
    _, images, _, _ = loop_mod._load_images(TrainConfig(data=str(ds), image_size=SIZE), torch.device("cpu"))
    return flux, spec, loop_mod._to_float(images)


def _gen(table: torch.Tensor, spec: ScienceSpec | None, **kw) -> Generator:
    extra = {"run": "00007-stub", "step": 1234}
    if spec is not None:
        extra["science"] = spec.to_dict()
    meta = {"arch": "stub", "extra": extra}
    return Generator(TableGenerator(table, **kw), meta, device=torch.device("cpu"))


def test_fits_round_trip_undoes_the_stretch_and_keeps_the_marker(round_trip, tmp_path):
    flux, spec, tensor = round_trip
    gen = _gen(tensor, spec)
    paths = generate_fits(gen, [2, 0, 1], tmp_path, trunc=1.0, batch_size=2)
    assert [p.name for p in paths] == ["seed0002.fits", "seed0000.fits", "seed0001.fits"]
    span = (np.array(STRETCH.white) - np.array(STRETCH.black))[:, None, None]
    worst = 0.0
    for seed in (0, 1, 2):
        with fits.open(tmp_path / f"seed{seed:04d}.fits") as hdul:
            data, header = hdul[0].data, hdul[0].header
        assert data.dtype == np.dtype(">f4") and data.shape == (5, SIZE, SIZE)
        worst = max(worst, float((np.abs(data - flux[seed]) / span).max()))
        # the marker is still at FITS row 0, column 0 of every band, as DS9 shows it: bottom-left
        assert np.array_equal(data[:, 0, 0], np.array(STRETCH.white, np.float32))
        assert all(np.unravel_index(data[b].argmax(), data[b].shape) == (0, 0) for b in range(5))
        assert header["BANDS"] == "u,g,r,i,z" and header["BAND4"] == "i"
        assert header["BUNIT"] == "nJy" and header["PIXSCALE"] == pytest.approx(0.168)
        assert header["RUNID"] == "00007-stub" and header["STEP"] == 1234 and header["ARCH"] == "stub"
        assert header["SEED"] == seed and header["TRUNC"] == 1.0 and header["PHYSICAL"] is True
        assert "CLASS" not in header and "COND1" not in header
    assert (
        worst < 1e-6
    )  # measured 6e-8: float32 rounding of the stored values, through the inverse stretch's slope
    # The Python API gives the same fluxes, image order (the marker at the bottom row).
    api = gen.flux([1])
    assert np.allclose(api[0, :, ::-1], flux[1], rtol=0, atol=5e-6 * span.max())


def test_marker_sits_bottom_left_in_every_png(round_trip, tmp_path):
    _, spec, tensor = round_trip
    gen = _gen(tensor, spec)
    bottom_left = (SIZE - 1, 0)
    for band in BANDS:
        grey = gen.with_view(band=band).generate([0, 1])
        assert grey.shape == (2, SIZE, SIZE, 1)
        for img in grey[..., 0]:
            assert img[bottom_left] == 255 and np.unravel_index(img.argmax(), img.shape) == bottom_left
            assert img[0, 0] < 255  # not flipped: the top-left is an ordinary pixel
    colour = gen.generate([0, 1, 2]).astype(int).sum(-1)
    for img in colour:
        assert img[bottom_left] == img.max() > img[0, 0]
    mean = average_image(gen.with_view(band="i"), num=3, batch_size=2)[..., 0]
    assert mean[bottom_left] == 255 and mean[0, 0] < 255
    # through the CLI's picture writer as well (what `generate --band r` writes)
    from astrogan.cli.sample import _write_seeds

    _write_seeds(
        gen,
        [2],
        trunc=1.0,
        labels=None,
        cond=None,
        batch_size=4,
        out=tmp_path,
        grid=False,
        view=make_view(spec, 5, band="r"),
    )
    with Image.open(tmp_path / "seed0002.png") as im:
        png = np.asarray(im)
        assert im.mode == "L" and json.loads(im.text[DISPLAY_KEY])["band"] == "r"
    assert png[bottom_left] == 255 and np.unravel_index(png.argmax(), png.shape) == bottom_left


def test_pictures_are_composites_and_views_are_checked(round_trip):
    _, spec, tensor = round_trip
    gen = _gen(tensor, spec)
    values = gen.generate_tensor([0, 1, 2]).numpy()
    assert np.array_equal(gen.generate([0, 1, 2]), display_uint8(values, spec))  # Lupton (i, r, g)
    swapped = gen.with_view(rgb="z,r,u").generate([0, 1, 2])
    assert np.array_equal(swapped, display_uint8(values, spec.with_rgb(("z", "r", "u"))))
    assert not np.array_equal(swapped, gen.generate([0, 1, 2]))
    assert np.array_equal(gen.with_view(band="g").generate([1])[0], to_uint8(values[1:2, 1:2])[0])
    assert gen.view.describe()["rgb"] == ["i", "r", "g"] and gen.with_view(rgb="z,r,u").view.describe()[
        "rgb"
    ] == [
        "z",
        "r",
        "u",
    ]
    with pytest.raises(UserError, match="unknown band 'y': this run has bands u, g, r, i, z"):
        gen.with_view(band="y")
    with pytest.raises(UserError, match="unknown band.s. y: --rgb takes three of the bands u,g,r,i,z"):
        gen.with_view(rgb="y,r,g")
    with pytest.raises(UserError, match="three of the bands"):
        gen.with_view(rgb="i,r")
    with pytest.raises(UserError, match="not both"):
        gen.with_view(rgb="i,r,g", band="r")


def test_plain_runs_keep_their_pixels_and_write_display_fits(tmp_path):
    table = torch.rand(3, 3, SIZE, SIZE) * 2 - 1
    gen = _gen(table, None, num_classes=3)
    assert gen.science is None
    assert np.array_equal(gen.generate([0, 1, 2]), to_uint8(table.numpy()))  # exactly as before
    assert np.array_equal(gen.with_view(band="1").generate([2])[0], to_uint8(table[2:3, 1:2].numpy())[0])
    with pytest.raises(UserError, match="--rgb maps named bands"):
        gen.with_view(rgb="2,1,0")
    with pytest.raises(UserError, match="channels 0, 1, 2"):
        gen.with_view(band="r")
    generate_fits(gen, [1, 2], tmp_path, labels=[0, 2])
    with fits.open(tmp_path / "seed0002.fits") as hdul:
        data, header = hdul[0].data, hdul[0].header
    assert header["BUNIT"] == "display" and header["PHYSICAL"] is False and header["BANDS"] == "R,G,B"
    assert header["CLASS"] == 2 and header["SEED"] == 2
    assert np.allclose(
        data[:, ::-1], (table[2].numpy() + 1) / 2, atol=1e-7
    )  # FITS order: row 0 at the bottom


def test_fits_header_carries_class_and_conditions(round_trip, tmp_path):
    _, spec, tensor = round_trip
    cond_spec = CondSpec(
        names=("sersic_n", "half_light_radius_px"),
        units=("", "px"),
        low=(0.5, 2.0),
        high=(6.0, 10.0),
        mean=(2.0, 5.0),
        std=(1.0, 2.0),
    )
    gen = _gen(tensor, spec, cond_spec=cond_spec)
    generate_fits(gen, [0, 1], tmp_path, trunc=0.5, cond={"sersic_n": 4.0})
    with fits.open(tmp_path / "seed0001.fits") as hdul:
        header = hdul[0].header
    assert header["CNAME1"] == "sersic_n" and header["COND1"] == 4.0
    assert header["CNAME2"] == "half_light_radius_px" and header["COND2"] == 5.0  # the training mean
    assert header["TRUNC"] == 0.5 and "px" in header.comments["COND2"]
    gen_cls = Generator(
        TableGenerator(tensor, num_classes=4),
        {"arch": "stub", "extra": {"science": spec.to_dict(), "label_names": list("abcd")}},
        device=torch.device("cpu"),
    )
    generate_fits(gen_cls, [2, 1], tmp_path / "cls")
    with fits.open(tmp_path / "cls" / "seed0001.fits") as hdul:
        assert hdul[0].header["CLASS"] == 1 and hdul[0].header["CLASSNAM"] == "b"


def test_average_of_a_science_run_is_the_mean_flux(round_trip):
    _, spec, tensor = round_trip
    gen = _gen(tensor, spec)
    mean_flux = gen.flux([0, 1, 2]).astype(np.float64).mean(0)
    values = spec.stretch.forward(mean_flux[None]) * 2.0 - 1.0
    assert np.array_equal(average_image(gen, num=3, batch_size=2), display_uint8(values, spec)[0])


def test_a_generator_whose_spec_does_not_fit_its_channels_is_refused(round_trip):
    _, spec, tensor = round_trip
    with pytest.raises(UserError, match="draws 4 channel.s. but its science spec names 5"):
        _gen(tensor[:, :4], spec)


@pytest.fixture(scope="module")
def run5(tmp_path_factory):
    root = tmp_path_factory.mktemp("run5")
    write_science_dataset(root / "ds", blob_flux(8, SIZE, num_bands=5, seed=2))
    return train(tiny_train_config(root / "ds", root / "runs", image_size=SIZE), show_progress=False)


def test_cli_generate_fits_and_pictures(run5, tmp_path, capsys):
    out = tmp_path / "gen"
    assert (
        main(["generate", "--run", str(run5), "--seeds", "0-2", "--format", "fits", "--out", str(out)]) == 0
    )
    gen = load_generator(run5, device="cpu")
    flux = gen.flux([0, 1, 2])
    for seed in range(3):
        with fits.open(out / f"seed{seed:04d}.fits") as hdul:
            data, header = hdul[0].data, hdul[0].header
        assert np.allclose(data, flux[seed, :, ::-1], rtol=1e-5, atol=1e-6)
        assert header["RUNID"] == run5.name and header["STEP"] == 2 and header["ARCH"] == "dcgan"
        assert header["SEED"] == seed and header["BUNIT"] == "nJy" and header["BANDS"] == "u,g,r,i,z"
    assert not list(out.glob("*.png"))
    args = ["generate", "--run", str(run5), "--seeds", "0-1", "--out", str(out), "--rgb", "z,i,u", "--grid"]
    assert main(args) == 0
    with Image.open(out / "seed0001.png") as im:
        assert im.mode == "RGB" and json.loads(im.text[DISPLAY_KEY])["rgb"] == ["z", "i", "u"]
        png = np.asarray(im)
    expected = display_uint8(gen.generate_tensor([1]).numpy(), gen.science.with_rgb(("z", "i", "u")))[0]
    assert np.abs(png.astype(int) - expected.astype(int)).max() <= 1
    assert (
        main(
            [
                "interpolate",
                "--run",
                str(run5),
                "--rows",
                "2",
                "--steps",
                "2",
                "--out",
                str(out / "i.png"),
                "--band",
                "g",
            ]
        )
        == 0
    )
    with Image.open(out / "i.png") as im:
        assert im.mode == "L" and json.loads(im.text[DISPLAY_KEY])["band"] == "g"
    assert (
        main(["average", "--run", str(run5), "--num", "4", "--out", str(out / "a.png"), "--rgb", "i,r,g"])
        == 0
    )
    with Image.open(out / "a.png") as im:
        assert im.mode == "RGB"
    capsys.readouterr()
    for bad, msg in (
        (["--band", "y"], "unknown band 'y': this run has bands u, g, r, i, z"),
        (["--rgb", "y,r,g"], "unknown band(s) y"),
        (["--format", "tiff"], "--format must be png or fits"),
        (["--format", "fits", "--band", "r"], "FITS cubes hold every band"),
    ):
        assert main(["generate", "--run", str(run5), "--seeds", "0", "--out", str(out), *bad]) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err


@pytest.mark.slow  # starts a process
def test_generate_fits_from_an_exported_model_needs_no_torch(tmp_path):
    from astrogan.web.onnx_generator import OnnxGenerator, write_tiny_model

    spec = ScienceSpec(bands=BANDS, stretch=STRETCH, bunit="nJy", pixel_scale_arcsec=0.2)
    model = write_tiny_model(tmp_path / "model.onnx", z_dim=8, image_size=SIZE, channels=5, science=spec)
    out = tmp_path / "gen"
    script = BLOCK_TORCH + textwrap.dedent(f"""
        from astrogan.cli.main import main
        args = ["generate", "--model", {str(model)!r}, "--seeds", "3-4", "--out", {str(out)!r}]
        assert main(args + ["--format", "fits"]) == 0
        assert main(args + ["--band", "z"]) == 0
        assert "torch" not in sys.modules
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
    onnx = OnnxGenerator(model)
    values = onnx.generate_float(onnx.latents([4]))
    with fits.open(out / "seed0004.fits") as hdul:
        data, header = hdul[0].data, hdul[0].header
    assert np.allclose(data, spec.stretch.inverse((values[0] + 1) / 2)[:, ::-1], rtol=1e-6, atol=1e-6)
    assert header["BANDS"] == "u,g,r,i,z" and header["SEED"] == 4 and header["BUNIT"] == "nJy"
    with Image.open(out / "seed0004.png") as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), to_uint8(values[:, 4:5])[0, ..., 0])
