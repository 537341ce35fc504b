"""`astrogan eval` on multi-band science data: float fakes (never uint8), per-band keys, colours, --band, FITS."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astrogan.science import BandStretch, ScienceSpec, fits_to_image_order, model_to_flux

BANDS = ("g", "r", "i")
SIZE = 16


def science_dataset(path, *, num: int = 40, seed: int = 0) -> ScienceSpec:
    """A 3-band science dataset written as the build writes one (H5Writer + manifest with `science`)."""
    from astrogan.data import artifact
    from astrogan.data.writer import H5Writer
    from astrogan.utils.atomic import write_json

    rng = np.random.default_rng(seed)
    yy, xx = np.indices((SIZE, SIZE), dtype=np.float64)
    flux = np.empty((num, 3, SIZE, SIZE), np.float32)
    for n in range(num):
        sig = rng.uniform(1.2, 2.5)
        prof = np.exp(-0.5 * ((yy - 7.5) ** 2 + (xx - 7.5) ** 2) / sig**2)
        for b, scale in enumerate((1.0, 1.8, 2.5)):  # redder bands brighter: g-r, r-i > 0
            flux[n, b] = rng.uniform(20, 60) * scale * prof + rng.normal(0, 0.2, (SIZE, SIZE))
    stretch = BandStretch.fit(flux, kind="asinh")
    spec = ScienceSpec(bands=BANDS, stretch=stretch, bunit="nanomaggy", pixel_scale_arcsec=0.396)
    values = np.moveaxis(stretch.forward(flux), 1, -1)  # (N, H, W, B) in [0, 1], image order
    path.mkdir(parents=True)
    writer = H5Writer(path / artifact.IMAGES_FILE, sizes=(SIZE,), channels=3, dtype="float32", labelled=False)
    blank = {"str": "", np.int32: -1, np.float64: float("nan")}
    for n in range(num):
        meta = tuple(
            blank[kind] if kind != "str" else f"synthetic-{n}" * (name == "source")
            for name, kind in artifact.META_FIELDS
        )
        writer.append({SIZE: values[n]}, label=None, meta=meta)
    digests = writer.finish(None)
    params = {"science": spec.to_dict(), "test": "eval-science"}
    write_json(
        path / artifact.MANIFEST_FILE,
        {
            "schema": artifact.SCHEMA_NAME,
            "schema_version": artifact.SCHEMA_VERSION,
            "content_hash": artifact.content_hash(params, digests),
            "num_images": num,
            "image_size": SIZE,
            "image_sizes": [SIZE],
            "datasets": {str(SIZE): artifact.dataset_name(SIZE, SIZE)},
            "channels": 3,
            "dtype": "float32",
            "value_range": artifact.value_range("float32"),
            "layout": "NHWC, rows top to bottom",
            "label_names": None,
            "stretch": None,
            "science": spec.to_dict(),
        },
    )
    return spec


@pytest.fixture(scope="module")
def science_run(tmp_path_factory):
    """(dataset dir, run dir, spec): a tiny DCGAN saved with the dataset's science spec in its extra."""
    import torch

    from astrogan.models import get_arch
    from astrogan.models.io import save_generator

    root = tmp_path_factory.mktemp("science")
    spec = science_dataset(root / "ds")
    torch.manual_seed(0)
    arch = get_arch("dcgan")
    cfg = arch.config_cls(image_size=SIZE, channels=3, z_dim=8, ngf=8, ndf=8)
    save_generator(
        arch.build_generator(cfg).eval(),
        arch="dcgan",
        config=cfg,
        out_dir=root / "run" / "checkpoints",
        extra={"science": spec.to_dict(), "step": 40, "run": "00007-sci"},
    )
    return root / "ds", root / "run", spec


def test_eval_measures_float_fakes_not_uint8(science_run):
    from astrogan.cli.evaluate import _generate
    from astrogan.data.dataset import open_dataset
    from astrogan.sampling.generator import load_generator

    ds_path, run, _ = science_run
    gen = load_generator(run, device="cpu")
    real = open_dataset(ds_path).images(SIZE)
    fake = _generate(gen, 12, trunc=1.0, batch_size=32, like=real)
    x = gen.generate_tensor(list(range(12)), batch_size=32).numpy()
    assert fake.dtype == np.float32 and fake.shape == (12, SIZE, SIZE, 3)
    assert np.array_equal(fake, np.clip((x + 1) / 2, 0, 1).transpose(0, 2, 3, 1))
    assert len(np.unique(fake)) > 1000  # a uint8 round trip would leave at most 256 values


