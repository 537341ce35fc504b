"""Writes a 12-galaxy COSMOS catalogue in GalSim's real-galaxy format (the layout galsim_download_cosmos unpacks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE = "23.5"
CATALOG = f"real_galaxy_catalog_{SAMPLE}.fits"
MARKER = 1234.5  # written at FITS row 0, column 0 (the BOTTOM-left pixel) of galaxy 1001
PIXEL_SCALE = 0.03


@dataclass(frozen=True)
class Galaxy:
    """One catalogue row: what is written and why it passes or fails each cut."""

    ident: int
    mag: float
    file_num: int  # real_galaxy_images_23.5_n{file_num}.fits
    hdu: int
    shape: tuple[int, int]  # (Y, X), never square, so a transpose shows
    stamp_flux: float = 100.0
    sn_ellip_gauss: float = 200.0  # the 23.5 sample's bad_stamp cut is sn >= 20
    min_mask_dist_pixels: float = 40.0  # ... and (dist > 11 or adjacent/peak < 0.2)
    average_mask_adjacent_pixel_count: float = 0.004
    peak_image_pixel_count: float = 0.3
    dmag: float = 0.02  # marginal: |dmag| < 0.8
    fit_status: tuple[int, int, int, int, int] = (
        1,
        1,
        1,
        1,
        1,
    )  # [0] bulge+disk, [4] Sersic: 1..4 is a good fit
    sersic_n: float = 1.5
    hlr_arcsec: float = 0.12
    q: float = 0.7


# Catalogue order; the comment says which exclusion level drops the row.
GALAXIES = (
    Galaxy(1001, 20.0, 1, 0, (21, 19)),
    Galaxy(1002, 21.0, 1, 2, (19, 23)),
    Galaxy(1003, 22.0, 1, 1, (17, 19), sn_ellip_gauss=15.0),  # bad_stamp: low S/N
    Galaxy(1004, 23.0, 1, 3, (23, 21)),
    Galaxy(1005, 21.5, 1, 4, (19, 17), stamp_flux=-3.0),  # bad_stamp: negative stamp flux
    Galaxy(1006, 23.5, 1, 5, (17, 21)),  # exactly on a 23.5 limit
    Galaxy(
        1007, 19.5, 2, 0, (25, 23), min_mask_dist_pixels=5.0, average_mask_adjacent_pixel_count=0.3
    ),  # bad_stamp: mask
    Galaxy(1008, 22.4, 2, 1, (21, 17), peak_image_pixel_count=0.0),  # GalSim guards the 0 peak; passes
    Galaxy(1009, 20.5, 2, 2, (19, 21), fit_status=(0, 1, 1, 1, 0)),  # bad_fits: both fits failed
    Galaxy(1010, 22.0, 2, 3, (23, 19), fit_status=(5, 1, 1, 1, 1)),  # marginal: bulge+disk fit failed
    Galaxy(1011, 21.2, 2, 4, (17, 23), sersic_n=5.5, hlr_arcsec=1.2),  # marginal: n >= 5 and hlr >= 1"
    Galaxy(1012, 22.9, 2, 5, (21, 25), dmag=1.0),  # marginal: |dmag| >= 0.8
)

REAL_COLUMNS = (
    "IDENT", "RA", "DEC", "MAG", "BAND", "WEIGHT", "GAL_FILENAME", "PSF_FILENAME", "GAL_HDU", "PSF_HDU",
    "PIXEL_SCALE", "NOISE_MEAN", "NOISE_VARIANCE", "NOISE_FILENAME", "stamp_flux",
)  # fmt: skip


def gal_file(num: int) -> str:
    return f"real_galaxy_images_{SAMPLE}_n{num}.fits"


def psf_file(num: int) -> str:
    return f"real_galaxy_PSF_images_{SAMPLE}_n{num}.fits"


def stamp(g: Galaxy) -> np.ndarray:
    """The galaxy's pixels [y, x] (row 0 = bottom, as GalSim draws and FITS stores), drawn by GalSim."""
    import galsim

    prof = galsim.Sersic(g.sersic_n, half_light_radius=g.hlr_arcsec, flux=g.stamp_flux)
    prof = prof.shear(q=g.q, beta=0.3 * galsim.radians)
    ny, nx = g.shape
    arr = prof.drawImage(nx=nx, ny=ny, scale=PIXEL_SCALE, method="no_pixel").array.copy()
    arr += 1e-3 * np.arange(ny)[:, None]  # a vertical ramp: a flipped stamp no longer matches
    if g.ident == 1001:
        arr[0, 0] = MARKER
    return arr


