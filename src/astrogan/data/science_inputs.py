"""Multi-band science inputs for `dataset build`: FITS cubes, one FITS file per band, HDF5 arrays, COSMOS stamps."""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.data.fits_io import FITS_SUFFIXES, is_fits_path
from astrogan.data.preprocess import SkipFile
from astrogan.science import STRETCH_KINDS, BandStretch, DisplaySpec, ScienceSpec, fits_to_image_order
from astrogan.utils.errors import UserError

__all__ = [
    "DEFAULT_BAND_PATTERN",
    "EXCLUSION_LEVELS",
    "H5_LAYOUTS",
    "H5_ORIGINS",
    "Loaded",
    "ScienceOptions",
    "ScienceStamp",
    "fit_science",
    "header_bands",
    "open_stamps",
    "parse_floats",
    "parse_names",
    "read_science_fits",
    "sample_indices",
]

DEFAULT_BAND_PATTERN = "{stem}_{band}"
H5_LAYOUTS = ("auto", "nchw", "nhwc")
H5_ORIGINS = ("bottom", "top")
EXCLUSION_LEVELS = ("none", "bad_stamp", "bad_fits", "marginal")
SCIENCE_BLACK_PERCENTILE = 0.5
SCIENCE_WHITE_PERCENTILE = 99.9
FIT_SAMPLE = 256  # inputs the stretch is fitted on (evenly spaced, so the same inputs give the same stretch)
_FIT_PIXELS = 16384  # pixels per band and crop kept for the fit (evenly spaced over larger crops)
_H5_CHUNK_BYTES = 64 << 20  # HDF5 images read per slice: about this many bytes of float32
COSMOS_CREDIT = "COSMOS HST/ACS galaxies (GalSim real-galaxy training sample; Mandelbaum et al. 2012)"
# Cards of a WCS: a stamp's are read into an astropy WCS; each stored image gets its crop's own.
WCS_KEY = re.compile(
    r"(WCSAXES|WCSNAME|CRPIX\d+|CRVAL\d+|CDELT\d+|CUNIT\d+|CTYPE\d+|CROTA\d+|CD\d+_\d+|PC\d+_\d+|PV\d+_\d+"
    r"|PS\d+_\d+|LONPOLE|LATPOLE|RADESYS|EQUINOX|EPOCH|MJDREF[IF]?|DATEREF)"
)
# wcslib's celestial axis types (the first 4 characters of CTYPEi), and the cards of distortions.
CELESTIAL_CTYPE = re.compile(r"RA--|DEC-|[A-Z]LON|[A-Z]LAT|[A-Z]{2}LN|[A-Z]{2}LT")
DISTORTION_KEY = re.compile(
    r"(A|B|AP|BP)_(ORDER|\d+_\d+)|D[PQ]\d+|C[PQ]DIS\d+|D2IM(DIS|ERR|EXT)\d*|PV\d+_\d+"
)
_WCS_CACHE: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
_WCS_CACHE_SIZE = 16
# Cards kept per image besides BUNIT, PIXSCALE, the band names and the celestial WCS.
_KEEP_CARDS = (
    "OBJECT", "TELESCOP", "INSTRUME", "SURVEY", "EXPTIME", "DATE-OBS", "MJD-OBS", "MAGZERO", "MAGZP",
    "ZEROPT", "PHOTFLAM", "PHOTZPT", "GAIN",
)  # fmt: skip


@dataclass
class ScienceStamp:
    """One multi-band image on its way into a dataset, in FITS order (row 0 is the BOTTOM).

    `flux` is float32 `(B, Y, X)` in the data's units (non-finite values kept; the build flags them);
    `bands` names each plane; `header` holds the cards kept per image (BUNIT, pixel scale, band, WCS keys);
    `source` is the name recorded in meta (file path, `file.h5:images[12]`, `catalogue IDENT`); `params`
    are per-image values worth keeping (magnitudes, true parameters); `flags` note what reading changed.
    """

    source: str
    flux: np.ndarray
    bands: tuple[str, ...]
    header: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


def parse_names(text: str | Sequence[str] | None, *, what: str = "--bands") -> tuple[str, ...] | None:
    """`"g,r,i,z"` -> ("g", "r", "i", "z"); None stays None. UserError for empty or repeated names."""
    if text is None:
        return None
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text)]
    if not parts or any(not p for p in parts):
        raise UserError(f"{what} wants names separated by commas, like g,r,i,z; got {text!r}")
    if len(set(parts)) != len(parts):
        raise UserError(f"{what} names a band twice: {','.join(parts)}")
    return tuple(parts)


