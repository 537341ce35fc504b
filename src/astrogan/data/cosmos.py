"""COSMOS HST stamps in GalSim's real-galaxy catalogue format (what galsim_download_cosmos unpacks), read by GalSim."""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.data.science_inputs import ScienceStamp
from astrogan.utils.errors import UserError

__all__ = ["COSMOS_LICENCE", "EXCLUSION_LEVELS", "SAMPLES", "CosmosSelection", "open_cosmos"]

EXCLUSION_LEVELS = ("none", "bad_stamp", "bad_fits", "marginal")  # galsim.COSMOSCatalog's exclusion_level
SAMPLES = ("23.5", "25.2")  # the two F814W-limited samples galsim_download_cosmos fetches
DEFAULT_BAND = "F814W"
# Files a random-access reader keeps open (GalSim's RealGalaxyCatalog keeps every file it opens, with the HDUs read
# so far): a pass over a catalogue that lists its rows file by file opens each image file once.
MAX_OPEN_FILES = 2
# Credit and licence of the pixels. GalSim 2.8.5 (download_cosmos.py, the RealGalaxyCatalog/COSMOSCatalog docs)
# states no licence for the download: it cites Mandelbaum et al. (2012, MNRAS 420, 1518) for the sample. The
# images are HST/ACS F814W COSMOS data (Koekemoer et al. 2007, ApJS 172, 196; Scoville et al. 2007, ApJS 172,
# 1), public Hubble archive data; the 25.2 sample is GREAT3's (Mandelbaum et al. 2014, ApJS 212, 5).
COSMOS_PAPERS = (
    "Koekemoer et al. 2007, ApJS 172, 196; Scoville et al. 2007, ApJS 172, 1 (COSMOS HST/ACS imaging); "
    "Mandelbaum et al. 2012, MNRAS 420, 1518; Mandelbaum et al. 2014, ApJS 212, 5 (GalSim real-galaxy sample)"
)
COSMOS_LICENCE = (
    "public domain: NASA/ESA Hubble Space Telescope archive data (NASA/ESA data policy; the GalSim download "
    "carries no licence of its own); cite " + COSMOS_PAPERS
)
# GalSim's COSMOSCatalog docs: "The processed COSMOS ACS/HST science images have units of counts/second".
COSMOS_BUNIT = "count/s"

# Columns GalSim's readers use. FITS_rec field lookups ignore case (the real catalogue says `stamp_flux`);
# the _fits table becomes a NumPy record array inside GalaxySample, where case counts.
REAL_COLUMNS = (
    "IDENT", "MAG", "BAND", "WEIGHT", "GAL_FILENAME", "PSF_FILENAME", "GAL_HDU", "PSF_HDU", "PIXEL_SCALE",
    "NOISE_VARIANCE",
)  # fmt: skip
FITS_COLUMNS = {"bad_fits": ("fit_status",), "marginal": ("fit_status", "hlr", "sersicfit")}
_SEL = (
    "sn_ellip_gauss",
    "min_mask_dist_pixels",
    "average_mask_adjacent_pixel_count",
    "peak_image_pixel_count",
)
SELECTION_COLUMNS = {"bad_stamp": _SEL, "marginal": (*_SEL, "dmag")}


def _hint(sample: str | None, root: Path | str = "DIR") -> str:
    return f"run galsim_download_cosmos -s {sample or '25.2'} -d {root}"


def _download_root(image_dir: Path) -> Path | str:
    """The `-d` folder of galsim_download_cosmos when `image_dir` is its COSMOS_<sample>_training_sample."""
    return image_dir.parent if image_dir.name.startswith("COSMOS_") else "DIR"


def _sample_of(name: str) -> str | None:
    """GalSim's rule (real._parse_files_dirs): the sample is the limit named in the catalogue's file name."""
    return next((s for s in reversed(SAMPLES) if s in name), None)


def _companion(catalog: Path, kind: str) -> Path:
    """`kind` = "_fits" or "_selection": the path GalSim's GalaxySample derives (`.fits` -> `_fits.fits`)."""
    return Path(str(catalog).replace(".fits", f"{kind}.fits"))


