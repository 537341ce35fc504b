"""lightweight-gan beside astrogan, never inside it: a scratch virtual environment and a JSON-lines worker.

lightweight-gan (lucidrains, https://github.com/lucidrains/lightweight-gan) is the baseline of the generation
and training benches. It is never a dependency of astrogan: `ensure_venv()` installs it from the package
registry into a virtual environment of its own (default ~/.cache/astrogan-bench/lwgan-venv, reused when
present), and the benches talk to it through `Worker`, a subprocess running `lwgan_worker.py` there that
reads one JSON request per line on stdin and answers one JSON line on stdout.

The scratch environment sees the *same* torch as the bench (a `.pth` file puts the directory holding the
bench's torch on its path): both sides of every comparison run the same build, threads and kernels. Only what
lightweight_gan.py imports is installed into it: lightweight-gan itself (--no-deps), einops, kornia,
adabelief-pytorch and tqdm (fire and retry, also in its requirements, serve its command line alone).
torchvision is not: lightweight-gan uses it for its image-folder dataset and for saving grids, neither of
which the benches call, and a registry torchvision beside a CPU build of torch does not import ("operator
torchvision::nms does not exist"); the worker stands in a stub when the real one does not import.

Offline machines (a GPU box with no registry): `ASTROGAN_LWGAN_WHEELS=DIR` (or `wheels=`) installs from a
folder of wheels made elsewhere for that machine's Python and platform (`pip download --no-deps
--only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64 -d DIR lightweight-gan==1.2.1 einops
kornia kornia-rs packaging adabelief-pytorch colorama tabulate tqdm`: the closure seen with torch, numpy and
pillow already there). `ASTROGAN_LWGAN_VENV=DIR` puts the environment elsewhere.

Also here, because both benches need them: `matmul_peak` (the physical limit beside a speed figure)
and `machine()` (what the JSON line records about the machine, /proc/loadavg included).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import venv
from pathlib import Path
from typing import Any

LWGAN_VERSION = "1.2.1"  # the release whose source the worker follows (line numbers cited there)
# What lightweight_gan/lightweight_gan.py imports, beyond torch, numpy and pillow (shared) and torchvision (stubbed).
LWGAN_DEPS = ("einops>=0.8.0", "kornia>=0.5.4", "adabelief-pytorch", "tqdm")
DEFAULT_VENV = Path.home() / ".cache" / "astrogan-bench" / "lwgan-venv"
WORKER = Path(__file__).with_name("lwgan_worker.py")


class LwganUnavailable(RuntimeError):
    """The scratch environment could not be made or the worker failed; the message says why."""


def _venv_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _torch_site() -> Path:
    """The directory that holds the bench's torch (its site-packages)."""
    import torch

    return Path(torch.__file__).resolve().parent.parent


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _pip(pip: list[str], args: list[str], wheels: str | None, log: Path) -> None:
    cmd = [*pip, "install", "--disable-pip-version-check", "-q"]
    if wheels:
        cmd += ["--no-index", "--find-links", wheels]
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd + args)}\n")
        fh.flush()
        proc = subprocess.run(cmd + args, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise LwganUnavailable(f"pip install {' '.join(args)} failed (log {log}): " + " | ".join(tail))


def ensure_venv(root: str | Path | None = None, *, wheels: str | None = None) -> Path:
    """The scratch environment's python, made (or repaired) if needed; raises LwganUnavailable."""
    root = Path(root or os.environ.get("ASTROGAN_LWGAN_VENV") or DEFAULT_VENV).expanduser()
    wheels = wheels or os.environ.get("ASTROGAN_LWGAN_WHEELS")
    python = _venv_python(root)
    marker = root / "astrogan-bench.json"
    try:
        if not python.exists():
            root.parent.mkdir(parents=True, exist_ok=True)
            # From the base interpreter: a venv of a venv is a venv of the base (its site-packages unseen).
            try:
                venv.EnvBuilder(with_pip=True, clear=True).create(root)
            except subprocess.CalledProcessError:  # a base Python without ensurepip (Debian's, say)
                venv.EnvBuilder(with_pip=False, clear=True).create(root)
        # Its own pip where it has one, else this interpreter's pip aimed at it (pip >= 22.3: --python).
        has_pip = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True).returncode == 0
        pip = (
            [str(python), "-m", "pip"] if has_pip else [sys.executable, "-m", "pip", "--python", str(python)]
        )
        site = _site_packages(python)
        # Same torch as the bench, every run (the bench's environment may have moved since last time).
        (site / "_astrogan_bench_torch.pth").write_text(f"{_torch_site()}\n")
        want = {"lightweight_gan": LWGAN_VERSION, "deps": list(LWGAN_DEPS)}
        have = json.loads(marker.read_text()) if marker.exists() else None
        if have != want:
            log = root / "install.log"
            _pip(pip, ["--no-deps", f"lightweight-gan=={LWGAN_VERSION}"], wheels, log)
            _pip(pip, list(LWGAN_DEPS), wheels, log)
            marker.write_text(json.dumps(want))
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LwganUnavailable(f"could not make the lightweight-gan environment at {root}: {exc}") from exc
    return python


