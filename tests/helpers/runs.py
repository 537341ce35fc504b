"""Fake run directories: a tiny generator saved the real way beside the config.json a training run writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from astrogan.models import ARCHS
from astrogan.models.io import save_generator
from astrogan.science import BandStretch, DisplaySpec, ScienceSpec

SCIENCE_TINY = {"z_dim": 8, "ngf": 8, "ndf": 8, "embed_dim": 4}
SCIENCE_BANDS = ("g", "r", "i", "z")


def write_run(
    run: Path,
    G: torch.nn.Module,
    cfg: Any,
    *,
    arch: str,
    extra: dict,
    config: dict,
    stats: dict | None = None,
) -> Path:
    """`run/checkpoints/generator.*` by `save_generator`, `run/config.json` = `config`, and a one-line
    `run/stats.jsonl` when `stats` is given; returns `run`."""
    save_generator(G, arch=arch, config=cfg, out_dir=run / "checkpoints", extra=extra)
    (run / "config.json").write_text(json.dumps(config))
    if stats is not None:
        (run / "stats.jsonl").write_text(json.dumps(stats) + "\n")
    return run


def science_spec(bands=SCIENCE_BANDS) -> ScienceSpec:
    """A 4-band spec as a survey build would record it: asinh stretch per band, nanomaggies, 0.262"/px."""
    n = len(bands)
    return ScienceSpec(
        bands=tuple(bands),
        stretch=BandStretch(
            kind="asinh", a=0.1, black=(-0.5,) * n, white=tuple(10.0 * 2**i for i in range(n))
        ),
        bunit="nanomaggy",
        pixel_scale_arcsec=0.262,
        display=DisplaySpec(rgb=("i", "r", "g"), stretch=6.0, q=8.0),
        extra={"survey": "stub"},
    )


def make_science_run(
    root, spec: ScienceSpec, *, arch: str = "dcgan", channels: int | None = None, where="both"
):
    """A fake run dir with a tiny `channels`-band generator; the spec in config.json and/or generator.json."""
    arch_spec = ARCHS[arch]
    names = {f.name for f in dataclasses.fields(arch_spec.config_cls)}
    kw = {k: v for k, v in SCIENCE_TINY.items() if k in names}
    cfg = arch_spec.config_cls(image_size=16, channels=channels or spec.num_bands, **kw)
    torch.manual_seed(0)
    G = arch_spec.build_generator(cfg)
    with torch.no_grad():  # away from the init, so every band differs
        for p in G.parameters():
            p.add_(0.05 * torch.randn_like(p))
    G.eval()
    run = root / f"00007-{arch}-sky"
    extra = {"step": 1200, "kimg": 38.4, "run": run.name}
    if where in ("both", "generator"):
        extra["science"] = spec.to_dict()
    dataset = {"path": str(root / "ds-legacy"), "num_images": 64, "sources": ["legacy-survey"]}
    if where in ("both", "config"):
        dataset["science"] = spec.to_dict()
    write_run(
        run, G, cfg, arch=arch, extra=extra, config={"arch": arch, "image_size": 16, "dataset": dataset}
    )
    return run, G
