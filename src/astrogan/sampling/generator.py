"""Seeded generation from a trained generator: seed N gives the same image alone or in any batch."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from astrogan.conditions import CondSpec
from astrogan.models.io import load_generator_module
from astrogan.sampling.post import PictureView, make_view, to_science_values
from astrogan.science import ScienceSpec
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import (
    check_batch_size,
    check_seeds,
    check_trunc,
    labels_for_seeds,
    latents_for_seeds,
)
from astrogan.utils.torchtools import pick_device

# What `cond=` accepts: text "sersic_n=1.2,q=0.4", a mapping, one vector (K,) for every seed, or rows (N, K).
CondRequest = str | Mapping[str, float] | Sequence[float] | np.ndarray | None


class Generator:
    """A generator ready for inference: `generate(seeds)` -> uint8 pictures (N, H, W, C).

    Latents come from `utils.seeds.latents_for_seeds` (one NumPy PCG64 stream per seed), so the
    torch-free web server and this class agree. Truncation happens inside the network: a family with a
    mapping network (StyleGAN2) pulls w towards its tracked average, a plain z-GAN scales z towards 0.
    A model trained on physical conditions (`cond_spec` not None) takes them in physical units, `cond=`.
    A run on multi-band science data (`science` not None) draws colour composites (`with_view` picks the
    band -> colour mapping, or one band), and `flux` gives its images in the data's physical units.
    """

    def __init__(self, module: nn.Module, meta: dict[str, Any], *, device: torch.device) -> None:
        self.module = module.to(device).eval()
        self.meta = meta
        self.device = device
        self.z_dim = int(module.z_dim)
        self.image_size = int(module.image_size)
        self.channels = int(module.channels)
        self.num_classes = int(getattr(module, "num_classes", 0) or 0)
        spec = getattr(module, "cond_spec", None)
        self.cond_spec: CondSpec | None = spec if isinstance(spec, CondSpec) else None
        self._science = _science_of(meta, self.channels)
        self.view = PictureView(spec=self._science, channels=self.channels)

    @property
    def science(self) -> ScienceSpec | None:
        """The run's science spec (band names, the stretch to undo, units, display), or None for pictures."""
        return self._science

    def with_view(self, *, rgb: str | Sequence[str] | None = None, band: str | None = None) -> Generator:
        """The same generator drawing `rgb` ("i,r,g": bands as R, G, B) or one `band` alone, grey.

        Shares the network; unknown band names are a UserError listing the bands.
        """
        other = copy.copy(self)
        other.view = make_view(self._science, self.channels, rgb=rgb, band=band)
        return other

    def pictures(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """Model output (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, 3|1) as this generator's view draws them."""
        return self.view.pictures(images)

    def latents(self, seeds: Sequence[int]) -> torch.Tensor:
        """float32 (N, z_dim) on the device: one latent per seed."""
        return torch.from_numpy(latents_for_seeds(seeds, self.z_dim)).to(self.device)

    @property
    def has_mapping(self) -> bool:
        """True for families with a mapping network (z -> w), whose walks and truncation live in w."""
        return hasattr(self.module, "mapping") and hasattr(self.module, "synthesis")

    @torch.no_grad()
    def to_w(self, z: torch.Tensor, c: torch.Tensor | None = None, *, trunc: float = 1.0) -> torch.Tensor:
        """Mapped latents ws (N, num_ws, w_dim), truncated towards the tracked w average."""
        return self.module.mapping(z, c, trunc=check_trunc(trunc))

    @torch.no_grad()
    def prior_params(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor | None:
        """A Sérsic-prior model's profile parameters (N, 5) for (z, c) (models.sersic_prior), else None."""
        fn = getattr(self.module, "prior_params", None)
        return None if fn is None else fn(z, c)

    @torch.no_grad()
    def synthesize_ws(
        self, ws: torch.Tensor, *, prior: torch.Tensor | None = None, batch_size: int = 32
    ) -> torch.Tensor:
        """Images from mapped latents ws (N, num_ws, w_dim) [and a Sérsic prior's parameters (N, 5)]:
        float32 (N, C, H, W) in [-1, 1] on the CPU."""
        batch_size = check_batch_size(batch_size)
        outs = [
            self.module.synthesis(
                ws[i : i + batch_size], *(() if prior is None else (prior[i : i + batch_size],))
            )
            .float()
            .clamp(-1, 1)
            .cpu()
            for i in range(0, ws.shape[0], batch_size)
        ]
        return torch.cat(outs) if outs else torch.empty(0, self.channels, self.image_size, self.image_size)

    def labels_for(self, seeds: Sequence[int], labels: Sequence[int] | int | None) -> torch.Tensor | None:
        """The network's `c` for these seeds: class labels (N,) (given ones, or `seed % num_classes` by
        default), or for a model on physical conditions the training mean (N, K); None when unconditional."""
        if self.cond_spec is not None:
            if labels is not None:
                raise UserError(
                    f"this generator is conditioned on {', '.join(self.cond_spec.names)}, not classes: "
                    "pass conditions instead of class labels"
                )
            return self.conds_for(len(seeds), None)
        values = labels_for_seeds(seeds, self.num_classes, labels)
        return None if values is None else torch.tensor(values, dtype=torch.long, device=self.device)

    def conds_for(self, n: int, cond: CondRequest, *, check_cond: bool = True) -> torch.Tensor:
        """Physical conditions float32 (n, K) on the device, from `cond` (see `CondSpec.rows`)."""
        if self.cond_spec is None:
            raise UserError("this generator takes no physical conditions: drop --cond")
        return torch.from_numpy(self.cond_spec.rows(cond, n, check=check_cond)).to(self.device)

    def condition(
        self,
        seeds: Sequence[int],
        *,
        labels: Sequence[int] | int | None = None,
        cond: CondRequest = None,
        check_cond: bool = True,
    ) -> torch.Tensor | None:
        """The network's `c` for `seeds`: physical conditions (N, K), class labels (N,) or None."""
        if cond is not None and self.cond_spec is None:
            raise UserError("this generator takes no physical conditions: drop --cond")
        if self.cond_spec is not None and labels is None:
            return self.conds_for(len(seeds), cond, check_cond=check_cond)
        return self.labels_for(seeds, labels)

    @torch.no_grad()
    def synthesize(
        self, z: torch.Tensor, c: torch.Tensor | None = None, *, trunc: float = 1.0, batch_size: int = 32
    ) -> torch.Tensor:
        """Run the network on given latents in batches: float32 (N, C, H, W) in [-1, 1] on the CPU.

        `trunc` must lie in (0, 2] and `batch_size` be at least 1, as the CLI's flags (a UserError otherwise).
        """
        trunc, batch_size = check_trunc(trunc), check_batch_size(batch_size)
        outs = []
        for i in range(0, z.shape[0], batch_size):
            cc = None if c is None else c[i : i + batch_size]
            outs.append(self.module(z[i : i + batch_size], cc, trunc=trunc).float().clamp(-1, 1).cpu())
        return torch.cat(outs) if outs else torch.empty(0, self.channels, self.image_size, self.image_size)

    def generate_tensor(
        self,
        seeds: Sequence[int],
        *,
        trunc: float = 1.0,
        labels: Sequence[int] | int | None = None,
        cond: CondRequest = None,
        check_cond: bool = True,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """float32 (N, C, H, W) in [-1, 1] for the given seeds (whole numbers in 0..2**32-1, a UserError otherwise).

        `cond` (models trained on physical conditions only): see `CondSpec.rows`; None means the training mean
        for every seed. Values outside the trained range are a UserError naming it, unless `check_cond` is False.
        """
        c = self.condition(seeds, labels=labels, cond=cond, check_cond=check_cond)
        return self.synthesize(self.latents(seeds), c, trunc=trunc, batch_size=batch_size)

    def generate(
        self,
        seeds: Sequence[int],
        *,
        trunc: float = 1.0,
        labels: Sequence[int] | int | None = None,
        cond: CondRequest = None,
        check_cond: bool = True,
        batch_size: int = 32,
    ) -> np.ndarray:
        """uint8 (N, H, W, C) pictures for the given seeds (`cond`, `check_cond` as in `generate_tensor`).

        C is the run's own 1 or 3 for pictures (`round((x + 1) * 127.5)`); a multi-band run gives colour
        composites (C = 3) or, through `with_view(band=...)`, one band (C = 1).
        """
        imgs = self.generate_tensor(
            seeds, trunc=trunc, labels=labels, cond=cond, check_cond=check_cond, batch_size=batch_size
        )
        return self.pictures(imgs)

    def flux(
        self,
        seeds: Sequence[int],
        *,
        trunc: float = 1.0,
        labels: Sequence[int] | int | None = None,
        cond: CondRequest = None,
        check_cond: bool = True,
        batch_size: int = 32,
    ) -> np.ndarray:
        """float32 (N, B, H, W), image order: fluxes in the data's units (the stretch undone) for a science
        run; for a run on plain pictures, the model's values mapped to [0, 1] (no physical units)."""
        imgs = self.generate_tensor(
            seeds, trunc=trunc, labels=labels, cond=cond, check_cond=check_cond, batch_size=batch_size
        )
        return self.flux_of(imgs)

    def flux_of(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """Model output (N, B, H, W) in [-1, 1] -> float32 values as `flux` gives them (image order)."""
        x = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        return to_science_values(x, self._science)

    def generate_cond_grid(
        self,
        seeds: int | Sequence[int],
        grid: str,
        *,
        base: Mapping[str, float] | str | None = None,
        trunc: float = 1.0,
        check_cond: bool = True,
        batch_size: int = 32,
    ) -> tuple[np.ndarray, list[tuple[str, np.ndarray]], np.ndarray]:
        """A sheet that varies one or two physical conditions: `grid` is `"sersic_n=1:4:5[,q=0.3:1:4]"`.

        One axis: one sheet row per seed, the condition varying along the row (columns), so each row shows
        one galaxy across the values. Two axes: a single seed for the whole sheet, the first condition along
        the columns, the second down the rows. The other conditions come from `base` (else the training mean).
        Returns uint8 images (rows*cols, H, W, C) row-major (ready for `make_grid(ncols=cols)`), the axes
        [(name, values)] and the conditions float32 (rows, cols, K).
        """
        if self.cond_spec is None:
            raise UserError(
                "this generator takes no physical conditions: a condition grid needs a --cond model"
            )
        seed_list = check_seeds([seeds] if np.ndim(seeds) == 0 else seeds)
        flat_seeds, flat_conds, axes, conds = self.cond_spec.grid_requests(
            seed_list, grid, base=base, check=check_cond
        )
        images = self.generate(
            flat_seeds, trunc=trunc, cond=flat_conds, check_cond=False, batch_size=batch_size
        )
        return images, axes, conds


def _science_of(meta: Mapping[str, Any], channels: int) -> ScienceSpec | None:
    """The science spec generator.json records (`extra.science`), checked against the network's channels."""
    entry = (meta.get("extra") or {}).get("science")
    try:
        spec = ScienceSpec.from_dict(entry)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"the generator's science spec (generator.json extra.science) is malformed: {exc}"
        ) from None
    if spec is not None and spec.num_bands != channels:
        raise UserError(
            f"the generator draws {channels} channel(s) but its science spec names {spec.num_bands} band(s) "
            f"({', '.join(spec.bands)}): the checkpoint is inconsistent; retrain or point at another"
        )
    return spec


def load_generator(path: str | Path, *, device: str = "auto") -> Generator:
    """Load the EMA generator of a run dir, a checkpoints dir, or a generator.safetensors/.json file."""
    dev = pick_device(device)
    module, meta = load_generator_module(Path(path), device=str(dev))
    return Generator(module, meta, device=dev)
