"""Image preparation: decode pictures and FITS, square crops before resizing, named filters, dedup."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from astrogan.data import fits_io
from astrogan.imaging import unit_to_uint8
from astrogan.utils.errors import UserError

# GIF: APOD serves about a tenth of its pictures as GIFs, and `fetch` keeps them (first frame of an animation).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".tif", ".tiff")
# pad: science builds only: a centred --size square cut from larger stamps, smaller ones padded, never resampled.
CROP_MODES = ("center", "top-left", "random", "pad")
MAD_TO_STD = 1.4826  # sigma of a Gaussian / its median absolute deviation
FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
}

# Near duplicates, two tests that must both pass:
# 1. 64-bit perceptual hashes (imagehash.phash) at most DEFAULT_NEAR_DUP_BITS apart. Measured on
#    galaxyzoo-examples: JPEG recompression (quality 90/70/50) and a 424->300 px rescale land at 0-6 bits;
#    but different galaxies (a centred blob on black sky) also land at 4 bits: the hash alone is not enough.
# 2. The RMS difference of 32x32 grey thumbnails (0-255 scale) at most DEFAULT_NEAR_DUP_RMS. The copies above
#    measured 0.2-1.0, the different galaxies that passed test 1 measured 7.4-26.
DEFAULT_NEAR_DUP_BITS = 8
DEFAULT_NEAR_DUP_RMS = 3.0

# ITU-R 601-2 luma, the weights Pillow's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


class SkipFile(Exception):
    """A file that cannot be used; the message is the reason written into the report."""


@dataclass
class Decoded:
    """One decoded source picture in image order: `pixels` uint8 or float32 `(H, W, C)`, C = 1, 3 or bands."""

    pixels: np.ndarray
    mode: str
    flags: list[str] = field(default_factory=list)
    stretch: dict[str, Any] | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def is_supported(path: str | os.PathLike[str]) -> bool:
    """True for JPEG/PNG/GIF/WebP/TIFF and FITS file names."""
    name = os.fspath(path).lower()
    return name.endswith(IMAGE_SUFFIXES) or fits_io.is_fits_path(name)


def decode_image(path: str | os.PathLike[str]) -> Decoded:
    """Decode JPEG/PNG/GIF/WebP/TIFF to uint8 `(H, W, 1|3)` in image order, raising SkipFile with a reason.

    CMYK and other colour spaces -> RGB; 16/32-bit -> 8-bit by range; palette -> RGB(A); alpha is
    composited on BLACK (the sky background); EXIF orientation is applied; an animation (or multi-page
    file) gives its first frame. Each conversion adds a flag.
    """
    path = os.fspath(path)
    if os.path.getsize(path) == 0:
        raise SkipFile("empty file (0 bytes)")
    try:
        with Image.open(path) as img:
            flags: list[str] = []
            if getattr(img, "is_animated", False):  # before load: finding a second frame seeks
                flags.append("animated-first-frame")
            img.load()
            mode = img.mode
            transposed = ImageOps.exif_transpose(img)
            if transposed is not None and transposed is not img:
                if transposed.size != img.size or exif_orientation(img) not in (None, 1):
                    flags.append("exif-rotated")
                img = transposed
            arr = _to_uint8_array(img, flags)
    except SkipFile:
        raise
    except Exception as exc:
        raise picture_error(exc) from None
    return Decoded(pixels=arr, mode=mode, flags=flags)


def picture_error(exc: Exception) -> Exception:
    """What a failed Pillow open/load means for one file: a SkipFile with its reason, or `exc` itself."""
    if isinstance(exc, UnidentifiedImageError):
        return SkipFile("not a readable image (format not recognised)")
    if isinstance(exc, Image.DecompressionBombError):
        return SkipFile("too many pixels (Pillow's decompression-bomb guard)")
    if isinstance(exc, OSError | SyntaxError | ValueError | EOFError):
        text = " ".join(str(exc).split())
        kind = "truncated file" if "truncated" in text.lower() else "corrupt image"
        return SkipFile(f"{kind} ({text or type(exc).__name__})")
    return exc


def exif_orientation(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:  # broken EXIF never stops a build
        return None


def _to_uint8_array(img: Image.Image, flags: list[str]) -> np.ndarray:
    mode = img.mode
    if mode == "P":
        flags.append("palette")
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    elif mode == "PA":
        flags.append("palette")
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "CMYK":
        flags.append("cmyk")
        img = img.convert("RGB")
        mode = "RGB"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit data keep their full-scale meaning: 65535 -> 255 (not a min-max stretch).
        flags.append("16-bit" if mode.startswith("I;16") or arr.max(initial=0) <= 65535 else "32-bit")
        full = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        arr = np.clip(np.rint(arr / full * 255.0), 0, 255).astype(np.uint8)
        return arr[..., None]
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(arr)
        if not finite.any():
            raise SkipFile("float image without finite pixels")
        lo, hi = float(arr[finite].min()), float(arr[finite].max())
        flags.append("float-minmax")
        arr = np.where(finite, (arr - lo) / max(hi - lo, 1e-12), 0.0)
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)[..., None]
    if mode == "1":
        img = img.convert("L")
        mode = "L"
    if mode in ("RGBA", "LA", "RGBa", "La"):
        arr = np.asarray(img.convert("RGBA" if mode.startswith("RGB") else "LA"))
        alpha = arr[..., -1:].astype(np.float64) / 255.0
        color = arr[..., :-1].astype(np.float64)
        if (alpha < 1.0).any():
            flags.append("alpha-on-black")
        # Compositing over black = premultiplying by alpha.
        return np.clip(np.rint(color * alpha), 0, 255).astype(np.uint8)
    if mode == "L":
        flags.append("grayscale")
        return np.asarray(img, dtype=np.uint8)[..., None]
    if mode != "RGB":
        flags.append(f"converted-from-{mode}")
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def decode_fits(
    path: str | os.PathLike[str], *, stretch_kind: str = "asinh", stretch_params: dict[str, Any] | None = None
) -> Decoded:
    """Read a FITS file, stretch it to [0, 1] and flip it to image order: float32 `(H, W, B)`.

    Non-finite pixels are filled with black after the stretch and flagged; the stretch params come back.
    """
    try:
        fd = fits_io.read_fits(path)
    except Exception as exc:  # astropy raises many kinds; every one means "cannot use this file"
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise SkipFile(f"unreadable FITS ({text})") from None
    flags: list[str] = []
    num_bad = int(fd.mask.sum())
    if num_bad == fd.mask.size:
        raise SkipFile("FITS data has no finite pixels")
    if num_bad:
        flags.append(f"nonfinite-filled:{num_bad}")
    try:
        stretched, params = fits_io.stretch(fd.data, stretch_kind, mask=fd.mask, **(stretch_params or {}))
    except ValueError as exc:
        raise SkipFile(f"cannot stretch FITS data ({exc})") from None
    finite = fd.data[~fd.mask]
    if float(finite.max()) == float(finite.min()):
        raise SkipFile("FITS data are constant (no signal)")
    if fd.num_bands not in (1, 3):
        flags.append(f"bands:{fd.num_bands}")
    params["hdu"] = fd.hdu_index
    img = fits_io.fits_to_image_order(stretched)  # (B, Y, X) -> image order, the one flip
    return Decoded(
        pixels=np.ascontiguousarray(np.moveaxis(img, 0, -1)), mode="FITS", flags=flags, stretch=params
    )


def to_channels(pixels: np.ndarray, channels: int, *, flags: list[str] | None = None) -> np.ndarray:
    """Convert `(H, W, C)` to `channels` (1 or 3): RGB -> luminance (ITU-R 601-2), grey -> replicated.

    Float data with a band count other than 1 or 3 are averaged (channels=1) or rejected (channels=3).
    """
    c = pixels.shape[-1]
    if c == channels:
        return pixels
    if channels == 3 and c == 1:
        return np.repeat(pixels, 3, axis=-1)
    if channels == 1:
        if c == 3 and pixels.dtype == np.uint8:
            luma = pixels.astype(np.float64) @ _LUMA
            return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
        if c == 3:
            return (pixels.astype(np.float64) @ _LUMA).astype(np.float32)[..., None]
        if flags is not None:
            flags.append(f"bands-averaged:{c}")
        return pixels.mean(axis=-1, keepdims=True).astype(pixels.dtype)
    raise SkipFile(f"{c} bands cannot become {channels} channels (use --channels 1 to average them)")


def crop_boxes(
    height: int,
    width: int,
    *,
    mode: str = "center",
    num_crops: int = 1,
    rng: np.random.Generator | None = None,
    min_scale: float = 0.5,
    size_px: int | None = None,
) -> list[tuple[int, int, int]]:
    """Square crop boxes `(top, left, side)` inside an `height x width` picture, cut BEFORE any resize.

    center/top-left: one box with side = the short edge. random: `num_crops` boxes, each with a side drawn
    uniformly in [min_scale, 1] x short edge and a uniform position (needs `rng`, so seeds reproduce them).
    pad: one `size_px` box centred as `pad_box` places it (offsets may be negative: that side is padded).
    """
    if mode not in CROP_MODES:
        raise UserError(f"unknown crop {mode!r}: use one of {', '.join(CROP_MODES)}")
    if mode == "pad":
        if size_px is None:
            raise ValueError("pad boxes need size_px")
        return [pad_box(height, width, size_px)]
    short = min(height, width)
    if mode == "center":
        return [((height - short) // 2, (width - short) // 2, short)]
    if mode == "top-left":
        return [(0, 0, short)]
    if rng is None:
        raise ValueError("random crops need an rng")
    boxes = []
    lo = max(1, int(round(short * min_scale)))
    for _ in range(num_crops):
        side = int(rng.integers(lo, short + 1))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        boxes.append((top, left, side))
    return boxes


def pad_box(height: int, width: int, size_px: int) -> tuple[int, int, int]:
    """The `--crop pad` box `(top, left, size_px)` of a `height x width` stamp, in image order.

    Centred in FITS order: the box starts at FITS row (height - size_px) // 2 and column (width - size_px) // 2
    (floor; negative: padded), so when a side is one pixel too long its LAST FITS row/column goes and FITS
    pixel (0, 0), where the WCS counts from, stays put. In image order (row 0 on top) that is
    top = height - size_px - (height - size_px) // 2.
    """
    y0 = (height - size_px) // 2
    return height - size_px - y0, (width - size_px) // 2, size_px


def pad_cut(cube: np.ndarray, box: tuple[int, int, int], fill: np.ndarray | None) -> np.ndarray:
    """float32 `(B, S, S)`: the pixels of `cube` `(B, H, W)` (image order) inside `box` `(top, left, S)`, and
    `fill` `(B, S, S)` where the box leaves the cube (None when it does not). Values are copied, never
    resampled; a box that is the whole cube gives an exact copy."""
    top, left, side = box
    _, height, width = cube.shape
    y0, y1 = max(top, 0), min(top + side, height)
    x0, x1 = max(left, 0), min(left + side, width)
    if (y0, y1, x0, x1) == (top, top + side, left, left + side):
        return np.array(cube[:, y0:y1, x0:x1], dtype=np.float32)
    if fill is None:
        raise ValueError(f"box {box} leaves the {height}x{width} stamp: pad_cut needs a fill")
    out = np.array(fill, dtype=np.float32)
    if y1 > y0 and x1 > x0:
        out[:, y0 - top : y1 - top, x0 - left : x1 - left] = cube[:, y0:y1, x0:x1]
    return out


def num_padded(box: tuple[int, int, int], height: int, width: int) -> int:
    """Pixels per band of a pad box that lie outside the `height x width` stamp (0: a plain cut)."""
    top, left, side = box
    rows = max(0, min(top + side, height) - max(top, 0))
    cols = max(0, min(left + side, width) - max(left, 0))
    return side * side - rows * cols


def border_sky(cube: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median `(B,)`, robust std `(B,)` = MAD x 1.4826) of each band's outermost pixels (the 1-px ring of
    `cube` `(B, H, W)`), finite pixels only; NaN for a band whose ring has none."""
    ring = np.concatenate(
        [cube[:, 0, :], cube[:, -1, :], cube[:, 1:-1, 0], cube[:, 1:-1, -1]], axis=1
    ).astype(np.float64)
    med = np.full(cube.shape[0], np.nan)
    std = np.full(cube.shape[0], np.nan)
    for b, values in enumerate(ring):
        values = values[np.isfinite(values)]
        if values.size:
            med[b] = np.median(values)
            std[b] = np.median(np.abs(values - med[b])) * MAD_TO_STD
    return med, std