def _table_columns(path: Path) -> list[str]:
    """Column names of the table in HDU 1 (GalSim reads `fits[1].data`), without reading the rows."""
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            cols = hdul[1].columns.names if len(hdul) > 1 and hasattr(hdul[1], "columns") else None
    except OSError as exc:
        raise UserError(f"{path} is not a readable FITS file ({exc}): download it again") from None
    if cols is None:
        raise UserError(f"{path} has no table in HDU 1: it is not a GalSim real-galaxy catalogue file")
    return list(cols)


def _require(path: Path, have: Sequence[str], need: Sequence[str], hint: str, *, case: bool) -> None:
    names = set(have) if case else {c.upper() for c in have}
    missing = [c for c in need if (c if case else c.upper()) not in names]
    if missing:
        raise UserError(
            f"{path} has no column {', '.join(missing)}: it is not (or is an old) GalSim real-galaxy catalogue; "
            f"{hint}"
        )


def _catalogs_in(folder: Path) -> list[Path]:
    found = sorted(folder.glob("real_galaxy_catalog*.fits"))
    return [p for p in found if not p.name.endswith(("_fits.fits", "_selection.fits"))]


def _find_catalog(root: Path, samples: Sequence[str] = SAMPLES) -> Path:
    """The one catalogue in `root` or in its download folders `COSMOS_<sample>_training_sample`."""
    if not root.is_dir():
        raise UserError(f"COSMOS folder {root} not found: {_hint(None, root)}")
    for folder in [root, *(root / f"COSMOS_{s}_training_sample" for s in samples)]:
        found = [p for p in _catalogs_in(folder) if len(samples) > 1 or samples[0] in p.name]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise UserError(f"{folder} holds several catalogues ({names}): pass one of them as the catalogue")
        if found:
            return found[0]
    raise UserError(
        f"no COSMOS catalogue (real_galaxy_catalog_*.fits) in {root} or its COSMOS_*_training_sample folder: "
        f"{_hint(samples[0] if len(samples) == 1 else None, root)}"
    )


def _resolve(
    catalog_path: str | os.PathLike[str] | None, dir: str | os.PathLike[str] | None
) -> tuple[Path, Path]:
    """(catalogue file, folder of its image and PSF files), following GalSim's `file_name`/`dir` rules."""
    folder = None if dir is None else Path(dir).expanduser()
    if catalog_path is None or (str(catalog_path) in SAMPLES and not Path(catalog_path).exists()):
        samples = SAMPLES if catalog_path is None else (str(catalog_path),)
        if folder is None:  # where galsim_download_cosmos puts (or links) the download by default
            import galsim

            folder = Path(galsim.meta_data.share_dir)
        cat = _find_catalog(folder, samples)
        return cat.resolve(), cat.parent.resolve()
    path = Path(catalog_path).expanduser()
    if path.is_dir():
        cat = _find_catalog(path)
        return cat.resolve(), (folder or cat.parent).resolve()
    if path.is_file():
        cat = path
        image_dir = folder or path.parent  # GalSim's RealGalaxyCatalog(file_name, dir): images in dir
    else:  # GalSim's rule: a name is looked up in dir; also look in the download's sample folder
        tries = [] if folder is None or path.is_absolute() else [folder / path]
        tries += [
            folder / f"COSMOS_{s}_training_sample" / path
            for s in SAMPLES
            if folder and not path.is_absolute()
        ]
        found = [p for p in tries if p.is_file()]
        if not found:
            where = f" (nor in {folder})" if folder is not None else ""
            raise UserError(f"COSMOS catalogue {path} not found{where}: {_hint(_sample_of(path.name))}")
        cat = found[0]
        image_dir = cat.parent
    for kind in ("_fits", "_selection"):  # given a companion table: use the catalogue it belongs to
        if cat.name.endswith(f"{kind}.fits"):
            main = cat.with_name(cat.name[: -len(f"{kind}.fits")] + ".fits")
            if main.is_file():
                cat = main
    return cat.resolve(), image_dir.resolve()


