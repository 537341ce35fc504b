"""The PSF and profile truncation a dataset's `synth_sersic` stamps were drawn with, at any image size."""

# Why here: it reads the dataset artifact (manifest `synthetic` entries, the meta table's `params_table` and
# `crop_size`) and `synthetic`'s PSF specs, both in `data`; `cli` (eval) and `metrics` may import it.

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from astrogan.data.synthetic import DEFAULT_PIXEL_SCALE_ARCSEC, TRUNC_IN_RE, PSFSpec, parse_psf
from astrogan.utils.errors import UserError

if TYPE_CHECKING:
    from astrogan.data.dataset import DatasetArtifact

__all__ = ["StampPSF", "psf_spec", "synth_psf"]


@dataclass(frozen=True)
class StampPSF:
    """What a dataset of Sérsic stamps was drawn with, at one image size.

    psf: a spec string in pixels of that size (`moffat:fwhm_px=1,beta=3`), None when the stamps had no PSF;
    truncate: the profiles' truncation radius in half-light radii; how: one line saying where both came from."""

    psf: str | None
    truncate: float
    how: str


def psf_spec(p: PSFSpec, scale: float = 1.0) -> str | None:
    """The spec string of `p` with its FWHM times `scale` (pixels of another image size); None for no PSF."""
    if p.kind == "none":
        return None
    out = f"{p.kind}:fwhm_px={p.fwhm_px * scale:.6g}"
    return out + (f",beta={p.beta:.6g}" if p.kind == "moffat" else "")


def _links(ds: DatasetArtifact) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the index into the manifest's `synthetic` list (-1: none) and the crop side in source px."""
    import h5py

    from astrogan.data.artifact import META_DATASET

    with h5py.File(ds.h5_path, "r") as fh:
        rows = fh[META_DATASET].fields(["params_table", "crop_size"])[()]
    return np.asarray(rows["params_table"], np.int64), np.asarray(rows["crop_size"], np.float64)


def synth_psf(ds: DatasetArtifact, image_size: int) -> tuple[StampPSF | None, str]:
    """(what every image of `ds` was drawn with at `image_size` px, "") when all come from `synth_sersic`
    folders with one PSF there; else (None, why not).

    The FWHM is the folder's (its synth.json `psf`, arcsec through its `pixel_scale_arcsec`) times
    image_size / the image's crop side (meta.crop_size: the synth's own image_size when the build did not
    crop), the rule the build applies to the px condition columns."""
    synthetic = ds.manifest.get("synthetic") or []
    if not synthetic:
        return None, "the dataset has no synthetic folder"
    tables, crops = _links(ds)
    if not len(tables) or (tables < 0).any() or (tables >= len(synthetic)).any():
        bad = int(((tables < 0) | (tables >= len(synthetic))).sum())
        return None, f"{bad} of {len(tables)} images do not come from a synthetic folder"
    specs: dict[int, tuple[PSFSpec, str]] = {}
    for t in np.unique(tables).tolist():
        settings = synthetic[t].get("settings") or {}
        if not str(settings.get("generator", "")).endswith("synth_sersic"):
            return None, f"{synthetic[t].get('folder')} was not made by synth_sersic"
        try:
            scale = float(settings.get("pixel_scale_arcsec") or DEFAULT_PIXEL_SCALE_ARCSEC)
            specs[t] = (parse_psf(settings.get("psf"), pixel_scale_arcsec=scale), str(settings.get("psf")))
        except (UserError, TypeError, ValueError) as exc:
            return None, f"the PSF of {synthetic[t].get('folder')} cannot be read ({exc})"
    if (crops <= 0).any():
        return None, "some images have no crop side in their meta row"
    # One (kind, beta, FWHM at image_size) for every image, or no single PSF to fit with.
    kinds = {(specs[t][0].kind, specs[t][0].beta if specs[t][0].kind == "moffat" else 0.0) for t in specs}
    fwhm = np.array([specs[t][0].fwhm_px for t in tables.tolist()]) * image_size / crops
    if len(kinds) > 1 or not np.allclose(fwhm, fwhm[0], rtol=1e-6, atol=0):
        return None, "its synth_sersic stamps do not share one PSF at this size"
    first, given = specs[int(tables[0])]
    crop = float(crops[0])
    spec = psf_spec(first, image_size / crop)
    side = f"{crop:g}"
    how = (
        f"PSF {spec}: the synth's {given} ({first.fwhm_px:.4g} px FWHM) times {image_size}/{side} "
        f"(evaluated size / its {side} px stamps); profiles truncated at {TRUNC_IN_RE:g} r_e (synth_sersic)"
        if spec is not None
        else f"the synth_sersic stamps have no PSF; profiles truncated at {TRUNC_IN_RE:g} r_e"
    )
    return StampPSF(spec, TRUNC_IN_RE, how), ""
