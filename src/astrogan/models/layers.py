"""Shared building blocks: config base class, initialised/spectral-normed convs, noise, SLE, conditioning, counters."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from astrogan.conditions import CondSpec
from astrogan.utils.errors import UserError

# ---------------------------------------------------------------------------------------------------------
# Configs


MAX_Z_DIM = 8192
MAX_CHANNELS = 64
MAX_CLASSES = 100_000


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    """Base for per-architecture configs: strict `from_dict` and a `validate()` with one-line errors.

    Subclasses are frozen dataclasses that set ARCH, MIN_IMAGE_SIZE and MAX_IMAGE_SIZE.
    """

    ARCH: ClassVar[str] = "?"
    MIN_IMAGE_SIZE: ClassVar[int] = 16
    MAX_IMAGE_SIZE: ClassVar[int] = 256

    def __post_init__(self) -> None:
        # Accept a CondSpec for the `cond` field (where a subclass has one) but store its plain dict:
        # the config is JSON (generator.json) and the single source of the spec.
        if isinstance(getattr(self, "cond", None), CondSpec):
            object.__setattr__(self, "cond", self.cond.to_dict())  # type: ignore[attr-defined]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchConfig:
        """Build from a dict (e.g. generator.json): unknown keys are errors, missing ones take defaults."""
        if not isinstance(d, dict):
            raise UserError(f"{cls.ARCH} config must be a mapping, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in names:
                raise UserError(f"unknown {cls.ARCH} config key {key!r} (known: {', '.join(names)})")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (dataclasses.asdict)."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise UserError (one line) for values this architecture cannot use."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise UserError(f"{self.ARCH} config {f.name} must be an integer, got {value!r}")
            if kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UserError(f"{self.ARCH} config {f.name} must be a number, got {value!r}")
        size = self.image_size  # type: ignore[attr-defined]
        lo, hi = self.MIN_IMAGE_SIZE, self.MAX_IMAGE_SIZE
        if not is_power_of_two(size) or not lo <= size <= hi:
            choices = ", ".join(str(2**k) for k in range(int(math.log2(lo)), int(math.log2(hi)) + 1))
            raise UserError(f"{self.ARCH} cannot make {size} px images: image_size must be one of {choices}")
        if self.channels < 1:  # type: ignore[attr-defined]
            raise UserError(f"{self.ARCH} config channels must be >= 1, got {self.channels}")  # type: ignore[attr-defined]
        if self.z_dim < 1:  # type: ignore[attr-defined]
            raise UserError(f"{self.ARCH} config z_dim must be >= 1, got {self.z_dim}")  # type: ignore[attr-defined]
        # Bounds before anything is allocated: a hostile or mistyped config (z_dim 10^9) must not ask
        # for gigabytes; the parameter count itself is checked on the meta device (models.io).
        for name, most in (("z_dim", MAX_Z_DIM), ("channels", MAX_CHANNELS), ("num_classes", MAX_CLASSES)):
            if getattr(self, name) > most:
                raise UserError(
                    f"{self.ARCH} config {name} is {getattr(self, name)}; at most {most} is supported"
                )
        if self.num_classes < 0:  # type: ignore[attr-defined]
            raise UserError(f"{self.ARCH} config num_classes must be >= 0, got {self.num_classes}")  # type: ignore[attr-defined]
        if self.cond_spec() is not None and self.num_classes > 0:  # type: ignore[attr-defined]
            raise UserError(
                f"{self.ARCH} config takes class labels (num_classes) or physical conditions (cond), not both"
            )

    def cond_spec(self) -> CondSpec | None:
        """The physical conditions this model takes (from the `cond` field), or None; UserError if malformed."""
        cond = getattr(self, "cond", None)
        if cond is None:
            return None
        try:
            return CondSpec.from_dict(cond)
        except (UserError, TypeError, ValueError) as exc:
            raise UserError(f"{self.ARCH} config cond: {exc}") from None


def is_power_of_two(n: Any) -> bool:
    """True for 1, 2, 4, 8, ... (ints only)."""
    return isinstance(n, int) and not isinstance(n, bool) and n > 0 and (n & (n - 1)) == 0


# ---------------------------------------------------------------------------------------------------------
# Initialisation and layers


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2016), also FastGAN's: N(0, 0.02) convs, N(1, 0.02) norms."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:  # conditional BN has no affine
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 1.0)


def sn_conv(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, *, bias: bool = False
) -> nn.Module:
    """Conv2d with N(0, 0.02) init in spectral norm (Miyato et al. 2018), as FastGAN uses everywhere."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=bias)
    init_weights(conv)
    return spectral_norm(conv)


def sn_conv_transpose(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, *, bias: bool = False
) -> nn.Module:
    """ConvTranspose2d with N(0, 0.02) init and spectral norm (over the output dim, torch's default)."""
    conv = nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, padding, bias=bias)
    init_weights(conv)
    return spectral_norm(conv)