def parse_floats(text: str | Sequence[float] | None, *, what: str) -> tuple[float, ...] | None:
    """`"0,0.5,1"` -> (0.0, 0.5, 1.0); None stays None. UserError for anything that is not a number."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise UserError(f"{what} wants numbers separated by commas (one per band), got {text!r}") from None


@dataclass(frozen=True)
class ScienceOptions:
    """What makes a build a science build: where the stamps come from and the dataset-wide stretch.

    Exactly one source: `inputs` folders/files (FITS cubes, or with `bands` one file per band named by
    `band_pattern`), `h5` (an array file) or `cosmos` (a COSMOS catalogue). The stretch is fitted on up to
    `fit_sample` evenly spaced inputs unless `stretch_black`/`stretch_white` give every band's limits.
    """

    bands: tuple[str, ...] | None = None
    cubes: bool = False  # --science: FITS cubes named by their headers' band cards
    band_pattern: str = DEFAULT_BAND_PATTERN
    hdu: int | None = None
    h5: str | os.PathLike[str] | None = None
    h5_key: str = "images"
    h5_layout: str = "auto"
    h5_params: tuple[str, ...] = ()
    h5_origin: str = "bottom"  # "bottom": FITS order (row 0 is the bottom); "top": image order
    cosmos: str | os.PathLike[str] | None = None
    cosmos_dir: str | os.PathLike[str] | None = None
    max_mag: float | None = None
    min_mag: float | None = None
    exclusion_level: str = "marginal"
    max_num: int | None = None
    stretch: str = "asinh"
    stretch_a: float | None = None
    stretch_black: tuple[float, ...] | None = None
    stretch_white: tuple[float, ...] | None = None
    black_percentile: float = SCIENCE_BLACK_PERCENTILE
    white_percentile: float = SCIENCE_WHITE_PERCENTILE
    rgb: tuple[str, ...] | None = None
    fit_sample: int = FIT_SAMPLE
    pad_noise: bool = False  # --crop pad: Gaussian noise of the stamp border's robust std on the padding

    @property
    def mode(self) -> str:
        """Where the stamps come from: "h5", "cosmos" or "files"."""
        return "h5" if self.h5 is not None else "cosmos" if self.cosmos is not None else "files"

    def check(self, *, num_inputs: int) -> None:
        """UserError (one line) for options that cannot work together."""
        if self.h5 is not None and self.cosmos is not None:
            raise UserError("--h5 and --cosmos are two sources: build one dataset from each")
        if self.mode != "files" and num_inputs:
            raise UserError(f"--{self.mode} is the build's only source: leave out the input folders/files")
        if self.mode == "files" and not num_inputs:
            raise UserError("no inputs: give folders or files of FITS, --h5 FILE or --cosmos CATALOG")
        if "{stem}" not in self.band_pattern or "{band}" not in self.band_pattern:
            raise UserError(f"--band-pattern needs {{stem}} and {{band}}, got {self.band_pattern!r}")
        if self.stretch not in STRETCH_KINDS:
            raise UserError(f"unknown --stretch {self.stretch!r}: use one of {', '.join(STRETCH_KINDS)}")
        if self.stretch_a is not None and self.stretch in ("asinh", "log") and not self.stretch_a > 0:
            raise UserError(f"--stretch-a must be above 0 for the {self.stretch} stretch")
        if not 0.0 <= self.black_percentile < self.white_percentile <= 100.0:
            raise UserError("need 0 <= --black-percentile < --white-percentile <= 100")
        for name, values in (
            ("--stretch-black", self.stretch_black),
            ("--stretch-white", self.stretch_white),
        ):
            if values is not None and self.bands is not None and len(values) != len(self.bands):
                raise UserError(f"{name} needs one value per band ({len(self.bands)}), got {len(values)}")
        if self.h5_layout not in H5_LAYOUTS:
            raise UserError(f"unknown --h5-layout {self.h5_layout!r}: use one of {', '.join(H5_LAYOUTS)}")
        if self.h5_origin not in H5_ORIGINS:
            raise UserError(f"unknown --h5-origin {self.h5_origin!r}: use bottom (FITS order) or top")
        if self.exclusion_level not in EXCLUSION_LEVELS:
            raise UserError(
                f"unknown --exclusion-level {self.exclusion_level!r}: use one of {', '.join(EXCLUSION_LEVELS)}"
            )
        if self.hdu is not None and self.hdu < 0:
            raise UserError("--hdu counts from 0 (the primary HDU)")
        if self.rgb is not None and len(self.rgb) != 3:
            raise UserError(f"--rgb needs three bands (R,G,B), got {','.join(self.rgb)}")
        if self.fit_sample < 1 or (self.max_num is not None and self.max_num < 1):
            raise UserError("the fit sample and --max-num must be at least 1")

    def hashed(self) -> dict[str, Any]:
        """The options that shape the pixels, for the content hash (no paths)."""
        return {
            "mode": self.mode,
            "bands": None if self.bands is None else list(self.bands),
            "band_pattern": self.band_pattern if self.mode == "files" else None,
            "hdu": self.hdu,
            "h5": {"key": self.h5_key, "layout": self.h5_layout, "origin": self.h5_origin}
            if self.mode == "h5"
            else None,
            "fit": {
                "sample": self.fit_sample,
                "black_percentile": self.black_percentile,
                "white_percentile": self.white_percentile,
            },
            "nonfinite": "filled with the band's black",
            **({"pad_noise": True} if self.pad_noise else {}),  # left out when off: older hashes stay valid
        }


# ----------------------------------------------------------------------------------------------------
# FITS: one HDU's planes and the cards kept


def header_bands(header: Any, num_planes: int) -> tuple[str, ...]:
    """Band names of a cube's planes: BANDS='g,r,i,z', else BAND1..BANDn, else FILTER1..n, else b0..b(n-1).

    A single plane may also be named by BAND or FILTER.
    """
    text = header.get("BANDS")
    if isinstance(text, str):
        names = tuple(p.strip() for p in text.split(","))
        if len(names) == num_planes and all(names) and len(set(names)) == num_planes:
            return names
    for key in ("BAND", "FILTER"):
        names = tuple(str(header.get(f"{key}{i}", "")).strip() for i in range(1, num_planes + 1))
        if all(names) and len(set(names)) == num_planes:
            return names
        if num_planes == 1 and str(header.get(key, "")).strip():
            return (str(header[key]).strip(),)
    return tuple(f"b{i}" for i in range(num_planes))


def _wcs_key(cards: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in cards.items() if k and WCS_KEY.fullmatch(k)))


def _remember(key: tuple[Any, ...], cards: dict[str, Any]) -> None:
    _WCS_CACHE[key] = cards
    _WCS_CACHE.move_to_end(key)
    while len(_WCS_CACHE) > _WCS_CACHE_SIZE:
        _WCS_CACHE.popitem(last=False)


def _has_celestial_ctype(header: Any) -> bool:
    """True when a CTYPEi card names a celestial axis (wcslib's RA--, DEC-, xLON, xLAT, xyLN, xyLT)."""
    for k in header.keys():  # keys, then the few CTYPE values: a Header parses a value when it is read
        if k and k.startswith("CTYPE"):
            v = header[k]
            if isinstance(v, str) and CELESTIAL_CTYPE.match(v.strip().upper()):
                return True
    return False


def celestial_cards(header: Any) -> dict[str, Any]:
    """The celestial WCS of a header or card dict as 2-axis cards (`_wcs_cards`: PC + CDELT form, degrees);
    {} when it has no celestial CTYPE or the WCS cannot be read (a broken WCS never stops a build).

    Headers without a celestial CTYPE cost a scan of their keys. Others are parsed ONCE by wcslib
    (astropy.wcs.Wcsprm: fix, celestial sub, set: ~0.1 ms), not through astropy's WCS class (~1.3 ms, twice
    for a cube: the full WCS, then its `.celestial`); headers with SIP, TPV or lookup-table distortions, or
    PV cards, take astropy's WCS road, whose extra handling they need (the cards agree: tested). Card dicts
    (the stamps' own kept cards, found again when the build cuts them) are remembered by their cards.
    """
    from astropy.io import fits

    if not _has_celestial_ctype(header):
        return {}
    is_header = isinstance(header, fits.Header)
    key = None if is_header else _wcs_key(header)
    if key is not None and key in _WCS_CACHE:
        _WCS_CACHE.move_to_end(key)
        return _WCS_CACHE[key]
    hdr = header if is_header else fits.Header(_scalar_cards(header))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FITSFixedWarning and friends: a header fixed silently is fine here
        try:
            cards = _astropy_cards(hdr) if _needs_astropy(hdr) else _wcslib_cards(hdr)
        except Exception:
            cards = {}
    if cards:
        _remember(_wcs_key(cards), cards)
    if key is not None:
        _remember(key, cards)
    return cards


def _needs_astropy(header: Any) -> bool:
    """Distortions (SIP, TPV, lookup tables) and PV cards: astropy's WCS class reads what wcslib alone does
    not (SIP keywords, pre-2012 SCAMP TPV headers)."""
    return any(DISTORTION_KEY.fullmatch(k) for k in header.keys() if k) or any(
        "-SIP" in str(header.get(f"CTYPE{i}", "")).upper() for i in (1, 2, 3)
    )


def _wcslib_cards(header: Any) -> dict[str, Any]:
    """`_wcs_cards` of a header's celestial axes read by wcslib alone: what astropy's WCS(header).celestial
    does for a plain WCS (parse with relax=True, fix, keep the celestial axes, set), minus the Python layer."""
    from astropy import wcs as awcs

    w = awcs.Wcsprm(header.tostring(endcard=False, padding=False).encode())
    w.fix()
    w = w.sub([awcs.WCSSUB_CELESTIAL])
    if w.naxis != 2:
        return {}
    w.set()
    return _wcs_cards(w)


def _astropy_cards(header: Any) -> dict[str, Any]:
    """`_wcs_cards` of a header's celestial axes read by astropy's WCS class (distortions, PV, odd headers)."""
    from astropy.wcs import WCS

    wcs = WCS(header)
    if not wcs.has_celestial:
        return {}
    if wcs.naxis != 2:  # a 2-axis WCS with celestial axes is celestial already
        wcs = wcs.celestial
    return _wcs_cards(wcs.wcs)


def _wcs_cards(w: Any) -> dict[str, Any]:
    """The cards of a 2-axis celestial wcslib struct (`astropy.wcs.Wcsprm`, set), as `WCS.to_header()` writes
    them (PC + CDELT form, PC left out where it is the identity, PV, poles, frame) at full precision:
    to_header's text cards cost ~0.6 ms per image and round to 14 digits. (MJDREF = 0 is left out.)"""
    pc, cdelt = w.get_pc(), w.get_cdelt()
    out: dict[str, Any] = {"WCSAXES": 2}
    for i in (1, 2):
        out[f"CRPIX{i}"] = float(w.crpix[i - 1])
    for i in (1, 2):
        for j in (1, 2):
            if pc[i - 1, j - 1] != float(i == j):
                out[f"PC{i}_{j}"] = float(pc[i - 1, j - 1])
    for i in (1, 2):
        out[f"CDELT{i}"] = float(cdelt[i - 1])
        out[f"CUNIT{i}"] = str(w.cunit[i - 1])
        out[f"CTYPE{i}"] = str(w.ctype[i - 1])
        out[f"CRVAL{i}"] = float(w.crval[i - 1])
    for i, m, value in w.get_pv():
        out[f"PV{i}_{m}"] = float(value)
    out["LONPOLE"], out["LATPOLE"] = float(w.lonpole), float(w.latpole)
    if w.radesys:
        out["RADESYS"] = str(w.radesys)
    if np.isfinite(w.equinox):
        out["EQUINOX"] = float(w.equinox)
    return out


def _scalar_cards(header: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in header.items() if k and isinstance(v, (int, float, str, bool, np.generic))]


def pixel_scale_arcsec(header: Any) -> float | None:
    """PIXSCALE (arcsec/pixel), else the mean of the celestial WCS's `proj_plane_pixel_scales`, else None."""
    value = header.get("PIXSCALE")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    cards = celestial_cards(header)
    return cards_scale_arcsec(cards) if cards else None


def cards_scale_arcsec(cards: dict[str, Any]) -> float:
    """Mean pixel side (arcsec) of `_wcs_cards`: astropy's `proj_plane_pixel_scales`, the column norms of
    CDELT x PC (the cards are in degrees: wcslib converts celestial CUNIT to deg)."""
    m = np.array(
        [
            [cards.get("PC1_1", 1.0), cards.get("PC1_2", 0.0)],
            [cards.get("PC2_1", 0.0), cards.get("PC2_2", 1.0)],
        ]
    ) * np.array([[cards["CDELT1"]], [cards["CDELT2"]]])
    return float(np.mean(np.sqrt((m**2).sum(axis=0)))) * 3600.0


def kept_cards(header: Any, bands: Sequence[str]) -> dict[str, Any]:
    """The cards a science image keeps: BUNIT, PIXSCALE (from the WCS if need be), BANDS, a few identity
    cards and the celestial WCS, JSON-ready."""
    out: dict[str, Any] = {}
    for key in ("BUNIT", *_KEEP_CARDS):
        value = header.get(key)
        if isinstance(value, (int, float, str, bool)) and value != "":
            out[key] = value.strip() if isinstance(value, str) else value
    cards = celestial_cards(header)
    scale = header.get("PIXSCALE")
    if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0:
        out["PIXSCALE"] = float(scale)
    elif cards:
        out["PIXSCALE"] = cards_scale_arcsec(cards)
    out["BANDS"] = ",".join(bands)
    out.update(cards)
    return out


def read_science_fits(path: str | os.PathLike[str], *, hdu: int | None = None) -> tuple[np.ndarray, Any, int]:
    """(float32 flux `(B, Y, X)` in FITS order, the HDU's astropy header, its index) of one FITS file.

    `hdu` picks the HDU; without it, the first HDU with image data. Raises SkipFile with the reason.
    """
    from astropy.io import fits

    try:
        with fits.open(os.fspath(path), memmap=False) as hdul:
            index = _pick_hdu(hdul, hdu)
            header = hdul[index].header  # read whole (memmap off): it outlives the closed file
            arr = np.asarray(hdul[index].data)
    except SkipFile:
        raise
    except Exception as exc:  # astropy raises many kinds; every one means "cannot use this file"
        raise SkipFile(f"unreadable FITS ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise SkipFile(f"HDU {index} has {arr.ndim} axes; only 2D or 3D (bands, y, x) are read")
    if arr.dtype.kind not in "fiu":
        raise SkipFile(f"HDU {index} holds {arr.dtype} values, not numbers")
    return arr.astype(np.float32), header, index


def _pick_hdu(hdul: Any, hdu: int | None) -> int:
    """The index of the HDU to read (SkipFile when `hdu` is missing, a table or empty)."""
    if hdu is None:
        for index, h in enumerate(hdul):
            if h.is_image and h.data is not None and getattr(h.data, "ndim", 0) >= 2:
                return index
        raise SkipFile("no HDU with image data")
    if hdu >= len(hdul):
        raise SkipFile(f"no HDU {hdu} (the file has {len(hdul)})")
    h = hdul[hdu]
    if not h.is_image:
        raise SkipFile(f"HDU {hdu} holds a table, not an image")
    if h.data is None:
        raise SkipFile(f"HDU {hdu} holds no data (header only)")
    return hdu


# ----------------------------------------------------------------------------------------------------
# Stamp sources: each yields `Loaded` items in a fixed order, all of them or a chosen subset.


@dataclass
class Loaded:
    """One item of a source: its stamp, or why it has none; `files` (band, path) feed the report row."""

    index: int
    name: str
    stamp: ScienceStamp | None = None
    reason: str | None = None
    files: list[tuple[str, Path]] = field(default_factory=list)
    root: Path | None = None
    row: dict[str, Any] | None = None  # a row decided before reading (hidden, not FITS...): copied as is


def _strip_fits_suffix(name: str) -> tuple[str, str]:
    """("galaxy_0003_r", ".fits.gz") for "galaxy_0003_r.fits.gz" (the longest FITS suffix)."""
    low = name.lower()
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if low.endswith(suffix):
            return name[: -len(suffix)], name[len(name) - len(suffix) :]
    return name, ""


def _pattern_regex(pattern: str, bands: Sequence[str]) -> re.Pattern[str]:
    """`{stem}_{band}` -> a regex with groups stem and band (one of `bands`), matched on the whole name."""
    out = ""
    for part in re.split(r"(\{stem\}|\{band\})", pattern):
        if part == "{stem}":
            out += "(?P<stem>.+)"
        elif part == "{band}":
            out += "(?P<band>" + "|".join(re.escape(b) for b in sorted(bands, key=len, reverse=True)) + ")"
        else:
            out += re.escape(part)
    return re.compile(out)


@dataclass
class _Group:
    """One image to be: the band files of a stem, or one cube."""

    name: str
    root: Path
    folder: Path
    stem: str
    suffix: str
    files: dict[str, Path] = field(default_factory=dict)  # band -> file; a cube's key is ""
    dupes: list[tuple[str, Path]] = field(default_factory=list)  # (band, file) of a band already present


class FileStamps:
    """FITS inputs as stamps: with `bands`, files named by the band pattern grouped per stem (one image each)
    and other FITS files read as cubes whose planes are those bands; without, cubes named by their headers.

    `entries` are the walk's (root, path, rel, row) in order; rows (not to be built) pass through.
    """

    kind = "files"

    def __init__(self, entries: Sequence[tuple[Path, Path, str | None, dict | None]], sci: ScienceOptions):
        self.sci = sci
        self.items: list[_Group | dict[str, Any]] = []
        regex = _pattern_regex(sci.band_pattern, sci.bands) if sci.bands else None
        groups: dict[tuple[Path, str], _Group] = {}
        for root, path, rel, row in entries:
            if row is not None:
                self.items.append(dict(row))
                continue
            if not is_fits_path(path):
                self.items.append(_not_fits_row(path))
                continue
            name = rel or (path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name)
            base, suffix = _strip_fits_suffix(Path(name).name)
            folder = Path(name).parent
            m = regex.fullmatch(base) if regex is not None else None
            if m is None:
                self.items.append(_Group(name, root, folder, base, suffix, files={"": path}))
                continue
            key = (root / folder, m["stem"])
            group = groups.get(key)
            if group is None:
                stem_name = (folder / m["stem"]).as_posix()
                group = groups[key] = _Group(stem_name, root, folder, m["stem"], suffix)
                self.items.append(group)
            if m["band"] in group.files:
                group.dupes.append((m["band"], path))
            else:
                group.files[m["band"]] = path

    def __len__(self) -> int:
        return len(self.items)

    def iter_stamps(self, indices: Sequence[int] | None = None, *, headers: bool = True) -> Iterator[Loaded]:
        """The items in order (or those at `indices`); `headers=False` skips reading the cards (the fit)."""
        for i in range(len(self.items)) if indices is None else indices:
            item = self.items[i]
            if isinstance(item, dict):
                yield Loaded(i, item["path"], row=item)
                continue
            files = [(b, p) for b, p in item.files.items()]
            out = Loaded(i, item.name, files=files, root=item.root)
            try:
                out.stamp = self._load(item, headers=headers)
            except SkipFile as exc:
                out.reason = str(exc)
            yield out

    def extra_rows(self) -> list[dict[str, Any]]:
        """Rows for band files that repeat a band of their stem (the first one in walk order is used)."""
        return [
            {
                "path": str(p),
                "status": "skipped",
                "reason": f"second file for band {band} of {item.name} (the first, {item.files[band].name}, "
                "is used)",
                "flags": [],
            }
            for item in self.items
            if isinstance(item, _Group)
            for band, p in item.dupes
        ]

    def _load(self, group: _Group, *, headers: bool) -> ScienceStamp:
        if "" in group.files:
            return self._load_cube(group, headers=headers)
        assert self.sci.bands is not None
        missing = [b for b in self.sci.bands if b not in group.files]
        if missing:
            expected = [self.sci.band_pattern.format(stem=group.stem, band=b) + group.suffix for b in missing]
            s = "s" if len(missing) > 1 else ""
            raise SkipFile(
                f"missing band file{s} for {group.name}: {', '.join(missing)} (expected {', '.join(expected)})"
            )
        planes, cards_of = [], []
        for band in self.sci.bands:
            flux, header, index = read_science_fits(group.files[band], hdu=self.sci.hdu)
            if flux.shape[0] != 1:
                raise SkipFile(
                    f"band file {group.files[band].name} has {flux.shape[0]} planes in HDU {index}; "
                    "a band file holds one"
                )
            planes.append(flux[0])
            cards_of.append(header)
        shapes = {p.shape for p in planes}
        if len(shapes) > 1:
            sizes = ", ".join(
                f"{b} {p.shape[1]}x{p.shape[0]}" for b, p in zip(self.sci.bands, planes, strict=True)
            )
            raise SkipFile(f"bands differ in shape: {sizes} (width x height)")
        # The first band's WCS and units stand for all.
        cards = kept_cards(cards_of[0], self.sci.bands) if headers else {}
        flags = []
        units = {str(h.get("BUNIT", "")).strip() for h in cards_of}
        if len(units) > 1:
            flags.append("bunit-differs-between-bands")
        return ScienceStamp(group.name, np.stack(planes), self.sci.bands, header=cards, flags=flags)

    def _load_cube(self, group: _Group, *, headers: bool) -> ScienceStamp:
        flux, header, index = read_science_fits(group.files[""], hdu=self.sci.hdu)
        if self.sci.bands is not None:
            bands = self.sci.bands
            if flux.shape[0] != len(bands):
                raise SkipFile(
                    f"cube has {flux.shape[0]} plane(s) in HDU {index} for the {len(bands)} bands "
                    f"{','.join(bands)} (a per-band file must be named "
                    f"{self.sci.band_pattern.format(stem='NAME', band='BAND')}.fits)"
                )
        else:
            bands = header_bands(header, flux.shape[0])
        return ScienceStamp(group.name, flux, bands, header=kept_cards(header, bands) if headers else {})


def _not_fits_row(path: Path) -> dict[str, Any]:
    return {
        "path": str(path),
        "status": "ignored",
        "reason": f"not a FITS file name ({path.suffix or 'no suffix'}): science builds read FITS cubes "
        "or one FITS file per band",
        "flags": [],
    }


def json_value(value: Any) -> Any:
    """A NumPy scalar/array or bytes as plain JSON values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [json_value(v) for v in value.tolist()] if value.dtype.kind == "S" else value.tolist()
    if isinstance(value, np.generic):
        return json_value(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


class H5Stamps:
    """Images of one HDF5 array `(N, B, H, W)`, `(N, H, W, B)` or `(N, H, W)`, read a slice at a time.

    The array is taken in FITS order (row 0 is the bottom) unless `h5_origin` is "top". `h5_params` keys
    (arrays of length N) are kept per image. Attributes BUNIT/PIXSCALE/BANDS of the array (or the file)
    apply to every image.
    """

    kind = "h5"

    def __init__(self, sci: ScienceOptions) -> None:
        import h5py

        assert sci.h5 is not None
        self.sci, self.path = sci, Path(sci.h5).expanduser()
        if not self.path.is_file():
            raise UserError(f"no such --h5 file: {self.path}")
        try:
            fh = h5py.File(self.path, "r")
        except OSError as exc:
            raise UserError(f"cannot read {self.path} as HDF5 ({exc})") from None
        with fh:
            ds = fh.get(sci.h5_key)
            if not isinstance(ds, h5py.Dataset):
                keys = ", ".join(sorted(k for k in fh if isinstance(fh[k], h5py.Dataset))) or "none"
                raise UserError(
                    f"no array {sci.h5_key!r} in {self.path.name} (its arrays: {keys}): set --h5-key"
                )
            if ds.dtype.kind not in "fiu" or ds.ndim not in (3, 4) or ds.shape[0] == 0:
                raise UserError(
                    f"{self.path.name}:{sci.h5_key} is {ds.dtype} of shape {ds.shape}: want numbers shaped "
                    "(N, B, H, W), (N, H, W, B) or (N, H, W)"
                )
            self.shape = tuple(int(s) for s in ds.shape)
            attrs = {**{k: fh.attrs[k] for k in fh.attrs}, **{k: ds.attrs[k] for k in ds.attrs}}
            self.layout = self._layout(attrs)
            self.bands = self._bands(attrs)
            self.header = self._header(attrs)
            for key in sci.h5_params:
                p = fh.get(key)
                if not isinstance(p, h5py.Dataset) or p.ndim == 0 or p.shape[0] != self.shape[0]:
                    got = "missing" if not isinstance(p, h5py.Dataset) else f"shape {p.shape}"
                    raise UserError(
                        f"--h5-params {key}: want an array of length {self.shape[0]} in {self.path.name} ({got})"
                    )

    def _layout(self, attrs: dict[str, Any]) -> str:
        """nchw, nhwc or nhw: as asked, or the axis whose length is the band count, else the smallest <= 16."""
        if len(self.shape) == 3:
            return "nhw"
        if self.sci.h5_layout != "auto":
            return self.sci.h5_layout
        num = len(self.sci.bands) if self.sci.bands else None
        b1, b3 = self.shape[1], self.shape[3]
        if num is not None and (b1 == num) != (b3 == num):
            return "nchw" if b1 == num else "nhwc"
        if b1 != b3 and min(b1, b3) <= 16:
            return "nchw" if b1 < b3 else "nhwc"
        raise UserError(
            f"cannot tell the band axis of {self.path.name}:{self.sci.h5_key} {self.shape}: pass --h5-layout "
            "nchw or nhwc"
        )

    @property
    def num_bands(self) -> int:
        return {"nhw": 1, "nchw": self.shape[1], "nhwc": self.shape[-1]}[self.layout]

    def _bands(self, attrs: dict[str, Any]) -> tuple[str, ...]:
        n = self.num_bands
        if self.sci.bands is not None:
            if len(self.sci.bands) != n:
                raise UserError(
                    f"{self.path.name}:{self.sci.h5_key} has {n} band(s) ({self.layout} {self.shape}); "
                    f"--bands names {len(self.sci.bands)}: fix --bands or --h5-layout"
                )
            return self.sci.bands
        return header_bands({k.upper(): json_value(v) for k, v in attrs.items()}, n)

    def _header(self, attrs: dict[str, Any]) -> dict[str, Any]:
        upper = {k.upper(): json_value(v) for k, v in attrs.items()}
        if "PIXEL_SCALE_ARCSEC" in upper and "PIXSCALE" not in upper:
            upper["PIXSCALE"] = upper["PIXEL_SCALE_ARCSEC"]
        return kept_cards(upper, self.bands)

    def __len__(self) -> int:
        return self.shape[0]

    def _slices(self, indices: Sequence[int] | None) -> Iterator[tuple[list[int], Any]]:
        """(indices, selection) pairs: contiguous slices of about _H5_CHUNK_BYTES, or the chosen indices."""
        if indices is not None:
            for i in indices:
                yield [i], slice(i, i + 1)
            return
        per = max(1, _H5_CHUNK_BYTES // (4 * int(np.prod(self.shape[1:]))))
        for start in range(0, self.shape[0], per):
            stop = min(start + per, self.shape[0])
            yield list(range(start, stop)), slice(start, stop)

    def iter_stamps(self, indices: Sequence[int] | None = None, *, headers: bool = True) -> Iterator[Loaded]:
        import h5py

        with h5py.File(self.path, "r") as fh:
            ds = fh[self.sci.h5_key]
            for idx, sel in self._slices(indices):
                block = np.asarray(ds[sel], dtype=np.float32)
                if self.layout == "nhw":
                    block = block[:, None]
                elif self.layout == "nhwc":
                    block = np.moveaxis(block, -1, 1)
                if self.sci.h5_origin == "top":
                    block = fits_to_image_order(block)  # image order -> FITS order: the same one flip
                params = {k: np.asarray(fh[k][sel]) for k in self.sci.h5_params}
                for j, i in enumerate(idx):
                    name = f"{self.path.name}:{self.sci.h5_key}[{i}]"
                    stamp = ScienceStamp(
                        name,
                        np.ascontiguousarray(block[j]),
                        self.bands,
                        header=dict(self.header),
                        params={k: json_value(v[j]) for k, v in params.items()},
                    )
                    yield Loaded(i, name, stamp=stamp)

    def describe(self) -> dict[str, Any]:
        from astrogan.data.provenance import file_sha256

        sha, num_bytes = file_sha256(self.path)
        return {
            "path": self.path.name,
            "root": str(self.path.parent.resolve()),
            "sha256": sha,
            "bytes": num_bytes,
            "h5": {
                "key": self.sci.h5_key,
                "shape": list(self.shape),
                "layout": self.layout,
                "origin": self.sci.h5_origin,
                "params": list(self.sci.h5_params),
            },
        }


class CosmosStamps:
    """The stamps of a COSMOS selection (`astrogan.data.cosmos.open_cosmos`), in the selection's order."""

    kind = "cosmos"

    def __init__(self, sci: ScienceOptions) -> None:
        try:  # loaded only for --cosmos (galsim-style catalogue reading lives there)
            from astrogan.data.cosmos import open_cosmos
        except ImportError as exc:
            raise UserError(
                f"--cosmos cannot run here: astrogan.data.cosmos does not import ({exc})"
            ) from None

        assert sci.cosmos is not None
        self.path = Path(sci.cosmos).expanduser()
        self.selection = open_cosmos(
            self.path,
            dir=sci.cosmos_dir,
            max_mag=sci.max_mag,
            min_mag=sci.min_mag,
            exclusion_level=sci.exclusion_level,
            max_num=sci.max_num,
        )

        self.path = Path(getattr(self.selection, "catalog", self.path))  # a folder or sample name, resolved

    def __len__(self) -> int:
        return len(self.selection)

    def iter_stamps(self, indices: Sequence[int] | None = None, *, headers: bool = True) -> Iterator[Loaded]:
        """The stamps in selection order (or those at `indices`), each as a Loaded (a broken one with its reason).

        With `__getitem__` (astrogan.data.cosmos) each stamp is read alone: a damaged one gets its own reason
        and the pass goes on, and a sample reads only its stamps; the selection's files are closed after the
        pass. A selection that only iterates is read in one pass; a stamp that fails to read ends that pass (a
        generator cannot go on), so the stamps after it get a row saying they were not read.
        """
        getitem = getattr(self.selection, "__getitem__", None)
        if getitem is not None:
            try:
                for i in range(len(self)) if indices is None else sorted(set(indices)):
                    yield self._loaded(i, lambda i=i: getitem(i))
            finally:
                close = getattr(self.selection, "close", None)
                if close is not None:
                    close()
            return
        keep = None if indices is None else set(indices)
        it = iter(self.selection)
        broken: str | None = None
        try:
            for i in range(len(self) if keep is None else max(keep, default=-1) + 1):
                if broken is not None:
                    if keep is None or i in keep:
                        yield Loaded(
                            i,
                            self._name(i),
                            reason=f"not read (an earlier stamp failed: {broken})",
                        )
                    continue
                item = self._loaded(i, lambda: next(it))
                if item.stamp is None:
                    broken = item.reason
                if keep is None or i in keep:
                    yield item
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # runs the selection's own clean-up (its open files) when a pass stops early

    def _name(self, i: int) -> str:
        """The report name of stamp `i` before (or without) reading it: the selection's `source_name(i)`
        (`catalogue:IDENT`) where it has one, else `catalogue[i]`."""
        source_name = getattr(self.selection, "source_name", None)
        return str(source_name(i)) if source_name is not None else f"{self.path.name}[{i}]"

    def _loaded(self, i: int, get: Any) -> Loaded:
        try:
            stamp = get()
        except StopIteration:
            return Loaded(i, self._name(i), reason="missing (the selection ended early)")
        except SkipFile as exc:
            return Loaded(i, self._name(i), reason=str(exc))
        except (OSError, ValueError) as exc:  # one broken stamp file is reported, never fatal
            return Loaded(i, self._name(i), reason=f"unreadable stamp ({' '.join(str(exc).split())})")
        return Loaded(i, stamp.source, stamp=stamp)

    def describe(self) -> dict[str, Any]:
        info = dict(self.selection.describe())
        entry: dict[str, Any] = {
            "path": self.path.name,
            "root": str(self.path.parent.resolve()),
            "cosmos": info,
        }
        for key in ("credit", "licence", "title"):
            if info.get(key):
                entry[key] = info[key]
        entry.setdefault("credit", COSMOS_CREDIT)
        return entry


StampSource = FileStamps | H5Stamps | CosmosStamps


def open_stamps(
    sci: ScienceOptions, entries: Sequence[tuple[Path, Path, str | None, dict | None]]
) -> StampSource:
    """The stamp source of a science build: the walked inputs, an HDF5 array or a COSMOS selection."""
    if sci.mode == "h5":
        return H5Stamps(sci)
    if sci.mode == "cosmos":
        return CosmosStamps(sci)
    return FileStamps(entries, sci)


# ----------------------------------------------------------------------------------------------------
# The fit: one dataset-wide stretch and colour mapping from an evenly spaced sample


def sample_indices(n: int, k: int) -> list[int]:
    """Up to `k` evenly spaced indices of `range(n)`, first and last included (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


def stamp_problem(stamp: ScienceStamp, bands: Sequence[str]) -> str | None:
    """Why a stamp cannot join a dataset of `bands` (wrong shape, count, names, an all-NaN band), or None."""
    flux = stamp.flux
    if flux.ndim != 3 or flux.shape[0] != len(stamp.bands):
        return f"flux of shape {flux.shape} for {len(stamp.bands)} band(s): want (bands, y, x)"
    if tuple(stamp.bands) != tuple(bands):
        if len(stamp.bands) != len(bands):
            have, want = ",".join(stamp.bands), ",".join(bands)
            return f"has {len(stamp.bands)} band(s) ({have}); the dataset has {len(bands)} ({want})"
        return f"bands {','.join(stamp.bands)} differ from the dataset's {','.join(bands)}"
    finite = np.isfinite(flux).reshape(flux.shape[0], -1).any(axis=1)
    for b, ok in zip(bands, finite, strict=True):
        if not ok:
            return f"band {b} is all NaN (no finite pixels)"
    return None


def _fit_pixels(crop: np.ndarray) -> np.ndarray:
    """float32 `(B, K)`: a crop's pixels per band, evenly thinned to _FIT_PIXELS when larger."""
    flat = crop.reshape(crop.shape[0], -1)
    if flat.shape[1] > _FIT_PIXELS:
        flat = flat[:, np.linspace(0, flat.shape[1] - 1, _FIT_PIXELS).astype(np.int64)]
    return flat


@dataclass
class Fit:
    """The fit pass's outcome: the dataset's bands, stretch and display, and the sample's size."""

    bands: tuple[str, ...]
    stretch: BandStretch
    display: DisplaySpec
    num_sampled: int

    def spec(self, *, bunit: str | None, pixel_scale_arcsec: float | None) -> ScienceSpec:
        return ScienceSpec(
            bands=self.bands,
            stretch=self.stretch,
            bunit=bunit,
            pixel_scale_arcsec=pixel_scale_arcsec,
            display=self.display,
        )


def fit_science(
    source: StampSource, sci: ScienceOptions, *, boxes: Any, bar: Any = None, task: Any = None
) -> Fit:
    """Fit the dataset-wide BandStretch and DisplaySpec on an evenly spaced sample of the source's stamps.

    `boxes(stamp)` gives the stamp's crops in image order `(top, left, side)`, as the build will cut them, so
    the fit sees the pixels that will be stored (before the resize; of a `--crop pad` box, the stamp's pixels
    only, not the padding). Broken sample stamps are passed over (the build reports them); when none of the
    sample is usable, every stamp is tried. UserError when none is.
    """
    indices = sample_indices(len(source), sci.fit_sample)
    found = _sample_pixels(source, sci, indices, boxes, bar, task)
    if not found[0] and len(indices) < len(source):
        found = _sample_pixels(source, sci, None, boxes, bar, task)
    pixels, bands, reasons = found
    if not pixels:
        common = "; ".join(f"{n} {why}" for why, n in Counter(reasons).most_common(3)) or "no inputs found"
        raise UserError(f"no usable images in the inputs ({common}): check the paths, --bands and --hdu")
    width = max(p.shape[1] for p in pixels)
    arr = np.full((len(pixels), len(bands), 1, width), np.nan, dtype=np.float32)
    for i, p in enumerate(pixels):  # crops of different sides: pad with NaN, which both fits leave out
        arr[i, :, 0, : p.shape[1]] = p
    stretch = _stretch(arr, bands, sci)
    try:
        display = DisplaySpec.fit(arr, bands, rgb=sci.rgb)
    except ValueError as exc:
        raise UserError(f"--rgb: {exc}") from None
    return Fit(bands=bands, stretch=stretch, display=display, num_sampled=len(pixels))


def _sample_pixels(
    source: StampSource, sci: ScienceOptions, indices: list[int] | None, boxes: Any, bar: Any, task: Any
) -> tuple[list[np.ndarray], tuple[str, ...], list[str]]:
    """(per-crop pixels `(B, K)` of the usable sample stamps, the dataset's bands, reasons of the others)."""
    stamps: list[ScienceStamp] = []
    reasons: list[str] = []
    if bar is not None:
        bar.update(task, total=len(source) if indices is None else len(indices), completed=0)
    for item in source.iter_stamps(indices, headers=False):
        if item.stamp is not None:
            stamps.append(item.stamp)
        elif item.reason is not None:
            reasons.append(item.reason.split(" (")[0])
        if bar is not None:
            bar.advance(task)
    # The dataset's bands: as given, else the names most of the sample carries (ties: the first seen).
    bands = sci.bands or (Counter(tuple(s.bands) for s in stamps).most_common(1)[0][0] if stamps else ())
    pixels = []
    for s in stamps:
        why = stamp_problem(s, bands)
        if why is not None:
            reasons.append(why.split(" (")[0])
            continue
        img = fits_to_image_order(s.flux)  # boxes are in image order, as the build cuts them
        for top, left, side in boxes(s):  # a --crop pad box may reach past the stamp: fit its own pixels only
            pixels.append(_fit_pixels(img[:, max(top, 0) : top + side, max(left, 0) : left + side]))
    return pixels, tuple(bands), reasons


def _stretch(arr: np.ndarray, bands: tuple[str, ...], sci: ScienceOptions) -> BandStretch:
    """The fitted stretch with --stretch-black/--stretch-white put in place of the fitted limits."""
    for name, values in (("--stretch-black", sci.stretch_black), ("--stretch-white", sci.stretch_white)):
        if values is not None and len(values) != len(bands):
            raise UserError(
                f"{name} needs one value per band ({len(bands)}: {','.join(bands)}), got {len(values)}"
            )
    fitted = BandStretch.fit(
        arr,
        kind=sci.stretch,
        a=sci.stretch_a,
        black_percentile=sci.black_percentile,
        white_percentile=sci.white_percentile,
    )
    black = sci.stretch_black or fitted.black
    white = sci.stretch_white or fitted.white
    try:
        return BandStretch(kind=fitted.kind, a=fitted.a, black=tuple(black), white=tuple(white))
    except ValueError as exc:
        raise UserError(f"--stretch-black/--stretch-white: {exc}") from None
