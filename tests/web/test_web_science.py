"""The web app serving a multi-band science export: Lupton composites, one band in grey, FITS cubes on request."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
from astropy.io import fits
from fastapi.testclient import TestClient
from PIL import Image

from astrogan.conditions import CondSpec
from astrogan.export import export_generator
from astrogan.imaging import make_grid, to_uint8
from astrogan.science import display_uint8, fits_to_image_order, model_to_flux
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import latents_for_seeds
from astrogan.web.app import create_app
from astrogan.web.onnx_generator import OnnxGenerator, write_tiny_model
from astrogan.web.settings import ServeSettings
from astrogan.web.worker import fill_to
from tests.helpers.processes import BLOCK_TORCH
from tests.helpers.runs import make_science_run, science_spec
from tests.helpers.web import app_client, png_array

SPEC = science_spec()
SIZE = 16


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A real 4-band DCGAN export (ONNX, parity-checked) of a stub science run: (model path, run name)."""
    root = tmp_path_factory.mktemp("sci")
    run, _ = make_science_run(root, SPEC)
    result = export_generator(run, fmt="onnx")
    return result.model_path, run.name


@pytest.fixture()
def client(export, tmp_path):
    return app_client(export[0], tmp_path, pool_size=4, low_water=1)


def onnx_images(model_path, seeds, trunc: float = 1.0) -> np.ndarray:
    """The exported graph's output for `seeds`, straight from ONNX Runtime: float32 (N, 4, H, W) in [-1, 1]."""
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    z = latents_for_seeds(list(seeds), 8)
    return sess.run(["images"], {"z": z, "trunc": np.full(len(z), trunc, np.float32)})[0]


def _error(r) -> str:
    assert set(r.json()) == {"error"} and "\n" not in r.json()["error"], r.text
    return r.json()["error"]


def test_png_is_the_lupton_composite_of_the_onnx_output(export, client):
    ref = onnx_images(export[0], [11], trunc=0.8)
    r = client.get("/api/image.png", params={"seed": 11, "trunc": 0.8})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.headers["vary"] == "Accept"
    img = png_array(r.content)
    expect = display_uint8(ref, SPEC)[0]
    assert img.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(img, expect)
    assert len(np.unique(img)) > 20 and 5 < img.mean() < 250  # a picture, neither black nor burnt out


def test_band_shows_that_band_alone_in_grey(export, client):
    ref = onnx_images(export[0], [5])
    r = client.get("/api/image.png", params={"seed": 5, "band": "r"})
    assert r.status_code == 200
    grey = png_array(r.content)
    assert grey.shape == (SIZE, SIZE)  # a one-channel PNG
    np.testing.assert_array_equal(grey, display_uint8(ref, SPEC, band="r")[0, :, :, 0])
    np.testing.assert_array_equal(grey, to_uint8(ref[:, 1:2])[0, :, :, 0])  # r is plane 1, on its own scale
    by_index = client.get("/api/image.png", params={"seed": 5, "band": 1})
    assert by_index.content == r.content and by_index.headers["etag"] == r.headers["etag"]
    assert not np.array_equal(
        grey, png_array(client.get("/api/image.png", params={"seed": 5, "band": "z"}).content)
    )


