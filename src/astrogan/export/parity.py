"""Parity check: the exported model and PyTorch must draw the same images (guards against tracing bugs).

Truncation is part of the check: each seed gets its own factor (cycling PARITY_TRUNCS), fed to the export
as its `trunc` input and to PyTorch as `G(z, c, trunc=...)`, so an export that ignores or bakes in the
truncation fails. A model on physical conditions gets random conditions drawn uniformly inside its
trained range (one row per seed, from a fixed NumPy stream), so an export that drops or mis-normalises
`cond` fails too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from astrogan.conditions import CondSpec
from astrogan.imaging import trunc_rows
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import latents_for_seeds

PARITY_TOLERANCE = 1e-4
PARITY_NUM_SEEDS = 64
PARITY_BATCH_SIZES = (1, 16)
PARITY_TRUNCS = (1.0, 0.7, 0.5)  # seed s is drawn at PARITY_TRUNCS[s % 3]

PARITY_COND_SEED = 0  # the NumPy stream the parity conditions are drawn from
# (z float32 (N, z_dim), c int64 (N,) | float32 conditions (N, K) | None, trunc float32 (N,) or a number)
# -> float32 (N, C, H, W)
Runner = Callable[[np.ndarray, "np.ndarray | None", "np.ndarray | float"], np.ndarray]


class ParityError(UserError):
    """The exported model draws different images than PyTorch."""


def parity_inputs(
    G: nn.Module, *, num_seeds: int = PARITY_NUM_SEEDS
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Latents for seeds 0..num_seeds-1; `c`: labels `seed % num_classes` int64 (N,), conditions float32
    (N, K) drawn uniformly in the trained range, or None (unconditional); one truncation per seed, float32
    (N,), cycling PARITY_TRUNCS."""
    seeds = list(range(num_seeds))
    spec: Any = G  # z_dim is a plain int attribute (nn.Module's __getattr__ types it loosely)
    z = latents_for_seeds(seeds, int(spec.z_dim))
    num_classes = int(getattr(G, "num_classes", 0) or 0)
    cond_spec = getattr(G, "cond_spec", None)
    c: np.ndarray | None = None
    if isinstance(cond_spec, CondSpec):
        c = parity_conditions(cond_spec, num_seeds)
    elif num_classes > 0:
        c = np.asarray([s % num_classes for s in seeds], dtype=np.int64)
    trunc = np.asarray([PARITY_TRUNCS[s % len(PARITY_TRUNCS)] for s in seeds], dtype=np.float32)
    return z, c, trunc


def parity_conditions(spec: CondSpec, n: int) -> np.ndarray:
    """float32 (n, K): conditions uniform in [low, high] per column, from the fixed PARITY_COND_SEED stream."""
    rng = np.random.default_rng(PARITY_COND_SEED)
    return rng.uniform(spec.low, spec.high, size=(n, spec.dim)).astype(np.float32)


@torch.no_grad()
def torch_reference(
    G: nn.Module,
    z: np.ndarray,
    c: np.ndarray | None,
    trunc: np.ndarray | float = 1.0,
    *,
    batch_size: int = 16,
) -> np.ndarray:
    """PyTorch's images for the parity inputs: float32 (N, C, H, W), clamped to [-1, 1] like the sampler.

    `trunc` (a number or float32 (N,)) goes into the network, `G(z, c, trunc=...)`, as the sampler passes it.
    """
    t = trunc_rows(trunc, len(z))
    outs = []
    for i in range(0, len(z), batch_size):
        zz = torch.from_numpy(z[i : i + batch_size])
        cc = None if c is None else torch.from_numpy(c[i : i + batch_size])
        tt = torch.from_numpy(t[i : i + batch_size])
        outs.append(G(zz, cc, trunc=tt).float().clamp(-1, 1).cpu().numpy())
    return np.concatenate(outs)


def check_parity(
    G: nn.Module,
    run: Runner,
    *,
    num_seeds: int = PARITY_NUM_SEEDS,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    tolerance: float = PARITY_TOLERANCE,
    what: str = "exported model",
) -> dict[str, Any]:
    """Compare `run` with PyTorch for `num_seeds` seeds (each at its own truncation) at each batch size;
    raise ParityError over tolerance.

    Returns the figure for model.json: max_abs_diff overall and per batch size, tolerance, seeds, sizes and
    the truncation factors used.
    """
    z, c, trunc = parity_inputs(G, num_seeds=num_seeds)
    ref = torch_reference(G, z, c, trunc)
    per_bs: dict[str, float] = {}
    for bs in batch_sizes:
        got = []
        for i in range(0, len(z), bs):
            cc = None if c is None else c[i : i + bs]
            got.append(np.asarray(run(z[i : i + bs], cc, trunc[i : i + bs]), dtype=np.float32))
        out = np.concatenate(got)
        if out.shape != ref.shape:
            raise ParityError(
                f"{what} returns shape {out.shape[1:]} at batch size {bs}; PyTorch gives {ref.shape[1:]}"
            )
        diff = float(np.max(np.abs(out - ref))) if np.isfinite(out).all() else float("inf")
        per_bs[str(bs)] = diff
    worst = max(per_bs.values())
    figure = {
        "max_abs_diff": worst,
        "per_batch_size": per_bs,
        "tolerance": tolerance,
        "num_seeds": num_seeds,
        "batch_sizes": list(batch_sizes),
        "truncs": list(PARITY_TRUNCS[:num_seeds]),  # seed s is drawn at truncs[s % len(truncs)]
        "dtype": "float32",
    }
    if c is not None and c.dtype == np.float32:
        figure["conds"] = f"uniform in the trained range, NumPy PCG64 seed {PARITY_COND_SEED}"
    if not worst <= tolerance:
        raise ParityError(
            f"{what} differs from PyTorch by up to {worst:.3g} (tolerance {tolerance:g}, "
            f"{num_seeds} seeds, batch sizes {list(batch_sizes)}, truncation {figure['truncs']}): "
            "nothing was written"
        )
    return figure
