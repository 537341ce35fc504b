"""compute_metrics (the training hook) with its cache, evaluate() report files, and the `astrogan eval` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from astrogan.metrics.compute import compute_metrics, evaluate


def galaxies(num: int, *, size: int = 24, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Noisy elliptical exponential blobs, uint8 (N, size, size, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size), dtype=np.float64)
    out = np.empty((num, size, size, 3), dtype=np.uint8)
    for i in range(num):
        r_e = scale * rng.uniform(2, 4)
        q, th = rng.uniform(0.5, 1), rng.uniform(0, np.pi)
        dx, dy = xx - size / 2 + rng.uniform(-1, 1), yy - size / 2 + rng.uniform(-1, 1)
        xp, yp = dx * np.cos(th) + dy * np.sin(th), -dx * np.sin(th) + dy * np.cos(th)
        img = 220 * np.exp(-1.68 * np.hypot(xp, yp / q) / r_e) + 10 + rng.normal(0, 3, (size, size))
        out[i] = np.clip(img, 0, 255)[..., None].astype(np.uint8)
    return out


def tiny_run(tmp_path, images: np.ndarray, *, extra: dict | None = None) -> None:
    """`images` built into a 16 px dataset at tmp_path/ds, and an untrained tiny DCGAN run at tmp_path/run."""
    import torch

    from astrogan.data.build import BuildOptions, build_dataset
    from astrogan.models import get_arch
    from astrogan.models.io import save_generator

    src = tmp_path / "src"
    src.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(src / f"g{i:02d}.png")
    build_dataset([src], tmp_path / "ds", options=BuildOptions(image_sizes=(16,)), show_progress=False)
    torch.manual_seed(0)
    spec = get_arch("dcgan")
    cfg = spec.config_cls(image_size=16, channels=3, z_dim=8, ngf=8, ndf=8)
    out_dir = tmp_path / "run" / "checkpoints"
    save_generator(spec.build_generator(cfg).eval(), arch="dcgan", config=cfg, out_dir=out_dir, extra=extra)


def test_compute_metrics_scalars_and_cache(tmp_path):
    real, fake = galaxies(210, seed=0), galaxies(40, seed=1, scale=2.0)
    names = ["spectrum", "morphology", "memorization", "prdc"]
    m = compute_metrics(names, real, fake, cache_dir=tmp_path, cache_key="abc123")
    for k in (
        "spectrum_w1_mean",
        "spectrum_floor_w1_mean",
        "morph_w1_mean",
        "morph_w1_gini",
        "morph_floor_w1_mean",
        "morph_ratio_mean",
        "memorization_fraction",
        "memorization_fraction_pixels_low",
        "prdc_precision",
        "prdc_recall_floor",
    ):
        assert k in m and np.isfinite(m[k]), k
    # Twice as large galaxies: far beyond the real-vs-real floor.
    assert m["morph_ratio_mean"] > 3 and m["spectrum_w1_mean"] > 2 * m["spectrum_floor_w1_mean"]
    assert all(isinstance(v, float) for v in m.values())
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith("abc123-morphology-") for n in cached)
    assert any(n.startswith("abc123-spectrum-") for n in cached)
    # Second call reads the cache and gives the same figures.
    assert compute_metrics(names, real, fake, cache_dir=tmp_path, cache_key="abc123") == m
    # Larger generated galaxies are further from the real ones than a fresh draw of the same law.
    same = compute_metrics(["morphology"], real, galaxies(40, seed=2))
    assert m["morph_w1_r50"] > same["morph_w1_r50"]


def test_cache_file_names_are_safe_on_every_system(tmp_path):
    # A dataset's content hash reads "sha256:..."; ':' (and '/', '\\') cannot be in a Windows file name.
    from astrogan.metrics.base import StatsCache

    cache = StatsCache(tmp_path, "sha256:ab/c\\d")
    out = cache.get("spectrum", {"bins": 4}, lambda: {"x": np.arange(3)})
    assert np.array_equal(out["x"], np.arange(3))
    (name,) = [p.name for p in tmp_path.iterdir()]
    assert name.startswith("sha256-ab-c-d-spectrum-") and name.endswith(".npz")
    assert np.array_equal(cache.get("spectrum", {"bins": 4}, lambda: {"x": np.zeros(1)})["x"], np.arange(3))


@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_a_damaged_cache_file_is_recomputed_not_fatal(tmp_path, damage):
    """A cut-off .npz (a full disk, a half-copied cache) raised zipfile.BadZipFile with a traceback."""
    from astrogan.metrics.base import StatsCache

    cache = StatsCache(tmp_path, "abc123")
    first = cache.get("spectrum", {"n": 1}, lambda: {"power": np.arange(5000.0)})
    (path,) = tmp_path.iterdir()
    body = path.read_bytes()
    path.write_bytes(body[: len(body) // 2] if damage == "cut" else b"PK\x03\x04garbage")
    again = cache.get("spectrum", {"n": 1}, lambda: {"power": np.arange(5000.0)})
    np.testing.assert_array_equal(again["power"], first["power"])
    assert path.read_bytes() == body  # rewritten whole


def test_morphology_histograms_show_generated_values_beyond_the_real_range(tmp_path):
    """Bins span the 1st-99th percentiles of both sets (mostly reals): a few generated values beyond them had no
    bar at all and numpy warned 'invalid value encountered in divide' (a 0/0 density) into eval."""
    import warnings

    real = galaxies(40, seed=0)
    fake = np.concatenate([galaxies(1, seed=1, scale=0.3), galaxies(1, seed=2, scale=4.0)])  # tiny, huge
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        evaluate(real, fake, tmp_path / "rep", names=["morphology"])
    assert (tmp_path / "rep" / "morphology.png").is_file()


def test_report_names_an_early_runs_kimg_as_metrics_json_has_it():
    """An early run's kimg (0.032) was printed with one decimal: "0.0 kimg" beside metrics.json's 0.032."""
    from astrogan.metrics.report import _evaluated

    assert _evaluated({"generator": "g", "step": 2, "kimg": 0.032}) == "Generator: g, step 2, 0.032 kimg."
    assert _evaluated({"generator": "g", "kimg": 0.64}).endswith(", 0.64 kimg.")
    assert _evaluated({"generator": "g", "kimg": 19.2}).endswith(", 19.2 kimg.")
    assert _evaluated({"generator": "g", "kimg": 25000}).endswith(", 25000.0 kimg.")


def test_memorization_refuses_to_judge_a_small_set():
    from astrogan.metrics.compute import run_metrics

    res = run_metrics(["memorization"], galaxies(40, seed=0), galaxies(10, seed=1))
    assert "memorization_fraction" not in res.scalars
    assert (
        "40 real images are too few" in res.skipped["memorization"] and "200" in res.skipped["memorization"]
    )


@pytest.mark.slow
def test_evaluate_writes_report(tmp_path):
    real, fake = galaxies(200, seed=3), galaxies(24, seed=4)
    doc = evaluate(
        real,
        fake,
        tmp_path / "rep",
        names=["spectrum", "morphology", "memorization", "fid", "prdc"],
        meta={"generator": "test", "step": 1200, "kimg": 19.2},
    )
    rep = tmp_path / "rep"
    on_disk = json.loads((rep / "metrics.json").read_text())
    assert on_disk["schema"] == "astrogan.metrics/2" and on_disk["metrics"] == doc["metrics"]
    # The leading table: every row has a value, a floor and a ratio, and says how many images it used.
    rows = {r["metric"]: r for r in on_disk["summary"]}
    assert len(rows) == 7
    for r in rows.values():
        assert r["value"] is not None and r["floor"] is not None and r["ratio"] is not None, r
        assert r["ratio"] == pytest.approx(r["value"] / r["floor"]) and "real" in r["images"]
    assert on_disk["morphology"]["properties"]["sersic_n"]["num_real"] <= 200
    assert "fid" in on_disk["skipped"] and "fid" not in on_disk["metrics"]
    for name in (
        "real_grid.png",
        "generated_grid.png",
        "spectrum.png",
        "morphology.png",
        "closest_pairs.png",
    ):
        assert Image.open(rep / name).size[0] > 100
    html = (rep / "report.html").read_text()
    assert "spectrum.png" in html and "floor (real vs real)" in html and "pytorch-fid" in html
    assert "step 1200" in html and "19.2 kimg" in html
    # The numbers in the page are those in metrics.json.
    for r in rows.values():
        assert f"{r['value']:.4g}" in html and f"{r['floor']:.4g}" in html
    with pytest.raises(FileExistsError):
        evaluate(real, fake, rep, names=["spectrum"])


@pytest.mark.slow
def test_eval_command_on_an_onnx_model(tmp_path):
    onnx_gen = pytest.importorskip("astrogan.web.onnx_generator")
    pytest.importorskip("onnx")
    from astrogan.cli.main import main
    from astrogan.data.build import BuildOptions, build_dataset

    src = tmp_path / "src"
    src.mkdir()
    for i, img in enumerate(galaxies(16, size=32, seed=5)):
        Image.fromarray(img).save(src / f"g{i:02d}.png")
    build_dataset([src], tmp_path / "ds", options=BuildOptions(image_sizes=(16,)), show_progress=False)
    model = onnx_gen.write_tiny_model(tmp_path / "model.onnx", image_size=16, channels=3)
    card = json.loads(model.with_suffix(".json").read_text())
    card["model_card"] = {
        "training": {"steps": 7, "kimg": 0.1, "run": "00003-x"},
        "dataset": {"content_hash": "sha256:x"},
    }
    model.with_suffix(".json").write_text(json.dumps(card))
    out = tmp_path / "report"
    with pytest.warns(UserWarning, match="not the dataset this generator trained on"):
        rc = main(
            [
                "eval",
                "--model",
                str(model),
                "--data",
                str(tmp_path / "ds"),
                "--num",
                "12",
                "--metrics",
                "spectrum,morphology,memorization",
                "--out",
                str(out),
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["num_generated"] == 12 and doc["num_real"] == 16
    assert doc["meta"]["dataset_content_hash"] and (out / "report.html").is_file()
    # An exported model says in its model card which step it is and what it trained on.
    assert doc["meta"]["step"] == 7 and doc["meta"]["run"] == "00003-x"
    assert doc["meta"]["trained_on_this_dataset"] is False
    assert main(["eval", "--model", str(model), "--data", str(tmp_path / "ds"), "--out", str(out)]) == 2
    assert main(["eval", "--model", str(model), "--data", str(tmp_path / "ds"), "--metrics", "nope"]) == 2


def test_eval_command_on_a_run_directory(tmp_path):
    from astrogan.cli.main import main

    tiny_run(
        tmp_path,
        galaxies(12, size=32, seed=6),
        extra={"step": 40, "kimg": 0.64, "dataset_hash": "sha256:another-set", "run": "00000-t"},
    )
    with pytest.warns(UserWarning, match="not the dataset this generator trained on"):
        rc = main(
            [
                "eval",
                "--run",
                str(tmp_path / "run"),
                "--data",
                str(tmp_path / "ds"),
                "--num",
                "10",
                "--metrics",
                "spectrum,memorization",
                "--device",
                "cpu",
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
    assert rc == 0
    doc = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert doc["num_generated"] == 10 and "spectrum_w1_mean" in doc["metrics"]
    assert "12 real images are too few" in doc["skipped"]["memorization"]
    assert (
        doc["meta"]["step"] == 40
        and doc["meta"]["kimg"] == 0.64
        and doc["meta"]["trained_on_this_dataset"] is False
    )


def test_eval_draws_as_many_images_as_the_metrics_need_and_says_how_long(tmp_path, monkeypatch, capsys):
    from astrogan.cli.main import main
    from astrogan.metrics import default_num_generated

    assert default_num_generated(["fid", "spectrum"]) == 5000  # FID's usual minimum (it is biased by N)
    assert default_num_generated(["spectrum", "prdc"]) == 1000
    tiny_run(tmp_path, galaxies(12, size=32, seed=6))
    monkeypatch.setenv("ASTROGAN_QUIET", "0")
    rc = main(
        [
            "eval",
            "--run",
            str(tmp_path / "run"),
            "--data",
            str(tmp_path / "ds"),
            "--metrics",
            "spectrum",
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert rc == 0
    assert json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())["num_generated"] == 1000
    assert "generating 1000 images: about" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("side", ["real", "generated"])
def test_nan_or_inf_pixels_are_refused_not_measured(tmp_path, side):
    """A diverged generator's NaN (or a FITS NaN left unmasked) made every distance NaN: memorised fraction 0
    (every comparison with NaN is False) and metrics.json with bare NaN/Infinity tokens, which is not JSON."""
    from astrogan.metrics.compute import run_metrics
    from astrogan.utils.errors import UserError

    rng = np.random.default_rng(0)
    real, fake = rng.random((12, 16, 16, 1), dtype=np.float32), rng.random((8, 16, 16, 1), dtype=np.float32)
    broken = real if side == "real" else fake
    broken[1, 3, 4, 0], broken[5, 0, 0, 0] = np.nan, np.inf
    with pytest.raises(UserError, match=rf"{side} images: 2 of {len(broken)} hold NaN or infinite pixels"):
        run_metrics(["spectrum"], real, fake)
    with pytest.raises(UserError, match="NaN or infinite"):
        evaluate(real, fake, tmp_path / "rep", names=["spectrum"])
    assert not (tmp_path / "rep").exists()
    # The training hook leaves every figure out (one console line) instead of stopping the run.
    assert compute_metrics(["spectrum"], real, fake) == {}


def test_eval_refuses_a_one_image_dataset_before_generating(tmp_path, monkeypatch, capsys):
    """A dataset of one picture was found too small only after --num images had been generated."""
    import astrogan.cli.evaluate as evaluate_cli
    from astrogan.cli.main import main

    tiny_run(tmp_path, galaxies(1, size=32))

    def never(*a, **k):
        raise AssertionError("generated images for a dataset eval cannot use")

    monkeypatch.setattr(evaluate_cli, "_generate", never)
    rc = main(
        ["eval", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "ds"), "--metrics", "spectrum"]
    )
    assert rc == 2
    assert "holds 1 image(s); eval compares sets of at least 2 real images" in capsys.readouterr().err
    assert not (tmp_path / "run" / "eval").exists()


def test_eval_refuses_a_num_that_cannot_fit_in_memory_before_generating(tmp_path, monkeypatch, capsys):
    """--num had no upper bound: 10**8 images began generating, printed an hours-long estimate and would run
    out of memory."""
    import astrogan.cli.evaluate as evaluate_cli
    from astrogan.cli.main import main

    tiny_run(tmp_path, galaxies(4, size=32))

    def never(*a, **k):
        raise AssertionError("started generating images that cannot fit in memory")

    monkeypatch.setattr(evaluate_cli, "_generate", never)
    args = ["eval", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "ds"), "--metrics", "spectrum"]
    assert main([*args, "--num", str(10**8)]) == 2
    err = capsys.readouterr().err
    assert "--num 100000000 cannot fit in memory: 100000000 images of 16x16x3 need" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "eval").exists()


def test_eval_without_inception_weights_draws_no_images_for_the_skipped_fid(tmp_path, monkeypatch):
    """FID/KID without weights are skipped, yet their 5000-image default was drawn and measured: the default eval
    on a CPU ran 5x longer than the metrics it reports need."""
    from astrogan.cli.main import main

    monkeypatch.delenv("ASTROGAN_INCEPTION_WEIGHTS", raising=False)
    tiny_run(tmp_path, galaxies(6, size=32, seed=6))
    args = ["eval", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "ds"), "--device", "cpu"]
    assert main([*args, "--metrics", "fid,kid,spectrum", "--cache-dir", str(tmp_path / "c")]) == 0
    doc = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert doc["num_generated"] == 1000 and "fid" in doc["skipped"]


@pytest.mark.parametrize("flag", ["--out", "--save-fakes", "--cache-dir", "--out-below"])
def test_eval_refuses_a_file_where_a_directory_goes_before_generating(tmp_path, monkeypatch, capsys, flag):
    """--out FILE --overwrite replaced the user's file with the report; a file on the way to --out or --cache-dir
    failed after generating with "[Errno 17] File exists"."""
    import astrogan.cli.evaluate as evaluate_cli
    from astrogan.cli.main import main

    tiny_run(tmp_path, galaxies(4, size=32))

    def never(*a, **k):
        raise AssertionError("generated images that could not be written")

    monkeypatch.setattr(evaluate_cli, "_generate", never)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    place = {"--out-below": ["--out", str(notes / "report")]}.get(flag, [flag, str(notes)])
    args = ["eval", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "ds"), "--metrics", "spectrum"]
    assert main([*args, *place, "--overwrite"]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert notes.read_text() == "mine"


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--batch-size", "0", "--batch-size must be at least 1, got 0"),
        ("--batch-size", "-3", "--batch-size must be at least 1, got -3"),
        ("--seed", "-1", "--seed must be 0 or more, got -1"),
        ("--workers", "-2", "--workers must be 0 (all CPUs) or more, got -2"),
    ],
)
def test_eval_refuses_counts_out_of_range_in_one_line(tmp_path, capsys, flag, value, said):
    """--batch-size 0 ended in range()'s traceback, -3 in 'need at least one array to concatenate', --seed -1 in
    NumPy's, and --workers -2 was taken."""
    from astrogan.cli.main import main

    args = ["eval", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "ds"), "--metrics", "spectrum"]
    assert main([*args, flag, value]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
