"""The Sérsic condition spec the model and export tests share, and the architectures that take conditions."""

from __future__ import annotations

from astrogan.conditions import CondSpec

SPEC = CondSpec(
    names=("sersic_n", "half_light_radius_px", "q"),
    units=("", "px", ""),
    low=(0.5, 1.5, 0.2),
    high=(6.0, 12.0, 1.0),
    mean=(2.0, 5.0, 0.6),
    std=(1.2, 2.5, 0.2),
)
COND_ARCHS = ["dcgan", "stylegan2"]
