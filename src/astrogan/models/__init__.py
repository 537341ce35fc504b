"""GAN architectures: the ARCHS registry, name -> ArchSpec (config class, builders, loss name, defaults)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from astrogan.models import dcgan, fastgan, stylegan2
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
    # The smallest sensible model knobs (at 16-32 px): what tests and smoke runs use for every architecture.
    tiny: dict[str, Any] = dataclasses.field(default_factory=dict)
    # NHWC (channels_last) by default on the CPU too, where it pays (bench/train_throughput.py's
    # channels_last_speedup, 2 threads, 64 px, torch 2.14: stylegan2 `small` 1.17x; dcgan 1.02x, fastgan 1.02x).
    nhwc_on_cpu: bool = False


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
        description="DCGAN (Radford et al. 2016), conditional on classes (num_classes) or parameters (cond); 16-256 px",
        tiny={"z_dim": 8, "ngf": 8, "ndf": 8, "embed_dim": 4},
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
        tiny={"z_dim": 8, "ngf": 4, "ndf": 4},
    ),
    "stylegan2": ArchSpec(
        name="stylegan2",
        config_cls=stylegan2.StyleGAN2Config,
        build_generator=stylegan2.build_generator,
        build_discriminator=stylegan2.build_discriminator,
        loss="stylegan2",
        min_image_size=stylegan2.StyleGAN2Config.MIN_IMAGE_SIZE,
        max_image_size=stylegan2.StyleGAN2Config.MAX_IMAGE_SIZE,
        lr=0.0025,  # Karras et al. 2020: Adam lr 0.0025, betas (0, 0.99) for G and D
        betas=(0.0, 0.99),
        description="StyleGAN2 (Karras et al. 2020) with R1, path length, style mixing; use --aug ada; 16-1024 px",
        tiny={"z_dim": 32, "w_dim": 32, "channel_base": 512, "channel_max": 32, "mapping_layers": 2},
        nhwc_on_cpu=True,  # its many small modulated convs: 640 -> 530 ms per `small` step at 64 px, 2 threads
    ),
}


def get_arch(name: str) -> ArchSpec:
    """The ArchSpec called `name`; UserError listing the choices otherwise."""
    try:
        return ARCHS[name]
    except KeyError:
        raise UserError(f"unknown architecture {name!r}: choose one of {', '.join(sorted(ARCHS))}") from None
