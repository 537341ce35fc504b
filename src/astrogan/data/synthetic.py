"""Synthetic Sérsic galaxies rendered with GalSim (Rowe et al. 2015): a data set with a known answer.

Every stamp is one Sérsic profile (Sérsic 1963), sheared to an ellipse, convolved with a PSF,
drawn on a pixel grid and given noise. The true parameters of every stamp are returned (and written
to ``params.csv`` by :func:`synth_sersic`), so metrics can compare a generated distribution with the
one that made the data.

Parameter distributions (drawn independently per image from a NumPy PCG64 generator seeded with
``SeedSequence([seed, index])``, so image ``index`` is the same whatever ``num`` or ``num_workers``):

- Sérsic index ``n`` ~ log-uniform on [0.5, 6] (GalSim supports 0.3 <= n <= 6.2).
- axis ratio ``q = b/a`` ~ U[0.2, 1]; ``ellipticity = 1 - q``.
- position angle ``PA`` ~ U[0, 180) degrees, counter-clockwise from the +x axis.
- circularised half-light radius ``r_e = sqrt(a b)`` (GalSim's shear keeps area) ~ log-uniform on
  [``0.04 H``, ``max(0.048 H, 0.9 (H/2) sqrt(q) / 4)``] pixels for an ``H`` px stamp, so the
  profile, truncated at 4 ``r_e`` (circularised; ``4 r_e / sqrt(q)`` along the major axis), fits
  the stamp (at 64 px: 2.6–7.2 px for round galaxies).
  The half-light radius is that of the truncated profile (GalSim ``flux_untruncated=False``).
- total flux (band 0) ~ log-uniform on [300, 30000] (counts); for ``bands > 1`` band ``k`` has
  flux ``flux * flux_ratio_k`` with ``flux_ratio_k`` ~ log-uniform on [0.5, 2] (same shape in
  every band: colour without colour gradients).
- the galaxy sits at the stamp centre.

PSF spec strings: ``"moffat:fwhm=2.0,beta=3.0"``, ``"gaussian:fwhm=2.0"`` or ``None``/``"none"``.
``fwhm`` is in pixels (``fwhm_arcsec=`` gives it in arcsec instead). Noise spec strings:
``"gaussian:sigma=2.0"`` (additive, counts per pixel), ``"poisson:sky=100"`` (GalSim CCDNoise, gain 1,
sky level subtracted again so the background is zero-mean) or ``None``/``"none"``.

Arrays are indexed ``[y, x]`` with ``y`` growing upward (GalSim and FITS convention: row 0 is the
bottom). The PNG writer flips the rows once so that the picture looks like the FITS file in DS9.

PNG output uses an asinh stretch with dataset-wide parameters, written to ``stretch.json`` so it
can be undone: ``u = asinh(x / softening) / asinh(vmax / softening)``, clipped to [0, 1], times 255,
where ``softening`` is the noise sigma (1.0 when noiseless) and ``vmax`` the 99.9th percentile of
the first chunk's pixels (indices 0–63: fixed, so reproducible).
"""

from __future__ import annotations

import csv
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.utils.errors import UserError

DEFAULT_PSF = "moffat:fwhm=2.0,beta=3.0"
DEFAULT_NOISE = "gaussian:sigma=2.0"
DEFAULT_PIXEL_SCALE_ARCSEC = 0.262  # DECaLS, the survey behind Galaxy10 DECaLS

N_RANGE = (0.5, 6.0)
Q_RANGE = (0.2, 1.0)
FLUX_RANGE = (300.0, 30000.0)
FLUX_RATIO_RANGE = (0.5, 2.0)
TRUNC_IN_RE = 4.0
CHUNK_SIZE = 64  # fixed so the PNG stretch (first chunk) never depends on the worker count

_BASE_KEYS = (
    "index",
    "seed",
    "sersic_n",
    "half_light_radius_px",
    "half_light_radius_arcsec",
    "q",
    "ellipticity",
    "position_angle_deg",
    "flux",
)