class Worker:
    """lwgan_worker.py in the scratch environment; `call(cmd, **args)` -> its JSON answer (a dict).

    Use as a context manager. Threads are fixed at start (torch.set_num_threads and the OpenMP/MKL variables),
    the same number the bench gives its own side.
    """

    def __init__(self, python: Path, *, threads: int, device: str = "cpu", timeout: float = 3600.0) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        env.pop("PYTHONPATH", None)  # the worker must not see astrogan's source tree by accident
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [str(python), "-u", str(WORKER), "--threads", str(threads), "--device", device],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.hello = self.call("hello")

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker died; its stderr says why (below)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            err = self.proc.stderr.read() if self.proc.stderr else ""
            tail = " | ".join(err.strip().splitlines()[-6:])
            raise LwganUnavailable(
                f"lightweight-gan worker exited ({self.proc.returncode}) on {cmd!r}: {tail}"
            )
        reply = json.loads(line)
        if "error" in reply:
            raise LwganUnavailable(f"lightweight-gan worker failed on {cmd!r}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("exit")
            except (LwganUnavailable, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_worker(*, threads: int, device: str = "cpu", venv_dir: str | None = None) -> Worker:
    """ensure_venv() then a Worker; raises LwganUnavailable with the reason."""
    return Worker(ensure_venv(venv_dir), threads=threads, device=device)


def matmul_peak(threads: int | None = None, *, device: str = "cpu", quick: bool = False) -> dict[str, float]:
    """Measured fp32 matrix-product rate in GFLOP/s on these threads: the ceiling for a conv-heavy model.

    Two kernels, since neither is always the faster: torch's sgemm (MKL on x86, which on AMD processors may run
    its AVX2 path) at n = 2048 and 4096, and a 1x1 convolution (oneDNN, the library the convs themselves
    use) over 2048 channels, which is the same matrix product. Each is the best of three windows; `gflops`
    is the highest of all, the figure that fractions of peak are taken against.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def rate(fn: Any, flops: float, seconds: float) -> float:
        for _ in range(2):
            fn()
        sync()
        best = 0.0
        for _ in range(3):
            reps, t0 = 0, time.perf_counter()
            while True:
                fn()
                reps += 1
                sync()
                elapsed = time.perf_counter() - t0
                if elapsed >= seconds / 3:
                    break
            best = max(best, flops * reps / elapsed / 1e9)
        return best

    out: dict[str, float] = {}
    seconds = 0.6 if quick else 1.5
    with torch.no_grad():
        for n in (2048,) if quick else (2048, 4096):
            a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
            out[f"sgemm_{n}"] = rate(lambda a=a, b=b: a @ b, 2 * n**3, seconds)
        c, hw = 2048, 32
        x, w = torch.randn(1, c, hw, hw, device=dev), torch.randn(c, c, 1, 1, device=dev)
        out["conv1x1_gemm_2048"] = rate(
            lambda: torch.nn.functional.conv2d(x, w), 2 * c * c * hw * hw, seconds
        )
    out = {k: round(v, 1) for k, v in out.items()}
    out["gflops"] = max(out.values())
    return out


def best_peak(*peaks: dict[str, float]) -> dict[str, float]:
    """Kernel by kernel, the best of several measurements (before and after a bench, on a shared machine)."""
    out: dict[str, float] = {}
    for p in peaks:
        for k, v in p.items():
            out[k] = max(out.get(k, 0.0), v)
    return out


class FlopCount:
    """FLOPs (2 x multiply-adds) of every conv, transposed conv and matrix product run inside `with`, forward
    and backward, double backward included: torch's own formulas (torch.utils.flop_counter.flop_registry,
    what FlopCounterMode counts with), without FlopCounterMode's module tracker, whose hooks break
    `torch.autograd.grad` on leaf inputs (gradient penalties). Norms and activations are left out."""

    def __init__(self) -> None:
        self.total = 0
        self._mode: Any = None

    def __enter__(self) -> FlopCount:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN202
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                formula = flop_registry.get(func._overloadpacket)
                if formula is not None:
                    counter.total += int(formula(*args, **kwargs, out_val=out))
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)


def top_ops(prof: Any, top: int = 12) -> list[dict[str, Any]]:
    """The `top` ops of a torch.profiler run by self CPU time, with their share of the total."""
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {
            "op": e.key,
            "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2),
            "share": round(e.self_cpu_time_total / total, 3),
            "calls": e.count,
        }
        for e in events[:top]
    ]


def loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def machine(threads: int, **extra: Any) -> dict[str, Any]:
    """The machine a figure was taken on; /proc/loadavg says how busy it was."""
    import torch

    return {
        "cpu": _cpu_model() or platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "loadavg": loadavg(),
        **extra,
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def has_cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on CPU (CXX, else c++/g++/clang++ on PATH), or None."""
    import shutil

    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


if __name__ == "__main__":  # `python bench/lwgan_env.py`: make the environment and print the worker's hello
    with start_worker(threads=int(sys.argv[1]) if len(sys.argv) > 1 else 1) as w:
        print(json.dumps(w.hello))
