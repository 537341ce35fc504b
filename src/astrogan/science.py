"""Science images on the torch-free floor: astropy stretches per band and inverses, the FITS flip, FITS out, composites.

A science dataset keeps float fluxes. Each band is mapped to [0, 1] by ONE dataset-wide stretch (astropy's
`ManualInterval(black, white)` then `AsinhStretch`/`LogStretch`/`SqrtStretch`/`LinearStretch`), so the
same stretch undone on a generated image gives fluxes in the data's units. `ScienceSpec` is what travels
from the dataset manifest (`science`) into the run config, `generator.json` and `model.json`: band names,
the stretch, BUNIT, pixel scale and the colour-composite mapping (Lupton et al. 2004, astropy's
`make_lupton_rgb`). Arrays are `[..., band, y, x]`; FITS row 0 is the bottom, image row 0 the top, and
`fits_to_image_order` is the only place that flips between them. astropy is imported inside functions
(the web app imports this module, and `import astrogan` stays light).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "STRETCH_KINDS",
    "BandStretch",
    "blue_to_red",
    "cube_values",
    "fits_text",
    "generated_cube_cards",
    "DisplaySpec",
    "ScienceSpec",
    "default_rgb",
    "display_uint8",
    "fits_bytes",
    "fits_header_cards",
    "fits_to_image_order",
    "model_to_flux",
    "write_fits",
]

# Stretch kinds and the astropy.visualization class that does each (a = the class's parameter).
STRETCH_KINDS = ("asinh", "log", "sqrt", "linear")
DEFAULT_A = {"asinh": 0.1, "log": 1000.0, "sqrt": 1.0, "linear": 1.0}

# Bands in order of wavelength, for the default colour mapping (bluest -> B, reddest -> R).
_WAVELENGTH_ORDER = [
    "fuv", "nuv", "u", "f275w", "f336w", "f435w", "g", "f475w", "f555w", "f606w", "v", "r", "f625w",
    "f775w", "i", "f814w", "f850lp", "z", "y", "f105w", "j", "f125w", "h", "f160w", "k", "ks", "w1", "w2",
]  # fmt: skip


def fits_to_image_order(arr: np.ndarray) -> np.ndarray:
    """THE one flip between FITS order (origin bottom-left) and image/PNG order (origin top-left).

    Works on `(..., Y, X)` arrays: reverses the Y axis (second from last) and returns a contiguous copy.
    Its own inverse, so it also turns image order back into FITS order.
    """
    if arr.ndim < 2:
        raise ValueError(f"need at least 2 axes (y, x), got shape {arr.shape}")
    return np.ascontiguousarray(np.flip(arr, axis=-2))


def _astropy_stretch(kind: str, a: float) -> Any:
    from astropy.visualization import AsinhStretch, LinearStretch, LogStretch, SqrtStretch

    if kind == "asinh":
        return AsinhStretch(a=a)
    if kind == "log":
        return LogStretch(a=a)
    if kind == "sqrt":
        return SqrtStretch()
    if kind == "linear":
        return LinearStretch()
    raise ValueError(f"unknown stretch {kind!r}: use one of {', '.join(STRETCH_KINDS)}")


@dataclass(frozen=True)
class BandStretch:
    """Flux -> [0, 1] per band: `ManualInterval(black[b], white[b])` then one astropy stretch of kind `kind`.

    `black`/`white` hold one value per band (band axis -3 of the arrays it maps). `inverse` undoes
    `forward` exactly for flux inside [black, white]; flux outside comes back clipped to it.
    """

    kind: str
    a: float
    black: tuple[float, ...]
    white: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.kind not in STRETCH_KINDS:
            raise ValueError(f"unknown stretch {self.kind!r}: use one of {', '.join(STRETCH_KINDS)}")
        if len(self.black) != len(self.white) or not self.black:
            raise ValueError("a stretch needs one black and one white value per band")
        if not all(w > b for b, w in zip(self.black, self.white, strict=True)):
            raise ValueError(f"every band needs white > black, got black={self.black} white={self.white}")
        if self.kind in ("asinh", "log") and not self.a > 0:
            raise ValueError(f"the {self.kind} stretch needs a > 0, got {self.a}")

    @property
    def num_bands(self) -> int:
        return len(self.black)

    def _limits(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        shape = (self.num_bands,) + (1, 1)
        black = np.asarray(self.black, dtype=np.float64).reshape(shape)
        white = np.asarray(self.white, dtype=np.float64).reshape(shape)
        return black, white

    def _check(self, arr: np.ndarray) -> None:
        if arr.ndim < 3 or arr.shape[-3] != self.num_bands:
            raise ValueError(f"the stretch has {self.num_bands} band(s); got an array of shape {arr.shape}")

    def forward(self, flux: ArrayLike) -> np.ndarray:
        """Flux `(..., B, Y, X)` -> float32 values in [0, 1] (non-finite flux becomes 0)."""
        x = np.asarray(flux, dtype=np.float64)
        self._check(x)
        black, white = self._limits(x.ndim)
        x = np.where(np.isfinite(x), x, black)
        unit = np.clip((x - black) / (white - black), 0.0, 1.0)  # astropy's ManualInterval, per band
        return np.asarray(_astropy_stretch(self.kind, self.a)(unit, clip=True), dtype=np.float32)

    def inverse(self, values: ArrayLike) -> np.ndarray:
        """Values `(..., B, Y, X)` in [0, 1] -> float32 flux (values outside [0, 1] are clipped first)."""
        y = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
        self._check(y)
        black, white = self._limits(y.ndim)
        unit = np.asarray(_astropy_stretch(self.kind, self.a).inverse(y, clip=True), dtype=np.float64)
        return (black + unit * (white - black)).astype(np.float32)

    @classmethod
    def fit(
        cls,
        flux: ArrayLike,
        *,
        kind: str = "asinh",
        a: float | None = None,
        black_percentile: float = 0.5,
        white_percentile: float = 99.9,
    ) -> BandStretch:
        """Black/white per band from percentiles of the finite pixels of `flux` `(N, B, Y, X)` (all images)."""
        x = np.asarray(flux, dtype=np.float64)
        if x.ndim != 4:
            raise ValueError(f"fit wants (N, B, Y, X) flux, got shape {x.shape}")
        blacks, whites = [], []
        for b in range(x.shape[1]):
            good = x[:, b][np.isfinite(x[:, b])]
            if good.size == 0:
                raise ValueError(f"band {b} has no finite pixels to set its stretch from")
            lo, hi = np.percentile(good, [black_percentile, white_percentile])
            if not hi > lo:  # a flat band: keep the transform well defined
                hi = lo + max(abs(lo), 1.0)
            blacks.append(float(lo))
            whites.append(float(hi))
        return cls(
            kind=kind, a=float(DEFAULT_A[kind] if a is None else a), black=tuple(blacks), white=tuple(whites)
        )

    def to_dict(self) -> dict[str, Any]:
        cls = {"asinh": "AsinhStretch", "log": "LogStretch", "sqrt": "SqrtStretch", "linear": "LinearStretch"}
        return {
            "kind": self.kind,
            "a": self.a,
            "black": list(self.black),
            "white": list(self.white),
            "scope": "dataset",
            "how": f"astropy.visualization ManualInterval(black, white) then {cls[self.kind]}"
            + (f"(a={self.a:g})" if self.kind in ("asinh", "log") else "()")
            + "; flux = black + inverse(value) * (white - black)",
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BandStretch:
        black, white = d["black"], d["white"]
        if not isinstance(black, (list, tuple)):
            black, white = [black], [white]
        return cls(
            kind=str(d["kind"]),
            a=float(d.get("a", DEFAULT_A.get(str(d["kind"]), 1.0))),
            black=tuple(float(v) for v in black),
            white=tuple(float(v) for v in white),
        )


def blue_to_red(bands: Sequence[str]) -> list[int]:
    """Indices of `bands` from the bluest to the reddest when every name is a known filter, else as given."""
    low = [b.lower() for b in bands]
    if all(b in _WAVELENGTH_ORDER for b in low):
        return sorted(range(len(low)), key=lambda i: _WAVELENGTH_ORDER.index(low[i]))
    return list(range(len(low)))


def default_rgb(bands: Sequence[str]) -> tuple[str, str, str]:
    """The bands shown as (R, G, B): g,r,i present -> (i, r, g) (SDSS); else reddest to bluest of the first three.

    Names not in the wavelength table keep their given order (assumed blue to red); 1 band is grey
    (the same band thrice) and 2 bands put their mean in G.
    """
    names = list(bands)
    low = [b.lower() for b in names]
    if {"g", "r", "i"} <= set(low):
        return names[low.index("i")], names[low.index("r")], names[low.index("g")]
    if len(names) == 1:
        return names[0], names[0], names[0]
    names = [names[i] for i in blue_to_red(names)]
    if len(names) == 2:
        return names[1], "", names[0]  # "" = the mean of the two
    return names[2], names[1], names[0]


@dataclass(frozen=True)
class DisplaySpec:
    """How science images become colour pictures: bands shown as (R, G, B) through `make_lupton_rgb`.

    Per band (keyed by name, so `--rgb` can pick any band): `minimum` (the flux shown black: the sky) and
    `scale` (a multiplier that balances the bands, so the sample's typical galaxy is neither red nor blue and
    colour differences stand out). Then Lupton et al. (2004)'s `stretch` (the linear range of the asinh, in
    scaled flux) and `Q` (its softening). `rgb` entries name bands; "" means the mean of R and B (two bands).
    """

    rgb: tuple[str, str, str]
    minimum: Mapping[str, float] = field(default_factory=dict)  # band -> flux shown black (default 0)
    stretch: float = 1.0
    q: float = 8.0
    scale: Mapping[str, float] = field(default_factory=dict)  # band -> multiplier (default 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "lupton (astropy.visualization.make_lupton_rgb)",
            "rgb": list(self.rgb),
            "minimum": {k: float(v) for k, v in self.minimum.items()},
            "scale": {k: float(v) for k, v in self.scale.items()},
            "stretch": self.stretch,
            "Q": self.q,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DisplaySpec:
        rgb = tuple(str(v) for v in d["rgb"])
        if len(rgb) != 3:
            raise ValueError("a display mapping needs three bands (R, G, B)")
        mins, scale = d.get("minimum") or {}, d.get("scale") or {}
        if isinstance(mins, (list, tuple)):  # one value per shown channel (R, G, B)
            mins = {b: float(v) for b, v in zip(rgb, mins, strict=True) if b}
        return cls(
            rgb=(rgb[0], rgb[1], rgb[2]),
            minimum={str(k): float(v) for k, v in mins.items()},
            stretch=float(d.get("stretch", 1.0)),
            q=float(d.get("Q", 8.0)),
            scale={str(k): float(v) for k, v in scale.items()},
        )

    def with_rgb(self, rgb: Sequence[str]) -> DisplaySpec:
        """The same sky levels, balance and stretch, showing other bands as (R, G, B)."""
        return DisplaySpec(
            rgb=(rgb[0], rgb[1], rgb[2]),
            minimum=self.minimum,
            stretch=self.stretch,
            q=self.q,
            scale=self.scale,
        )

    def planes(self, flux: np.ndarray, bands: Sequence[str]) -> list[np.ndarray]:
        """The (R, G, B) planes of flux `(..., B, Y, X)`: sky-subtracted and balanced, ready for Lupton."""
        names = list(bands)
        shown = [
            (flux[..., names.index(n), :, :] - self.minimum.get(n, 0.0)) * self.scale.get(n, 1.0)
            if n
            else None
            for n in self.rgb
        ]
        _check_rgb(self.rgb, names)
        r, g, b = shown
        assert r is not None and b is not None
        return [r, g if g is not None else (r + b) / 2.0, b]

    @classmethod
    def fit(
        cls, flux: ArrayLike, bands: Sequence[str], *, rgb: Sequence[str] | None = None, border_px: int = 2
    ) -> DisplaySpec:
        """Fit the mapping to a sample `flux` `(N, B, Y, X)`; `rgb` overrides `default_rgb(bands)`.

        Minimum: each band's median over the stamps' `border_px` edge (the sky). Scale: 1 / each band's total
        flux above the sky, normalised to the middle shown band (the sample's summed galaxy comes out grey).
        Stretch: three times the sky noise of the shown mean (robust: 1.4826 MAD of the edge), and Q chosen so the
        99.9th percentile of the mean reaches white (I = stretch sinh(Q) / Q); noise-free data get Q = 8.
        """
        x = np.asarray(flux, dtype=np.float64)
        if x.ndim != 4 or x.shape[1] != len(bands):
            raise ValueError(f"fit wants flux (N, {len(bands)}, Y, X), got shape {x.shape}")
        chosen = tuple(rgb) if rgb is not None else default_rgb(bands)
        _check_rgb(chosen, bands)
        edge = np.ones(x.shape[-2:], dtype=bool)
        k = max(1, min(border_px, min(x.shape[-2:]) // 4))
        edge[k:-k, k:-k] = False
        mins, totals = {}, {}
        for i, band in enumerate(bands):
            plane = x[:, i]
            mins[band] = float(np.nanmedian(plane[:, edge]))
            totals[band] = float(np.nansum(np.clip(plane - mins[band], 0.0, None)))
        ref = chosen[1] or chosen[0]
        scale = {b: (totals[ref] / t if t > 0 and totals[ref] > 0 else 1.0) for b, t in totals.items()}
        probe = cls(rgb=chosen, minimum=mins, scale=scale)  # type: ignore[arg-type]
        r, g, b = probe.planes(x, bands)
        mean = (r + g + b) / 3.0
        top = float(np.nanpercentile(mean, 99.9))
        sky = mean[:, edge]
        sigma = 1.4826 * float(np.nanmedian(np.abs(sky - np.nanmedian(sky))))
        q, stretch = 8.0, max(top * 8.0 / float(np.sinh(8.0)), 1e-12)
        if sigma > 0 and top > 3 * sigma:
            stretch = 3.0 * sigma
            q = _lupton_q(top / stretch)
        return cls(rgb=chosen, minimum=mins, stretch=stretch, q=q, scale=scale)  # type: ignore[arg-type]


def _lupton_q(ratio: float) -> float:
    """Q with sinh(Q) / Q = `ratio` (so intensity `ratio * stretch` maps to white), bisected in [0.01, 20]."""
    lo, hi = 1e-2, 20.0
    if ratio >= np.sinh(hi) / hi:
        return hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.sinh(mid) / mid < ratio else (lo, mid)
    return float((lo + hi) / 2)


def _check_rgb(rgb: Sequence[str], bands: Sequence[str]) -> None:
    """ValueError unless `rgb` names three of `bands` as (R, G, B) (G may be "": the mean of R and B)."""
    if len(rgb) != 3 or not rgb[0] or not rgb[2] or any(b not in bands for b in rgb if b):
        raise ValueError(
            f"the colour mapping must name three of the bands {','.join(bands)} as R,G,B (--rgb), got {','.join(rgb)}"
        )


@dataclass(frozen=True)
class ScienceSpec:
    """What turns model values back into science: band names, the stretch, units, pixel scale, display."""

    bands: tuple[str, ...]
    stretch: BandStretch
    bunit: str | None = None
    pixel_scale_arcsec: float | None = None
    display: DisplaySpec | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the source survey, written as header cards

    def __post_init__(self) -> None:
        if len(self.bands) != self.stretch.num_bands:
            raise ValueError(f"{len(self.bands)} band names for a {self.stretch.num_bands}-band stretch")
        if len(set(self.bands)) != len(self.bands):
            raise ValueError(f"band names must differ, got {', '.join(self.bands)}")
        if self.display is not None:
            _check_rgb(self.display.rgb, self.bands)

    @property
    def num_bands(self) -> int:
        return len(self.bands)

    def display_or_default(self) -> DisplaySpec:
        return self.display or DisplaySpec(rgb=default_rgb(self.bands))

    def with_rgb(self, rgb: Sequence[str]) -> ScienceSpec:
        """The same spec shown through other bands (a user's `--rgb i,r,g`); other display values kept."""
        _check_rgb(tuple(rgb), self.bands)
        return ScienceSpec(
            bands=self.bands,
            stretch=self.stretch,
            bunit=self.bunit,
            pixel_scale_arcsec=self.pixel_scale_arcsec,
            display=self.display_or_default().with_rgb(rgb),
            extra=dict(self.extra),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "bands": list(self.bands),
            "stretch": self.stretch.to_dict(),
            "bunit": self.bunit,
            "pixel_scale_arcsec": self.pixel_scale_arcsec,
            "display": None if self.display is None else self.display.to_dict(),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ScienceSpec | None:
        """The spec recorded in a manifest / config / model.json, or None when there is none."""
        if not d:
            return None
        scale = d.get("pixel_scale_arcsec")
        return cls(
            bands=tuple(str(b) for b in d["bands"]),
            stretch=BandStretch.from_dict(d["stretch"]),
            bunit=d.get("bunit"),
            pixel_scale_arcsec=None if scale is None else float(scale),
            display=None if not d.get("display") else DisplaySpec.from_dict(d["display"]),
            extra=dict(d.get("extra") or {}),
        )


def model_to_flux(images: ArrayLike, spec: ScienceSpec) -> np.ndarray:
    """Model output `(N, B, H, W)` in [-1, 1] (image order) -> float32 flux `(N, B, H, W)`, still image order."""
    return spec.stretch.inverse((np.asarray(images, dtype=np.float64) + 1.0) / 2.0)


def display_uint8(
    images: ArrayLike, spec: ScienceSpec | None = None, *, band: str | int | None = None
) -> np.ndarray:
    """Model output `(N, C, H, W)` in [-1, 1] -> pictures uint8 `(N, H, W, 3)` (or `(N, H, W, 1)` for grey).

    Without a spec (pictures, 1 or 3 channels) this is `imaging.to_uint8`. With a science spec and more
    than one band: a Lupton composite of the spec's (R, G, B) bands from the fluxes. `band` (a name or an
    index) shows that band alone, grey, on its stretched scale.
    """
    from astrogan.imaging import to_uint8

    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"display_uint8 wants (N, C, H, W), got shape {x.shape}")
    if band is not None:
        names = list(spec.bands) if spec is not None else [str(i) for i in range(x.shape[1])]
        if isinstance(band, int) or (isinstance(band, str) and band.isdigit() and band not in names):
            idx = int(band)
        elif band in names:
            idx = names.index(band)
        else:
            raise ValueError(f"unknown band {band!r}: the images have {', '.join(names)}")
        if not 0 <= idx < x.shape[1]:
            raise ValueError(f"band index {idx} out of range for {x.shape[1]} band(s)")
        return to_uint8(x[:, idx : idx + 1])
    if spec is None:
        if x.shape[1] in (1, 3):
            return to_uint8(x)
        raise ValueError(f"{x.shape[1]}-band images need a science spec (band names) to be shown in colour")
    if spec.num_bands != x.shape[1]:
        raise ValueError(f"the science spec has {spec.num_bands} band(s); the images have {x.shape[1]}")
    if spec.num_bands == 1:
        return to_uint8(x)
    from astropy.visualization import make_lupton_rgb

    disp = spec.display_or_default()
    planes = disp.planes(model_to_flux(x, spec).astype(np.float64), spec.bands)
    out = np.empty((x.shape[0], x.shape[2], x.shape[3], 3), dtype=np.uint8)
    for i in range(x.shape[0]):
        with np.errstate(invalid="ignore", divide="ignore"):  # astropy divides 0 by 0 on black pixels
            out[i] = make_lupton_rgb(
                planes[0][i], planes[1][i], planes[2][i], minimum=0.0, stretch=disp.stretch, Q=disp.q
            )
    return out


def fits_header_cards(spec: ScienceSpec | None, **cards: Any) -> list[tuple[str, Any, str]]:
    """The header of a generated cube: band names, BUNIT, pixel scale, stretch, plus `cards` (run, step...).

    `cards` map keywords to a value or a (value, comment) pair; None values are left out.
    """
    out: list[tuple[str, Any, str]] = []
    if spec is not None:
        out.append(("BANDS", ",".join(spec.bands), "band of each plane (axis 3), in order"))
        for i, b in enumerate(spec.bands, start=1):
            out.append((f"BAND{i}", b, f"band of plane {i}"))
        if spec.bunit:
            out.append(("BUNIT", spec.bunit, "physical unit of the pixel values"))
        if spec.pixel_scale_arcsec is not None:
            out.append(("PIXSCALE", float(spec.pixel_scale_arcsec), "pixel scale [arcsec/pixel]"))
        out.append(("STRETCH", spec.stretch.kind, "stretch undone: values are fluxes"))
        for key, value in spec.extra.items():
            if isinstance(value, (str, int, float, bool)):
                out.append((_card_key(key), value, ""))
    for key, value in cards.items():
        comment = ""
        if isinstance(value, tuple):
            value, comment = value
        if value is None:
            continue
        if isinstance(value, (np.integer, np.floating)):
            value = value.item()
        out.append((_card_key(key), value, comment))
    return out


def _card_key(key: str) -> str:
    """A header keyword: upper case; longer than 8 characters becomes a HIERARCH card (never cut, so never clashes)."""
    key = key.upper()
    return key if len(key) <= 8 else f"HIERARCH {key}"


def cube_values(images: ArrayLike, spec: ScienceSpec | None) -> np.ndarray:
    """Model output `(N, B, H, W)` in [-1, 1] -> what a FITS cube holds: fluxes (the stretch undone), or the
    model values mapped to [0, 1] for runs on plain pictures (no spec). float32, image order."""
    if spec is None:
        return ((np.asarray(images, dtype=np.float64) + 1.0) / 2.0).clip(0.0, 1.0).astype(np.float32)
    return model_to_flux(images, spec)


def fits_text(value: Any, *, max_len: int = 68) -> str | None:
    """`value` as a FITS header string: printable ASCII only (others become "?"), at most `max_len` characters."""
    if value is None:
        return None
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in str(value))
    return text[:max_len]


def generated_cube_cards(
    spec: ScienceSpec | None,
    *,
    channels: int,
    seed: int,
    trunc: float,
    run: str | None = None,
    step: int | None = None,
    arch: str | None = None,
    label: int | None = None,
    label_name: str | None = None,
    cond: Mapping[str, tuple[float, str]] | None = None,
) -> list[tuple[str, Any, str]]:
    """The one header of a generated cube (`generate --format fits`, the web's `image/fits`, eval's fakes).

    Bands, BUNIT, pixel scale and PHYSICAL (T: fluxes; F: display values of a picture run), then where the
    cube came from: RUNID, STEP, ARCH, SEED, TRUNC, CLASS/CLASSNAM, and condition i (from 1) as `CONDi` = its
    value with `CNAMEi` = its name; `cond` maps condition names to (value, unit).
    """
    if spec is None:
        names = {1: "grey", 3: "R,G,B"}.get(channels, ",".join(str(i) for i in range(channels)))
        cards = fits_header_cards(
            None,
            BANDS=(names, "plane of each channel (axis 3), in order"),
            BUNIT=("display", "no physical units: model values (x + 1) / 2"),
            PHYSICAL=(False, "values are display values in [0, 1], not fluxes"),
        )
    else:
        cards = fits_header_cards(spec, PHYSICAL=(True, "values are fluxes in BUNIT"))
    named: dict[str, Any] = {}
    for i, (name, (value, unit)) in enumerate((cond or {}).items(), start=1):
        named[f"CNAME{i}"] = (fits_text(name, max_len=40), f"name of COND{i}")
        named[f"COND{i}"] = (float(value), fits_text(f"{name} [{unit}]" if unit else name, max_len=40))
    cards += fits_header_cards(
        None,
        RUNID=(fits_text(run, max_len=40), "training run"),
        STEP=(None if step is None else int(step), "training step of the generator"),
        ARCH=(fits_text(arch, max_len=40), "architecture"),
        SEED=(int(seed), "seed of the latent z (astrogan.utils.seeds)"),
        TRUNC=(float(trunc), "truncation inside the network (1 = none)"),
        CLASS=(None if label is None else int(label), "class label drawn"),
        CLASSNAM=(fits_text(label_name, max_len=40), "class name"),
        **named,
    )
    return cards


def _hdu(cube_image_order: np.ndarray, cards: Sequence[tuple[str, Any, str]]) -> Any:
    from astropy.io import fits

    data = np.asarray(cube_image_order, dtype=np.float32)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim not in (2, 3):
        raise ValueError(f"a FITS cube is (B, Y, X) or (Y, X), got shape {data.shape}")
    hdu = fits.PrimaryHDU(fits_to_image_order(data))  # image order -> FITS order, the one flip
    for key, value, comment in cards:
        hdu.header[key] = (value, comment)
    hdu.header["ORIGIN"] = ("astrogan", "written by astrogan")
    return hdu


def write_fits(
    path: str | os.PathLike[str], cube_image_order: np.ndarray, cards: Sequence[tuple[str, Any, str]]
) -> None:
    """Write float32 `(B, H, W)` (image order, row 0 on top) as a FITS cube (row 0 at the bottom), atomically."""
    from astrogan.utils.atomic import atomic_path

    with atomic_path(path, suffix=".fits") as tmp:
        _hdu(cube_image_order, cards).writeto(tmp, overwrite=True)


def fits_bytes(cube_image_order: np.ndarray, cards: Sequence[tuple[str, Any, str]]) -> bytes:
    """The bytes of the FITS file `write_fits` writes (for the web API's `image/fits`)."""
    buf = io.BytesIO()
    _hdu(cube_image_order, cards).writeto(buf)
    return buf.getvalue()
