"""The sky's symmetries as extra views of the real images: left-right mirrors (StyleGAN2's `--mirror`) or all
eight rotations by quarter turns and their mirrors (the dihedral group D4: the sky has no up and no left).

A run with `--mirror` trains on N x V images, each a (picture, view) pair the shuffled passes visit once per
epoch, so no extra random numbers are drawn and resume stays exact. Unlike D's augmentation the views are
real images the generator should learn to draw too, which is right only for data with no preferred
orientation: galaxies, nebulae and deep fields yes, a data set whose conditions name an angle no.
"""

from __future__ import annotations

import torch

from astrogan.config import MIRRORS

# Views per picture (the first `n` of `view` below), keyed by the names config validates `--mirror` against.
VIEWS = dict(zip(MIRRORS, (1, 2, 8), strict=True))


def num_views(mirror: str) -> int:
    """How many views `mirror` ("none", "x" or "dihedral") makes of each picture."""
    return VIEWS[mirror]


def view(x: torch.Tensor, v: int) -> torch.Tensor:
    """View `v` in [0, 8) of images `x` (..., H, W): `v // 2` quarter turns, then a left-right mirror if `v` is odd.

    View 0 is the picture itself and view 1 its mirror, so `x` views ("none" 1, "x" 2) are the dihedral ones'
    first. Square images keep their shape."""
    out = torch.rot90(x, v // 2, dims=(-2, -1)) if v // 2 else x
    return torch.flip(out, dims=(-1,)) if v % 2 else out


def take_views(images: torch.Tensor, idx: torch.Tensor, views: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch for view-space indices `idx` (B,) over `images` (N, C, H, W) with `views` views per picture.

    Index i is picture `i % N` in view `i // N`. Returns (batch (B, C, H, W), picture indices (B,)), in
    `idx`'s order."""
    n = images.shape[0]
    pic = idx % n
    batch = images[pic.to(images.device)]
    if views == 1:
        return batch, pic
    v_of = (idx // n).to(batch.device)
    out = batch.clone()
    for v in range(1, views):
        rows = (v_of == v).nonzero().squeeze(1)
        if len(rows):
            out[rows] = view(batch[rows], v)
    return out, pic
