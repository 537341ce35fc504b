"""Multi-band bulge + disc galaxies drawn through real bandpasses with GalSim chromatic objects (Rowe et al. 2015).

Every galaxy is two Sérsic (1963) components at one redshift, each an achromatic profile times its own SED
(GalSim's CWW templates, Coleman, Wu & Weedman 1980, extended by Bolzonella et al. 2000): a small, round,
red bulge (CWW E) and a larger, inclined, blue exponential disc (CWW Sbc, Scd or Im). Each band's image is
that galaxy drawn through the band's throughput curve (the files that ship with GalSim), convolved with the
band's own PSF, in nanomaggies, plus the band's own Gaussian sky noise. Because the two components have
different colours and sizes the colour changes with radius (red centre, blue outskirts), which the
single-Sérsic `synth sersic` cannot show.

Fast path: a component (achromatic profile x SED) convolved with an achromatic PSF is separable, so GalSim's
`ChromaticObject.drawImage` integrates SED x bandpass once (a number) and draws ONE achromatic profile per
component and band, with no per-wavelength images (`ChromaticConvolution.drawImage` splits the bulge + disc
sum into two separable convolutions; the test checks no wavelength integrator runs).

Units: pixel values are nanomaggies, `flux = 10**(-0.4 * (m_AB - 22.5))` (MAGZP = 22.5), so a pixel sum is
a flux and `22.5 - 2.5 log10(sum)` an AB magnitude. Bandpasses carry GalSim's AB zero point.

True parameters of galaxy `index`: twelve unit draws from a NumPy PCG64 stream seeded with
`SeedSequence([seed, index])`, in a fixed order whatever the bands, stamp size or noise (the settings only map
them: sizes scale with the stamp, magnitudes into `mag_range`), so galaxy k never depends on --num or --workers:

- redshift ~ U[0.05, 0.8]; both SEDs are redshifted to it.
- bulge fraction B/T ~ U[0, 1], defined in the REFERENCE band LSST r (whether or not r is drawn); the
  per-band B/T (`<band>_bulge_fraction`) follows from the SEDs.
- total AB magnitude in LSST r ~ U[mag_range] (default 17-21).
- disc half-light radius ~ log-uniform on [0.05, 0.12] x the stamp side (3.2-7.7 px at 64 px); exponential.
- bulge half-light radius = disc's x U[0.2, 0.5]; Sérsic n ~ U[2.5, 5] rounded to 0.05 (the grid keeps
  GalSim's per-n table cache warm: 51 tables per worker); untruncated.
- disc inclination: cos i ~ U[0, 1], axis ratio q = sqrt(cos^2 i (1 - q0^2) + q0^2) with thickness q0 = 0.2;
  bulge rounder along the same axes: q_bulge = 1 - (1 - q_disc) U[0.3, 0.7]. One position angle
  ~ U[0, 180) degrees, counter-clockwise from +x.
- disc SED: one of Sbc, Scd, Im (equal odds); bulge SED: E.
- centre offset from the stamp centre: uniform in a disc of radius `max_offset_px` (default 1 px),
  `centre_dx_px` towards +x (larger column), `centre_dy_px` towards +y (larger row).

Per band: PSF Moffat (beta 3.5) or Kolmogorov with FWHM = seeing x (lambda_eff / lambda_eff(LSST r))^-0.2
(the Kolmogorov seeing law; default seeing 0.7 arcsec); Gaussian noise with sigma per band (default: one
LSST visit's sky, 5-sigma point-source depths u 23.9 g 25.0 r 24.7 i 24.0 z 23.3 y 22.1 spread over a
0.7 arcsec PSF, per 0.2 arcsec pixel, scaled with the pixel side; HST bands take the LSST band nearest in
effective wavelength), drawn from `SeedSequence([galaxy seed, crc32(band name)])` so a band's noise does not
depend on which other bands are drawn.

Orientation: arrays are `[band, y, x]` in FITS order, as GalSim draws them: row 0 is the BOTTOM and +y is up
(a galaxy offset towards +y sits at a larger row index, in the array and in the FITS file).
"""

from __future__ import annotations

import csv
import functools
import math
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.data.synthetic import prepare_out, run_chunks
from astrogan.utils.errors import UserError

