"""Pictures to bytes for the web: PNG and animated WebP/GIF (Pillow only); grids are `astrogan.imaging`."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, features


def _pil(image: np.ndarray) -> Image.Image:
    """uint8 `(H, W, C)` with C in {1, 3, 4} -> PIL image (first three bands for other counts)."""
    if image.ndim == 2:
        return Image.fromarray(image, mode="L")
    if image.shape[2] == 1:
        return Image.fromarray(image[:, :, 0], mode="L")
    if image.shape[2] == 4:
        return Image.fromarray(image, mode="RGBA")
    return Image.fromarray(np.ascontiguousarray(image[:, :, :3]), mode="RGB")


def encode_png(image: np.ndarray, *, compress_level: int = 1) -> bytes:
    """uint8 `(H, W, C)` -> PNG bytes (low compression: speed matters more than a few kB here)."""
    buf = io.BytesIO()
    _pil(image).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def animation_formats() -> list[str]:
    """Animated formats this Pillow can write, preferred first."""
    return (["webp"] if features.check("webp") else []) + ["gif"]


def encode_animation(frames: np.ndarray, *, fmt: str = "webp", frame_ms: int = 80) -> bytes:
    """uint8 `(S, H, W, C)` frames -> looping animated WebP (lossless) or GIF bytes."""
    pics = [_pil(f) for f in frames]
    if fmt == "gif":
        pics = [p.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT) for p in pics]
    buf = io.BytesIO()
    kwargs = {"lossless": True, "method": 0} if fmt == "webp" else {"optimize": False}
    pics[0].save(
        buf, format=fmt.upper(), save_all=True, append_images=pics[1:], duration=frame_ms, loop=0, **kwargs
    )
    return buf.getvalue()
