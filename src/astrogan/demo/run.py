"""`astrogan demo`: the whole road on data that ships with the installed packages, on a CPU, in minutes.

Raw pictures (`astrogan.demo.raw`) -> dataset build -> a small DCGAN at 64 px (the CPU race's winner: 60 kimg in
~2.5 minutes on 2 cores) -> final grid, interpolation sheet, average of 1,000 fakes, progress GIF, training curves,
fidelity figures (all images, and the Sérsic part alone: `astrogan.demo.fidelity`) -> one index.html
(`astrogan.demo.page`) that shows them beside a grid of real crops, saying how far training got and why.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.config import TrainConfig, load_preset
from astrogan.data.build import BuildOptions, build_dataset
from astrogan.data.dataset import open_dataset
from astrogan.demo.fidelity import fidelity_lines
from astrogan.demo.page import Figure, write_page
from astrogan.demo.raw import SERSIC_PREFIX, make_hdf_crops, make_sersic_pngs
from astrogan.imaging import make_grid
from astrogan.sampling.average import average_image
from astrogan.sampling.generator import load_generator
from astrogan.sampling.interpolate import interpolation_sheet
from astrogan.sampling.post import PictureView, save_png, stored_to_model
from astrogan.sampling.video import progress_gif
from astrogan.training.loop import train
from astrogan.training.plots import plot_training_curves
from astrogan.training.stats import read_stats
from astrogan.utils.errors import UserError
from astrogan.utils.log import info
from astrogan.utils.torchtools import busy_fraction, free_threads, physical_cores


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults finish in a few minutes on 2 CPU cores."""

    out: str = "astrogan-demo"
    num_hdf_crops: int = 512
    num_sersic: int = 512
    image_size: int = 64
    arch: str = "dcgan"
    num_train_steps: int = 3750  # 60 kimg at batch 16: ~2.5 minutes for the DCGAN on 2 quiet cores
    batch_size: int = 16
    model_width: int | None = None  # ngf = ndf; None: 8 for FastGAN, 16 for DCGAN (the CPU preset's)
    aug_prob: float = 0.3
    # Every quarter turn and mirror of each real (`data.views`; the sky has no up): over training seeds 0-3 all
    # images 7.9/6.6/8.0/5.4x -> 5.6/6.5/5.8/6.9x the floor (mean 7.0 -> 6.2), Sérsic part 7.0/6.9/6.0/6.4x ->
    # 5.7/7.1/5.8/5.8x (mean 6.6 -> 6.1), at no cost in speed.
    mirror: str = "dihedral"
    num_average: int = 1000
    num_fidelity: int = 512  # fakes measured against the reals (morphology over its real-vs-real floor)
    max_train_minutes: float | None = 7.5  # safety net so a slower machine still finishes within ~10 minutes
    seed: int = 0  # of the demo's data, picks and measurements; and of training unless `train_seed` is set
    train_seed: int | None = (
        None  # training's own (weights, batches, augmentation): the same data, another run
    )
    device: str = "auto"
    threads: int | None = None  # torch threads on a CPU; None: one per physical core not busy with other work


def _how_it_stopped(cfg: DemoConfig, steps_done: int) -> str:
    """One sentence: finished, or cut short by the time cap (and what that means for the pictures)."""
    if steps_done >= cfg.num_train_steps:
        return "Training finished."
    return (
        f"Training was cut short by the {cfg.max_train_minutes:g}-minute safety cap (this machine was slower or "
        "busier than planned): the pictures show an early stage of training; run the demo again on a quiet "
        "machine, or give it more time with --num-train-steps and a larger cap."
    )