class CosmosSelection:
    """The selected galaxies of a COSMOS catalogue: `len()`, `sel[pos]` and iteration yielding `ScienceStamp`s,
    `describe()`, `close()`.

    Stamps are read one at a time with `galsim.RealGalaxyCatalog.getGalImage` with preload off (preloading
    reads every image and PSF file up front: gigabytes for the real samples, and slower for one pass).
    Iteration closes each image file after its last selected stamp, so memory holds one multi-HDU file at a
    time when the catalogue lists its rows file by file; it stops at the first unreadable stamp (UserError).
    `sel[pos]` reads the stamp at position `pos` of the selection alone, keeping the last MAX_OPEN_FILES image
    files open (`close()` lets them go): a damaged stamp raises for itself only, and a sample reads only its
    own stamps. Stamps come in catalogue order.
    """

    def __init__(
        self,
        catalog: Path,
        image_dir: Path,
        rgc: Any,
        indices: np.ndarray,
        *,
        param_cat: np.ndarray | None,
        selection: dict[str, Any],
    ) -> None:
        self.catalog = catalog
        self.image_dir = image_dir
        self.indices = indices
        self._rgc = rgc
        self._param_cat = param_cat
        self._selection = selection
        cat = rgc.cat
        names = {n.upper() for n in cat.columns.names}
        self._cols = {
            c: np.asarray(cat.field(c))
            for c in (*REAL_COLUMNS, "STAMP_FLUX", "NOISE_MEAN", "RA", "DEC")
            if c in names
        }

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, pos: int) -> ScienceStamp:
        """The stamp at position `pos` of the selection (negative counts from the end). IndexError outside it;
        UserError (naming the file, HDU and IDENT) when its HDU cannot be read."""
        pos = operator.index(pos)
        if not -len(self) <= pos < len(self):
            raise IndexError(f"position {pos} is outside the selection of {len(self)} galaxies")
        i = int(self.indices[pos])
        self._keep_open(self._rgc.gal_file_name[i])
        return self._stamp(i)

    def _keep_open(self, name: str) -> None:
        """Make `name` the most recent open image file; close the oldest ones beyond MAX_OPEN_FILES."""
        opened = self._rgc.loaded_files  # GalSim's dict of open files, in the order they were opened
        if name in opened:
            opened[name] = opened.pop(name)  # most recent last
            return
        while len(opened) >= MAX_OPEN_FILES:  # getGalImage is about to open `name`
            opened.pop(next(iter(opened))).close()

    def source_name(self, pos: int) -> str:
        """The name `sel[pos]` gets (`catalogue:IDENT`), without reading its pixels (a damaged stamp's row)."""
        return f"{self.catalog.name}:{self._cols['IDENT'][int(self.indices[pos])].item()}"

    def close(self) -> None:
        """Close the image files `sel[pos]` left open (a later read opens them again)."""
        self._rgc.close()

    def __iter__(self) -> Iterator[ScienceStamp]:
        rgc = self._rgc
        files = [rgc.gal_file_name[i] for i in self.indices]
        last = {f: pos for pos, f in enumerate(files)}
        try:
            for pos, i in enumerate(self.indices):
                yield self._stamp(int(i))
                if last[files[pos]] == pos:  # done with this file: let its HDUs go
                    opened = rgc.loaded_files.pop(files[pos], None)
                    if opened is not None:
                        opened.close()
        finally:
            rgc.close()

    def _stamp(self, i: int) -> ScienceStamp:
        c = self._cols
        ident = c["IDENT"][i].item()
        gal_name = str(c["GAL_FILENAME"][i]).strip()
        try:
            image = self._rgc.getGalImage(i)
        except Exception as exc:  # a damaged HDU: astropy and GalSim raise many kinds, all mean "unreadable"
            raise UserError(
                f"cannot read HDU {int(c['GAL_HDU'][i])} of {self._rgc.gal_file_name[i]} (IDENT {ident}): "
                f"{' '.join(str(exc).split()) or type(exc).__name__}; "
                f"the file looks damaged: {_hint(self._selection['sample'], _download_root(self.image_dir))}"
            ) from None
        # getGalImage gives the HDU's pixels as stored, [y, x] with row 0 = FITS's bottom row: no flip here.
        flux = np.asarray(image.array, dtype=np.float32)[None]
        band = str(c["BAND"][i]).strip() or DEFAULT_BAND
        header: dict[str, Any] = {
            "BUNIT": COSMOS_BUNIT,
            "PIXSCALE": float(c["PIXEL_SCALE"][i]),
            "BAND": band,
            "NOISEVAR": float(c["NOISE_VARIANCE"][i]),
            "IDENT": ident,
        }
        if "NOISE_MEAN" in c:
            header["NOISEMN"] = float(c["NOISE_MEAN"][i])
        zeropoint = _zeropoint(band)
        if zeropoint is not None:
            header["MAGZPT"] = zeropoint
        for key in ("RA", "DEC"):
            if key in c:
                header[key] = float(c[key][i])
        params: dict[str, Any] = {
            "ident": ident,
            "mag": float(c["MAG"][i]),
            "weight": float(c["WEIGHT"][i]),  # as in the catalogue (GalSim's .weight divides by the maximum)
            "stamp_flux": float(c["STAMP_FLUX"][i]) if "STAMP_FLUX" in c else None,
            "catalog_row": i,
            "gal_file": gal_name,
            "gal_hdu": int(c["GAL_HDU"][i]),
            "psf_file": str(c["PSF_FILENAME"][i]).strip(),
            "psf_hdu": int(c["PSF_HDU"][i]),
        }
        if self._param_cat is not None:
            params.update(_fit_params(self._param_cat[i]))
        return ScienceStamp(
            source=f"{self.catalog.name}:{ident}", flux=flux, bands=(band,), header=header, params=params
        )

    def describe(self) -> dict[str, Any]:
        """What the dataset manifest records: the files (with sha256), the sample, the counts, the selection,
        the credit (instrument, band, papers) and licence of the pixels."""
        import galsim

        from astrogan.imaging import sha256_file

        files: dict[str, Any] = {}
        for kind, path in (
            ("catalog", self.catalog),
            ("fits", _companion(self.catalog, "_fits")),
            ("selection", _companion(self.catalog, "_selection")),
        ):
            files[kind] = {"path": str(path), "sha256": sha256_file(path)} if path.is_file() else None
        bands = sorted({str(b).strip() or DEFAULT_BAND for b in self._cols["BAND"][self.indices]})
        return {
            "format": "GalSim real-galaxy catalogue (galsim.RealGalaxyCatalog / galsim.COSMOSCatalog)",
            "catalog": str(self.catalog),
            "catalog_sha256": files["catalog"]["sha256"],
            "files": files,
            "image_dir": str(self.image_dir),
            "sample": self._selection["sample"],
            "bands": bands,
            "num_in_catalog": int(self._rgc.nobjects),
            "num_after_exclusion": self._selection["num_after_exclusion"],
            "num_after_mag": self._selection["num_after_mag"],
            "num_selected": len(self),
            "selection": {
                k: v for k, v in self._selection.items() if not k.startswith("num_") and k != "sample"
            },
            "galsim_version": galsim.__version__,
            "credit": f"COSMOS HST/ACS {', '.join(bands)} galaxies, GalSim real-galaxy training sample"
            + (f" {self._selection['sample']}" if self._selection["sample"] else "")
            + f" ({COSMOS_PAPERS})",
            "licence": COSMOS_LICENCE,
        }


