"""astrogan: turn pictures of the sky into generative models of the sky, and back."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_generator"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import astrogan` stays light (no torch until a generator is needed).
    if name == "load_generator":
        from astrogan.sampling.generator import load_generator

        return load_generator
    raise AttributeError(f"module 'astrogan' has no attribute {name!r}")
