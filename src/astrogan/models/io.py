"""Generator weights on disk: `generator.safetensors` (state dict) + `generator.json` (arch, config, meta).

Format "astrogan.generator", version 1. The JSON is written last and records the SHA-256 of the weights,
so a pair from two different saves is caught. The weights file also carries the same description in its
safetensors metadata (key "meta"), so it is a complete unit on its own: a kill between the two renames
leaves a pair whose JSON is stale, and loading then uses the copy inside the weights (with a warning).
Loading never unpickles (safetensors only) and checks the config against the weights' own shapes, on the
meta device, before it allocates anything.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from astrogan.imaging import sha256_file
from astrogan.models import ArchSpec, get_arch
from astrogan.models.layers import bake_spectral_norm
from astrogan.utils.atomic import atomic_path, write_json
from astrogan.utils.errors import UserError

FORMAT = "astrogan.generator"
FORMAT_VERSION = 1
WEIGHTS_NAME = "generator.safetensors"
META_NAME = "generator.json"
# Most parameters one network may have (4 GB in float32): a config asking for more is refused unbuilt.
MAX_PARAMETERS = 1_000_000_000


def save_generator(
    G: nn.Module, *, arch: str, config: Any, out_dir: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write `out_dir/generator.safetensors` and `out_dir/generator.json` atomically; return the weights path.

    The state dict includes buffers (BN statistics, fixed noise, spectral-norm vectors), as contiguous
    CPU tensors. `config` is the architecture's config dataclass.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in G.state_dict().items()}
    weights = out / WEIGHTS_NAME
    cfg = dataclasses.asdict(config)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "config": cfg,
        "z_dim": int(cfg["z_dim"]),
        "num_classes": int(cfg.get("num_classes", 0)),
        "image_size": int(cfg["image_size"]),
        "channels": int(cfg.get("channels", 3)),
        "value_range": [-1, 1],
        "extra": dict(extra) if extra else {},
    }
    embedded = json.dumps(meta, sort_keys=True, default=str)
    with atomic_path(weights, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "arch": arch, "meta": embedded})
    write_json(out / META_NAME, {**meta, "weights_sha256": sha256_file(weights)})
    return weights


def embedded_meta(weights_path: Path) -> dict[str, Any] | None:
    """The description a weights file carries in its safetensors metadata, or None (older files, or not ours)."""
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            text = (f.metadata() or {}).get("meta")
    except Exception:  # not a safetensors file: the caller reports it when it loads the weights
        return None
    try:
        meta = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def generator_pair_intact(folder: str | Path) -> bool:
    """True when `folder` holds generator.safetensors and a generator.json written by the same save."""
    weights, meta_path = Path(folder) / WEIGHTS_NAME, Path(folder) / META_NAME
    if not (weights.is_file() and meta_path.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("weights_sha256") == sha256_file(weights)


def weight_shapes(weights_path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header (no tensor is read); UserError if it is not one."""
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers and short files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"checkpoint {weights_path} is corrupt or truncated ({msg}): re-export it or point at another"
        ) from None


def check_buildable(
    spec: ArchSpec, cfg: Any, *, what: str, shapes: dict[str, tuple[int, ...]] | None = None
) -> None:
    """Build G (and with `shapes` None, also D) on the meta device: nothing is allocated. UserError when a
    network would exceed MAX_PARAMETERS or, given `shapes` (a weights file's), when G's tensors differ."""
    builders = [("generator", spec.build_generator)]
    if shapes is None:
        builders.append(("discriminator", spec.build_discriminator))
    for name, build in builders:
        try:
            with torch.device("meta"):
                net = build(cfg)
        except UserError:
            raise
        except Exception as exc:  # a config no network can be built from
            raise UserError(f"{what}: cannot build a {spec.name} {name} from its config ({exc})") from None
        num = sum(p.numel() for p in net.parameters())
        if num > MAX_PARAMETERS:
            raise UserError(
                f"{what}: its config asks for a {spec.name} {name} of {num:,} parameters "
                f"(at most {MAX_PARAMETERS:,}); check the config's sizes"
            )
        if shapes is not None:
            want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
            if want != shapes:
                diff = sorted(set(want) ^ set(shapes)) or [k for k in want if want[k] != shapes[k]]
                k = diff[0]
                raise UserError(
                    f"{what}: its config does not match its weights ({k}: config {want.get(k)}, weights "
                    f"{shapes.get(k)}); re-export it or point at another"
                )


