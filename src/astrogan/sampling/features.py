"""A generator's feature maps layer by layer: forward hooks on every block, channel tiles, figures and sweeps.

Which activations are "layers" (one rule for every architecture, no code per model): a forward hook on every
submodule of the generator sees each output that is a 4-D feature map (a tensor, or the first element of a
tuple, as StyleGAN2's synthesis blocks return `(x, img)`) whose channel count differs from the image's (so
to-RGB branches are left out). The generator's feature path only grows, so an output smaller than the
largest seen so far is a side branch (FastGAN's skip-layer excitation squeezes a map to 4x4 and 1x1) and is
skipped. Of the rest, the last one to finish at each resolution is that resolution's layer: the output the
next stage consumes, named by the outermost module that produced it (`fc_norm`, `ups.16`, `sle.64`,
`synthesis.blocks.2`). The generator's own output follows as the layer `output`. So the list runs from the
first (4x4) map to the output resolution for DCGAN, FastGAN and StyleGAN2 alike.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from astrogan.imaging import make_grid, slerp
from astrogan.sampling.generator import CondRequest, Generator
from astrogan.utils.atomic import atomic_path
from astrogan.utils.errors import UserError

__all__ = [
    "OUTPUT_LAYER",
    "ChannelStats",
    "LayerFeatures",
    "channel_stats",
    "feature_figure",
    "feature_sweep",
    "features_for",
    "features_for_latents",
    "layer_panels",
    "select_layers",
    "sweep_latents",
    "write_gif",
]

OUTPUT_LAYER = "output"
LABEL_PX = 18  # height of a label strip (the title and each layer's "name · C ch · HxW")
PAD_PX = 2  # gap between tiles
BLOCK_GAP_PX = 6  # extra gap between the blocks of two latents (seeds) in a panel
BACKGROUND = (20, 20, 20)
TEXT = (225, 225, 225)
PERCENTILES = (1.0, 99.0)  # per-channel range: robust to a few hot pixels
PERCEPTUAL_CMAPS = ("magma", "viridis", "inferno", "plasma", "cividis")


@dataclasses.dataclass(frozen=True)
class LayerFeatures:
    """One layer's activations for N latents: `array` float32 (N, C, H, W) on the CPU."""

    name: str
    array: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.array.shape[1])

    @property
    def resolution(self) -> tuple[int, int]:
        """(H, W) of the maps."""
        return int(self.array.shape[2]), int(self.array.shape[3])

    @property
    def label(self) -> str:
        """`name · C ch · HxW`, as the figure writes it."""
        h, w = self.resolution
        return f"{self.name} · {self.channels} ch · {h}x{w}"


# ---------------------------------------------------------------------------------------------------------
# Hooks


def _feature_map(out: Any) -> torch.Tensor | None:
    """The 4-D tensor a module returned (or the first element of a returned tuple), else None."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    return out if isinstance(out, torch.Tensor) and out.dim() == 4 else None


class _StageRecorder:
    """Forward hooks on every submodule that keep, per resolution, the last feature map (see module doc)."""

    def __init__(self, module: nn.Module, *, image_channels: int) -> None:
        self.module = module
        self.image_channels = image_channels
        self.stages: dict[tuple[int, int], tuple[str, torch.Tensor]] = {}  # first-seen order
        self._largest = 0
        self._handles: list[Any] = []

    def __enter__(self) -> _StageRecorder:
        for name, sub in self.module.named_modules():
            if name:  # the root's output is the image, taken from the call itself
                self._handles.append(sub.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
            x = _feature_map(out)
            if x is None or x.shape[1] == self.image_channels:
                return
            h, w = int(x.shape[2]), int(x.shape[3])
            if h * w < self._largest:
                return  # a side branch below the feature path's resolution
            self._largest = h * w
            # A copy: a later in-place op at the same stage must not change what was recorded.
            self.stages[(h, w)] = (name, x.detach().clone())

        return hook


@torch.no_grad()
def features_for_latents(
    gen: Generator,
    z: torch.Tensor | np.ndarray,
    c: torch.Tensor | None = None,
    *,
    layers: str | Sequence[str | int] | None = "all",
    trunc: float = 1.0,
) -> list[LayerFeatures]:
    """Feature maps of the layers `layers` (see `select_layers`) for latents z (N, z_dim): one entry per layer,
    in network order, each float32 (N, C, H, W); `c` is the network's condition (N,) or (N, K), or None."""
    zt = torch.as_tensor(np.asarray(z, dtype=np.float32) if isinstance(z, np.ndarray) else z)
    zt = zt.to(gen.device, torch.float32)
    with _StageRecorder(gen.module, image_channels=gen.channels) as rec:
        image = gen.module(zt, c, trunc=trunc)
    found = [LayerFeatures(name, x.float().cpu().numpy()) for name, x in rec.stages.values()]
    found.append(LayerFeatures(OUTPUT_LAYER, image.float().cpu().numpy()))
    by_name = {f.name: f for f in found}
    return [by_name[n] for n in select_layers([f.name for f in found], layers)]