def psf_stamp(g: Galaxy) -> np.ndarray:
    import galsim

    return galsim.Moffat(beta=3.0, fwhm=0.1).drawImage(nx=15, ny=15, scale=PIXEL_SCALE).array


def write_cosmos_catalog(
    root: Path,
    *,
    galaxies: Sequence[Galaxy] = GALAXIES,
    drop_columns: Sequence[str] = (),
    with_fits: bool = True,
    with_selection: bool = True,
) -> dict[int, np.ndarray]:
    """Write the catalogue, its _fits and _selection tables, and the image and PSF files into `root`.

    Image file n1 holds float32 stamps and n2 float64 ones (the real files are of either kind). HDU 0 is
    the primary HDU and holds a stamp, as in GalSim's files. Returns {IDENT: the stamp as written}.
    """
    from astropy.io import fits

    root.mkdir(parents=True, exist_ok=True)
    stamps = {g.ident: stamp(g) for g in galaxies}
    for num, dtype in ((1, np.float32), (2, np.float64)):
        rows = sorted((g for g in galaxies if g.file_num == num), key=lambda g: g.hdu)
        if not rows:
            continue
        assert [g.hdu for g in rows] == list(range(len(rows))), "HDUs of a file must be 0..n-1"
        gal = [np.asarray(stamps[g.ident], dtype=dtype) for g in rows]
        stamps.update({g.ident: a for g, a in zip(rows, gal, strict=True)})
        hdus = [fits.PrimaryHDU(gal[0])] + [fits.ImageHDU(a) for a in gal[1:]]
        fits.HDUList(hdus).writeto(root / gal_file(num), overwrite=True)
        psfs = [psf_stamp(g) for g in rows]
        phdus = [fits.PrimaryHDU(psfs[0])] + [fits.ImageHDU(a) for a in psfs[1:]]
        fits.HDUList(phdus).writeto(root / psf_file(num), overwrite=True)

    n = len(galaxies)
    ident = np.array([g.ident for g in galaxies], dtype=np.int32)
    real = [
        fits.Column(name="IDENT", format="J", array=ident),
        fits.Column(name="RA", format="D", array=150.0 + 0.001 * np.arange(n)),
        fits.Column(name="DEC", format="D", array=2.0 + 0.001 * np.arange(n)),
        fits.Column(name="MAG", format="D", array=np.array([g.mag for g in galaxies])),
        fits.Column(name="BAND", format="5A", array=np.array(["F814W"] * n)),
        fits.Column(name="WEIGHT", format="D", array=0.2 + 0.01 * np.arange(n)),
        fits.Column(
            name="GAL_FILENAME", format="32A", array=np.array([gal_file(g.file_num) for g in galaxies])
        ),
        fits.Column(
            name="PSF_FILENAME", format="36A", array=np.array([psf_file(g.file_num) for g in galaxies])
        ),
        fits.Column(name="GAL_HDU", format="J", array=np.array([g.hdu for g in galaxies], dtype=np.int32)),
        fits.Column(name="PSF_HDU", format="J", array=np.array([g.hdu for g in galaxies], dtype=np.int32)),
        fits.Column(name="PIXEL_SCALE", format="D", array=np.full(n, PIXEL_SCALE)),
        fits.Column(name="NOISE_MEAN", format="D", array=np.full(n, 1e-4)),
        fits.Column(name="NOISE_VARIANCE", format="D", array=7e-6 + 1e-7 * np.arange(n)),
        fits.Column(name="NOISE_FILENAME", format="26A", array=np.array(["acs_I_unrot_sci_20_cf.fits"] * n)),
        fits.Column(name="stamp_flux", format="D", array=np.array([g.stamp_flux for g in galaxies])),
    ]
    real = [c for c in real if c.name not in drop_columns]
    _write_table(root / CATALOG, real)

    if with_fits:
        sersicfit = np.zeros((n, 8))
        sersicfit[:, 2] = [g.sersic_n for g in galaxies]
        sersicfit[:, 3] = [g.q for g in galaxies]
        sersicfit[:, 7] = 0.3
        bulgefit = np.zeros((n, 16))
        bulgefit[:, 3], bulgefit[:, 11] = 0.6, 0.8  # disk q, bulge q
        hlr = np.array([[g.hlr_arcsec, 0.5 * g.hlr_arcsec, 1.5 * g.hlr_arcsec] for g in galaxies])
        flux = np.array([[g.stamp_flux, 0.25 * g.stamp_flux, 0.75 * g.stamp_flux, 0.0] for g in galaxies])
        fitcols = [
            fits.Column(name="IDENT", format="J", array=ident),
            fits.Column(name="mag_auto", format="D", array=np.array([g.mag for g in galaxies]) + 0.01),
            fits.Column(name="flux_radius", format="D", array=np.full(n, 14.0)),
            fits.Column(name="zphot", format="D", array=np.full(n, 0.5)),
            fits.Column(name="sersicfit", format="8D", array=sersicfit),
            fits.Column(name="bulgefit", format="16D", array=bulgefit),
            fits.Column(
                name="fit_status", format="5J", array=np.array([g.fit_status for g in galaxies], np.int32)
            ),
            fits.Column(name="fit_mad_s", format="D", array=np.full(n, 0.003)),
            fits.Column(name="fit_mad_b", format="D", array=np.full(n, 0.003)),
            fits.Column(name="fit_dvc_btt", format="D", array=np.full(n, 0.2)),
            fits.Column(name="use_bulgefit", format="J", array=np.zeros(n, np.int32)),
            fits.Column(name="viable_sersic", format="J", array=np.ones(n, np.int32)),
            fits.Column(name="hlr", format="3D", array=hlr),
            fits.Column(name="flux", format="4D", array=flux),
        ]
        _write_table(root / CATALOG.replace(".fits", "_fits.fits"), fitcols)

    if with_selection:
        selcols = [
            fits.Column(name="IDENT", format="J", array=ident),
            fits.Column(name="dmag", format="D", array=np.array([g.dmag for g in galaxies])),
            fits.Column(
                name="sn_ellip_gauss", format="D", array=np.array([g.sn_ellip_gauss for g in galaxies])
            ),
            fits.Column(
                name="min_mask_dist_pixels",
                format="D",
                array=np.array([g.min_mask_dist_pixels for g in galaxies]),
            ),
            fits.Column(
                name="average_mask_adjacent_pixel_count",
                format="D",
                array=np.array([g.average_mask_adjacent_pixel_count for g in galaxies]),
            ),
            fits.Column(
                name="peak_image_pixel_count",
                format="D",
                array=np.array([g.peak_image_pixel_count for g in galaxies]),
            ),
        ]
        _write_table(root / CATALOG.replace(".fits", "_selection.fits"), selcols)
    return stamps


def _write_table(path: Path, columns: list) -> None:
    from astropy.io import fits

    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)]).writeto(path, overwrite=True)


def damage_hdu(root: Path, num: int, hdu: int) -> Path:
    """Replace HDU `hdu` of image file n{num} by a header-only HDU (no pixels): that one stamp is unreadable,
    the HDUs after it are whole. Returns the file's path."""
    from astropy.io import fits

    path = root / gal_file(num)
    with fits.open(path) as hdul:
        hdus = [h.copy() for h in hdul]
    hdus[hdu] = fits.PrimaryHDU() if hdu == 0 else fits.ImageHDU()
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path
