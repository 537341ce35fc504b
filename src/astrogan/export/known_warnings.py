"""The warnings an export is known to raise and that tell the user nothing: filtered one by one, by message.

Everything else (a new deprecation in torch, a UserWarning from the model) still reaches the user.

- ``torch.jit.TracerWarning``: tracing (the ONNX exporter, and the TorchScript fallback) warns about every
  Python-side check in the model (label range, shapes). Whatever it baked in, the parity check at batch
  sizes 1 and 16 finds; the warning itself cannot be acted on.
- The deprecations of the formats we write on purpose: the legacy TorchScript-based ONNX exporter
  (``dynamo=False``: it handles the architectures the dynamo exporter does not) and ``torch.jit.*``
  (TorchScript is the format of ``model.pt``), including the one the legacy exporter raises about its own
  internals.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# Arguments of warnings.filterwarnings: message regex (matched at the start), category, module regex.
KNOWN_EXPORT_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    ("", torch.jit.TracerWarning, ""),
    (r"You are using the legacy TorchScript-based ONNX export", DeprecationWarning, ""),
    (
        r"The feature will be removed\. Please remove usage of this function",
        DeprecationWarning,
        r"torch\.onnx\.",
    ),
    (r"`torch\.jit\.(script|trace|trace_method|freeze|save|load)` is deprecated", DeprecationWarning, ""),
)


@contextmanager
def known_export_warnings_filtered() -> Iterator[None]:
    """Inside: the warnings of `KNOWN_EXPORT_WARNINGS` are ignored, every other warning goes through."""
    with warnings.catch_warnings():
        for message, category, module in KNOWN_EXPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
        yield