@pytest.mark.slow  # heavy: evals with every metric per band
def test_eval_reports_bands_and_colours_and_writes_fits_fakes(science_run, tmp_path):
    from astropy.io import fits

    from astrogan.cli.main import main
    from astrogan.sampling.generator import load_generator

    ds_path, run, spec = science_run
    out, fakes = tmp_path / "report", tmp_path / "fakes"
    rc = main(
        [
            "eval",
            "--run",
            str(run),
            "--data",
            str(ds_path),
            "--num",
            "12",
            "--metrics",
            "spectrum,morphology,colours",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "c"),
            "--save-fakes",
            str(fakes),
            "--trunc",
            "0.9",
        ]
    )
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    for b in BANDS:
        for key in (
            f"spectrum_{b}_w1_mean",
            f"spectrum_{b}_floor_w1_mean",
            f"morph_{b}_w1_mean",
            f"morph_{b}_floor_w1_mean",
        ):
            assert key in doc["metrics"], key
    assert {"spectrum_w1_mean", "morph_w1_mean", "colour_g-r_w1", "colour_r-i_w1", "colour_g-i_w1"} <= set(
        doc["metrics"]
    )
    assert set(doc["colours"]["colours"]) == {"g-r", "r-i", "g-i"} and doc["colours"]["bunit"] == "nanomaggy"
    assert doc["colours"]["colours"]["g-i"]["median_real"] == pytest.approx(-2.5 * np.log10(1 / 2.5), abs=0.1)
    rows = [r["metric"] for r in doc["summary"]]
    assert "power spectrum W1, band r (mean over bins)" in rows and "colour g-i W1 (mag)" in rows
    assert doc["meta"]["bands"] == "g,r,i" and doc["meta"]["saved_fakes"] == str(fakes)
    # The fakes eval measured, as FITS cubes in the data's units: model_to_flux of the model's output, FITS order.
    files = sorted(p.name for p in fakes.iterdir())
    assert files == [f"seed{s:04d}.fits" for s in range(12)]
    gen = load_generator(run, device="cpu")
    flux = model_to_flux(gen.generate_tensor(list(range(12)), trunc=0.9, batch_size=32).numpy(), spec)
    for s in (0, 5, 11):
        with fits.open(fakes / f"seed{s:04d}.fits") as hdul:
            data, hdr = hdul[0].data, hdul[0].header
            assert data.dtype == np.dtype(">f4") and data.shape == (3, SIZE, SIZE)
            assert np.array_equal(data, fits_to_image_order(flux[s]))
            assert np.array_equal(data[:, 0], flux[s][:, -1])  # FITS row 0 is the image's bottom row
            assert hdr["SEED"] == s and hdr["TRUNC"] == pytest.approx(0.9) and hdr["STEP"] == 40
            assert hdr["RUNID"] == "00007-sci" and hdr["BANDS"] == "g,r,i" and hdr["BUNIT"] == "nanomaggy"
            assert hdr["PHYSICAL"] is True and hdr["ARCH"] == "dcgan"
    # An existing directory is refused before any work, in one line.
    assert (
        main(
            [
                "eval",
                "--run",
                str(run),
                "--data",
                str(ds_path),
                "--num",
                "4",
                "--metrics",
                "spectrum",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "r2"),
                "--save-fakes",
                str(fakes),
            ]
        )
        == 2
    )
    assert not (tmp_path / "r2").exists()


