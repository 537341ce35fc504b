"""The experiment's image sets: the real dataset (split 60/20/20 by one seed) and the generated set (made once, cached).

The generated set is one of: a dataset directory (used as it is), an array `(N, H, W, C)`, or a generator
object, as `astrogan.sampling.generator.Generator` (PyTorch, `generate_tensor`) or
`astrogan.web.onnx_generator.OnnxGenerator` (ONNX Runtime, `latents` + `generate_float`) give. A generator
draws seeds 0..N-1 once; the pixels are kept in the real set's dtype (uint8 through the one model-to-pixel
rule `imaging.to_uint8`, or float [0, 1] through `imaging.model_to_unit`), so both sets are quantised alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrogan.imaging import model_to_unit, sha256_file, to_uint8, uint8_to_unit
from astrogan.utils.atomic import atomic_path, write_json
from astrogan.utils.errors import UserError

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train, validation, test: Holzschuh et al. 2022
SPLIT_STREAM = 0  # SeedSequence([seed, stream]): one stream per use of the experiment seed
MIN_REAL_IMAGES = 10
GENERATE_BATCH = 64


class ImageSet:
    """Images `(N, H, W, C)` (uint8, or float32 in [0, 1]), optionally a subset `indices` of them.

    `take(idx)` gives unit-scale float32 `(B, C, H, W)`. A set read from a file (`source`) is reopened,
    not copied, when it is pickled to a worker process.
    """

    def __init__(
        self,
        images: np.ndarray,
        *,
        indices: np.ndarray | None = None,
        source: tuple[Any, ...] | None = None,
    ) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
        self.images = images
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self.source = source

    def __len__(self) -> int:
        return len(self.images) if self.indices is None else len(self.indices)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        h, w, c = self.images.shape[1:]
        return int(h), int(w), int(c)

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The images at `indices` (positions in this set)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            self.images, indices=idx if self.indices is None else self.indices[idx], source=self.source
        )

    def take(self, idx: np.ndarray | slice) -> torch.Tensor:
        """Unit-scale float32 `(B, C, H, W)` for positions `idx` of this set."""
        rows = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, dtype=np.int64)
        if self.indices is not None:
            rows = self.indices[rows]
        # Sorted reads are fast on memory maps and HDF5; the batch order is put back afterwards.
        order = np.argsort(rows, kind="stable")
        pixels = np.empty((len(rows), *self.shape), dtype=self.images.dtype)
        pixels[order] = self.images[rows[order]]
        unit = uint8_to_unit(pixels) if pixels.dtype == np.uint8 else pixels.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(unit.transpose(0, 3, 1, 2)))

    def __reduce__(self):  # noqa: ANN204
        if self.source is None:
            return (ImageSet, (self.images,), {"indices": self.indices, "source": None})
        return (_reopen, (self.source, self.indices))

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.indices, self.source = state["indices"], state["source"]


def _reopen(source: tuple[Any, ...], indices: np.ndarray | None) -> ImageSet:
    return ImageSet(_read_source(source), indices=indices, source=source)


def _read_source(source: tuple[Any, ...]) -> np.ndarray:
    if source[0] == "npy":
        return np.load(source[1], mmap_mode="r")
    if source[0] == "dataset":
        from astrogan.data.dataset import open_dataset

        _, path, size, count = source
        return open_dataset(path).images(size)[:count]
    raise ValueError(f"unknown image source {source!r}")


@dataclass(frozen=True)
class SetInfo:
    """What the experiment records about one set: kind, name, identity, stored sizes, bands, dtype."""

    kind: str  # "dataset" | "generator" | "array"
    name: str
    fingerprint: str
    sizes: tuple[int, ...]
    channels: int
    dtype: str  # "uint8" | "float32"; a generator's pixels follow the real set's

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "sizes": list(self.sizes),
            "channels": self.channels,
            "dtype": self.dtype,
        }


def _is_dataset_dir(obj: Any) -> bool:
    return isinstance(obj, str | Path) and (Path(obj) / "manifest.json").is_file()


def _array_fingerprint(arr: np.ndarray) -> str:
    h = hashlib.sha256(str((arr.shape, arr.dtype.str)).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return "array:" + h.hexdigest()


def _generator_fingerprint(gen: Any) -> str:
    """The generator's identity for the cache: its file's sha256 (ONNX) or a hash of its weights (PyTorch)."""
    if isinstance(getattr(gen, "fingerprint", None), str):
        return str(gen.fingerprint)
    path = getattr(gen, "path", None)
    if path is not None and Path(path).is_file():
        return "onnx:" + sha256_file(path)
    module = getattr(gen, "module", None)
    if module is not None:
        h = hashlib.sha256()
        for key, value in sorted(module.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        return "torch:" + h.hexdigest()
    raise TypeError("cannot tell this generator's identity: give it a `fingerprint` string attribute")


def describe(obj: Any, *, role: str, name: str | None = None) -> SetInfo:
    """SetInfo for a dataset directory, an array `(N, H, W, C)` or (generated only) a generator object."""
    if _is_dataset_dir(obj):
        from astrogan.data.dataset import open_dataset

        ds = open_dataset(obj)
        return SetInfo(
            "dataset", name or str(obj), ds.content_hash, tuple(ds.image_sizes), ds.channels, ds.dtype
        )
    if isinstance(obj, np.ndarray):
        if obj.ndim != 4 or obj.shape[1] != obj.shape[2] or obj.dtype not in (np.uint8, np.float32):
            raise UserError(
                f"{role} images must be square uint8 or float32 (N, H, W, C), got {obj.dtype} {obj.shape}"
            )
        return SetInfo(
            "array",
            name or f"{role} array",
            _array_fingerprint(obj),
            (obj.shape[1],),
            obj.shape[3],
            obj.dtype.name,
        )
    if isinstance(obj, str | Path):
        raise UserError(
            f"no dataset at {obj} (manifest.json missing): build one with `astrogan dataset build`"
        )
    if role == "generated" and hasattr(obj, "image_size") and hasattr(obj, "channels"):
        name = str(
            getattr(obj, "path", None) or getattr(obj, "meta", {}).get("run", "") or type(obj).__name__
        )
        return SetInfo(
            "generator", name, _generator_fingerprint(obj), (int(obj.image_size),), int(obj.channels), "model"
        )
    raise TypeError(f"cannot use {type(obj).__name__} as the {role} set")


def common_size(real: SetInfo, generated: SetInfo, *, image_size: int | None = None) -> int:
    """The image size both sets store (the largest one, or `image_size`); UserError in one line otherwise."""
    if real.channels != generated.channels:
        raise UserError(
            f"band counts differ: the real set {real.name} has {real.channels}, the generated set "
            f"{generated.name} has {generated.channels}: train the generator on this data"
        )
    common = sorted(set(real.sizes) & set(generated.sizes), reverse=True)
    if image_size is not None:
        if image_size not in common:
            raise UserError(
                f"--image-size {image_size} is not stored by both sets (real: {_px(real.sizes)}, "
                f"generated: {_px(generated.sizes)})"
            )
        return image_size
    if not common:
        raise UserError(
            f"image sizes differ: the real set {real.name} has {_px(real.sizes)}, the generated set "
            f"{generated.name} has {_px(generated.sizes)}: build the dataset at the generator's size"
        )
    return common[0]


def _px(sizes: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in sizes) + " px"


def load_set(obj: Any, info: SetInfo, *, image_size: int, limit: int | None = None) -> ImageSet:
    """The images of a dataset directory or array at `image_size` (the first `limit` of them)."""
    if info.kind == "dataset":
        from astrogan.data.dataset import open_dataset

        count = open_dataset(obj).num_images if limit is None else limit
        source = ("dataset", str(Path(obj).resolve()), image_size, count)
        return ImageSet(_read_source(source), source=source)
    if info.kind == "array":
        return ImageSet(obj if limit is None else obj[:limit])
    raise TypeError(f"load_set takes datasets and arrays, not a {info.kind}")


def split_indices(num: int, seed: int) -> dict[str, np.ndarray]:
    """Disjoint train/val/test positions (60/20/20, sorted) of `num` real images, decided by `seed` alone."""
    if num < MIN_REAL_IMAGES:
        raise UserError(
            f"the real set has {num} images: at least {MIN_REAL_IMAGES} are needed to split it 60/20/20"
        )
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_STREAM])).permutation(num)
    n_train = round(SPLIT_FRACTIONS[0] * num)
    n_val = round(SPLIT_FRACTIONS[1] * num)
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def _float_batch(gen: Any, seeds: list[int]) -> np.ndarray:
    """Model-scale float32 `(B, C, H, W)` in [-1, 1] from a PyTorch or an ONNX generator."""
    if hasattr(gen, "generate_tensor"):
        return gen.generate_tensor(seeds, batch_size=len(seeds)).numpy()
    return np.asarray(gen.generate_float(gen.latents(seeds), batch_size=len(seeds)), dtype=np.float32)


def generated_cache(
    gen: Any,
    info: SetInfo,
    *,
    num: int,
    dtype: str,
    cache_dir: Path,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[ImageSet, bool]:
    """The generator's images for seeds 0..num-1 in `dtype`, from `cache_dir` or made now; (set, reused).

    `cache_dir/images.npy` holds `(num, H, W, C)`; `cache_dir/generated.json` (written last, so a killed
    run leaves no cache that looks finished) records the generator's fingerprint, the seeds and the dtype.
    """
    size, channels = info.sizes[0], info.channels
    record = {
        "fingerprint": info.fingerprint,
        "source": info.name,
        "seeds": f"0-{num - 1}",
        "num_images": num,
        "dtype": dtype,
        "image_size": size,
        "channels": channels,
        "value_rule": "imaging.to_uint8" if dtype == "uint8" else "imaging.model_to_unit",
    }
    npy, meta = cache_dir / "images.npy", cache_dir / "generated.json"
    if meta.is_file() and npy.is_file():
        try:
            old = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old == record:
            arr = np.load(npy, mmap_mode="r")
            if arr.shape == (num, size, size, channels):
                return ImageSet(arr, source=("npy", str(npy.resolve()))), True
    meta.unlink(missing_ok=True)
    with atomic_path(npy, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.dtype(dtype), shape=(num, size, size, channels)
        )
        for start in range(0, num, GENERATE_BATCH):
            seeds = list(range(start, min(start + GENERATE_BATCH, num)))
            x = _float_batch(gen, seeds)
            if x.shape[1:] != (channels, size, size):
                raise UserError(f"the generator drew {x.shape[1:]} images, not ({channels}, {size}, {size})")
            out[start : start + len(seeds)] = (
                to_uint8(x) if dtype == "uint8" else model_to_unit(x).transpose(0, 2, 3, 1).astype(np.float32)
            )
            if on_batch is not None:
                on_batch(len(seeds))
        out.flush()
        del out
    write_json(meta, record)
    return ImageSet(np.load(npy, mmap_mode="r"), source=("npy", str(npy.resolve()))), False
