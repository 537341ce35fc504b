"""GAN architectures: the ARCHS registry, name -> ArchSpec (config class, builders, loss name, defaults)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from astrogan.models import dcgan, fastgan
from astrogan.models.layers import ArchConfig, count_parameters, flops_per_image
from astrogan.utils.errors import UserError

__all__ = ["ARCHS", "ArchConfig", "ArchSpec", "count_parameters", "flops_per_image", "get_arch"]


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """Everything the arch-agnostic training loop needs to know about one architecture."""

    name: str
    config_cls: type[ArchConfig]
    build_generator: Callable[[Any], nn.Module]
    build_discriminator: Callable[[Any], nn.Module]
    loss: str  # name for astrogan.training.losses.make_loss
    min_image_size: int
    max_image_size: int
    lr: float  # default Adam learning rate for both networks
    betas: tuple[float, float]
    description: str


ARCHS: dict[str, ArchSpec] = {
    "dcgan": ArchSpec(
        name="dcgan",
        config_cls=dcgan.DCGANConfig,
        build_generator=dcgan.build_generator,
        build_discriminator=dcgan.build_discriminator,
        loss="dcgan",
        min_image_size=dcgan.DCGANConfig.MIN_IMAGE_SIZE,
        max_image_size=dcgan.DCGANConfig.MAX_IMAGE_SIZE,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="DCGAN (Radford et al. 2016), class-conditional with num_classes > 0; 16-256 px",
    ),
    "fastgan": ArchSpec(
        name="fastgan",
        config_cls=fastgan.FastGANConfig,
        build_generator=fastgan.build_generator,
        build_discriminator=fastgan.build_discriminator,
        loss="fastgan",
        min_image_size=fastgan.FastGANConfig.MIN_IMAGE_SIZE,
        max_image_size=fastgan.FastGANConfig.MAX_IMAGE_SIZE,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="FastGAN (Liu et al. 2021): SLE + self-supervised D, few-shot friendly; 16-1024 px",
    ),
}


def get_arch(name: str) -> ArchSpec:
    """The ArchSpec called `name`; UserError listing the choices otherwise."""
    try:
        return ARCHS[name]
    except KeyError:
        raise UserError(f"unknown architecture {name!r}: choose one of {', '.join(sorted(ARCHS))}") from None