@pytest.mark.slow  # heavy: evals with every metric per band
def test_eval_band_restricts_and_default_metrics_add_colours(science_run, tmp_path, capsys):
    from astrogan.cli.main import main

    ds_path, run, _ = science_run
    out = tmp_path / "band"
    rc = main(
        [
            "eval",
            "--run",
            str(run),
            "--data",
            str(ds_path),
            "--num",
            "12",
            "--metrics",
            "spectrum,morphology",
            "--band",
            "r",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["meta"]["band"] == "r" and doc["spectrum"]["band"] == "r" and doc["morphology"]["band"] == "r"
    assert {k for k in doc["metrics"] if "_g_" in k or "_i_" in k} == set()
    assert "spectrum_r_w1_mean" in doc["metrics"] and "spectrum_w1_mean" not in doc["metrics"]
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--run",
                str(run),
                "--data",
                str(ds_path),
                "--num",
                "4",
                "--band",
                "y",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "unknown band 'y': the data have g, r, i" in " ".join(capsys.readouterr().err.split())
    # Without --metrics, a multi-band science dataset gets the colours too.
    out2 = tmp_path / "default"
    rc = main(
        [
            "eval",
            "--run",
            str(run),
            "--data",
            str(ds_path),
            "--num",
            "8",
            "--device",
            "cpu",
            "--out",
            str(out2),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert rc == 0
    doc2 = json.loads((out2 / "metrics.json").read_text())
    assert "colours" in doc2["metrics_requested"] and "colours" in doc2


def test_save_fakes_of_a_picture_dataset_are_the_pngs_measured(tmp_path):
    import torch
    from PIL import Image

    from astrogan.cli.main import main
    from astrogan.data.build import BuildOptions, build_dataset
    from astrogan.models import get_arch
    from astrogan.models.io import save_generator
    from astrogan.sampling.generator import load_generator

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(src / f"p{i}.png")
    build_dataset([src], tmp_path / "ds", options=BuildOptions(image_sizes=(16,)), show_progress=False)
    torch.manual_seed(0)
    arch = get_arch("dcgan")
    cfg = arch.config_cls(image_size=16, channels=3, z_dim=8, ngf=8, ndf=8)
    save_generator(
        arch.build_generator(cfg).eval(), arch="dcgan", config=cfg, out_dir=tmp_path / "run" / "checkpoints"
    )
    rc = main(
        [
            "eval",
            "--run",
            str(tmp_path / "run"),
            "--data",
            str(tmp_path / "ds"),
            "--num",
            "6",
            "--metrics",
            "spectrum,colours",
            "--device",
            "cpu",
            "--save-fakes",
            str(tmp_path / "fakes"),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert rc == 0
    pics = load_generator(tmp_path / "run", device="cpu").generate(list(range(6)))
    for s in range(6):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "fakes" / f"seed{s:04d}.png")), pics[s])
    doc = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert "not applicable" in doc["skipped"]["colours"]
    assert sorted(doc["metrics"]) == [
        "spectrum_floor_w1_mean",
        "spectrum_log_ratio_mean_abs",
        "spectrum_w1_mean",
    ]


def test_an_exported_model_is_measured_and_saved_as_floats_too(science_run, tmp_path):
    onnx_gen = pytest.importorskip("astrogan.web.onnx_generator")
    pytest.importorskip("onnx")
    from astropy.io import fits

    from astrogan.cli.main import main

    ds_path, _, spec = science_run
    model = onnx_gen.write_tiny_model(tmp_path / "model.onnx", image_size=SIZE, channels=3, num_classes=2)
    rc = main(
        ["eval", "--model", str(model), "--data", str(ds_path), "--num", "6", "--metrics", "colours"]
        + ["--out", str(tmp_path / "rep"), "--save-fakes", str(tmp_path / "fakes")]
    )
    assert rc == 0
    gen = onnx_gen.OnnxGenerator(model)
    seeds = list(range(6))
    x = gen.generate_float(gen.latents(seeds), labels=gen.default_labels(seeds))
    flux = model_to_flux(x, spec)  # model.json records no spec: the data's stretch is undone
    for s in seeds:
        with fits.open(tmp_path / "fakes" / f"seed{s:04d}.fits") as hdul:
            assert np.array_equal(hdul[0].data, fits_to_image_order(flux[s]))
            assert hdul[0].header["CLASS"] == s % 2 and hdul[0].header["SEED"] == s
    assert "colour_g-i_w1" in json.loads((tmp_path / "rep" / "metrics.json").read_text())["metrics"]