def batch_norm(ch: int) -> nn.BatchNorm2d:
    """BatchNorm2d with the GAN initialisation."""
    bn = nn.BatchNorm2d(ch)
    init_weights(bn)
    return bn


class ByteDropout(nn.Module):
    """Dropout (N, ...) -> (N, ...) drawn from 16 random bits per element: on a CPU about 3x faster than nn.Dropout.

    torch's CPU dropout draws one Bernoulli variate per element; here one int64 draw gives four 16-bit lanes,
    and an element is kept when its lane clears a threshold, so p is exact to 1/65536 and the kept ones are
    scaled by 1/(1 - p) as usual (bench/dropout_speed.py measures it in the demo's training loop). The bits come
    from torch's global RNG, so a resumed run (which restores that RNG) draws the same masks. Identity in
    eval() and at p = 0; on other devices it is F.dropout, whose kernels are fast there.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise UserError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        # Lanes are signed int16 in [-32768, 32767]: keep a lane >= thr, i.e. with probability 1 - q/65536.
        self._q = round(self.p * 65536)
        self._thr = self._q - 32768
        self._scale = 65536.0 / (65536 - self._q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self._q == 0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, training=True)
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
        lanes = words.view(torch.int16)[:n].view(x.shape)
        return x * ((lanes >= self._thr).to(x.dtype) * self._scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class NoiseInjection(nn.Module):
    """Per-pixel noise scaled by a learned weight (StyleGAN/FastGAN): `x + w * noise`.

    Mode "auto" (default): fresh N(0,1) noise from torch's global RNG in train(), a fixed registered
    buffer in eval() so that eval output depends only on the latent and never on the batch. Modes
    "random", "const" and "none" force one behaviour.
    """

    MODES: ClassVar[tuple[str, ...]] = ("auto", "random", "const", "none")

    def __init__(self, resolution: int, *, seed: int, channels: int = 1) -> None:
        super().__init__()
        # One weight for all channels by default; `channels` > 1: one per channel (coloured noise, e.g. a sky's).
        self.weight = nn.Parameter(torch.zeros(channels))
        gen = torch.Generator().manual_seed(seed)
        # Own generator: building a model must not depend on (or shift) the global RNG for this buffer.
        self.register_buffer("const_noise", torch.randn(1, 1, resolution, resolution, generator=gen))
        self.noise_mode = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.noise_mode
        if mode == "auto":
            mode = "random" if self.training else "const"
        if mode == "none":
            return x
        if mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=torch.float32)
        else:
            noise = self.const_noise
        return x + (self.weight.view(1, -1, 1, 1) * noise).to(x.dtype)


class NoiseModeMixin:
    """`noise_mode` for a generator: read (one mode, or "mixed") and set on every NoiseInjection inside."""

    @property
    def noise_mode(self) -> str:
        modes = {m.noise_mode for m in self.modules() if isinstance(m, NoiseInjection)}  # type: ignore[attr-defined]
        return modes.pop() if len(modes) == 1 else "mixed"

    @noise_mode.setter
    def noise_mode(self, mode: str) -> None:
        if mode not in NoiseInjection.MODES:
            raise UserError(f"noise_mode must be one of {', '.join(NoiseInjection.MODES)}, got {mode!r}")
        for m in self.modules():  # type: ignore[attr-defined]
            if isinstance(m, NoiseInjection):
                m.noise_mode = mode


class SkipLayerExcitation(nn.Module):
    """FastGAN's SLE block (Liu et al. 2021): a low-res feature map gates the channels of a high-res one.

    gate = sigmoid(conv1x1(swish(conv4x4(avgpool4(small))))); returns big * gate. Shapes: small (N, Cs, h, w),
    big (N, Cb, H, W) -> (N, Cb, H, W).
    """

    def __init__(self, small_ch: int, big_ch: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            sn_conv(small_ch, big_ch, 4, 1, 0),
            nn.SiLU(),
            sn_conv(big_ch, big_ch, 1, 1, 0),
            nn.Sigmoid(),
        )

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        return big * self.main(small)


# ---------------------------------------------------------------------------------------------------------
# Counting


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) in `module`."""
    return sum(p.numel() for p in module.parameters())


