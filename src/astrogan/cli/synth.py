"""`astrogan synth ...`: synthetic data sets with a known answer (Sérsic and bulge+disc galaxies via GalSim)."""

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
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier synth --out (a folder with synth.json)."
    ),
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


@synth_app.command("galaxies")
def galaxies(
    num: int = typer.Option(1000, "--num", help="Number of galaxies to render."),
    bands: str = typer.Option(
        "g,r,i,z",
        "--bands",
        help="Comma-separated bands: LSST u,g,r,i,z,y or HST F435W,F606W,F775W,F814W,F850LP,F275W,F336W,"
        "F105W,F125W,F160W (GalSim's throughput files).",
    ),
    image_size: int = typer.Option(64, "--size", "--image-size", help="Stamp side in pixels."),
    pixel_scale_arcsec: float = typer.Option(
        0.2, "--pixel-scale", "--pixel-scale-arcsec", help="Arcsec per pixel (0.2 = LSST)."
    ),
    psf: str = typer.Option("moffat", "--psf", help="PSF per band: moffat (beta 3.5) or kolmogorov."),
    seeing: float = typer.Option(
        0.7, "--seeing", help="PSF FWHM in LSST r [arcsec]; other bands scale as wavelength^-0.2."
    ),
    noise: str = typer.Option(
        "default",
        "--noise",
        help="Gaussian sky noise sigma per pixel [nanomaggy]: 'default' (one LSST visit), 'none' or 0, "
        "one number for all bands, or per band 'g=0.004,r=0.005' (others default).",
    ),
    mag_range: str = typer.Option(
        "17,21", "--mag-range", help="LO,HI: total AB magnitude in LSST r, drawn uniformly."
    ),
    max_offset: float = typer.Option(
        1.0, "--max-offset", help="Largest centre offset from the stamp centre [px]."
    ),
    seed: int = typer.Option(0, "--seed", help="Run seed; galaxy k depends only on (seed, k)."),
    out: Path = typer.Option(..., "--out", help="Output folder (must be new or empty unless --overwrite)."),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0 = one per CPU core)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier synth --out (a folder with synth.json)."
    ),
) -> None:
    """Render bulge+disc galaxies through real bandpasses (GalSim chromatic): FITS cubes, params.csv, synth.json."""
    from astrogan.data.synth_galaxies import make_setup, parse_mag_range, synth_galaxies

    setup = make_setup(
        bands,
        image_size=image_size,
        pixel_scale_arcsec=pixel_scale_arcsec,
        psf=psf,
        seeing_arcsec=seeing,
        noise=noise,
        mag_range=parse_mag_range(mag_range),
        max_offset_px=max_offset,
        seed=seed,
    )
    synth_galaxies(out, num=num, setup=setup, num_workers=workers or None, overwrite=overwrite, progress=True)


def register(app: typer.Typer) -> None:
    """Add `astrogan synth` to the root app."""
    app.add_typer(synth_app, name="synth")
