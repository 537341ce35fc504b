"""Multi-band science inputs for `dataset build`: FITS cubes, one FITS file per band, HDF5 arrays, COSMOS stamps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ScienceStamp:
    """One multi-band image on its way into a dataset, in FITS order (row 0 is the BOTTOM).

    `flux` is float32 `(B, Y, X)` in the data's units (non-finite values kept; the build flags them);
    `bands` names each plane; `header` holds the cards kept per image (BUNIT, pixel scale, band, WCS keys);
    `source` is the name recorded in meta (file path, `file.h5:images[12]`, `catalogue IDENT`); `params`
    are per-image values worth keeping (magnitudes, true parameters).
    """

    source: str
    flux: np.ndarray
    bands: tuple[str, ...]
    header: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