def resize_square(pixels: np.ndarray, size_px: int, *, filter: str = "lanczos") -> np.ndarray:
    """Resize a square `(S, S, C)` array to `(size_px, size_px, C)` with a named Pillow filter.

    uint8 goes through Pillow's L/RGB modes; float32 goes band by band through Pillow's 32-bit float mode with
    the SAME filter kernel (so FITS and JPEG data are resampled alike); float output is clipped to [0, 1].
    """
    if pixels.shape[0] != pixels.shape[1]:
        raise ValueError(f"resize_square needs a square array, got {pixels.shape[:2]} (crop first)")
    try:
        resample = FILTERS[filter]
    except KeyError:
        raise UserError(f"unknown filter {filter!r}: use one of {', '.join(FILTERS)}") from None
    if pixels.shape[0] == size_px:
        return pixels.copy()
    if pixels.dtype == np.uint8 and pixels.shape[-1] in (1, 3):
        grey = pixels.shape[-1] == 1
        img = Image.fromarray(np.ascontiguousarray(pixels[..., 0] if grey else pixels))
        out = np.asarray(img.resize((size_px, size_px), resample=resample))
        return out[..., None] if grey else out
    bands = []
    for b in range(pixels.shape[-1]):
        img = Image.fromarray(np.ascontiguousarray(pixels[..., b], dtype=np.float32))  # mode "F"
        bands.append(np.asarray(img.resize((size_px, size_px), resample=resample), dtype=np.float32))
    out = np.stack(bands, axis=-1)
    return (
        np.clip(out, 0.0, 1.0) if pixels.dtype != np.uint8 else np.clip(np.rint(out), 0, 255).astype(np.uint8)
    )