def real_pictures(
    real: np.ndarray, view: PictureView, *, seed: int, num: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(grid of `num` random real images, their average) as uint8 pictures, drawn like the generated ones.

    `real` is the dataset's `(N, H, W, C)`; pictures pass through unchanged, science images go through
    `view` (a colour composite of the run's bands), and their average is the mean FLUX, like `average_image`.
    """
    pick = np.sort(np.random.default_rng(seed).choice(len(real), size=min(num, len(real)), replace=False))
    spec = view.spec
    if real.dtype == np.uint8 and spec is None and real.shape[-1] in (1, 3):
        return make_grid(real[pick], ncols=8), real.astype(np.float64).mean(0).round().astype(np.uint8)
    grid = make_grid(view.pictures(stored_to_model(real[pick])), ncols=8)
    values = stored_to_model(real)
    if spec is None:
        mean = values.astype(np.float64).mean(0, keepdims=True)
    else:  # the mean flux, stretched back to model values
        flux = spec.stretch.inverse((values.astype(np.float64) + 1.0) / 2.0).astype(np.float64).mean(0)
        mean = spec.stretch.forward(flux[None]).astype(np.float64) * 2.0 - 1.0
    return grid, view.pictures(mean.astype(np.float32))[0]


def _arch_settings(cfg: DemoConfig) -> dict[str, Any]:
    """Small-model knobs per architecture: FastGAN and DCGAN at `model_width`, StyleGAN2 from the `small` preset."""
    if cfg.arch in ("fastgan", "dcgan"):
        width = cfg.model_width or {"fastgan": 8, "dcgan": 16}[cfg.arch]
        # No noise inputs for the DCGAN (models.dcgan `noise`): over seeds 0-3, on the earlier black-sky Sérsic
        # pictures, they left the fidelity where it was (all images 9.5x vs 8.5x the floor, Sérsic part 12.3x vs
        # 11.6x; the seed alone moves it 7.6x-16.7x).
        if cfg.arch == "fastgan":
            return {"model": {"ngf": width, "ndf": width}}
        # The DCGAN's last doubling bilinear (`output_upsample`): over training seeds 0-3 of the default demo the
        # Sérsic part went 8.9/7.1/7.4/9.0x -> 5.5/7.0/5.9/6.0x the floor (asymmetry 33-41x -> 20-29x: no star-shaped
        # cores), all images 6.2x -> 6.6x (mean), at 0.72x the images/s. It draws fewer Sérsic-like fakes (19-30% vs
        # 33-46%; the reals: 50%), which the page states. Bilinear at every doubling: 13% and 6%, mostly fields.
        return {"model": {"ngf": width, "ndf": width, "output_upsample": "bilinear"}}
    if cfg.arch == "stylegan2":
        preset = load_preset("small")
        return {k: preset[k] for k in ("model", "loss", "aug", "ada_kimg", "lr_g", "lr_d") if k in preset}
    return {}


def _sample_and_measure(
    cfg: DemoConfig, run_dir: Path, ds_dir: Path, real: np.ndarray, out: Path
) -> list[tuple[str, str]]:
    """Real and generated grids and averages, the interpolation sheet, and the fidelity facts for the page."""
    gen = load_generator(run_dir, device=cfg.device)
    # The reals are drawn as the run draws its fakes (a multi-band run: the same colour composite).
    real_grid, real_average = real_pictures(real, gen.view, seed=cfg.seed)
    save_png(real_grid, out / "real-grid.png")
    save_png(real_average, out / "average-real.png")
    seeds = list(range(max(64, cfg.num_fidelity)))
    fakes = gen.generate(seeds)
    save_png(make_grid(fakes[:64], ncols=8), out / "final-grid.png")
    if gen.science is not None:  # measure like with like: the stored [0, 1] values, every band
        fakes = gen.generate_tensor(seeds).numpy().transpose(0, 2, 3, 1) * 0.5 + 0.5
    # The Sérsic part has a known law (the yardstick of the demo's fidelity): its reals by their file names.
    in_sersic = np.char.startswith(open_dataset(ds_dir).meta()["source"].astype(str), SERSIC_PREFIX)
    fidelity = fidelity_lines(
        real, in_sersic, fakes[: cfg.num_fidelity], out / "fidelity", part="Sérsic", seed=cfg.seed
    )
    save_png(interpolation_sheet(gen, rows=8, steps=8, seed=100), out / "interpolation.png")
    save_png(average_image(gen, num=cfg.num_average, seed=0), out / f"average-{cfg.num_average}.png")
    return fidelity


def run_demo(cfg: DemoConfig | None = None) -> Path:
    """Run the whole road; returns the path of the demo's index.html.

    On a CPU torch gets one thread per physical core that other work leaves free (`cfg.threads` to choose):
    hyper-threads and threads that must share a core with another process slow training down many times;
    the caller's thread count is restored after."""
    import torch

    cfg = cfg or DemoConfig()
    if cfg.threads:
        threads, how = cfg.threads, ""
    else:
        cores, busy = physical_cores(), busy_fraction()
        threads = free_threads(cores, busy)
        how = f" ({cores} physical core{'s' if cores != 1 else ''}, {busy:.0%} busy with other work at the start)"
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_demo(cfg, threads, how)
    finally:
        torch.set_num_threads(before)


def _run_demo(cfg: DemoConfig, threads: int, threads_how: str) -> Path:
    """The steps of `run_demo`, on `threads` torch threads (`threads_how` says why, for the page)."""
    out = Path(cfg.out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / ".astrogan-demo").exists():
        raise UserError(f"{out} exists and is not an astrogan demo folder; pass --out with a new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / ".astrogan-demo").touch()
    t0 = time.perf_counter()

    info("[bold]1/5[/] raw pictures: Hubble eXtreme Deep Field crops + GalSim Sérsic galaxies")
    raw = out / "raw"
    # A re-run in the same folder starts from fresh raw pictures: an earlier, larger run's files would be built
    # too, and the page would count other pictures than it says.
    shutil.rmtree(raw, ignore_errors=True)
    make_hdf_crops(raw / "hubble-xdf", num=cfg.num_hdf_crops, seed=cfg.seed)
    make_sersic_pngs(raw / "sersic", num=cfg.num_sersic, image_size=cfg.image_size, seed=cfg.seed)

    info("[bold]2/5[/] dataset build")
    ds_dir = out / "dataset"
    opts = BuildOptions(
        image_sizes=(cfg.image_size,), crop="center", channels=3, seed=cfg.seed, min_size_px=32
    )
    build_dataset([raw / "hubble-xdf", raw / "sersic"], ds_dir, options=opts, overwrite=True)
    real = open_dataset(ds_dir).images(cfg.image_size)

    info(
        f"[bold]3/5[/] training a small {cfg.arch} at {cfg.image_size} px for {cfg.num_train_steps} steps "
        f"on {threads} thread{'s' if threads != 1 else ''}{threads_how}"
    )
    train_cfg = TrainConfig(
        data=str(ds_dir),
        arch=cfg.arch,
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        num_train_steps=cfg.num_train_steps,
        save_every=max(1, cfg.num_train_steps // 4),
        evaluate_every=max(1, cfg.num_train_steps // 15),
        log_every=max(1, cfg.num_train_steps // 100),
        name="demo",
        max_minutes=cfg.max_train_minutes,
        results_dir=str(out / "runs"),
        aug_prob=cfg.aug_prob,
        mirror=cfg.mirror,
        seed=cfg.seed if cfg.train_seed is None else cfg.train_seed,
        device=cfg.device,
        **_arch_settings(cfg),
    )
    run_dir = train(train_cfg)

    info("[bold]4/5[/] sampling: final grid, interpolation sheet, average, progress animation, fidelity")
    fidelity = _sample_and_measure(cfg, run_dir, ds_dir, real, out)
    progress_gif(run_dir, out / "progress.gif")
    stats = read_stats(run_dir)
    plot_training_curves(stats, out / "training-curves.png", title=f"{cfg.arch} on the demo set")

    info("[bold]5/5[/] index.html")
    ticks = [r for r in stats if "images_per_s" in r]
    steps_done = max((int(r["step"]) for r in ticks), default=0)  # fewer than asked if the time cap hit
    speed = np.median([r["images_per_s"] for r in ticks]) if ticks else float("nan")
    stopped = _how_it_stopped(cfg, steps_done)
    rel = lambda p: str(Path(p).relative_to(out))  # noqa: E731
    snaps = sorted((run_dir / "snapshots").glob("step-*.png"))
    page = write_page(
        out / "index.html",
        title="astrogan demo: galaxies that do not exist",
        subtitle=f"A small {cfg.arch} trained for {steps_done} of {cfg.num_train_steps} planned steps on "
        f"{len(real)} real and synthetic galaxy pictures at {cfg.image_size} px, on this machine. {stopped}",
        facts=[
            ("training", f"{steps_done} of {cfg.num_train_steps} steps planned; {stopped}"),
            *fidelity,
            ("run", rel(run_dir)),
            (
                "dataset",
                f"{len(real)} images ({cfg.num_hdf_crops} HXDF crops, "
                f"{cfg.num_sersic} GalSim Sérsic galaxies)",
            ),
            (
                "training speed",
                f"{speed:.0f} images/s (median) on {threads} thread{'s' if threads != 1 else ''}{threads_how}",
            ),
            ("wall time", f"{time.perf_counter() - t0:.0f} s in all"),
        ],
        figures=[
            [
                Figure("real-grid.png", "Real training images", "64 random pictures from the dataset.", True),
                Figure("final-grid.png", "Generated images", "Seeds 0–63 from the EMA generator.", True),
            ],
            Figure(
                "interpolation.png",
                "Latent interpolation",
                "Each column walks (slerp in z) from a start image (top) to an end image (bottom).",
                True,
            ),
            [
                Figure(
                    f"average-{cfg.num_average}.png",
                    f"Average of {cfg.num_average} fakes",
                    "Where the model puts its light on average.",
                    True,
                    256,
                ),
                Figure("average-real.png", "Average of the real images", "For comparison.", True, 256),
            ],
            Figure(
                "progress.gif", "Training progress", "The fixed-seed snapshot grid at each evaluation.", True
            ),
            Figure(
                "training-curves.png",
                "Training curves",
                "Losses, the discriminator's accuracy on real and on fake images, and throughput.",
            ),
            *[Figure(rel(p), f"Snapshot at step {int(p.stem.split('-')[1])}", "", True) for p in snaps[-3:]],
        ],
    )
    info(f"[green]demo done in {time.perf_counter() - t0:.0f} s:[/] open {page}")
    return page