def test_rgb_overrides_the_colour_mapping(export, client):
    ref = onnx_images(export[0], [5])
    plain = client.get("/api/image.png", params={"seed": 5})
    other = client.get("/api/image.png", params={"seed": 5, "rgb": "z,i,r"})
    assert other.status_code == 200 and other.headers["etag"] != plain.headers["etag"]
    assert not np.array_equal(png_array(other.content), png_array(plain.content))
    np.testing.assert_array_equal(
        png_array(other.content), display_uint8(ref, SPEC.with_rgb(("z", "i", "r")))[0]
    )
    same = client.get("/api/image.png", params={"seed": 5, "rgb": " i, r ,g"})  # the model's own mapping
    assert same.headers["etag"] == plain.headers["etag"] and same.content == plain.content
    mean_g = client.get("/api/image.png", params={"seed": 5, "rgb": "z,,g"})
    np.testing.assert_array_equal(
        png_array(mean_g.content), display_uint8(ref, SPEC.with_rgb(("z", "", "g")))[0]
    )


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"band": "y"}, "band: 'y' is not a band of this model (g, r, i, z)"),
        ({"band": "4"}, "not a band"),
        ({"rgb": "i,r"}, "rgb: give three of the bands g,r,i,z"),
        ({"rgb": "q,r,g"}, "e.g. rgb=i,r,g; got 'q,r,g'"),
        ({"rgb": ",r,g"}, "rgb: give three"),
        ({"rgb": "i,r,g,z"}, "rgb: give three"),
        ({"rgb": "i,r,g", "band": "r"}, "give one"),
        ({"rgb": "i," * 101}, "rgb: String should have at most 200 characters"),
        ({"band": "r" * 41}, "band: String should have at most 40 characters"),
        ({"band": "r", "format": "fits"}, "a FITS cube holds every band"),
    ],
)
def test_bad_band_or_rgb_is_a_one_line_422(client, params, words):
    for path in ("/api/image.png", "/api/grid", "/api/interpolate"):
        if "format" in params and path != "/api/image.png":
            continue
        extra = {"from": 1, "to": 2, "steps": 2} if path == "/api/interpolate" else {"seed": 3}
        r = client.get(path, params={**extra, **params})
        assert r.status_code == 422, (path, r.text)
        assert words in _error(r), (path, r.text)


@pytest.mark.parametrize("how", ["format", "accept", "application/fits"])
def test_fits_cube_in_physical_units_flipped_once_with_its_header(export, client, how):
    model_path, run_name = export
    params: dict = {"seed": 42, "trunc": 0.7}
    headers = {}
    if how == "format":
        params["format"] = "fits"
    else:
        headers["Accept"] = "image/fits" if how == "accept" else "application/fits, image/png;q=0.9"
    r = client.get("/api/image.png", params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/fits" and r.headers["vary"] == "Accept"
    assert r.headers["content-disposition"] == 'attachment; filename="astrogan-seed42.fits"'
    with fits.open(io.BytesIO(r.content)) as hdul:
        data, hdr = hdul[0].data, hdul[0].header
        assert data.dtype.kind == "f" and data.dtype.itemsize == 4 and data.shape == (4, SIZE, SIZE)
        assert hdr["BANDS"] == "g,r,i,z" and [hdr[f"BAND{i}"] for i in (1, 2, 3, 4)] == list(SPEC.bands)
        assert hdr["BUNIT"] == "nanomaggy" and hdr["PIXSCALE"] == pytest.approx(0.262)
        assert hdr["RUNID"] == run_name and hdr["STEP"] == 1200 and hdr["SURVEY"] == "stub"
        assert hdr["SEED"] == 42 and hdr["TRUNC"] == pytest.approx(0.7) and hdr["STRETCH"] == "asinh"
        assert hdr["PHYSICAL"] is True and hdr["ARCH"] == "dcgan"
        assert "CLASS" not in hdr and "COND1" not in hdr
        data = np.asarray(data, dtype=np.float32)
    ref = onnx_images(model_path, [42], trunc=0.7)
    flux = model_to_flux(ref, SPEC)[0]  # image order: row 0 on top
    np.testing.assert_array_equal(data, flux[:, ::-1, :])  # FITS order: row 0 at the bottom
    # The marker: the picture's top row is the cube's last row (and the rows differ, so a missed flip shows).
    np.testing.assert_array_equal(data[:, SIZE - 1, :], flux[:, 0, :])
    assert not np.allclose(flux[:, 0, :], flux[:, SIZE - 1, :])
    # In the data's units: the stretch, applied again, gives back the network's values.
    again = SPEC.stretch.forward(fits_to_image_order(data)[None]) * 2 - 1
    np.testing.assert_allclose(again, np.clip(ref, -1, 1), atol=2e-5)
    assert data.min() >= min(SPEC.stretch.black) and data.max() <= max(SPEC.stretch.white)


def test_fits_is_cached_by_etag_like_pngs(client):
    first = client.get("/api/image.png", params={"seed": 9, "format": "fits"})
    png = client.get("/api/image.png", params={"seed": 9})
    assert first.headers["etag"] != png.headers["etag"] and "max-age" in first.headers["cache-control"]
    again = client.get("/api/image.png", params={"seed": 9}, headers={"Accept": "image/fits"})
    assert again.headers["etag"] == first.headers["etag"] and again.content == first.content
    cached = client.get(
        "/api/image.png",
        params={"seed": 9, "format": "fits"},
        headers={"If-None-Match": first.headers["etag"]},
    )
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["vary"] == "Accept"


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        ("*/*", "png"),
        ("image/*", "png"),
        ("text/html,application/xhtml+xml,image/avif,image/webp,*/*;q=0.8", "png"),  # a browser
        ("image/fits;q=0.5, image/png", "png"),
        ("image/fits;q=0.5, */*", "png"),  # a wildcard takes PNG, at the higher q
        ("image/fits;q=0.9, image/*;q=0.5", "fits"),
        ("image/png, image/fits", "fits"),
        ("image/fits;q=0", "png"),
        ("image/fits;q=nonsense", "png"),
    ],
)
def test_accept_header_chooses_fits_only_when_it_names_it_first(client, accept, kind):
    r = client.get("/api/image.png", params={"seed": 1}, headers={"Accept": accept})
    assert r.status_code == 200 and r.headers["content-type"] == f"image/{kind}"
    explicit = client.get(
        "/api/image.png", params={"seed": 1, "format": "png"}, headers={"Accept": "image/fits"}
    )
    assert explicit.headers["content-type"] == "image/png"  # format= wins over Accept