@dataclass(frozen=True)
class PSFSpec:
    """A parsed PSF spec: kind 'moffat' | 'gaussian' | 'none', FWHM in pixels."""

    kind: str
    fwhm_px: float = 0.0
    beta: float = 3.0


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise spec: kind 'gaussian' | 'poisson' | 'none'."""

    kind: str
    sigma: float = 0.0
    sky: float = 0.0

    @property
    def effective_sigma(self) -> float:
        """Per-pixel noise standard deviation of the background (counts)."""
        if self.kind == "gaussian":
            return self.sigma
        if self.kind == "poisson":
            return math.sqrt(self.sky)
        return 0.0


def _parse_kv(spec: str, what: str, allowed: dict[str, tuple[str, ...]]) -> tuple[str, dict[str, float]]:
    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in allowed:
        raise UserError(
            f"unknown {what} kind {kind!r} in {spec!r}; "
            f"use one of {', '.join(allowed)} (e.g. {_EXAMPLES[what]})"
        )
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in allowed[kind]:
            raise UserError(
                f"bad {what} parameter {part!r} in {spec!r}; {kind} takes "
                f"{', '.join(k + '=NUMBER' for k in allowed[kind]) or 'no parameters'}"
            )
        try:
            number = float(val)
        except ValueError:
            raise UserError(f"{what} parameter {key} must be a number, got {val!r} in {spec!r}") from None
        if not math.isfinite(number) or number < 0:
            raise UserError(f"{what} parameter {key} must be a finite number >= 0, got {val!r}")
        values[key] = number
    return kind, values


_EXAMPLES = {"psf": "'moffat:fwhm=2.0,beta=3.0'", "noise": "'gaussian:sigma=2.0'"}


def parse_psf(spec: str | None, *, pixel_scale_arcsec: float = DEFAULT_PIXEL_SCALE_ARCSEC) -> PSFSpec:
    """Parse ``moffat:fwhm=2.0,beta=3.0`` / ``gaussian:fwhm=2.0`` / ``none`` (UserError when malformed)."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return PSFSpec("none")
    kind, v = _parse_kv(
        spec,
        "psf",
        {
            "moffat": ("fwhm", "fwhm_px", "fwhm_arcsec", "beta"),
            "gaussian": ("fwhm", "fwhm_px", "fwhm_arcsec"),
        },
    )
    given = [k for k in ("fwhm", "fwhm_px", "fwhm_arcsec") if k in v]
    if len(given) > 1:  # which one wins would be a guess
        raise UserError(f"psf: give the FWHM once, as one of {' or '.join(given)}, in {spec!r}")
    if "fwhm_arcsec" in v:
        fwhm_px = v["fwhm_arcsec"] / pixel_scale_arcsec
    else:
        fwhm_px = v.get("fwhm_px", v.get("fwhm", 2.0))
    if fwhm_px <= 0:
        raise UserError(f"psf fwhm must be > 0 in {spec!r}")
    beta = v.get("beta", 3.0)
    if kind == "moffat" and beta <= 1.1:
        raise UserError(f"moffat beta must be > 1.1 (GalSim's limit), got {beta} in {spec!r}")
    return PSFSpec(kind, fwhm_px=fwhm_px, beta=beta)