def features_for(
    gen: Generator,
    seeds: int | Sequence[int],
    *,
    layers: str | Sequence[str | int] | None = "all",
    labels: Sequence[int] | int | None = None,
    cond: CondRequest = None,
    check_cond: bool = True,
    trunc: float = 1.0,
) -> list[LayerFeatures]:
    """Feature maps for seeds (one int or a few): list of LayerFeatures, arrays float32 (N, C, H, W).

    A conditional model takes `labels` (default `seed % num_classes`) or physical `cond` (default the training
    mean), as `Generator.generate` does.
    """
    seed_list = [int(seeds)] if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    c = gen.condition(seed_list, labels=labels, cond=cond, check_cond=check_cond)
    return features_for_latents(gen, gen.latents(seed_list), c, layers=layers, trunc=trunc)


def select_layers(names: Sequence[str], request: str | Sequence[str | int] | None) -> list[str]:
    """The names of `names` chosen by `request`: "all"/None, or a comma list (or sequence) of names and
    indices (negative ones count from the end). Network order, no repeats; unknown entries are one UserError."""
    if request is None or (isinstance(request, str) and request.strip().lower() in ("", "all")):
        return list(names)
    items = (
        [s.strip() for s in request.split(",") if s.strip()] if isinstance(request, str) else list(request)
    )
    chosen: set[int] = set()
    unknown: list[str] = []
    for item in items:
        if isinstance(item, str) and item in names:
            chosen.add(list(names).index(item))
            continue
        try:
            i = int(item)
        except (TypeError, ValueError):
            unknown.append(str(item))
            continue
        if -len(names) <= i < len(names):
            chosen.add(i % len(names))
        else:
            unknown.append(str(item))
    if unknown or not chosen:
        listing = ", ".join(f"{i} {n}" for i, n in enumerate(names))
        what = f"unknown layers {', '.join(unknown)}" if unknown else "no layers chosen"
        raise UserError(f"{what}: choose names or indices from {listing}, or all")
    return [names[i] for i in sorted(chosen)]


# ---------------------------------------------------------------------------------------------------------
# Which channels, and how bright


@dataclasses.dataclass(frozen=True)
class ChannelStats:
    """How a layer is drawn: `order` int (k,) the channels shown, most active (mean |a|) first; `low`, `high`
    float32 (C,) each channel's value range (mapped to the colour map's ends)."""

    order: np.ndarray
    low: np.ndarray
    high: np.ndarray


class _StatsAccumulator:
    """Per-layer channel activity and ranges over any number of batches (a sweep sees its frames in batches)."""

    def __init__(self) -> None:
        self.sum_abs: dict[str, np.ndarray] = {}
        self.count: dict[str, int] = {}
        self.low: dict[str, np.ndarray] = {}
        self.high: dict[str, np.ndarray] = {}

    def update(self, layers: Sequence[LayerFeatures]) -> None:
        for f in layers:
            x = f.array.reshape(f.array.shape[0], f.channels, -1).astype(np.float64)  # (N, C, HW)
            lo, hi = np.percentile(x, PERCENTILES, axis=-1)  # (N, C) each: per image and channel
            if f.name not in self.sum_abs:
                self.sum_abs[f.name] = np.zeros(f.channels)
                self.count[f.name] = 0
                self.low[f.name] = np.full(f.channels, np.inf)
                self.high[f.name] = np.full(f.channels, -np.inf)
            self.sum_abs[f.name] += np.abs(x).sum(axis=(0, 2))
            self.count[f.name] += x.shape[0] * x.shape[2]
            # The envelope over images: every seed (or frame) of one channel shares one scale.
            self.low[f.name] = np.minimum(self.low[f.name], lo.min(axis=0))
            self.high[f.name] = np.maximum(self.high[f.name], hi.max(axis=0))

    def result(self, *, max_channels: int) -> dict[str, ChannelStats]:
        out = {}
        for name, total in self.sum_abs.items():
            activity = total / max(self.count[name], 1)
            order = np.argsort(-activity, kind="stable")[:max_channels]
            out[name] = ChannelStats(
                order=order, low=self.low[name].astype(np.float32), high=self.high[name].astype(np.float32)
            )
        return out