def _zeropoint(band: str) -> float | None:
    """AB magnitude of 1 count/s in `band`, from GalSim's table of the real-galaxy bandpasses."""
    from galsim.real import real_galaxy_bandpasses

    entry = real_galaxy_bandpasses.get(band.upper())
    return None if entry is None else float(entry[1])


def _fit_params(rec: Any) -> dict[str, Any]:
    """The parametric fits of one _fits row, read the way galsim.COSMOSCatalog builds its parametric models."""
    names = set(rec.dtype.names)
    out: dict[str, Any] = {}
    for key in ("mag_auto", "zphot", "flux_radius", "fit_dvc_btt"):
        if key in names:
            out[key] = float(rec[key])
    for key in ("use_bulgefit", "viable_sersic"):
        if key in names:
            out[key] = int(rec[key])
    if "sersicfit" in names:  # sersicfit[2] = n, [3] = q, [7] = position angle (radians)
        s = rec["sersicfit"]
        out.update(sersic_n=float(s[2]), sersic_q=float(s[3]), sersic_beta_rad=float(s[7]))
    if "bulgefit" in names:  # bulgefit[3], [11] = disk and bulge axis ratios
        b = rec["bulgefit"]
        out.update(disk_q=float(b[3]), bulge_q=float(b[11]))
    if "hlr" in names:  # half-light radii in arcsec: [0] Sersic fit, [1] bulge, [2] disk
        h = rec["hlr"]
        out.update(sersic_hlr_arcsec=float(h[0]), bulge_hlr_arcsec=float(h[1]), disk_hlr_arcsec=float(h[2]))
    if "flux" in names:  # fitted fluxes, same order as hlr
        f = rec["flux"]
        out.update(sersic_flux=float(f[0]), bulge_flux=float(f[1]), disk_flux=float(f[2]))
        total = float(f[1]) + float(f[2])
        out["bulge_to_total"] = float(f[1]) / total if total > 0 else None
    if "fit_status" in names:  # 1..4 = a usable fit: [0] bulge+disk, [4] Sersic
        out.update(fit_status_bulge=int(rec["fit_status"][0]), fit_status_sersic=int(rec["fit_status"][4]))
    return out


