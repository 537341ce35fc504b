"""ONNX export of a generator (legacy TorchScript-based exporter, dynamic batch), ONNX Runtime runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrogan.export.known_warnings import known_export_warnings_filtered
from astrogan.export.prepare import ExportWrapper, dummy_inputs

LATENT_INPUT = "z"
CLASS_INPUT = "c"
IMAGE_OUTPUT = "images"
META_KEY = "astrogan"  # the torch-free loader (web.onnx_generator) reads this metadata entry
DEFAULT_OPSET = 17


def export_onnx(
    wrapper: ExportWrapper,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `wrapper` as ONNX: inputs `z` (batch, z_dim) [+ `c` (batch,) int64], output `images`."""
    import onnx

    path = Path(path)
    args = dummy_inputs(wrapper, batch=2)
    names = [LATENT_INPUT] + ([CLASS_INPUT] if wrapper.conditional else [])
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
    if metadata:
        entry = model.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(metadata, sort_keys=True)
        onnx.save(model, str(path))
    return path


def onnx_runner(path: str | Path, *, num_threads: int = 0):
    """An ONNX Runtime session wrapped as `run(z, c) -> float32 (N, C, H, W)` for the parity check."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if num_threads:
        opts.intra_op_num_threads = num_threads
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    conditional = any(i.name == CLASS_INPUT for i in sess.get_inputs())

    def run(z: np.ndarray, c: np.ndarray | None) -> np.ndarray:
        feeds = {LATENT_INPUT: np.ascontiguousarray(z, dtype=np.float32)}
        if conditional:
            feeds[CLASS_INPUT] = np.ascontiguousarray(c, dtype=np.int64)
        return sess.run([IMAGE_OUTPUT], feeds)[0]

    return run