def test_grid_and_animation_show_composites(export, client):
    ref = onnx_images(export[0], [3, 4])
    grid = client.get("/api/grid", params={"seeds": "3,4", "cols": 2})
    assert grid.status_code == 200
    np.testing.assert_array_equal(
        png_array(grid.content), make_grid(display_uint8(ref, SPEC), ncols=2, pad_px=2)
    )
    refused = client.get("/api/grid", params={"seeds": "3,4", "format": "fits"})
    assert refused.status_code == 422 and "/api/image.png?seed=N&format=fits" in _error(refused)
    fits_only = client.get("/api/grid", params={"seeds": "3,4"}, headers={"Accept": "image/fits"})
    assert fits_only.status_code == 406 and "image/png" in _error(fits_only)
    anim = client.get("/api/interpolate", params={"from": 3, "to": 4, "steps": 2})
    frames = Image.open(io.BytesIO(anim.content))
    for i in range(2):
        frames.seek(i)
        np.testing.assert_array_equal(np.asarray(frames.convert("RGB")), display_uint8(ref, SPEC)[i])
    grey = Image.open(
        io.BytesIO(client.get("/api/interpolate", params={"from": 3, "to": 4, "band": "g"}).content)
    )
    np.testing.assert_array_equal(np.asarray(grey.convert("RGB"))[..., 0], to_uint8(ref[:1, :1])[0, :, :, 0])