def open_cosmos(
    catalog_path: str | os.PathLike[str] | None,
    *,
    dir: str | os.PathLike[str] | None = None,
    max_mag: float | None = None,
    min_mag: float | None = None,
    exclusion_level: str = "marginal",
    max_num: int | None = None,
) -> CosmosSelection:
    """Open a COSMOS real-galaxy catalogue and select galaxies: GalSim's exclusion flags, then a MAG cut.

    `catalog_path`: the catalogue FITS file (`real_galaxy_catalog_23.5.fits`), a folder holding it or the
    download folder above `COSMOS_<sample>_training_sample/`, a sample name ("23.5", "25.2"; looked up in
    `dir` or GalSim's share folder), or None (look in `dir`). `dir` is GalSim's `dir`: where a bare catalogue
    name and the image and PSF files live. `exclusion_level` is galsim.COSMOSCatalog's ("none", "bad_stamp",
    "bad_fits", "marginal"; all but "none" need the `_fits` table, "bad_stamp"/"marginal" the `_selection`
    one). The magnitude cut keeps `min_mag <= MAG < max_mag`; `max_num` keeps the first N, catalogue order.
    """
    if exclusion_level not in EXCLUSION_LEVELS:
        raise UserError(
            f"unknown exclusion level {exclusion_level!r}: use one of {', '.join(EXCLUSION_LEVELS)}"
        )
    if max_num is not None and max_num < 1:
        raise UserError(f"--max-num must be at least 1, got {max_num}")
    if min_mag is not None and max_mag is not None and not min_mag < max_mag:
        raise UserError(f"--min-mag ({min_mag}) must be below --max-mag ({max_mag})")
    import galsim

    catalog, image_dir = _resolve(catalog_path, dir)
    sample = _sample_of(catalog.name)
    hint = _hint(sample, _download_root(image_dir))
    need = REAL_COLUMNS + (("stamp_flux",) if exclusion_level in ("bad_stamp", "marginal") else ())
    _require(catalog, _table_columns(catalog), need, hint, case=False)
    try:
        rgc = galsim.RealGalaxyCatalog(str(catalog), dir=str(image_dir))
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"GalSim cannot read the COSMOS catalogue {catalog}: {exc}") from None
    idents = np.asarray(rgc.cat.field("IDENT"))

    fits_path, sel_path = _companion(catalog, "_fits"), _companion(catalog, "_selection")
    if exclusion_level != "none" and not fits_path.is_file():
        raise UserError(
            f"{fits_path} not found: exclusion level {exclusion_level!r} needs the parametric-fit table; "
            f"{hint}, or use exclusion level 'none'"
        )
    if exclusion_level in SELECTION_COLUMNS and not sel_path.is_file():
        raise UserError(
            f"{sel_path} not found: exclusion level {exclusion_level!r} needs the selection table; "
            f"{hint}, or use exclusion level 'bad_fits' or 'none'"
        )
    for path, need_cols, case in (
        (fits_path, FITS_COLUMNS.get(exclusion_level, ()), True),
        (sel_path, SELECTION_COLUMNS.get(exclusion_level, ()), False),
    ):
        if path.is_file() and (need_cols or path == fits_path):  # GalSim reads the _fits table at every level
            cols = _table_columns(path)
            _require(path, cols, need_cols, hint, case=case)
            _check_rows(path, cols, idents, catalog, hint)

    param_cat = None
    cuts = None
    if fits_path.is_file():
        try:
            cc = galsim.COSMOSCatalog(file_name=str(catalog), exclusion_level=exclusion_level)
        except (OSError, KeyError, ValueError, IndexError) as exc:
            raise UserError(
                f"GalSim cannot apply exclusion level {exclusion_level!r} to {catalog}: {exc}"
            ) from None
        kept = np.asarray(cc.orig_index, dtype=np.int64)
        param_cat = cc.param_cat
        if exclusion_level in SELECTION_COLUMNS:  # the sample-dependent thresholds COSMOSCatalog chose
            cuts = {"sn_limit": cc.sn_limit, "cut_ratio": cc.cut_ratio, "min_mask_dist": cc.min_mask_dist}
        del cc
    else:  # no parametric table: GalSim's COSMOSCatalog cannot open; every row passes exclusion level 'none'
        kept = np.arange(rgc.nobjects, dtype=np.int64)
    num_after_exclusion = len(kept)

    mag = np.asarray(rgc.mag, dtype=np.float64)[kept]
    keep = np.isfinite(mag)
    if min_mag is not None:
        keep &= mag >= min_mag
    if max_mag is not None:
        keep &= mag < max_mag
    kept = kept[keep]
    num_after_mag = len(kept)
    if max_num is not None:
        kept = kept[:max_num]
    if len(kept) == 0:
        raise UserError(
            f"no galaxy of the {rgc.nobjects} in {catalog.name} passes the selection ({num_after_exclusion} pass "
            f"exclusion level {exclusion_level!r}, {num_after_mag} also {_mag_rule(min_mag, max_mag)}): "
            "widen --min-mag/--max-mag or lower --exclusion-level"
        )
    _check_files(rgc, kept, idents, catalog, hint)
    selection = {
        "sample": sample,
        "exclusion_level": exclusion_level,
        "galsim_cuts": cuts,
        "min_mag": min_mag,
        "max_mag": max_mag,
        "mag_rule": _mag_rule(min_mag, max_mag),
        "max_num": max_num,
        "order": "catalogue order; max_num keeps the first N selected",
        "num_after_exclusion": num_after_exclusion,
        "num_after_mag": num_after_mag,
    }
    return CosmosSelection(catalog, image_dir, rgc, kept, param_cat=param_cat, selection=selection)