def resize_flux(cube: np.ndarray, size_px: int, *, filter: str = "lanczos") -> np.ndarray:
    """Resize float flux `(B, S, S)` to float32 `(B, size_px, size_px)` band by band, values NOT clipped.

    The same Pillow kernels as `resize_square` (32-bit float mode), for science data whose values are fluxes
    (negative sky, bright cores) rather than [0, 1]; a cube already `size_px` comes back as an exact copy.
    """
    if cube.ndim != 3 or cube.shape[1] != cube.shape[2]:
        raise ValueError(f"resize_flux needs a square (B, S, S) cube, got {cube.shape} (crop first)")
    try:
        resample = FILTERS[filter]
    except KeyError:
        raise UserError(f"unknown filter {filter!r}: use one of {', '.join(FILTERS)}") from None
    if cube.shape[1] == size_px:
        return np.array(cube, dtype=np.float32)
    out = np.empty((cube.shape[0], size_px, size_px), dtype=np.float32)
    for b in range(cube.shape[0]):
        img = Image.fromarray(np.ascontiguousarray(cube[b], dtype=np.float32))  # mode "F"
        out[b] = np.asarray(img.resize((size_px, size_px), resample=resample), dtype=np.float32)
    return out


to_uint8 = unit_to_uint8  # float [0, 1] -> uint8 (rounded); uint8 passes through