def _resolve(path: Path) -> tuple[Path, Path]:
    """-> (weights path, json path) for a run dir, a checkpoints dir, or either file."""
    if path.is_dir():
        for folder in (path, path / "checkpoints"):
            if (folder / META_NAME).is_file() or (folder / WEIGHTS_NAME).is_file():
                return folder / WEIGHTS_NAME, folder / META_NAME
        raise UserError(
            f"no {META_NAME} in {path} or {path / 'checkpoints'}: train a model first or point at one"
        )
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json")
    if path.suffix == ".json":
        return path.with_suffix(".safetensors"), path
    if not path.exists():
        raise UserError(f"{path} does not exist: point at a run dir, a checkpoints dir or {WEIGHTS_NAME}")
    raise UserError(f"{path} is not a generator checkpoint: point at a run dir or {WEIGHTS_NAME}/{META_NAME}")


def read_generator_meta(path: str | Path) -> dict[str, Any]:
    """Read and check `generator.json` (run dir, checkpoints dir or either file) without loading weights."""
    _, meta_path = _resolve(Path(path))
    return _read_meta(meta_path)


def _meta_for(weights_path: Path, meta_path: Path) -> dict[str, Any]:
    """generator.json when it belongs to these weights, else the copy inside them (a save cut short)."""
    meta = None
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            meta = None  # unreadable: the copy inside the weights decides
    expected = meta.get("weights_sha256") if isinstance(meta, dict) else None
    if isinstance(meta, dict) and (expected is None or sha256_file(weights_path) == expected):
        return _read_meta(meta_path)  # this save's own JSON: its checks apply
    inner = embedded_meta(weights_path)
    if inner is None:  # weights from before the embedded copy, or truncated ones
        _read_meta(meta_path)  # a missing or corrupt JSON raises its own one-line error
        raise UserError(
            f"checkpoint {weights_path} does not match {meta_path.name} (corrupt, truncated or from another "
            "save): re-export it or point at another"
        )
    warnings.warn(
        f"{meta_path} is missing or from another save (a save was cut short): using the description stored "
        f"inside {weights_path.name}; `astrogan train --resume` rewrites it",
        stacklevel=3,
    )
    return {**inner, "weights_sha256": sha256_file(weights_path)}


def _read_meta(meta_path: Path) -> dict[str, Any]:
    if not meta_path.is_file():
        raise UserError(
            f"{meta_path} is missing: the checkpoint is incomplete; re-export it or point at another"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{meta_path} is corrupt or truncated ({exc}): re-export it or point at another"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{meta_path} is not an astrogan generator (format is not {FORMAT!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(
            f"{meta_path} has format_version {version!r}; this astrogan reads up to {FORMAT_VERSION}: "
            "upgrade astrogan"
        )
    return meta


def load_generator_module(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a generator from its JSON and load its safetensors weights.

    `path`: a run dir (uses RUN/checkpoints/), a checkpoints dir, or generator.safetensors/.json.
    Returns (G in eval() mode with requires_grad False on `device`, the JSON meta dict). Spectral norm
    is folded into plain weights (bake_spectral_norm), so the module is for inference and ONNX export.
    """
    weights_path, meta_path = _resolve(Path(path))
    if not weights_path.is_file():
        _read_meta(meta_path)  # a broken JSON is the clearer message when both are wrong
        raise UserError(
            f"{weights_path} is missing: the checkpoint is incomplete; re-export it or point at another"
        )
    meta = _meta_for(weights_path, meta_path)
    spec = get_arch(str(meta.get("arch")))
    cfg = spec.config_cls.from_dict(meta.get("config") or {})
    cfg.validate()
    check_buildable(spec, cfg, what=str(weights_path), shapes=weight_shapes(weights_path))
    try:
        state = load_file(str(weights_path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for bad headers and short files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"checkpoint {weights_path} is corrupt or truncated ({msg}): re-export it or point at another"
        ) from None
    with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG untouched
        G = spec.build_generator(cfg)
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"checkpoint {weights_path} does not fit its {spec.name} config ({first})") from None
    G.eval().requires_grad_(False)
    # Inference snapshot: fold spectral norm into plain weights (same outputs, exportable to ONNX).
    bake_spectral_norm(G)
    return G.to(device), meta