def flops_per_image(G: nn.Module) -> int:
    """Approximate FLOPs (2 x multiply-adds) of one generator forward for one image.

    Counted by torch's FlopCounterMode, which sees every conv, transposed conv and matrix product,
    also the functional ones (StyleGAN2's modulated convs); norms, activations and the spectral-norm
    power iteration are left out (a few percent at most).
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = G.training
    try:
        G.eval()
        device = next(G.parameters()).device
        z = torch.zeros(1, int(G.z_dim), device=device)  # type: ignore[arg-type]
        c = example_condition(G, 1, device=device)
        counter = FlopCounterMode(display=False)
        with counter:  # not under no_grad: FlopCounterMode's module tracker needs autograd on
            G(z, c)
    finally:
        G.train(was_training)
    return int(counter.get_total_flops())


def truncate_z(z: torch.Tensor, trunc: float | torch.Tensor) -> torch.Tensor:
    """Truncation for families without a mapping network: z (N, D) scaled towards 0, the mean of N(0, I).

    `trunc` is a number or a per-sample tensor (N,) or (1,) (the ONNX graph's input); 1 leaves z as it is.
    """
    if isinstance(trunc, int | float):
        return z if trunc == 1 else z * float(trunc)
    t = trunc.to(z.dtype)
    return z * (t.unsqueeze(1) if t.dim() == 1 else t)  # unsqueeze, not reshape: ONNX keeps the batch dim


def check_labels(
    c: torch.Tensor | None,
    *,
    num_classes: int,
    batch: int,
    arch: str,
    check_range: bool = True,
    cond: CondSpec | None = None,
) -> None:
    """Raise UserError (one line) when `c` does not fit the model: class labels int (N,) in 0..num_classes-1,
    physical conditions (`cond` given) float (N, K), nothing for an unconditional model.

    The label range check reads values back (a device sync), so callers skip it in training and when
    tracing. Condition values are not range-checked here: the sampler does that against the trained range.
    """
    if cond is not None:
        _check_conditions(c, cond, batch=batch, arch=arch)
        return
    if num_classes == 0:
        if c is not None:
            raise UserError(f"this {arch} model is unconditional: do not pass class labels or conditions")
        return
    if c is None:
        raise UserError(f"this {arch} model is class-conditional ({num_classes} classes): pass labels")
    if c.dim() != 1 or c.shape[0] != batch or c.dtype.is_floating_point or c.dtype.is_complex:
        raise UserError(f"labels must be integers of shape ({batch},), got {c.dtype} {tuple(c.shape)}")
    if not check_range or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return
    if torch.compiler.is_compiling():
        return
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= num_classes):
        raise UserError(
            f"class labels must be in 0..{num_classes - 1}, got {c.min().item()}..{c.max().item()}"
        )


def _check_conditions(c: torch.Tensor | None, cond: CondSpec, *, batch: int, arch: str) -> None:
    want = f"float (N={batch}, K={cond.dim}) in physical units ({', '.join(cond.names)})"
    if c is None:
        raise UserError(f"this {arch} model is conditioned on {', '.join(cond.names)}: pass c as {want}")
    if c.dim() != 2 or tuple(c.shape) != (batch, cond.dim) or not c.dtype.is_floating_point:
        raise UserError(f"conditions c must be {want}, got {c.dtype} {tuple(c.shape)}")


class CondNormalize(nn.Module):
    """Physical conditions (N, K) -> (c - mean) / std, float32 (N, K), with mean/std from a CondSpec.

    mean and std are non-persistent buffers: they follow the module across devices and into exported graphs,
    but stay out of the state dict, so the config (generator.json) remains their single source and the
    weights file keeps its shape.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, spec: CondSpec) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32), persistent=False)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return (c.float() - self.mean) / self.std


def example_condition(
    module: nn.Module, batch: int, *, device: torch.device | str = "cpu"
) -> torch.Tensor | None:
    """A valid `c` for `module`: labels 0 (N,) int64, the training mean (N, K) float32, or None (unconditional)."""
    spec = getattr(module, "cond_spec", None)
    if isinstance(spec, CondSpec):
        return torch.from_numpy(spec.centre()).to(device).expand(batch, -1).clone()
    if int(getattr(module, "num_classes", 0) or 0) > 0:
        return torch.zeros(batch, dtype=torch.long, device=device)
    return None


def bake_spectral_norm(module: nn.Module) -> nn.Module:
    """Replace every parametrized weight (spectral norm) by the plain tensor it gives in eval(), in place.

    For inference only: eval-mode outputs are unchanged, the forward gets cheaper, and the graph exports
    to ONNX (the power-iteration `vdot` has no ONNX op). Safe on deep copies: the parametrized class,
    which copies share, is left alone (each module is switched back to its plain base class).
    Returns `module`.
    """
    from torch.nn.utils import parametrize

    with torch.no_grad():
        for m in list(module.modules()):
            if not parametrize.is_parametrized(m):
                continue
            was_training = m.training
            m.eval()  # no power-iteration step while baking
            tensors = {name: getattr(m, name).detach().clone() for name in m.parametrizations}
            plain_cls = m.__class__.__bases__[0]
            del m._modules["parametrizations"]
            m.__class__ = plain_cls
            for name, t in tensors.items():
                m.register_parameter(name, nn.Parameter(t, requires_grad=False))
            m.train(was_training)
    return module
