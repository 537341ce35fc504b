"""TorchScript export of a generator (torch.jit.script, falling back to tracing) and a runner for parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from astrogan.export.known_warnings import known_export_warnings_filtered
from astrogan.export.parity import Runner
from astrogan.export.prepare import ExportWrapper, dummy_inputs
from astrogan.imaging import COND_INPUT, TRUNC_INPUT, trunc_rows


def export_torchscript(wrapper: ExportWrapper, path: str | Path) -> str:
    """Write `wrapper` as a TorchScript archive; returns the method used: "script" or "trace".

    The module is called as `module(z, trunc)`, `module(z, c, trunc)` or `module(z, cond, trunc)`, `trunc`
    float32 (N,), `cond` float32 (N, K). Scripting
    keeps control flow; when the model's Python is not scriptable we trace, and the parity check (batch
    sizes 1 and 16, truncation per seed) catches anything tracing baked in.
    """
    path = Path(path)
    with known_export_warnings_filtered(), torch.no_grad():  # tracer warnings, torch.jit deprecations only
        try:
            module = torch.jit.script(wrapper)
            method = "script"
        except Exception:  # TorchScript rejects many Python constructs; tracing is the documented fallback
            module = torch.jit.trace(wrapper, dummy_inputs(wrapper, batch=2), check_trace=False)
            method = "trace"
        module = torch.jit.freeze(module.eval()) if method == "script" else module
        torch.jit.save(module, str(path))
    return method


def torchscript_runner(path: str | Path) -> Runner:
    """A loaded TorchScript module wrapped as `run(z, c, trunc) -> float32 (N, C, H, W)`; `c` is int64 labels
    (N,) or, for a module whose forward takes `cond`, float32 conditions (N, K).

    An older archive whose forward takes no `trunc` (only z-GANs were exported then) is truncated by
    scaling z.
    """
    with known_export_warnings_filtered():  # torch.jit is deprecated but still the format
        module = torch.jit.load(str(path), map_location="cpu").eval()
    arg_names = [a.name for a in module.forward.schema.arguments][1:]  # without self
    has_trunc = TRUNC_INPUT in arg_names  # the same argument name as the ONNX graph's input
    c_dtype = np.float32 if COND_INPUT in arg_names else np.int64

    @torch.no_grad()
    def run(z: np.ndarray, c: np.ndarray | None, trunc: np.ndarray | float = 1.0) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=np.float32)
        t = trunc_rows(trunc, len(z))
        if not has_trunc:
            z = np.ascontiguousarray(z * t[:, None])
        args: tuple[torch.Tensor, ...] = (torch.from_numpy(z),)
        if c is not None:
            args = (*args, torch.from_numpy(np.ascontiguousarray(c, dtype=c_dtype)))
        if has_trunc:
            args = (*args, torch.from_numpy(t))
        return module(*args).float().numpy()

    return run