def channel_stats(layers: Sequence[LayerFeatures], *, max_channels: int = 16) -> dict[str, ChannelStats]:
    """Per layer name: the `max_channels` channels with the largest mean |activation| (over seeds and
    positions), first the largest, and each channel's 1st-99th percentile range over all its maps."""
    if max_channels < 1:
        raise UserError(f"max_channels must be >= 1, got {max_channels}")
    acc = _StatsAccumulator()
    acc.update(layers)
    return acc.result(max_channels=max_channels)


# ---------------------------------------------------------------------------------------------------------
# Drawing


@functools.lru_cache(maxsize=64)
def _lut(cmap: str) -> np.ndarray:
    """uint8 (256, 3) lookup table of a matplotlib colour map; UserError naming perceptual ones if unknown."""
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise UserError(
            f"unknown colour map {cmap!r}: use a perceptual one such as {', '.join(PERCEPTUAL_CMAPS)}"
        ) from None
    return np.rint(cm(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib: it has '·' and '→'), else Pillow's built-in font."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=True), size)
    except Exception:  # no matplotlib fonts: the labels still read, in a plainer face
        return ImageFont.load_default()


def _tile(channel: np.ndarray, low: float, high: float, *, lut: np.ndarray, tile_px: int) -> np.ndarray:
    """One channel's map (H, W) -> uint8 (tile_px, tile_px, 3): scaled to [0, 1] by (low, high), resized
    (nearest when enlarging, so pixels stay visible; box average when shrinking), coloured."""
    span = float(high) - float(low)
    unit = (channel - low) / span if span > 1e-12 else np.zeros_like(channel)  # a dead channel: flat
    img = Image.fromarray(np.clip(unit, 0.0, 1.0).astype(np.float32), mode="F")
    if img.size != (tile_px, tile_px):
        bigger = tile_px >= max(img.size)
        img = img.resize((tile_px, tile_px), Image.Resampling.NEAREST if bigger else Image.Resampling.BOX)
    idx = np.clip(np.rint(np.asarray(img) * 255), 0, 255).astype(np.uint8)
    return lut[idx]


def layer_panels(
    layers: Sequence[LayerFeatures],
    stats: dict[str, ChannelStats] | None = None,
    *,
    max_channels: int = 16,
    cmap: str = "magma",
    tile_px: int = 48,
    columns: int = 8,
) -> list[tuple[str, np.ndarray]]:
    """One (label, uint8 (h, w, 3)) panel per layer: the shown channels as tiles, `columns` to a row, one
    block of rows per latent, top to bottom. `stats` (default: from these layers) fixes order and ranges."""
    if tile_px < 1 or columns < 1:
        raise UserError(f"tile_px and columns must be >= 1, got {tile_px} and {columns}")
    lut = _lut(cmap)
    stats = stats or channel_stats(layers, max_channels=max_channels)
    panels = []
    for f in layers:
        st = stats[f.name]
        ncols = min(columns, len(st.order))
        blocks: list[np.ndarray] = []
        for sample in f.array:  # (C, H, W)
            tiles = np.stack(
                [_tile(sample[c], st.low[c], st.high[c], lut=lut, tile_px=tile_px) for c in st.order]
            )
            if blocks:  # a wider gap between latents' blocks than between a block's rows
                blocks.append(np.full((BLOCK_GAP_PX, blocks[0].shape[1], 3), BACKGROUND[0], np.uint8))
            blocks.append(make_grid(tiles, ncols=ncols, pad_px=PAD_PX, pad_value=BACKGROUND[0]))
        panels.append((f.label, np.concatenate(blocks, axis=0)))
    return panels


def _text_width(text: str) -> int:
    return int(np.ceil(_font(12).getlength(text))) + 2 * PAD_PX


def feature_figure(
    layers: Sequence[LayerFeatures],
    stats: dict[str, ChannelStats] | None = None,
    *,
    max_channels: int = 16,
    cmap: str = "magma",
    tile_px: int = 48,
    columns: int = 8,
    title: str | None = None,
) -> np.ndarray:
    """The layers one under another, each under its label `name · C ch · HxW`: uint8 (H, W, 3).

    Layout (what tests rely on): a `LABEL_PX` title strip when `title` is given, then per layer a `LABEL_PX`
    label strip and its panel from `layer_panels`, left-aligned at x = 0; the width is the widest panel or text.
    """
    panels = layer_panels(
        layers, stats, max_channels=max_channels, cmap=cmap, tile_px=tile_px, columns=columns
    )
    texts = [label for label, _ in panels] + ([title] if title else [])
    width = max([p.shape[1] for _, p in panels] + [_text_width(t) for t in texts])
    height = (LABEL_PX if title else 0) + sum(LABEL_PX + p.shape[0] for _, p in panels)
    fig = np.empty((height, width, 3), np.uint8)
    fig[:] = BACKGROUND
    y = 0
    lines: list[tuple[int, str]] = []
    if title:
        lines.append((y, title))
        y += LABEL_PX
    for label, panel in panels:
        lines.append((y, label))
        y += LABEL_PX
        fig[y : y + panel.shape[0], : panel.shape[1]] = panel
        y += panel.shape[0]
    img = Image.fromarray(fig)
    draw = ImageDraw.Draw(img)
    for y0, text in lines:
        draw.text((PAD_PX, y0 + 2), text, fill=TEXT, font=_font(12))
    return np.asarray(img).copy()


# ---------------------------------------------------------------------------------------------------------
# Sweeps


def sweep_latents(gen: Generator, seed_a: int, seed_b: int, *, num_frames: int) -> np.ndarray:
    """float32 (num_frames, z_dim): slerp from seed_a's latent to seed_b's, both ends included."""
    if num_frames < 2:
        raise UserError(f"a sweep needs at least 2 frames, got {num_frames}")
    za, zb = gen.latents([seed_a, seed_b]).cpu().numpy()
    return slerp(za, zb, np.linspace(0.0, 1.0, num_frames))


def feature_sweep(
    gen: Generator,
    seed_a: int,
    seed_b: int,
    *,
    num_frames: int = 16,
    layers: str | Sequence[str | int] | None = "all",
    labels: int | None = None,
    cond: CondRequest = None,
    check_cond: bool = True,
    trunc: float = 1.0,
    max_channels: int = 16,
    cmap: str = "magma",
    tile_px: int = 48,
    columns: int = 8,
    batch_size: int = 8,
    on_frames: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Feature figures along a slerp in z from seed_a to seed_b: num_frames uint8 (H, W, 3), one size.

    Two passes, so the animation does not flicker: the first ranks channels and sets each channel's range
    over all frames, the second draws every frame with them (tile k shows the same channel throughout).
    The condition (class or physical) is seed_a's, as in `interpolate`. `on_frames(n)` after each batch of
    n frames in either pass (2 * num_frames in all).
    """
    z = sweep_latents(gen, seed_a, seed_b, num_frames=num_frames)
    c1 = gen.condition([seed_a], labels=labels, cond=cond, check_cond=check_cond)
    batch_size = max(1, batch_size)

    def batches() -> Iterator[tuple[int, list[LayerFeatures]]]:
        for i in range(0, num_frames, batch_size):
            zz = z[i : i + batch_size]
            cc = None if c1 is None else c1.expand(len(zz), *c1.shape[1:])
            yield i, features_for_latents(gen, zz, cc, layers=layers, trunc=trunc)
            if on_frames is not None:
                on_frames(len(zz))

    acc = _StatsAccumulator()
    for _, feats in batches():
        acc.update(feats)
    stats = acc.result(max_channels=max_channels)
    frames = []
    ts = np.linspace(0.0, 1.0, num_frames)
    for i, feats in batches():
        for j in range(feats[0].array.shape[0]):
            one = [LayerFeatures(f.name, f.array[j : j + 1]) for f in feats]
            title = f"seed {seed_a} → {seed_b} · t = {ts[i + j]:.2f}"
            frames.append(
                feature_figure(one, stats, cmap=cmap, tile_px=tile_px, columns=columns, title=title)
            )
    # Titles differ per frame; pad to one size so every frame fits the same canvas.
    h = max(f.shape[0] for f in frames)
    w = max(f.shape[1] for f in frames)
    return [_pad_to(f, h, w) for f in frames]


def _pad_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    out = np.empty((h, w, 3), np.uint8)
    out[:] = BACKGROUND
    out[: img.shape[0], : img.shape[1]] = img
    return out


def write_gif(
    frames: Sequence[np.ndarray], path: str | Path, *, frame_ms: int = 100, bounce: bool = True
) -> Path:
    """Write uint8 (H, W, 3) frames as a looping GIF atomically; `bounce` plays them forth then back, so the
    loop has no jump. Returns the path."""
    if not frames:
        raise UserError("no frames to write")
    seq = list(frames) + (list(frames[-2:0:-1]) if bounce else [])
    images = [Image.fromarray(f) for f in seq]
    path = Path(path)
    with atomic_path(path, suffix=".gif") as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=max(int(frame_ms), 20),
            loop=0,
        )
    return path
