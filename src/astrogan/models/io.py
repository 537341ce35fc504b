"""Generator weights on disk: `generator.safetensors` (state dict) + `generator.json` (arch, config, meta).

Format "astrogan.generator", version 1. The JSON is written last and records the SHA-256 of the weights,
so a pair from two different saves is caught. Loading never unpickles: safetensors only.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from astrogan.imaging import sha256_file
from astrogan.models import get_arch
from astrogan.models.layers import bake_spectral_norm
from astrogan.utils.atomic import atomic_path, write_json
from astrogan.utils.errors import UserError

FORMAT = "astrogan.generator"
FORMAT_VERSION = 1
WEIGHTS_NAME = "generator.safetensors"
META_NAME = "generator.json"


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
    with atomic_path(weights, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "arch": arch})
    cfg = dataclasses.asdict(config)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "config": cfg,
        "z_dim": int(cfg["z_dim"]),
        "num_classes": int(cfg.get("num_classes", 0)),
        "image_size": int(cfg["image_size"]),
        "channels": int(cfg.get("channels", 3)),
        "value_range": [-1, 1],
        "weights_sha256": sha256_file(weights),
        "extra": dict(extra) if extra else {},
    }
    write_json(out / META_NAME, meta)
    return weights


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
    meta = _read_meta(meta_path)
    if not weights_path.is_file():
        raise UserError(
            f"{weights_path} is missing: the checkpoint is incomplete; re-export it or point at another"
        )
    spec = get_arch(str(meta.get("arch")))
    cfg = spec.config_cls.from_dict(meta.get("config") or {})
    expected = meta.get("weights_sha256")
    if expected is not None and sha256_file(weights_path) != expected:
        raise UserError(
            f"checkpoint {weights_path} does not match {meta_path.name} (corrupt, truncated or from another "
            "save): re-export it or point at another"
        )
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