def parse_noise(spec: str | None) -> NoiseSpec:
    """Parse ``gaussian:sigma=2.0`` / ``poisson:sky=100`` / ``none`` (UserError when malformed)."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return NoiseSpec("none")
    kind, v = _parse_kv(spec, "noise", {"gaussian": ("sigma",), "poisson": ("sky",)})
    if kind == "gaussian":
        return NoiseSpec("gaussian", sigma=v.get("sigma", 2.0))
    return NoiseSpec("poisson", sky=v.get("sky", 100.0))


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


def draw_params(seed: int, index: int, *, image_size: int, bands: int = 1) -> dict[str, float]:
    """The true parameters of image ``index`` of a run with ``seed`` (see the module docstring)."""
    ss = np.random.SeedSequence([int(seed), int(index)])
    rng = np.random.Generator(np.random.PCG64(ss))
    n = _loguniform(rng, *N_RANGE)
    q = float(rng.uniform(*Q_RANGE))
    pa = float(rng.uniform(0.0, 180.0))
    re_min = 0.04 * image_size
    re_max = max(1.2 * re_min, 0.9 * (image_size / 2) * math.sqrt(q) / TRUNC_IN_RE)
    re_px = _loguniform(rng, re_min, re_max)
    flux = _loguniform(rng, *FLUX_RANGE)
    params = {
        "index": float(index),
        # One 32-bit number that seeds GalSim's noise for this image alone.
        "seed": float(ss.generate_state(1, dtype=np.uint32)[0]),
        "sersic_n": n,
        "half_light_radius_px": re_px,
        "q": q,
        "ellipticity": 1.0 - q,
        "position_angle_deg": pa,
        "flux": flux,
    }
    for k in range(1, bands):
        params[f"flux_ratio_{k}"] = _loguniform(rng, *FLUX_RATIO_RANGE)
    return params


def _render_one(
    p: dict[str, float], *, image_size: int, bands: int, psf: PSFSpec, noise: NoiseSpec
) -> np.ndarray:
    import galsim

    # Looser folding/maxk thresholds than GalSim's defaults: 64 px stamps do not need 1e-3
    # accuracy in k-space, and this keeps a stamp at a few milliseconds.
    gsp = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=1e-2)
    re = p["half_light_radius_px"]
    gal = galsim.Sersic(
        n=p["sersic_n"], half_light_radius=re, trunc=TRUNC_IN_RE * re, flux=1.0, gsparams=gsp
    ).shear(q=p["q"], beta=p["position_angle_deg"] * galsim.degrees)
    if psf.kind == "moffat":
        gal = galsim.Convolve(gal, galsim.Moffat(beta=psf.beta, fwhm=psf.fwhm_px, gsparams=gsp), gsparams=gsp)
    elif psf.kind == "gaussian":
        gal = galsim.Convolve(gal, galsim.Gaussian(fwhm=psf.fwhm_px, gsparams=gsp), gsparams=gsp)
    unit = gal.drawImage(nx=image_size, ny=image_size, scale=1.0).array.astype(np.float64)
    out = np.empty((bands, image_size, image_size), np.float32)
    rng = galsim.BaseDeviate(int(p["seed"]))
    for b in range(bands):
        flux = p["flux"] * (p[f"flux_ratio_{b}"] if b else 1.0)
        img = galsim.ImageD(unit * flux, scale=1.0)
        if noise.kind == "gaussian" and noise.sigma > 0:
            img.addNoise(galsim.GaussianNoise(rng, sigma=noise.sigma))
        elif noise.kind == "poisson":
            img += noise.sky
            img.addNoise(galsim.CCDNoise(rng, sky_level=0.0, gain=1.0))
            img -= noise.sky
        out[b] = img.array
    return out


def _render_chunk(args: tuple[int, int, int, int, int, PSFSpec, NoiseSpec]) -> tuple[int, np.ndarray, list]:
    start, stop, seed, image_size, bands, psf, noise = args
    params = [draw_params(seed, i, image_size=image_size, bands=bands) for i in range(start, stop)]
    images = np.stack(
        [_render_one(p, image_size=image_size, bands=bands, psf=psf, noise=noise) for p in params]
    )
    return start, images, params


def _check_args(num: int, image_size: int, bands: int, pixel_scale_arcsec: float) -> None:
    if num < 0:
        raise UserError(f"--num must be >= 0, got {num}")
    if image_size < 8:
        raise UserError(f"--image-size must be at least 8 px, got {image_size}")
    if bands < 1:
        raise UserError(f"--bands must be >= 1, got {bands}")
    if not (math.isfinite(pixel_scale_arcsec) and pixel_scale_arcsec > 0):
        raise UserError(f"--pixel-scale-arcsec must be a finite number > 0, got {pixel_scale_arcsec}")


def iter_sersic_chunks(
    num: int,
    *,
    image_size: int = 64,
    seed: int = 0,
    bands: int = 1,
    psf: str | None = DEFAULT_PSF,
    noise: str | None = DEFAULT_NOISE,
    pixel_scale_arcsec: float = DEFAULT_PIXEL_SCALE_ARCSEC,
    num_workers: int | None = None,
) -> Iterator[tuple[int, np.ndarray, list[dict[str, float]]]]:
    """Yield ``(start, images (k, bands, H, W) float32, params list)`` chunks in index order."""
    _check_args(num, image_size, bands, pixel_scale_arcsec)
    psf_spec = parse_psf(psf, pixel_scale_arcsec=pixel_scale_arcsec)
    noise_spec = parse_noise(noise)
    jobs = [
        (s, min(s + CHUNK_SIZE, num), int(seed), int(image_size), int(bands), psf_spec, noise_spec)
        for s in range(0, num, CHUNK_SIZE)
    ]
    yield from run_chunks(_render_chunk, jobs, num_workers=num_workers)


def run_chunks(render: Callable[[Any], Any], jobs: list[Any], *, num_workers: int | None) -> Iterator[Any]:
    """`render(job)` for each job, in order: in this process for one worker, else in a spawn pool of workers
    (default: the CPUs this process may use). `render` must be a module-level function (it is pickled)."""
    if num_workers is None:
        num_workers = (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        )
    num_workers = max(1, min(int(num_workers), len(jobs)))
    if num_workers == 1:
        for job in jobs:
            yield render(job)
        return
    # spawn: safe with threads (torch, Rich) in the parent, and the same on every OS.
    with mp.get_context("spawn").Pool(num_workers, initializer=worker_init) as pool:
        yield from pool.imap(render, jobs)


def worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def render_sersic(
    num: int,
    *,
    image_size: int = 64,
    seed: int = 0,
    bands: int = 1,
    psf: str | None = DEFAULT_PSF,
    noise: str | None = DEFAULT_NOISE,
    pixel_scale_arcsec: float = DEFAULT_PIXEL_SCALE_ARCSEC,
    num_workers: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render ``num`` Sérsic stamps; returns images float32 ``(num, bands, H, W)`` and true parameters.

    The params dict holds 1D arrays of length ``num``: index, seed (per image), sersic_n,
    half_light_radius_px/_arcsec, q, ellipticity, position_angle_deg, flux, flux_ratio_k (k >= 1 when
    bands > 1), psf_fwhm_px, psf_fwhm_arcsec, noise_sigma, pixel_scale_arcsec.
    """
    from astrogan.utils.log import Bar

    images = np.zeros((num, bands, image_size, image_size), np.float32)
    rows: list[dict[str, float]] = []
    chunks = iter_sersic_chunks(
        num,
        image_size=image_size,
        seed=seed,
        bands=bands,
        psf=psf,
        noise=noise,
        pixel_scale_arcsec=pixel_scale_arcsec,
        num_workers=num_workers,
    )
    with Bar("rendering Sérsic stamps", num, enabled=progress, unit="stamps") as bar:
        for start, chunk, params in chunks:
            images[start : start + len(chunk)] = chunk
            rows.extend(params)
            bar.advance(len(chunk))
    return images, _params_table(
        rows,
        num=num,
        bands=bands,
        psf=parse_psf(psf, pixel_scale_arcsec=pixel_scale_arcsec),
        noise=parse_noise(noise),
        pixel_scale_arcsec=pixel_scale_arcsec,
    )