def test_page_shows_bands_colours_and_a_fits_link_for_the_pooled_picture(export, client, tmp_path):
    app = client.app
    fill_to(app.state.pool, app.state.generator, app.state.settings, target=2)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["x-astrogan-source"] == "pool"
    text = page.text
    assert "<dt>Bands</dt><dd>g, r, i, z; FITS cubes in nanomaggy, 0.262 arcsec/px</dd>" in text
    assert "red = i, green = r, blue = g (Lupton et al. 2004 colour composite)" in text
    assert "4 bands" in text
    seed = int(page.headers["x-astrogan-seed"])
    pooled = png_array(base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', text).group(1)))
    ref = onnx_images(export[0], [seed])
    np.testing.assert_array_equal(pooled, display_uint8(ref, SPEC)[0])  # the pool stores the composite
    link = html.unescape(re.search(r'<a id="fits" href="([^"]+)"', text).group(1))
    assert link == f"/api/image.png?seed={seed}&trunc=1.0&format=fits"
    cube = client.get(link)  # the pool keeps PNGs; the cube is the same seed drawn again
    assert cube.headers["content-type"] == "image/fits"
    with fits.open(io.BytesIO(cube.content)) as hdul:
        np.testing.assert_array_equal(hdul[0].data, fits_to_image_order(model_to_flux(ref, SPEC)[0]))
    band_links = [html.unescape(u) for u in re.findall(r'<a class="band" href="([^"]+)">', text)]
    assert [u.rsplit("band=", 1)[1] for u in band_links] == list(SPEC.bands)
    assert png_array(client.get(band_links[2]).content).shape == (SIZE, SIZE)


def test_picture_models_give_display_fits_and_channels_not_colours(tmp_path):
    model = write_tiny_model(tmp_path / "pic" / "model.onnx", z_dim=8, image_size=16, channels=3)
    client = TestClient(create_app(ServeSettings(model_path=model, pool_dir=tmp_path / "pool")))
    gen = OnnxGenerator(model)
    r = client.get("/api/image.png", params={"seed": 1, "trunc": 0.5}, headers={"Accept": "image/fits"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/fits"
    with fits.open(io.BytesIO(r.content)) as hdul:
        data, hdr = hdul[0].data, hdul[0].header
        assert hdr["BUNIT"] == "display" and hdr["PHYSICAL"] is False and hdr["BANDS"] == "R,G,B"
        assert (
            hdr["SEED"] == 1
            and hdr["TRUNC"] == 0.5
            and hdr["ARCH"] == "tiny-analytic"
            and "PIXSCALE" not in hdr
        )
        values = (gen.generate_float(gen.latents([1]), trunc=0.5)[0] + 1) / 2
        np.testing.assert_array_equal(data, values[:, ::-1, :])  # [0, 1], flipped once like a science cube
    r = client.get("/api/image.png", params={"seed": 1}, headers={"Accept": "image/fits, image/png;q=0.5"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/fits"
    png = client.get("/api/image.png", params={"seed": 1})
    np.testing.assert_array_equal(png_array(png.content), gen.generate([1])[0])
    r = client.get("/api/image.png", params={"seed": 1, "rgb": "0,1,2"})
    assert r.status_code == 422 and "this model draws 3-channel pictures, not named bands" in _error(r)
    r = client.get("/api/image.png", params={"seed": 1, "band": "3"})
    assert r.status_code == 422 and "is not a channel of this model, by index (0, 1, 2)" in _error(r)
    grey = png_array(
        client.get("/api/image.png", params={"seed": 1, "band": "2"}).content
    )  # as `generate --band 2`
    np.testing.assert_array_equal(grey, gen.generate([1])[0, :, :, 2])
    page = client.get("/").text
    assert 'id="fits"' not in page and "<dt>Bands</dt>" not in page and "3 channels" in page


@pytest.mark.slow  # heavy: exports a generator
def test_many_channels_without_a_spec_are_a_composite_not_rgba(tmp_path):
    """An export from before model.json carried `science`: bands 0..C-1 as they are, as `generate` shows them."""
    model = write_tiny_model(tmp_path / "old" / "model.onnx", z_dim=8, image_size=16, channels=4)
    client = TestClient(create_app(ServeSettings(model_path=model, pool_dir=tmp_path / "pool")))
    gen = OnnxGenerator(model)
    assert (
        gen.science is None
        and gen.display_spec is not None
        and gen.display_spec.bands == ("0", "1", "2", "3")
    )
    img = png_array(client.get("/api/image.png", params={"seed": 2}).content)
    values = gen.generate_float(gen.latents([2]))
    assert img.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(img, display_uint8(values, gen.display_spec)[0])


def test_fits_header_names_the_class_and_the_conditions(tmp_path):
    labelled = write_tiny_model(
        tmp_path / "cls" / "model.onnx", channels=4, image_size=16, num_classes=3, science=SPEC
    )
    client = TestClient(create_app(ServeSettings(model_path=labelled, pool_dir=tmp_path / "pool1")))
    gen = OnnxGenerator(labelled)
    for params, cls in (({}, 5 % 3), ({"class": 1}, 1)):
        r = client.get("/api/image.png", params={"seed": 5, "format": "fits", **params})
        with fits.open(io.BytesIO(r.content)) as hdul:
            hdr, data = hdul[0].header, hdul[0].data
            assert hdr["CLASS"] == cls and hdr["CLASSNAM"] == f"class{cls}"
            ref = gen.generate_float(gen.latents([5]), labels=[cls])
            np.testing.assert_array_equal(data, fits_to_image_order(model_to_flux(ref, SPEC)[0]))
    spec = CondSpec(
        names=("sersic_n", "q"),
        units=("", ""),
        low=(0.5, 0.1),
        high=(6.0, 1.0),
        mean=(2.0, 0.6),
        std=(1.0, 0.2),
    )
    conditioned = write_tiny_model(
        tmp_path / "cond" / "model.onnx", channels=4, image_size=16, cond=spec, science=SPEC
    )
    client = TestClient(create_app(ServeSettings(model_path=conditioned, pool_dir=tmp_path / "pool2")))
    r = client.get("/api/image.png", params={"seed": 5, "format": "fits", "sersic_n": 3.5})
    with fits.open(io.BytesIO(r.content)) as hdul:
        hdr = hdul[0].header
        assert (hdr["CNAME1"], hdr["COND1"], hdr["CNAME2"], hdr["COND2"]) == (
            "sersic_n",
            3.5,
            "q",
            0.6000000238418579,
        )
    other = client.get("/api/image.png", params={"seed": 5, "format": "fits", "sersic_n": 1.5})
    assert other.headers["etag"] != r.headers["etag"] and other.content != r.content


def test_a_broken_science_spec_stops_the_server_at_start_in_one_line(tmp_path):
    def model_with(science: dict, *, channels: int = 4):
        path = write_tiny_model(tmp_path / f"m{channels}" / "model.onnx", channels=channels, image_size=16)
        meta = json.loads(path.with_suffix(".json").read_text())
        path.with_suffix(".json").write_text(json.dumps({**meta, "science": science}))
        return path

    good = SPEC.to_dict()
    assert OnnxGenerator(model_with(good)).science == SPEC
    cases = [
        ({**good, "bands": ["g", "r", "i"]}, "3 band names for a 4-band stretch"),
        ({"bands": ["g"]}, "science spec is malformed"),
        (
            {**good, "display": {**good["display"], "rgb": ["y", "r", "g"]}},
            "colour mapping must name three of the bands g,r,i,z as R,G,B (--rgb), got y,r,g",
        ),
        ({**good, "bands": ["g", "r", "i", "z,y"]}, "band name 'z,y'"),
    ]
    for science, words in cases:
        with pytest.raises(UserError, match=re.escape(words)):
            OnnxGenerator(model_with(science))
    with pytest.raises(UserError, match=r"names 4 band\(s\) but the graph draws 3 channel"):
        OnnxGenerator(model_with(good, channels=3))


@pytest.mark.slow
def test_science_serving_needs_no_torch(tmp_path):
    model = write_tiny_model(tmp_path / "model.onnx", channels=4, image_size=16, science=SPEC)
    script = BLOCK_TORCH + textwrap.dedent(f"""
        import io, sys
        from pathlib import Path
        from fastapi.testclient import TestClient
        from astrogan.web.app import create_app
        from astrogan.web.settings import ServeSettings
        app = create_app(ServeSettings(model_path=Path({str(model)!r}), pool_dir=Path({str(tmp_path / "pool")!r})))
        client = TestClient(app)
        assert client.get("/api/image.png?seed=3").headers["content-type"] == "image/png"
        assert client.get("/api/image.png?seed=3&band=z").status_code == 200
        assert client.get("/api/image.png?seed=3&format=fits").headers["content-type"] == "image/fits"
        assert client.get("/").status_code == 200
        assert "torch" not in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("negative", [False, True])
def test_no_generated_request_to_a_science_model_gets_a_server_error(tmp_path, negative):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    model = write_tiny_model(tmp_path / "model.onnx", channels=4, image_size=16, num_classes=2, science=SPEC)
    app = create_app(
        ServeSettings(
            model_path=model,
            pool_dir=tmp_path / "pool",
            image_cache_size=0,
            heavy_rate_per_min=1e6,
            heavy_burst=10**5,
        )
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    mode = GenerationMode.NEGATIVE if negative else GenerationMode.POSITIVE
    for op in (result.ok() for result in schema.get_all_operations()):
        if op.path not in ("/api/image.png", "/api/grid", "/api/interpolate"):
            continue

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call()
            assert response.status_code < 500, (case.path, case.query, response.text)
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}, response.text

        check()