__all__ = [
    "BANDPASS_FILES",
    "GalaxySetup",
    "band_psf",
    "draw_galaxy_params",
    "galaxy_model",
    "make_setup",
    "parse_bands",
    "parse_mag_range",
    "parse_noise",
    "render_galaxies",
    "render_galaxy",
    "synth_galaxies",
]

# Band name -> GalSim's throughput file (galsim/share/bandpasses); LSST letters and HST filter names.
BANDPASS_FILES = {
    **{b: f"LSST_{b}.dat" for b in "ugrizy"},
    **{f: f"ACS_wfc_{f}.dat" for f in ("F435W", "F606W", "F775W", "F814W", "F850LP")},
    **{f: f"WFC3_uvis_{f}.dat" for f in ("F275W", "F336W")},
    **{f: f"WFC3_ir_{f}.dat" for f in ("F105W", "F125W", "F160W")},
}
REF_BAND = "r"  # B/T and the total magnitude are set in LSST r, drawn or not
BULGE_SED = "E"
DISC_SEDS = ("Sbc", "Scd", "Im")
SED_FILES = {name: f"CWW_{name}_ext.sed" for name in (BULGE_SED, *DISC_SEDS)}

MAGZP = 22.5  # nanomaggies: flux = 10**(-0.4 (m_AB - MAGZP))
BUNIT = "nanomaggy"
DEFAULT_BANDS = "g,r,i,z"
DEFAULT_PIXEL_SCALE_ARCSEC = 0.2  # LSST
DEFAULT_SEEING_ARCSEC = 0.7  # PSF FWHM in the reference band
DEFAULT_MAG_RANGE = (17.0, 21.0)
DEFAULT_MAX_OFFSET_PX = 1.0
# No "none": a bare cuspy Sérsic (n up to 5) drawn with only the pixel needs FFTs of gigabytes.
PSF_KINDS = ("moffat", "kolmogorov")
MOFFAT_BETA = 3.5
SEEING_POWER = -0.2  # FWHM ~ lambda^-0.2 (Kolmogorov turbulence)
# One LSST visit's sky noise per 0.2 arcsec pixel [nanomaggy]: f5 / (5 sqrt(n_eff)) for the 5-sigma depth
# f5 and a 0.7 arcsec FWHM PSF (n_eff ~ 28 px).
LSST_NOISE_NMGY = {"u": 0.010, "g": 0.004, "r": 0.005, "i": 0.010, "z": 0.018, "y": 0.055}
LSST_NOISE_PIXEL_ARCSEC = 0.2

REDSHIFT_RANGE = (0.05, 0.8)
DISC_HLR_FRAC = (0.05, 0.12)  # of the stamp side
BULGE_TO_DISC_HLR = (0.2, 0.5)
BULGE_N_RANGE = (2.5, 5.0)
BULGE_N_STEP = 0.05
DISC_THICKNESS = 0.2
BULGE_FLATTENING = (0.3, 0.7)
CHUNK_SIZE = 64


@dataclass(frozen=True)
class GalaxySetup:
    """The run-wide settings a worker needs: bands, stamp, PSF and noise per band (all resolved)."""

    bands: tuple[str, ...]
    image_size: int
    pixel_scale_arcsec: float
    psf: str
    seeing_arcsec: float
    psf_fwhm_arcsec: tuple[float, ...]  # per band
    noise_sigma_nmgy: tuple[float, ...]  # per band
    mag_range: tuple[float, float]
    max_offset_px: float
    seed: int


# --------------------------------------------------------------------------------------------------------
# GalSim pieces, loaded once per process


@functools.cache
def _bandpass(band: str) -> Any:
    import galsim

    bp = galsim.Bandpass(BANDPASS_FILES[band], wave_type="nm").thin()
    return bp.withZeropoint("AB")


@functools.cache
def _sed(name: str) -> Any:
    import galsim

    return galsim.SED(SED_FILES[name], wave_type="Ang", flux_type="flambda").thin()


