"""Child processes for the tests that need real ones: the environment, the CLI command, a free loopback port.

Every test that starts one of these is marked ``slow`` (see conftest.py), so ``pytest -m "not slow"`` stays
in one process.
"""

from __future__ import annotations

import os
import socket
import sys


def child_env(*, one_thread: bool = True) -> dict[str, str]:
    """This process's environment for a child: quiet, and one OpenMP thread unless `one_thread` is False."""
    env = {**os.environ, "ASTROGAN_QUIET": "1"}
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"
    return env


def astrogan_cmd(*args: object) -> list[str]:
    """`python -m astrogan.cli.main ARGS...` with this interpreter (the console script, without its shim)."""
    return [sys.executable, "-m", "astrogan.cli.main", *(str(a) for a in args)]


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (the kernel's pick; bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Prepend to a child's `python -c` script: a meta-path finder that refuses torch, as where only the serving side
# (ONNX Runtime) is installed.
BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch' (blocked by the test)")
        return None
sys.meta_path.insert(0, _NoTorch())
"""