def _mag_rule(min_mag: float | None, max_mag: float | None) -> str:
    lo = "" if min_mag is None else f"{min_mag:g} <= "
    hi = "" if max_mag is None else f" < {max_mag:g}"
    return f"{lo}MAG{hi}" if lo or hi else "MAG finite"


def _check_rows(path: Path, columns: Sequence[str], idents: np.ndarray, catalog: Path, hint: str) -> None:
    """A companion table must list the catalogue's galaxies row for row (GalSim matches them by row)."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        table = hdul[1].data
        problem = f"{len(table)} rows, the catalogue {len(idents)}" if len(table) != len(idents) else ""
        if not problem and "IDENT" in {c.upper() for c in columns}:
            differ = np.flatnonzero(np.asarray(table.field("IDENT")) != idents)
            problem = f"IDENT differs from row {differ[0]} on" if differ.size else ""
    if problem:
        raise UserError(
            f"{path.name} does not match {catalog.name} row for row ({problem}): the files come from different "
            f"downloads; {hint}"
        )


def _check_files(rgc: Any, kept: np.ndarray, idents: np.ndarray, catalog: Path, hint: str) -> None:
    """Every image and PSF file the selected rows name must exist (before a long pass finds one missing)."""
    seen: set[str] = set()
    for column, names in (("GAL_FILENAME", rgc.gal_file_name), ("PSF_FILENAME", rgc.psf_file_name)):
        for i in kept:
            name = names[i]
            if name in seen:
                continue
            seen.add(name)
            if not os.path.isfile(name):
                raise UserError(
                    f"{name} not found ({column} of IDENT {idents[i]} in {catalog.name}): the download is "
                    f"incomplete; {hint}"
                )