@functools.lru_cache(maxsize=64)
def _psf(kind: str, fwhm_arcsec: float) -> Any:
    import galsim

    if kind == "moffat":
        return galsim.Moffat(beta=MOFFAT_BETA, fwhm=fwhm_arcsec)
    assert kind == "kolmogorov", kind
    return galsim.Kolmogorov(fwhm=fwhm_arcsec)


def band_psf(setup: GalaxySetup, band: str) -> Any:
    """The achromatic GalSim PSF of `band`; profile units are arcsec."""
    return _psf(setup.psf, setup.psf_fwhm_arcsec[setup.bands.index(band)])


def _nmgy_per_count(band: str) -> float:
    """Nanomaggies per GalSim flux unit in `band`: m = ZP_band - 2.5 log10(counts) = 22.5 - 2.5 log10(nmgy)."""
    return 10.0 ** (-0.4 * (_bandpass(band).zeropoint - MAGZP))


# --------------------------------------------------------------------------------------------------------
# Settings


def parse_bands(spec: str | Sequence[str]) -> tuple[str, ...]:
    """`"g,r,i,z"` -> ("g", "r", "i", "z"); LSST letters or HST filter names (any case); UserError otherwise."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    # Any case; GalSim's file stems (LSST_g, ACS_wfc_F606W) name the same bands.
    known = {k.upper(): k for k in BANDPASS_FILES}
    known.update({f.removesuffix(".dat").upper(): k for k, f in BANDPASS_FILES.items()})
    for raw in (str(p).strip() for p in parts):
        if not raw:
            continue
        name = known.get(raw.upper())
        if name is None:
            raise UserError(f"unknown band {raw!r}: choose from {', '.join(BANDPASS_FILES)}")
        if name in names:
            raise UserError(f"--bands names {name!r} twice")
        names.append(name)
    if not names:
        raise UserError(f"--bands is empty: give one or more of {', '.join(BANDPASS_FILES)}")
    return tuple(names)


def _default_noise(band: str, pixel_scale_arcsec: float) -> float:
    """One LSST visit's sky sigma per pixel for `band` (the nearest LSST band in effective wavelength)."""
    if band not in LSST_NOISE_NMGY:
        wave = _bandpass(band).effective_wavelength
        band = min(LSST_NOISE_NMGY, key=lambda b: abs(_bandpass(b).effective_wavelength - wave))
    return LSST_NOISE_NMGY[band] * pixel_scale_arcsec / LSST_NOISE_PIXEL_ARCSEC


def parse_noise(
    spec: str | float | None, bands: Sequence[str], *, pixel_scale_arcsec: float
) -> tuple[float, ...]:
    """Noise sigma per band [nanomaggy] from `default`, `none`/`0`, one number, or `g=0.004,r=0.005` (rest default)."""
    defaults = {b: _default_noise(b, pixel_scale_arcsec) for b in bands}
    text = "default" if spec is None else str(spec).strip().lower()
    if text in ("", "default", "lsst"):
        return tuple(defaults[b] for b in bands)
    if text in ("none", "off"):
        return tuple(0.0 for _ in bands)
    hint = "use default, none, one sigma in nanomaggies (0.005) or per band (g=0.004,r=0.005)"
    values = dict(defaults)
    if "=" not in text:
        values = dict.fromkeys(bands, _number(text, "--noise", hint))
    else:
        for part in filter(None, (p.strip() for p in str(spec).split(","))):
            key, _, val = part.partition("=")
            band = parse_bands(key)[0] if key.strip() else ""
            if band not in values:
                raise UserError(
                    f"--noise names band {key.strip()!r}, which is not drawn ({', '.join(bands)})"
                )
            values[band] = _number(val, "--noise", hint)
    return tuple(values[b] for b in bands)


