"""astrogan: turn pictures of the sky into generative models of the sky, and back."""

from __future__ import annotations

from typing import Any

from astrogan._version import __version__

__all__ = ["__version__", "load_generator"]


def load_generator(path: Any, *, device: str = "auto") -> Any:
    """A generator from a run dir, checkpoint or exported `model.onnx`: `.generate(seeds)` -> uint8 (N, H, W, C).

    Runs and checkpoints load in PyTorch (CPU or GPU); an `.onnx` file loads in ONNX Runtime (no torch needed).
    Imports are lazy so that `import astrogan` stays light.
    """
    from pathlib import Path

    if Path(path).suffix == ".onnx":
        from astrogan.web.onnx_generator import OnnxGenerator

        return OnnxGenerator(path)
    from astrogan.sampling.generator import load_generator as _load

    return _load(path, device=device)
