"""`astrogan downstream denoise`: is a denoiser trained on generated galaxies as good as one trained on real ones?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

downstream_app = typer.Typer(
    help="Put generated images to use downstream and measure what they are worth.", no_args_is_help=True
)


def open_generated(path: Path, device: str) -> Any:
    """`--generated`: a dataset directory (returned as the path), a model.onnx or a run directory (a generator)."""
    from astrogan.cli.sample import open_generator

    if (path / "manifest.json").is_file():
        return path
    if path.suffix == ".onnx":
        return open_generator(None, path, device)
    return open_generator(path, None, device)


@downstream_app.command("denoise")
def denoise(
    real: Path = typer.Option(
        ..., "--real", help="The real dataset directory (split 60/20/20 train/val/test)."
    ),
    generated: Path = typer.Option(
        ...,
        "--generated",
        help="A run directory or model.onnx (draws seeds 0..N-1 once, cached in OUT/generated), or a dataset "
        "directory used as the synthetic set.",
    ),
    num_generated: int = typer.Option(
        50_000,
        "--num-generated",
        help="Generated images to draw (at most the dataset's count for a dataset).",
    ),
    alphas: str = typer.Option(
        "0,0.2,0.4,0.6,0.8,1",
        "--alphas",
        help="Probabilities that a training batch comes from the generated set; one denoiser per alpha and repeat.",
    ),
    repeats: int = typer.Option(
        5, "--repeats", help="Networks per alpha (different initial weights and batches)."
    ),
    psf: str = typer.Option(
        "gaussian:sigma=2",
        "--psf",
        help="PSF to undo, in pixels: gaussian:sigma=2, gaussian:fwhm=4.7, moffat:fwhm=3,beta=3 or none.",
    ),
    noise: str = typer.Option(
        "gaussian:sigma=0.05",
        "--noise",
        help="Gaussian noise sigma on the unit scale (uint8 pictures / 255; float data as stored): one value, "
        "or one per band separated by / (gaussian:sigma=0.01/0.02/0.03).",
    ),
    test_conditions: str = typer.Option(
        "none,half-res,noise-x4,both",
        "--test-conditions",
        help="none (as trained), half-res (2x2 binned: the galaxy covers half the pixels), noise-x4, both.",
    ),
    steps: int = typer.Option(
        5000, "--steps", help="Training steps per network at most (early stopping may end sooner)."
    ),
    max_minutes: float = typer.Option(
        None, "--max-minutes", help="Wall-clock budget of all training, shared equally between the networks."
    ),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per training batch."),
    lr: float = typer.Option(1e-4, "--lr", help="Adam learning rate."),
    val_every: int = typer.Option(
        250, "--val-every", help="Steps between validations (and resumable saves)."
    ),
    patience: int = typer.Option(
        6, "--patience", help="Validations without improvement before stopping early."
    ),
    width: int = typer.Option(32, "--width", help="Channels of the denoiser (the paper: 32)."),
    blocks: int = typer.Option(5, "--blocks", help="Residual blocks of the denoiser (the paper: 5)."),
    image_size: int = typer.Option(
        None, "--image-size", help="Image size (default: the largest both sets hold)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Decides the split, the noise, and each repeat's weights and batches."
    ),
    jobs: int = typer.Option(1, "--jobs", help="Networks trained at once, each in its own process."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    out: Path = typer.Option(..., "--out", help="Experiment folder; re-running resumes it."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start again in an --out that holds other settings."
    ),
) -> None:
    """Train denoisers on real and generated galaxies mixed by alpha; test them on held-out real data under shifts."""
    from astrogan.downstream.config import DenoiseConfig, parse_alphas
    from astrogan.downstream.experiment import run_denoise
    from astrogan.utils.log import info

    cfg = DenoiseConfig(
        alphas=parse_alphas(alphas),
        repeats=repeats,
        num_generated=num_generated,
        psf=psf,
        noise=noise,
        conditions=tuple(c.strip() for c in test_conditions.split(",") if c.strip()),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        val_every=val_every,
        patience=patience,
        width=width,
        num_blocks=blocks,
        image_size=image_size,
        seed=seed,
        max_minutes=max_minutes,
        device=device,
        jobs=jobs,
    ).validate()
    doc = run_denoise(
        real,
        open_generated(generated, device),
        out=out,
        config=cfg,
        overwrite=overwrite,
        generated_name=str(generated),
    )
    for cond in doc["conditions"].values():
        info(cond["conclusion"])
    info(f"[green]wrote {out / 'report.html'}")
    typer.echo(str(out / "metrics.json"))


def register(app: typer.Typer) -> None:
    """Add `astrogan downstream` to the root app."""
    app.add_typer(downstream_app, name="downstream")
