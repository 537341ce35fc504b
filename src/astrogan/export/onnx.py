"""ONNX export of a generator (legacy TorchScript-based exporter, dynamic batch), ONNX Runtime runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrogan.export.known_warnings import known_export_warnings_filtered
from astrogan.export.parity import Runner
from astrogan.export.prepare import ExportWrapper, dummy_inputs
from astrogan.imaging import (
    CLASS_INPUT,
    COND_INPUT,
    IMAGE_OUTPUT,
    LATENT_INPUT,
    META_KEY,
    TRUNC_INPUT,
    trunc_rows,
)
from astrogan.utils.errors import UserError

# The graph's input/output names and metadata key come from the imaging floor, the one contract that the
# torch-free loader (web.onnx_generator) reads too; export.bundle takes them from here.
DEFAULT_OPSET = 17


def export_onnx(
    wrapper: ExportWrapper,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `wrapper` as ONNX: inputs `z` (batch, z_dim) [+ `c` (batch,) int64 | `cond` (batch, K) float32]
    + `trunc` (batch,) float32, output `images` (batch, C, H, W)."""
    import onnx

    path = Path(path)
    args = dummy_inputs(wrapper, batch=2)
    names = [LATENT_INPUT, *input_names_for_c(wrapper), TRUNC_INPUT]
    axes = {n: {0: "batch"} for n in [*names, IMAGE_OUTPUT]}
    # Only the known noise is filtered (tracer warnings: parity decides; the legacy exporter's deprecation).
    with known_export_warnings_filtered(), torch.no_grad():
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=names,
            output_names=[IMAGE_OUTPUT],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
            export_params=True,
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    got = [i.name for i in model.graph.input]
    if got != names:  # e.g. a generator that ignores `trunc`: the exporter drops the unused input
        raise UserError(
            f"the exported graph takes inputs {got}, not {names}: the generator must apply `trunc` itself"
        )
    if metadata:
        entry = model.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(metadata, sort_keys=True)
        onnx.save(model, str(path))
    return path


def input_names_for_c(wrapper: ExportWrapper) -> list[str]:
    """The graph's name for the generator's `c`: [`cond`], [`c`] or [] (unconditional)."""
    if wrapper.cond_spec is not None:
        return [COND_INPUT]
    return [CLASS_INPUT] if wrapper.conditional else []


def onnx_runner(path: str | Path, *, num_threads: int = 0) -> Runner:
    """An ONNX Runtime session wrapped as `run(z, c, trunc) -> float32 (N, C, H, W)` for the parity check;
    `c` feeds the `c` (labels) or `cond` (conditions) input, whichever the graph has.

    An older export without a `trunc` input (only z-GANs were exported then) is truncated by scaling z.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if num_threads:
        opts.intra_op_num_threads = num_threads
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in sess.get_inputs()}
    conditional = CLASS_INPUT in inputs
    has_cond = COND_INPUT in inputs
    has_trunc = TRUNC_INPUT in inputs

    def run(z: np.ndarray, c: np.ndarray | None, trunc: np.ndarray | float = 1.0) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=np.float32)
        t = trunc_rows(trunc, len(z))
        if has_trunc:
            feeds = {LATENT_INPUT: z, TRUNC_INPUT: t}
        else:
            feeds = {LATENT_INPUT: np.ascontiguousarray(z * t[:, None])}
        if conditional:
            feeds[CLASS_INPUT] = np.ascontiguousarray(c, dtype=np.int64)
        if has_cond:  # physical conditions (N, K)
            feeds[COND_INPUT] = np.ascontiguousarray(c, dtype=np.float32)
        return sess.run([IMAGE_OUTPUT], feeds)[0]

    return run