def _params_table(
    rows: list[dict[str, float]],
    *,
    num: int,
    bands: int,
    psf: PSFSpec,
    noise: NoiseSpec,
    pixel_scale_arcsec: float,
) -> dict[str, np.ndarray]:
    keys = list(_BASE_KEYS) + [f"flux_ratio_{k}" for k in range(1, bands)]
    table: dict[str, np.ndarray] = {}
    for key in keys:
        if key == "half_light_radius_arcsec":
            table[key] = np.array([r["half_light_radius_px"] * pixel_scale_arcsec for r in rows], np.float64)
        elif key in ("index", "seed"):
            table[key] = np.array([int(r[key]) for r in rows], np.int64)
        else:
            table[key] = np.array([r[key] for r in rows], np.float64)
    table["psf_fwhm_px"] = np.full(num, psf.fwhm_px, np.float64)
    table["psf_fwhm_arcsec"] = np.full(num, psf.fwhm_px * pixel_scale_arcsec, np.float64)
    table["noise_sigma"] = np.full(num, noise.effective_sigma, np.float64)
    table["pixel_scale_arcsec"] = np.full(num, pixel_scale_arcsec, np.float64)
    return table


def asinh_stretch(x: np.ndarray, *, softening: float, vmax: float) -> np.ndarray:
    """float image -> uint8 with ``asinh(x/softening)/asinh(vmax/softening)`` clipped to [0, 1]."""
    u = np.arcsinh(x / softening) / np.arcsinh(vmax / softening)
    return np.round(np.clip(u, 0.0, 1.0) * 255.0).astype(np.uint8)


