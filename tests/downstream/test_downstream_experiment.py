"""The denoising experiment end to end: cells that skip and resume, the report, re-runs, sets, the CLI."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from astrogan.downstream import cell as cell_mod
from astrogan.downstream import mixing as mixing_mod
from astrogan.downstream.cell import CellData, CellTask, run_cell
from astrogan.downstream.config import DenoiseConfig
from astrogan.downstream.degrade import parse_psf, psf_kernel
from astrogan.downstream.experiment import run_denoise
from astrogan.downstream.sets import ImageSet, split_indices
from astrogan.utils.errors import UserError
from tests.helpers.images import blob_images

TINY = dict(batch_size=4, val_every=3, width=4, num_blocks=1, device="cpu", num_examples=1, max_val_images=8)


def _cfg(**kw) -> DenoiseConfig:
    base = dict(alphas=(0.0, 1.0), repeats=1, steps=6, num_generated=24, **TINY)
    base.update(kw)
    return DenoiseConfig(**base)


def _cell_data(size: int = 16) -> CellData:
    real = ImageSet(blob_images(30, size, seed=1))
    s = split_indices(30, seed=0)
    return CellData(
        train=real.subset(s["train"]),
        val=real.subset(s["val"]),
        test=real.subset(s["test"]),
        generated=ImageSet(blob_images(20, size, seed=2)),
        kernel=psf_kernel(parse_psf("gaussian:sigma=1")),
        noise_sigma=(0.05,) * 3,
    )


class _Kill(Exception):
    pass


def test_finished_cell_is_skipped_and_a_killed_one_resumes_bit_exactly(tmp_path):
    data = _cell_data()
    task = CellTask(alpha=0.5, repeat=0, config=_cfg(steps=10), fingerprint="f", conditions=("none", "both"))
    full = run_cell(task, data, tmp_path / "full")
    assert full["status"] == "trained" and full["steps_done"] == 10 and full["stopped_by"] == "steps"
    assert [h[0] for h in full["history"]] == [3, 6, 9, 10]
    assert not (tmp_path / "full" / "state.pt").exists()

    def die_at_8(step, total, val):
        if step == 8:
            raise _Kill

    with pytest.raises(_Kill):
        run_cell(task, data, tmp_path / "killed", on_step=die_at_8)
    assert (tmp_path / "killed" / "state.pt").is_file() and not (tmp_path / "killed" / "result.json").exists()
    steps_seen = []
    resumed = run_cell(task, data, tmp_path / "killed", on_step=lambda s, t, v: steps_seen.append(s))
    assert resumed["status"] == "resumed" and steps_seen == [7, 8, 9, 10]  # from the save at step 6
    a, b = (
        load_file(str(tmp_path / "full" / "best.safetensors")),
        load_file(str(tmp_path / "killed" / "best.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["test"] == full["test"] and resumed["history"] == full["history"]

    again = run_cell(task, data, tmp_path / "full", on_step=lambda *a: pytest.fail("a finished cell trained"))
    assert again["status"] == "skipped" and again["test"] == full["test"]
    # A condition not scored yet is scored from the saved weights, without training.
    more = CellTask(
        alpha=0.5, repeat=0, config=_cfg(steps=10), fingerprint="f", conditions=("none", "noise-x4")
    )
    res = run_cell(more, data, tmp_path / "full", on_step=lambda *a: pytest.fail("a finished cell trained"))
    assert res["status"] == "rescored" and set(res["test"]) == {"none", "both", "noise-x4"}
    assert res["test"]["none"] == full["test"]["none"]
    # Other settings (another fingerprint): the old result is not reused.
    other = CellTask(alpha=0.5, repeat=0, config=_cfg(steps=10), fingerprint="g", conditions=("none",))
    assert run_cell(other, data, tmp_path / "full")["status"] == "trained"


def test_early_stopping_and_time_budget_end_a_cell(tmp_path):
    data = _cell_data()
    cfg = _cfg(steps=400, lr=0.0, patience=2)  # lr 0: never improves after the first validation
    res = run_cell(CellTask(0.0, 0, cfg, "f", ("none",)), data, tmp_path / "early")
    assert res["stopped_by"] == "early-stop" and res["steps_done"] == 9 and res["best_step"] == 3
    res = run_cell(
        CellTask(0.0, 0, _cfg(steps=100_000), "f", ("none",), max_seconds=0.5), data, tmp_path / "t"
    )
    assert res["stopped_by"] == "time" and res["steps_done"] < 100_000


@pytest.mark.slow  # heavy: a denoise experiment
def test_report_files_exist_and_the_page_shows_the_numbers_of_metrics_json(tmp_path):
    real, gen = blob_images(30, 16, seed=1), blob_images(24, 16, seed=2)
    doc = run_denoise(
        real, gen, out=tmp_path / "x", config=_cfg(alphas=(0, 0.5, 1), repeats=2), show_progress=False
    )
    out = tmp_path / "x"
    for name in ("metrics.json", "report.html", "examples.png", "experiment.json", "splits.json"):
        assert (out / name).is_file(), name
    for cond in ("none", "half-res", "noise-x4", "both"):
        assert (out / f"mse-{cond}.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["conditions"] == json.loads(json.dumps(doc["conditions"]))
    page = (out / "report.html").read_text()
    spans = dict(re.findall(r"<span id='([^']+)'>([^<]+)</span>", page))
    checked = 0
    for cond, table in metrics["conditions"].items():
        for row in table["rows"]:
            key = f"{cond}-a{row['alpha']:.3f}"
            for score, value in (
                ("mse", row["mse_mean"]),
                ("mse-std", row["mse_std"]),
                ("psnr", row["psnr_mean"]),
                ("ssim", row["ssim_mean"]),
            ):
                assert float(spans[f"{score}-{key}"]) == pytest.approx(value, rel=5e-4, abs=1e-12)
                checked += 1
            assert len(row["mse_per_repeat"]) == 2 and row["mse_std"] > 0
        sentence = table["conclusion"]
        assert f"<li id='conclusion-{cond}'>" in page and sentence.replace("'", "&#x27;") in page
        pct = table["compared_vs_reference_pct"]
        # a difference that rounds to 0.0% reads "level with", not "0.0% better"
        assert (
            "level with" if pct == 0 else f"{abs(pct):.1f}% {'worse' if pct > 0 else 'better'}"
        ) in sentence
        mse0, mse1 = table["rows"][0]["mse_mean"], table["rows"][-1]["mse_mean"]
        assert pct == pytest.approx(100 * (mse1 / mse0 - 1), abs=0.051)
    assert checked == 4 * 3 * 4
    split = json.loads((out / "splits.json").read_text())
    assert not set(split["train"]) & set(split["test"]) and not set(split["val"]) & set(split["test"])


@pytest.mark.slow  # heavy: a denoise experiment
def test_training_reads_only_the_train_split_and_testing_only_the_test_split(tmp_path, monkeypatch):
    rows_trained, rows_tested = set(), set()
    real_batch = mixing_mod.MixingLoader.batch

    def spy_batch(self, step):
        source, idx = self.sampler.draw(step)
        if source == mixing_mod.REAL:
            rows_trained.update(self.sets[source].indices[idx].tolist())
        return real_batch(self, step)

    real_evaluate = cell_mod.evaluate

    def spy_evaluate(model, data, *a, **kw):
        rows_tested.update(data.test.indices.tolist())
        return real_evaluate(model, data, *a, **kw)

    monkeypatch.setattr(mixing_mod.MixingLoader, "batch", spy_batch)
    monkeypatch.setattr(cell_mod, "evaluate", spy_evaluate)
    real, gen = blob_images(40, 16, seed=1), blob_images(24, 16, seed=2)
    run_denoise(real, gen, out=tmp_path / "x", config=_cfg(alphas=(0, 0.5), steps=30), show_progress=False)
    split = json.loads((tmp_path / "x" / "splits.json").read_text())
    assert rows_trained and rows_trained <= set(split["train"])
    assert rows_tested == set(split["test"]) and not rows_tested & rows_trained


@pytest.mark.slow  # heavy: two denoise experiments
def test_rerun_adds_what_is_missing_and_refuses_other_settings(tmp_path):
    real, gen = blob_images(30, 16, seed=1), blob_images(24, 16, seed=2)
    out = tmp_path / "x"
    cfg = _cfg(conditions=("none",))
    first = run_denoise(real, gen, out=out, config=cfg, show_progress=False)
    assert [c["status"] for c in first["cells"]] == ["trained", "trained"]
    more = _cfg(conditions=("none", "noise-x4"), repeats=2)
    second = run_denoise(real, gen, out=out, config=more, show_progress=False)
    assert [(c["key"], c["status"]) for c in second["cells"]] == [
        ("a0.000-r0", "rescored"),
        ("a0.000-r1", "trained"),
        ("a1.000-r0", "rescored"),
        ("a1.000-r1", "trained"),
    ]
    assert (
        second["conditions"]["none"]["rows"][0]["mse_per_repeat"][0]
        == first["conditions"]["none"]["rows"][0]["mse_mean"]
    )
    with pytest.raises(UserError, match=r"other settings \(noise, noise_sigma\)") as exc:
        run_denoise(real, gen, out=out, config=_cfg(noise="gaussian:sigma=0.1"), show_progress=False)
    assert "\n" not in str(exc.value)
    with pytest.raises(UserError, match="other settings"):
        run_denoise(real, blob_images(24, 16, seed=3), out=out, config=cfg, show_progress=False)
    redone = run_denoise(real, gen, out=out, config=_cfg(steps=3), overwrite=True, show_progress=False)
    assert [c["status"] for c in redone["cells"]] == ["trained", "trained"]
    assert not (out / "cells" / "a0.000-r1").exists()
    import fcntl
    import os

    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another run holds the folder
        with pytest.raises(UserError, match="another run is using"):
            run_denoise(real, gen, out=out, config=_cfg(steps=3), show_progress=False)
    finally:
        os.close(fd)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds no denoise experiment"):
        run_denoise(real, gen, out=tmp_path / "other", config=cfg, overwrite=True, show_progress=False)


def test_one_band_and_multi_band_float_data_with_per_band_noise(tmp_path):
    rng = np.random.default_rng(0)
    grey = blob_images(30, 16, seed=1)[..., :1]
    doc = run_denoise(
        grey, grey[::-1].copy(), out=tmp_path / "grey", config=_cfg(conditions=("none",)), show_progress=False
    )
    assert doc["settings"]["channels"] == 1 and doc["real"]["dtype"] == "uint8"
    bands = blob_images(30, 16, seed=1).astype(np.float32) / 255.0
    bands = np.concatenate([bands, bands[..., :1] * 0.5], axis=-1)  # 4 bands
    gen4 = np.clip(bands + rng.normal(0, 0.01, bands.shape), 0, 1).astype(np.float32)
    doc = run_denoise(
        bands,
        gen4,
        out=tmp_path / "four",
        config=_cfg(noise="gaussian:sigma=0.01/0.02/0.03/0.04", conditions=("none", "both")),
        show_progress=False,
    )
    assert doc["settings"]["noise_sigma"] == [0.01, 0.02, 0.03, 0.04] and doc["settings"]["channels"] == 4
    assert all(np.isfinite(r["mse_mean"]) for c in doc["conditions"].values() for r in c["rows"])
    assert (tmp_path / "four" / "examples.png").is_file()


def test_mismatched_sets_are_refused_in_one_line(tmp_path):
    real = blob_images(30, 16, seed=1)
    for gen, words in (
        (blob_images(20, 32, seed=2), "image sizes differ"),
        (real[..., :1].copy(), "band counts differ"),
    ):
        with pytest.raises(UserError, match=words) as exc:
            run_denoise(real, gen, out=tmp_path / "x", config=_cfg(), show_progress=False)
        assert "\n" not in str(exc.value)
    assert not (tmp_path / "x").exists()  # refused before anything was written
    with pytest.raises(UserError, match="at least 10"):
        run_denoise(real[:8], real, out=tmp_path / "y", config=_cfg(), show_progress=False)
    with pytest.raises(UserError, match="alphas"):
        _cfg(alphas=(0.0, 1.5)).validate()


@pytest.mark.slow  # heavy: a whole denoise experiment
def test_generator_images_are_drawn_once_with_their_seeds_and_reused(tmp_path):
    pytest.importorskip("onnxruntime")
    from astrogan.imaging import to_uint8
    from astrogan.web.onnx_generator import OnnxGenerator, write_tiny_model

    gen = OnnxGenerator(write_tiny_model(tmp_path / "model.onnx", image_size=16, channels=3))
    real = blob_images(30, 16, seed=1)
    out = tmp_path / "x"
    run_denoise(real, gen, out=out, config=_cfg(num_generated=40), show_progress=False)
    record = json.loads((out / "generated" / "generated.json").read_text())
    assert (
        record["seeds"] == "0-39" and record["dtype"] == "uint8" and record["fingerprint"].startswith("onnx:")
    )
    cached = np.load(out / "generated" / "images.npy")
    assert np.array_equal(cached, to_uint8(gen.generate_float(gen.latents(range(40)))))
    assert np.array_equal(cached[7], gen.generate([7])[0])  # seed 7 is image 7
    stamp = (out / "generated" / "images.npy").stat().st_mtime_ns
    run_denoise(real, gen, out=out, config=_cfg(num_generated=40), show_progress=False)
    assert (out / "generated" / "images.npy").stat().st_mtime_ns == stamp
    # Float (science) data get the generator's float values on the unit scale, not uint8 steps.
    floats = real.astype(np.float32) / 255.0
    run_denoise(
        floats, gen, out=tmp_path / "f", config=_cfg(num_generated=8, alphas=(1.0,)), show_progress=False
    )
    cached = np.load(tmp_path / "f" / "generated" / "images.npy")
    assert cached.dtype == np.float32
    assert np.allclose(cached, (gen.generate_float(gen.latents(range(8))).transpose(0, 2, 3, 1) + 1) / 2)


@pytest.mark.slow  # heavy: a denoise experiment from the CLI
def test_cli_denoise_with_a_dataset_and_an_onnx_model(tiny_dataset, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from astrogan.cli.main import main
    from astrogan.web.onnx_generator import write_tiny_model

    model = write_tiny_model(tmp_path / "model.onnx", image_size=16, channels=3)
    args = [
        "downstream",
        "denoise",
        "--real",
        str(tiny_dataset),
        "--generated",
        str(model),
        "--num-generated",
        "16",
        "--alphas",
        "0,1",
        "--repeats",
        "1",
        "--steps",
        "3",
        "--val-every",
        "3",
        "--width",
        "4",
        "--blocks",
        "1",
        "--batch-size",
        "4",
        "--test-conditions",
        "none,noise-x4",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "out" / "metrics.json")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["settings"]["image_size"] == 16 and set(metrics["conditions"]) == {"none", "noise-x4"}
    # A generator at a size the dataset does not store: one line, exit status 2.
    big = write_tiny_model(tmp_path / "big.onnx", image_size=64, channels=3)
    assert main(args[:5] + [str(big)] + args[6:-1] + [str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: image sizes differ") and "\n" not in err
    assert main(args[:-1] + [str(tmp_path / "out3"), "--noise", "gaussian:sigma=0.1/0.2"]) == 2
    assert "one per band" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_with_a_trained_run_and_parallel_cells_match_sequential(tiny_dataset, tmp_path):
    """A real run directory as --generated, in a subprocess; jobs=2 gives the results jobs=1 gives."""
    from astrogan.training.loop import train
    from tests.helpers.processes import astrogan_cmd, child_env
    from tests.helpers.training import tiny_train_config

    run = train(tiny_train_config(tiny_dataset, tmp_path / "runs"), show_progress=False)
    outs = {}
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        proc = subprocess.run(
            astrogan_cmd(
                "downstream",
                "denoise",
                "--real",
                str(tiny_dataset),
                "--generated",
                str(run),
                "--num-generated",
                "32",
                "--alphas",
                "0,0.5,1",
                "--repeats",
                "2",
                "--steps",
                "6",
                "--val-every",
                "3",
                "--width",
                "4",
                "--blocks",
                "1",
                "--batch-size",
                "4",
                "--device",
                "cpu",
                "--jobs",
                str(jobs),
                "--out",
                str(out),
            ),
            capture_output=True,
            text=True,
            timeout=600,
            env=child_env(),
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[jobs] = json.loads((out / "metrics.json").read_text())
        assert json.loads((out / "generated" / "generated.json").read_text())["fingerprint"].startswith(
            "torch:"
        )
    for cond in outs[1]["conditions"]:
        a = [r["mse_per_repeat"] for r in outs[1]["conditions"][cond]["rows"]]
        b = [r["mse_per_repeat"] for r in outs[2]["conditions"][cond]["rows"]]
        assert np.allclose(a, b, rtol=1e-4)
