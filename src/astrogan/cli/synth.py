"""`astrogan synth ...`: synthetic data sets with a known answer (Sérsic galaxies via GalSim)."""

from __future__ import annotations

from pathlib import Path

import typer

synth_app = typer.Typer(help="Synthesise images with known true parameters.", no_args_is_help=True)


@synth_app.command("sersic")
def sersic(
    num: int = typer.Option(1000, "--num", help="Number of stamps to render."),
    image_size: int = typer.Option(64, "--image-size", help="Stamp side in pixels."),
    bands: int = typer.Option(1, "--bands", help="Bands per stamp (same shape, random flux ratios)."),
    psf: str = typer.Option(
        "moffat:fwhm=2.0,beta=3.0",
        "--psf",
        help="PSF: 'moffat:fwhm=PX,beta=B', 'gaussian:fwhm=PX' (fwhm_arcsec= for arcsec) or 'none'.",
    ),
    noise: str = typer.Option(
        "gaussian:sigma=2.0",
        "--noise",
        help="Noise: 'gaussian:sigma=COUNTS', 'poisson:sky=COUNTS' or 'none'.",
    ),
    pixel_scale_arcsec: float = typer.Option(0.262, "--pixel-scale-arcsec", help="Arcsec per pixel."),
    seed: int = typer.Option(0, "--seed", help="Run seed; image i depends only on (seed, i)."),
    out: Path = typer.Option(..., "--out", help="Output folder (must be new or empty unless --overwrite)."),
    fmt: str = typer.Option(
        "fits", "--format", help="fits (float32, true flux) or png (uint8, asinh stretch)."
    ),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0 = one per CPU core)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing, non-empty --out folder."),
) -> None:
    """Render Sérsic galaxies (GalSim), write FITS/PNG stamps and params.csv with the true parameters."""
    from astrogan.data.synthetic import synth_sersic

    synth_sersic(
        out,
        num=num,
        image_size=image_size,
        seed=seed,
        bands=bands,
        psf=psf,
        noise=noise,
        fmt=fmt,
        pixel_scale_arcsec=pixel_scale_arcsec,
        num_workers=workers or None,
        overwrite=overwrite,
        progress=True,
    )


def register(app: typer.Typer) -> None:
    """Add `astrogan synth` to the root app."""
    app.add_typer(synth_app, name="synth")