def synth_sersic(
    out_dir: str | os.PathLike[str],
    *,
    num: int,
    image_size: int = 64,
    seed: int = 0,
    bands: int = 1,
    psf: str | None = DEFAULT_PSF,
    noise: str | None = DEFAULT_NOISE,
    fmt: str = "fits",
    pixel_scale_arcsec: float = DEFAULT_PIXEL_SCALE_ARCSEC,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write ``num`` stamps (``sersic_000000.fits`` or ``.png``) and ``params.csv`` into ``out_dir``.

    The folder is built under a temp name and renamed when complete, so a failed or interrupted
    run leaves nothing behind. Returns the folder. ``fmt='png'`` needs 1 or 3 bands.
    """
    from astrogan.utils.atomic import atomic_dir, write_json
    from astrogan.utils.log import Bar

    fmt = fmt.lower()
    if fmt not in ("fits", "png"):
        raise UserError(f"--format must be fits or png, got {fmt!r}")
    if fmt == "png" and bands not in (1, 3):
        raise UserError(f"PNG holds 1 or 3 bands, got --bands {bands}; use --format fits for other counts")
    _check_args(num, image_size, bands, pixel_scale_arcsec)
    psf_spec = parse_psf(psf, pixel_scale_arcsec=pixel_scale_arcsec)
    noise_spec = parse_noise(noise)
    out = prepare_out(out_dir, overwrite=overwrite)

    width = max(6, len(str(max(num - 1, 0))))
    rows: list[dict[str, float]] = []
    names: list[str] = []
    stretch: dict[str, float] | None = None
    t0 = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        chunks = iter_sersic_chunks(
            num,
            image_size=image_size,
            seed=seed,
            bands=bands,
            psf=psf,
            noise=noise,
            pixel_scale_arcsec=pixel_scale_arcsec,
            num_workers=num_workers,
        )
        with Bar("rendering Sérsic stamps", num, enabled=progress, unit="stamps") as bar:
            for start, images, params in chunks:
                if fmt == "png" and stretch is None:
                    soft = noise_spec.effective_sigma or 1.0
                    vmax = float(np.percentile(images, 99.9))
                    stretch = {"softening": soft, "vmax": max(vmax, soft)}
                for k, (img, p) in enumerate(zip(images, params, strict=True)):
                    name = f"sersic_{start + k:0{width}d}.{fmt}"
                    if fmt == "fits":
                        _write_fits(tmp / name, img, p, psf_spec, noise_spec, pixel_scale_arcsec)
                    else:
                        assert stretch is not None
                        _write_png(tmp / name, img, **stretch)
                    names.append(name)
                rows.extend(params)
                bar.advance(len(images))
        table = _params_table(
            rows, num=num, bands=bands, psf=psf_spec, noise=noise_spec, pixel_scale_arcsec=pixel_scale_arcsec
        )
        with open(tmp / "params.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", *table])
            for i, name in enumerate(names):
                writer.writerow([name, *(_fmt(table[k][i]) for k in table)])
        meta = {
            "generator": "astrogan.data.synthetic.synth_sersic",
            "num": num,
            "image_size": image_size,
            "bands": bands,
            "seed": seed,
            "psf": psf,
            "noise": noise,
            "format": fmt,
            "pixel_scale_arcsec": pixel_scale_arcsec,
            "orientation": "row 0 of the FITS data is the bottom (y up); PNG rows are flipped once",
            "licence": "generated by astrogan (no third-party rights)",
        }
        if stretch is not None:
            meta["stretch"] = {
                "kind": "asinh",
                **stretch,
                "formula": "u=asinh(x/softening)/asinh(vmax/softening)",
            }
            write_json(tmp / "stretch.json", meta["stretch"])
        write_json(tmp / "synth.json", meta)
    elapsed = time.perf_counter() - t0
    if progress:
        from astrogan.utils.log import info

        info(f"wrote {num} stamps to {out} in {elapsed:.1f} s ({num / max(elapsed, 1e-9):.1f} stamps/s)")
    return out


def prepare_out(out_dir: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Check a synth `--out`: new, empty (removed, so the finished folder is renamed in), or with `overwrite`
    an earlier synth folder (it has synth.json): never a folder of the user's other files."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    cwd = Path.cwd()
    if out.is_dir() and (out.resolve() == cwd or out.resolve() in cwd.parents):
        # The finished folder is renamed into place: the shell would be left in a removed folder.
        raise UserError(
            f"--out {out} is the current folder (or holds it): name a new folder, e.g. --out synth"
        )
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty folder is as good as none
    elif out.exists() and not overwrite:
        raise UserError(f"--out {out} already exists and is not empty; pick a new folder or pass --overwrite")
    elif out.exists() and not (out / "synth.json").is_file():
        raise UserError(
            f"--out {out} holds no synth.json: --overwrite replaces only an earlier synth folder; "
            "pick a new folder (or remove this one yourself if you mean it)"
        )
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, np.integer):
        return str(int(v))
    return repr(float(v))


def _write_fits(
    path: Path,
    img: np.ndarray,
    p: dict[str, float],
    psf: PSFSpec,
    noise: NoiseSpec,
    pixel_scale_arcsec: float,
) -> None:
    from astropy.io import fits

    data = img[0] if img.shape[0] == 1 else img
    hdu = fits.PrimaryHDU(data.astype(np.float32))
    h = hdu.header
    h["SERSIC_N"] = (p["sersic_n"], "Sersic index")
    h["RE_PX"] = (p["half_light_radius_px"], "circularised half-light radius [px]")
    h["RE_AS"] = (p["half_light_radius_px"] * pixel_scale_arcsec, "half-light radius [arcsec]")
    h["Q"] = (p["q"], "axis ratio b/a")
    h["PA_DEG"] = (p["position_angle_deg"], "position angle CCW from +x [deg]")
    h["BUNIT"] = ("count", "pixel values: counts, as FLUX and NOISESIG")
    h["FLUX"] = (p["flux"], "total flux of band 0 [counts]")
    h["PSF"] = (psf.kind, "PSF profile")
    h["PSF_FWHM"] = (psf.fwhm_px, "PSF FWHM [px]")
    h["NOISE"] = (noise.kind, "noise model")
    h["NOISESIG"] = (noise.effective_sigma, "background noise sigma [counts]")
    h["PIXSCALE"] = (pixel_scale_arcsec, "arcsec per pixel")
    h["SEED"] = (int(p["seed"]), "per-image seed")
    hdu.writeto(path)


def _write_png(path: Path, img: np.ndarray, *, softening: float, vmax: float) -> None:
    from PIL import Image

    u8 = asinh_stretch(img, softening=softening, vmax=vmax)  # (C, H, W)
    # The one flip between FITS/GalSim (row 0 = bottom) and PNG (row 0 = top).
    u8 = np.ascontiguousarray(np.transpose(u8, (1, 2, 0))[::-1])
    Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8).save(path)