def pixel_sha256(pixels: np.ndarray) -> str:
    """sha256 of the decoded pixels (shape and dtype included), for exact-duplicate detection."""
    h = hashlib.sha256()
    h.update(f"{pixels.dtype.str}{pixels.shape}".encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def dedup_signature(pixels: np.ndarray) -> tuple[int, np.ndarray]:
    """(64-bit imagehash.phash as int, 32x32 grey float32 thumbnail) of a picture (floats taken as [0, 1])."""
    import imagehash

    arr = to_uint8(pixels)
    if arr.shape[-1] == 3:
        img = Image.fromarray(np.ascontiguousarray(arr)).convert("L")
    else:
        img = Image.fromarray(np.rint(arr.mean(axis=-1)).astype(np.uint8))
    bits = imagehash.phash(img).hash.flatten()
    thumb = np.asarray(img.resize((32, 32), Image.Resampling.BOX), dtype=np.float32)
    return int("".join("1" if b else "0" for b in bits), 2), thumb


class NearDuplicateIndex:
    """Signatures of the pictures kept so far; `find` names a kept picture that the new one nearly repeats."""

    def __init__(
        self, *, max_bits: int = DEFAULT_NEAR_DUP_BITS, max_rms: float = DEFAULT_NEAR_DUP_RMS
    ) -> None:
        self.max_bits, self.max_rms = int(max_bits), float(max_rms)
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._thumbs = np.zeros((0, 32, 32), dtype=np.float32)
        self._keys: list[Any] = []
        self._count = 0

    def find(self, phash: int, thumb: np.ndarray) -> tuple[Any, int, float] | None:
        """(key, hash bits apart, thumbnail RMS) of the closest kept picture passing both tests, else None."""
        if self._count == 0:
            return None
        x = np.bitwise_xor(self._hashes[: self._count], np.uint64(phash))
        dist = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        cand = np.flatnonzero(dist <= self.max_bits)
        if cand.size == 0:
            return None
        rms = np.sqrt(((self._thumbs[cand] - thumb[None]) ** 2).mean(axis=(1, 2)))
        best = int(np.argmin(rms))
        if float(rms[best]) <= self.max_rms:
            i = int(cand[best])
            return self._keys[i], int(dist[i]), float(rms[best])
        return None

    def add(self, phash: int, thumb: np.ndarray, key: Any) -> None:
        if self._count == len(self._hashes):
            cap = max(64, 2 * len(self._hashes))
            hashes, thumbs = np.zeros(cap, dtype=np.uint64), np.zeros((cap, 32, 32), dtype=np.float32)
            hashes[: self._count], thumbs[: self._count] = (
                self._hashes[: self._count],
                self._thumbs[: self._count],
            )
            self._hashes, self._thumbs = hashes, thumbs
        self._hashes[self._count] = np.uint64(phash)
        self._thumbs[self._count] = thumb
        self._keys.append(key)
        self._count += 1
