"""Post-processing: model output in [-1, 1] to pictures (RGB, grey, or a Lupton composite of many bands) and PNGs.

Every picture the torch side makes goes through `PictureView.pictures`, which is `science.display_uint8`:
plain 1- and 3-channel runs get `imaging.to_uint8` exactly, multi-band science runs a colour composite
(Lupton et al. 2004 via astropy's `make_lupton_rgb`) of the bands their `ScienceSpec` maps to (R, G, B), and
`band=` shows one band alone, grey.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from astrogan.imaging import to_uint8
from astrogan.science import (
    BandStretch,
    DisplaySpec,
    ScienceSpec,
    cube_values,
    default_rgb,
    display_uint8,
)
from astrogan.utils.atomic import atomic_path
from astrogan.utils.errors import UserError

__all__ = [
    "DISPLAY_KEY",
    "PictureView",
    "fit_display",
    "make_view",
    "save_png",
    "science_of",
    "stored_to_model",
    "to_pil",
    "to_science_values",
    "to_uint8",
    "unnamed_spec",
]

DISPLAY_KEY = "astrogan:display"  # the PNG text entry recording how the picture was drawn (JSON)


def unnamed_spec(channels: int) -> ScienceSpec:
    """A spec for float data with `channels` bands but no names: bands "0".."C-1", values taken as they are."""
    return ScienceSpec(
        bands=tuple(str(i) for i in range(channels)),
        stretch=BandStretch(kind="linear", a=1.0, black=(0.0,) * channels, white=(1.0,) * channels),
    )


@dataclass(frozen=True)
class PictureView:
    """How model output becomes pictures: the run's science spec (None for plain pictures) and one band or all."""

    spec: ScienceSpec | None = None
    band: str | None = None
    channels: int = 3

    def _spec(self) -> ScienceSpec | None:
        if self.spec is None and self.channels not in (1, 3):
            return unnamed_spec(self.channels)  # many bands without names: still a composite, never 3 of them
        return self.spec

    def pictures(self, images: ArrayLike) -> np.ndarray:
        """Model output `(N, C, H, W)` in [-1, 1] (tensor or array) -> uint8 `(N, H, W, 3)` or `(N, H, W, 1)`."""
        x = images.detach().float().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
        return display_uint8(x, self._spec(), band=self.band)

    def describe(self) -> dict[str, Any]:
        """What `pictures` does, for metadata: the composite's mapping, the band shown, or plain pixels."""
        spec = self._spec()
        if self.band is not None:
            return {"method": "one band, grey, on its stretched scale", "band": self.band}
        if spec is None or self.channels == 1:
            return {"method": "round((x + 1) * 127.5)", "channels": self.channels}
        return {"bands": list(spec.bands), **spec.display_or_default().to_dict()}


def make_view(
    spec: ScienceSpec | None,
    channels: int,
    *,
    rgb: str | Sequence[str] | None = None,
    band: str | None = None,
) -> PictureView:
    """A checked view: `rgb` ("i,r,g", bands shown as R, G, B) overrides the mapping; `band` shows one band, grey.

    Unknown band names are a UserError listing the bands.
    """
    if rgb is not None and band is not None:
        raise UserError("give --rgb (a colour composite) or --band (one band, grey), not both")
    names = list(spec.bands) if spec is not None else [str(i) for i in range(channels)]
    if band is not None:
        band = str(band).strip()
        if band not in names:
            raise UserError(f"unknown band {band!r}: this run has {_listing(spec, names)}")
    if rgb is not None:
        chosen = [b.strip() for b in rgb.split(",")] if isinstance(rgb, str) else [str(b) for b in rgb]
        if spec is None or channels < 2:
            raise UserError(
                f"--rgb maps named bands to colours; this run has plain pictures ({channels} channel(s)): "
                "drop --rgb (use --band N for one channel)"
            )
        unknown = [b for b in chosen if b and b not in names]
        if len(chosen) != 3 or unknown or not chosen[0] or not chosen[2]:
            bad = f"unknown band(s) {', '.join(unknown)}" if unknown else f"--rgb {','.join(chosen)}"
            raise UserError(
                f"{bad}: --rgb takes three of the bands {','.join(names)} as R,G,B (e.g. --rgb {_eg(names)})"
            )
        spec = spec.with_rgb(tuple(chosen))
    return PictureView(spec=spec, band=band, channels=channels)


def _listing(spec: ScienceSpec | None, names: list[str]) -> str:
    what = "bands" if spec is not None else "channels"
    return f"{what} {', '.join(names)}"


def _eg(names: list[str]) -> str:
    return ",".join(default_rgb(names))  # "" (two bands: G is the mean of R and B) stays empty


def fit_display(spec: ScienceSpec, images_unit: ArrayLike) -> ScienceSpec:
    """`spec` with a display fitted (`DisplaySpec.fit`) to stored values `(N, B, H, W)` in [0, 1] if it has none.

    A spec that records its display, or has one band, comes back unchanged.
    """
    if spec.display is not None or spec.num_bands < 2:
        return spec
    flux = spec.stretch.inverse(np.asarray(images_unit, dtype=np.float32))
    return ScienceSpec(
        bands=spec.bands,
        stretch=spec.stretch,
        bunit=spec.bunit,
        pixel_scale_arcsec=spec.pixel_scale_arcsec,
        display=DisplaySpec.fit(flux, spec.bands),
        extra=dict(spec.extra),
    )


def science_of(gen: Any) -> ScienceSpec | None:
    """The science spec of a PyTorch `Generator` (`.science`) or an exported model (model.json's `science`)."""
    spec = getattr(gen, "science", None)
    if isinstance(spec, ScienceSpec):
        return spec
    meta = getattr(gen, "meta", None) or {}
    return ScienceSpec.from_dict(meta.get("science") or (meta.get("extra") or {}).get("science"))


to_science_values = cube_values  # fluxes, or [0, 1] without a spec (astrogan.science)


def stored_to_model(images_nhwc: ArrayLike) -> np.ndarray:
    """Dataset images `(N, H, W, C)` (uint8, or float32 stretched to [0, 1]) -> model values float32 `(N, C, H, W)`."""
    x = np.asarray(images_nhwc)
    unit = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return np.ascontiguousarray(unit.transpose(0, 3, 1, 2) * 2.0 - 1.0)


def to_pil(image_hwc: np.ndarray) -> Image.Image:
    """uint8 (H, W, C) with C in {1, 3} -> PIL image (many bands must go through `PictureView.pictures` first)."""
    if image_hwc.ndim == 3 and image_hwc.shape[2] == 1:
        return Image.fromarray(image_hwc[:, :, 0], mode="L")
    if image_hwc.ndim != 3 or image_hwc.shape[2] != 3:
        raise ValueError(
            f"a picture is (H, W, 1) or (H, W, 3), got shape {image_hwc.shape}: draw multi-band images through "
            "PictureView.pictures (a colour composite) first"
        )
    return Image.fromarray(image_hwc)


def save_png(image_hwc: np.ndarray, path: str | Path, *, text: Mapping[str, Any] | None = None) -> Path:
    """Write one uint8 (H, W, C) picture atomically; `text` entries go into the PNG (values JSON unless str)."""
    path = Path(path)
    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value if isinstance(value, str) else json.dumps(value, sort_keys=True))
    with atomic_path(path, suffix=".png") as tmp:
        to_pil(image_hwc).save(tmp, format="PNG", pnginfo=info)
    return path