def parse_mag_range(text: str) -> tuple[float, float]:
    """`"17,21"` -> (17.0, 21.0); UserError unless two numbers LO <= HI."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise UserError(f"--mag-range must be two magnitudes LO,HI (e.g. 17,21), got {text!r}") from None
    return lo, hi


def _number(text: str, flag: str, hint: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{flag}: {text.strip()!r} is not a number; {hint}") from None
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{flag} must be a finite number >= 0, got {text.strip()}")
    return value


def make_setup(
    bands: str | Sequence[str] = DEFAULT_BANDS,
    *,
    image_size: int = 64,
    pixel_scale_arcsec: float = DEFAULT_PIXEL_SCALE_ARCSEC,
    psf: str = "moffat",
    seeing_arcsec: float = DEFAULT_SEEING_ARCSEC,
    noise: str | float | None = "default",
    mag_range: tuple[float, float] = DEFAULT_MAG_RANGE,
    max_offset_px: float = DEFAULT_MAX_OFFSET_PX,
    seed: int = 0,
) -> GalaxySetup:
    """Check and resolve the user's settings (UserError with one actionable line for a bad one)."""
    names = parse_bands(bands)
    if image_size < 8:
        raise UserError(f"--size must be at least 8 px, got {image_size}")
    if not (math.isfinite(pixel_scale_arcsec) and pixel_scale_arcsec > 0):
        raise UserError(f"--pixel-scale must be > 0 arcsec, got {pixel_scale_arcsec}")
    kind = psf.strip().lower()
    if kind not in PSF_KINDS:
        raise UserError(f"--psf must be one of {', '.join(PSF_KINDS)}, got {psf!r}")
    if not (math.isfinite(seeing_arcsec) and seeing_arcsec > 0):
        raise UserError(f"--seeing must be a PSF FWHM > 0 arcsec, got {seeing_arcsec}")
    lo, hi = (float(m) for m in mag_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise UserError(f"--mag-range must be two magnitudes LO,HI with LO <= HI, got {lo},{hi}")
    if not (math.isfinite(max_offset_px) and max_offset_px >= 0):
        raise UserError(f"--max-offset must be >= 0 px, got {max_offset_px}")
    if max_offset_px >= image_size / 2:  # the centre could fall off the stamp, its params.csv row still there
        raise UserError(
            f"--max-offset must be < half the stamp ({image_size / 2:g} px for --size {image_size}), "
            f"got {max_offset_px:g}"
        )
    ref_wave = _bandpass(REF_BAND).effective_wavelength
    fwhm = tuple(
        seeing_arcsec * (_bandpass(b).effective_wavelength / ref_wave) ** SEEING_POWER for b in names
    )
    return GalaxySetup(
        bands=names,
        image_size=int(image_size),
        pixel_scale_arcsec=float(pixel_scale_arcsec),
        psf=kind,
        seeing_arcsec=float(seeing_arcsec),
        psf_fwhm_arcsec=fwhm,
        noise_sigma_nmgy=parse_noise(noise, names, pixel_scale_arcsec=pixel_scale_arcsec),
        mag_range=(lo, hi),
        max_offset_px=float(max_offset_px),
        seed=int(seed),
    )


# --------------------------------------------------------------------------------------------------------
# One galaxy


def draw_galaxy_params(seed: int, index: int, *, setup: GalaxySetup) -> dict[str, Any]:
    """The true, band-independent parameters of galaxy `index` of a run with `seed` (module docstring)."""
    ss = np.random.SeedSequence([int(seed), int(index)])
    rng = np.random.Generator(np.random.PCG64(ss))
    # A fixed number of unit draws in a fixed order: settings only map them, never shift the stream.
    u = rng.uniform(size=12)
    z = REDSHIFT_RANGE[0] + u[0] * (REDSHIFT_RANGE[1] - REDSHIFT_RANGE[0])
    bt = float(u[1])
    mag = setup.mag_range[0] + u[2] * (setup.mag_range[1] - setup.mag_range[0])
    lo, hi = (f * setup.image_size * setup.pixel_scale_arcsec for f in DISC_HLR_FRAC)
    disc_hlr = math.exp(math.log(lo) + u[3] * (math.log(hi) - math.log(lo)))
    bulge_hlr = disc_hlr * (BULGE_TO_DISC_HLR[0] + u[4] * (BULGE_TO_DISC_HLR[1] - BULGE_TO_DISC_HLR[0]))
    n = BULGE_N_RANGE[0] + u[5] * (BULGE_N_RANGE[1] - BULGE_N_RANGE[0])
    n = round(round(n / BULGE_N_STEP) * BULGE_N_STEP, 2)
    cos_i = float(u[6])
    disc_q = math.sqrt(cos_i**2 * (1 - DISC_THICKNESS**2) + DISC_THICKNESS**2)
    bulge_q = 1.0 - (1.0 - disc_q) * (
        BULGE_FLATTENING[0] + u[7] * (BULGE_FLATTENING[1] - BULGE_FLATTENING[0])
    )
    pa = 180.0 * float(u[8])
    r_off = setup.max_offset_px * math.sqrt(u[9])
    phi = 2.0 * math.pi * u[10]
    disc_sed = DISC_SEDS[min(int(u[11] * len(DISC_SEDS)), len(DISC_SEDS) - 1)]
    return {
        "index": int(index),
        # One 32-bit number that seeds this galaxy's noise (with the band name), alone.
        "seed": int(ss.generate_state(1, dtype=np.uint32)[0]),
        "redshift": float(z),
        "bulge_fraction": bt,
        "ref_mag": float(mag),
        "bulge_n": float(n),
        "bulge_hlr_arcsec": float(bulge_hlr),
        "bulge_q": float(bulge_q),
        "disc_hlr_arcsec": float(disc_hlr),
        "disc_q": float(disc_q),
        "inclination_deg": math.degrees(math.acos(cos_i)),
        "position_angle_deg": pa,
        "centre_dx_px": r_off * math.cos(phi),
        "centre_dy_px": r_off * math.sin(phi),
        "bulge_sed": BULGE_SED,
        "disc_sed": disc_sed,
    }


def _component_seds(p: dict[str, Any]) -> tuple[Any, Any]:
    """(bulge SED, disc SED) at the galaxy's redshift, fluxes split B/T : 1 - B/T in the reference band."""
    ref = _bandpass(REF_BAND)
    total = 10.0 ** (-0.4 * (p["ref_mag"] - ref.zeropoint))  # GalSim flux units in LSST r
    bt = p["bulge_fraction"]
    bulge = _sed(p["bulge_sed"]).atRedshift(p["redshift"]).withFlux(bt * total, ref) if bt > 0 else None
    disc = _sed(p["disc_sed"]).atRedshift(p["redshift"]).withFlux((1 - bt) * total, ref) if bt < 1 else None
    return bulge, disc


def galaxy_model(p: dict[str, Any]) -> Any:
    """The chromatic GalSim galaxy: bulge profile x bulge SED + disc profile x disc SED (arcsec, sky flux)."""
    import galsim

    bulge_sed, disc_sed = _component_seds(p)
    beta = p["position_angle_deg"] * galsim.degrees
    parts = []
    if bulge_sed is not None:
        bulge = galsim.Sersic(n=p["bulge_n"], half_light_radius=p["bulge_hlr_arcsec"])
        parts.append(bulge.shear(q=p["bulge_q"], beta=beta) * bulge_sed)
    if disc_sed is not None:
        disc = galsim.Exponential(half_light_radius=p["disc_hlr_arcsec"])
        parts.append(disc.shear(q=p["disc_q"], beta=beta) * disc_sed)
    return galsim.Add(parts) if len(parts) > 1 else parts[0]


def band_values(p: dict[str, Any], setup: GalaxySetup) -> dict[str, float]:
    """Per-band truths of galaxy `p`: AB magnitudes, B/T, colours (bluer minus redder), PSF FWHM, noise sigma."""
    bulge_sed, disc_sed = _component_seds(p)
    out: dict[str, float] = {}
    mags: dict[str, float] = {}
    for b in setup.bands:
        bp = _bandpass(b)
        fb = bulge_sed.calculateFlux(bp) if bulge_sed is not None else 0.0
        fd = disc_sed.calculateFlux(bp) if disc_sed is not None else 0.0
        mags[b] = float(bp.zeropoint - 2.5 * math.log10(fb + fd))
        out[f"{b}_mag"] = mags[b]
        out[f"{b}_bulge_fraction"] = float(fb / (fb + fd))
    order = sorted(setup.bands, key=lambda b: _bandpass(b).effective_wavelength)
    for i, blue in enumerate(order):
        for red in order[i + 1 :]:
            out[f"{blue}_minus_{red}"] = mags[blue] - mags[red]
    for b, fwhm, sigma in zip(setup.bands, setup.psf_fwhm_arcsec, setup.noise_sigma_nmgy, strict=True):
        out[f"{b}_psf_fwhm_arcsec"] = fwhm
        out[f"{b}_psf_fwhm_px"] = fwhm / setup.pixel_scale_arcsec
        out[f"{b}_noise_sigma_nmgy"] = sigma
    return out


def render_galaxy(p: dict[str, Any], setup: GalaxySetup, *, noise: bool = True) -> np.ndarray:
    """Galaxy `p` drawn in every band: float32 `(B, Y, X)` nanomaggies, FITS order (row 0 at the bottom, +y up)."""
    import galsim

    gal = galaxy_model(p)
    size = setup.image_size
    cube = np.empty((len(setup.bands), size, size), np.float32)
    for k, band in enumerate(setup.bands):
        # (achromatic profile x SED) convolved with an achromatic PSF: GalSim's separable fast path.
        img = galsim.Convolve(gal, band_psf(setup, band)).drawImage(
            _bandpass(band),
            nx=size,
            ny=size,
            scale=setup.pixel_scale_arcsec,
            offset=(p["centre_dx_px"], p["centre_dy_px"]),
        )
        plane = img.array.astype(np.float64) * _nmgy_per_count(band)
        sigma = setup.noise_sigma_nmgy[k]
        if noise and sigma > 0:
            # Seeded by the galaxy and the band's NAME: the same noise whichever other bands are drawn.
            ss = np.random.SeedSequence([int(p["seed"]), zlib.crc32(band.encode())])
            plane += np.random.Generator(np.random.PCG64(ss)).normal(0.0, sigma, plane.shape)
        cube[k] = plane
    return cube


# --------------------------------------------------------------------------------------------------------
# Many galaxies


_Job = tuple[
    int, int, GalaxySetup, str | None, int
]  # start, stop, setup, folder to write into (or None), width


def _render_chunk(job: _Job) -> tuple[int, np.ndarray, list[dict[str, Any]]]:
    """Galaxies [start, stop): their cubes and rows; with a folder, each cube is written there (FITS) instead.

    Writing in the worker spreads astropy's header work over the pool (it costs about as much as a draw).
    """
    start, stop, setup, folder, width = job
    rows, cubes = [], []
    for i in range(start, stop):
        p = draw_galaxy_params(setup.seed, i, setup=setup)
        cube = render_galaxy(p, setup)
        row = {"file": f"galaxy_{i:0{width}d}.fits", **_row(p, setup)}
        if folder is None:
            cubes.append(cube)
        else:
            _write_cube(Path(folder) / row["file"], cube, row, setup)
        rows.append(row)
    size = setup.image_size
    images = np.stack(cubes) if cubes else np.zeros((0, len(setup.bands), size, size), np.float32)
    return start, images, rows


def _write_cube(path: Path, cube: np.ndarray, row: dict[str, Any], setup: GalaxySetup) -> None:
    """One galaxy's FITS file (inside the run's temp folder, so a plain write is enough)."""
    from astrogan.science import fits_bytes, fits_to_image_order

    # GalSim draws in FITS order; fits_bytes takes image order and flips back (the one flip): net no flip.
    path.write_bytes(fits_bytes(fits_to_image_order(cube), fits_cards(row, setup)))


def _row(p: dict[str, Any], setup: GalaxySetup) -> dict[str, Any]:
    """One params.csv row (less `file`): drawn parameters with px sizes beside arcsec, then per-band truths."""
    row: dict[str, Any] = {}
    for key, value in p.items():
        row[key] = value
        if key.endswith("_hlr_arcsec"):
            row[key.replace("_arcsec", "_px")] = value / setup.pixel_scale_arcsec
    row["pixel_scale_arcsec"] = setup.pixel_scale_arcsec
    row.update(band_values(p, setup))
    return row


def iter_galaxy_chunks(
    num: int,
    setup: GalaxySetup,
    *,
    num_workers: int | None = None,
    write_to: Path | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[tuple[int, np.ndarray, list[dict[str, Any]]]]:
    """Yield `(start, images (k, B, H, W) float32 FITS order, rows)` chunks of `chunk_size` in index order.

    With `write_to` the workers write `galaxy_<index>.fits` there and the images come back empty `(0, ...)`.
    Galaxy k is the same whatever `num`, `num_workers` or `chunk_size`.
    """
    if num < 0:
        raise UserError(f"--num must be >= 0, got {num}")
    width = max(6, len(str(max(num - 1, 0))))
    folder = None if write_to is None else str(write_to)
    step = max(1, int(chunk_size))
    jobs = [(s, min(s + step, num), setup, folder, width) for s in range(0, num, step)]
    yield from run_chunks(_render_chunk, jobs, num_workers=num_workers)


def render_galaxies(
    num: int,
    setup: GalaxySetup,
    *,
    num_workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = False,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Render `num` galaxies: float32 `(num, B, H, W)` nanomaggies (FITS order) and their params.csv rows."""
    from astrogan.utils.log import Bar

    images = np.zeros((num, len(setup.bands), setup.image_size, setup.image_size), np.float32)
    rows: list[dict[str, Any]] = []
    with Bar("rendering bulge+disc galaxies", num, enabled=progress, unit="galaxies") as bar:
        chunks = iter_galaxy_chunks(num, setup, num_workers=num_workers, chunk_size=chunk_size)
        for start, chunk, chunk_rows in chunks:
            images[start : start + len(chunk)] = chunk
            rows.extend(chunk_rows)
            bar.advance(len(chunk))
    return images, rows


def fits_cards(row: dict[str, Any], setup: GalaxySetup) -> list[tuple[str, Any, str]]:
    """The header of one galaxy's cube: bands, units, pixel scale, PSF and noise per band, true parameters."""
    from astrogan.science import fits_header_cards

    cards: dict[str, Any] = {"BANDS": (",".join(setup.bands), "band of each plane (axis 3), in order")}
    for i, b in enumerate(setup.bands, start=1):
        cards[f"BAND{i}"] = (b, f"band of plane {i} ({BANDPASS_FILES[b]})")
    cards["BUNIT"] = (BUNIT, f"flux = 10**(-0.4 (m_AB - {MAGZP:g}))")
    cards["MAGZP"] = (MAGZP, "AB magnitude of a flux of 1 BUNIT")
    cards["PIXSCALE"] = (setup.pixel_scale_arcsec, "pixel scale [arcsec/pixel]")
    cards["PSF"] = (
        setup.psf,
        "PSF profile per band" + (f" (beta {MOFFAT_BETA:g})" if setup.psf == "moffat" else ""),
    )
    for i, b in enumerate(setup.bands, start=1):
        cards[f"FWHM{i}"] = (row[f"{b}_psf_fwhm_arcsec"], f"PSF FWHM in {b} [arcsec]")
    for i, b in enumerate(setup.bands, start=1):
        cards[f"NOISE{i}"] = (row[f"{b}_noise_sigma_nmgy"], f"Gaussian noise sigma in {b} [{BUNIT}]")
    for i, b in enumerate(setup.bands, start=1):
        cards[f"MAG{i}"] = (row[f"{b}_mag"], f"true total AB magnitude in {b}")
    cards.update(
        REFBAND=(f"LSST_{REF_BAND}", "band of BT and REFMAG"),
        REFMAG=(row["ref_mag"], "true total AB magnitude in REFBAND"),
        BT=(row["bulge_fraction"], "bulge-to-total flux ratio in REFBAND"),
        REDSHIFT=(row["redshift"], "redshift of both SEDs"),
        BULGE_N=(row["bulge_n"], "bulge Sersic index"),
        BULGE_RE=(row["bulge_hlr_arcsec"], "bulge half-light radius [arcsec]"),
        BULGE_Q=(row["bulge_q"], "bulge axis ratio b/a"),
        DISC_RE=(row["disc_hlr_arcsec"], "disc (n=1) half-light radius [arcsec]"),
        DISC_Q=(row["disc_q"], "disc axis ratio b/a"),
        PA_DEG=(row["position_angle_deg"], "position angle CCW from +x [deg]"),
        DX_PX=(row["centre_dx_px"], "centre offset towards +x (columns) [px]"),
        DY_PX=(row["centre_dy_px"], "centre offset towards +y (rows up) [px]"),
        BULGESED=(f"CWW_{row['bulge_sed']}", "bulge SED (GalSim share/SEDs)"),
        DISCSED=(f"CWW_{row['disc_sed']}", "disc SED (GalSim share/SEDs)"),
        INDEX=(row["index"], "galaxy index in the run"),
        SEED=(row["seed"], "per-galaxy noise seed"),
    )
    return fits_header_cards(None, **cards)


def synth_galaxies(
    out_dir: str | os.PathLike[str],
    *,
    num: int,
    setup: GalaxySetup,
    num_workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write `galaxy_000000.fits` cubes `(B, Y, X)`, `params.csv` and `synth.json` into `out_dir`, atomically.

    A one-band run writes plain `(Y, X)` images (the shared FITS writer drops a single plane's axis).

    The folder is built under a temp name and renamed when complete, so a failed or interrupted run leaves
    nothing behind. Returns the folder.
    """
    import galsim

    from astrogan.utils.atomic import atomic_dir, write_json
    from astrogan.utils.log import Bar

    if num < 0:
        raise UserError(f"--num must be >= 0, got {num}")
    out = prepare_out(out_dir, overwrite=overwrite)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        with Bar("rendering bulge+disc galaxies", num, enabled=progress, unit="galaxies") as bar:
            chunks = iter_galaxy_chunks(
                num, setup, num_workers=num_workers, write_to=tmp, chunk_size=chunk_size
            )
            for _, _, chunk_rows in chunks:
                rows.extend(chunk_rows)
                bar.advance(len(chunk_rows))
        columns = list(rows[0]) if rows else ["file", "index", "seed"]
        with open(tmp / "params.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_fmt(row[c]) for c in columns])
        write_json(tmp / "synth.json", _settings(num, setup, galsim.__version__))
    if progress:
        from astrogan.utils.log import info

        elapsed = time.perf_counter() - t0
        info(f"wrote {num} galaxies to {out} in {elapsed:.1f} s ({num / max(elapsed, 1e-9):.1f} galaxies/s)")
    return out


def _settings(num: int, setup: GalaxySetup, galsim_version: str) -> dict[str, Any]:
    """synth.json: what `dataset build` credits and what reproduces the folder."""
    return {
        "generator": "astrogan.data.synth_galaxies.synth_galaxies",
        "credit": "synthetic bulge+disc galaxies (astrogan synth galaxies, GalSim chromatic objects, CWW SEDs)",
        "licence": "generated by astrogan (no third-party rights)",
        "num": num,
        "image_size": setup.image_size,
        "bands": list(setup.bands),
        "bandpass_files": {b: BANDPASS_FILES[b] for b in setup.bands},
        "seed": setup.seed,
        "seeds": "galaxy k: numpy PCG64(SeedSequence([seed, k])); its noise in band b: "
        "PCG64(SeedSequence([params.csv seed, crc32(b)]))",
        "pixel_scale_arcsec": setup.pixel_scale_arcsec,
        "psf": setup.psf,
        "psf_beta": MOFFAT_BETA if setup.psf == "moffat" else None,
        "seeing_arcsec": setup.seeing_arcsec,
        "psf_fwhm_arcsec": dict(zip(setup.bands, setup.psf_fwhm_arcsec, strict=True)),
        "noise": "gaussian" if any(setup.noise_sigma_nmgy) else "none",
        "noise_sigma_nmgy": dict(zip(setup.bands, setup.noise_sigma_nmgy, strict=True)),
        "bunit": BUNIT,
        "magzp": MAGZP,
        "ref_band": f"LSST_{REF_BAND}",
        "mag_range": list(setup.mag_range),
        "max_offset_px": setup.max_offset_px,
        "seds": {"bulge": SED_FILES[BULGE_SED], "disc": [SED_FILES[s] for s in DISC_SEDS]},
        "format": "fits",
        "layout": "one FITS cube per galaxy, float32 (B, Y, X) primary HDU; true parameters in params.csv",
        "orientation": "row 0 of the FITS data is the bottom (y up, as GalSim draws); "
        "a galaxy offset towards +y sits at a larger row index",
        "galsim_version": galsim_version,
        "params_file": "params.csv",
    }


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))
