"""Image grids: many uint8 pictures tiled into one sheet (the one definition is `astrogan.imaging.make_grid`)."""

from __future__ import annotations

from astrogan.imaging import make_grid

__all__ = ["make_grid"]
