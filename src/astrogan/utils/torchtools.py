"""Torch helpers kept apart from the torch-free utils: device choice, global seeding, RNG state capture."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrogan.utils.errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    """`auto` -> cuda when available else cpu; otherwise the named device, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:  # torch's own message lists twenty backends, most of them not usable here
        dev = torch.device("meta")
    if dev.type not in ("cpu", "cuda") and not (dev.type == "mps" and torch.backends.mps.is_available()):
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but no CUDA device is available; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(
            f"device {name!r} asked for, but there are {torch.cuda.device_count()} CUDA device(s)"
        )
    return dev


def usable_cpus() -> set[int]:
    """The CPU numbers this process may run on (its affinity; all CPUs where affinity is unknown)."""
    return (
        set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    )


def physical_cores(sys_cpu: Path = Path("/sys/devices/system/cpu")) -> int:
    """Physical cores this process may run on: the CPUs of its affinity, with hyper-threads of one core counted
    once (Linux topology files); the CPU count where those are not readable."""
    cores = set()
    for cpu in sorted(usable_cpus()):
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            cores.add(
                ((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip())
            )
        except OSError:
            cores.add(("cpu", str(cpu)))  # unknown topology: count the CPU as a core
    return max(1, len(cores))


def _cpu_times(proc_stat: Path, cpus: set[int]) -> tuple[int, int]:
    """(busy, total) jiffies summed over `cpus` from /proc/stat's per-CPU lines; busy excludes idle and iowait."""
    busy = total = 0
    for line in proc_stat.read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def busy_fraction(interval: float = 0.5, proc_stat: Path = Path("/proc/stat")) -> float:
    """Share (0..1) of this process's CPUs that other work keeps busy, measured over `interval` seconds while
    this process sleeps; 0 where /proc/stat cannot be read."""
    import time

    cpus = usable_cpus()
    try:
        b0, t0 = _cpu_times(proc_stat, cpus)
        time.sleep(interval)
        b1, t1 = _cpu_times(proc_stat, cpus)
    except (OSError, ValueError):
        return 0.0
    return min(1.0, max(0.0, (b1 - b0) / (t1 - t0))) if t1 > t0 else 0.0


def free_threads(cores: int, busy: float) -> int:
    """Torch threads for `cores` physical cores of which a `busy` share (0..1) runs other work: one per free
    core, at least one. On a shared CPU, an OpenMP thread per core spins waiting for the one that lost its core
    to the other work: 2 threads beside one busy process trained the demo's DCGAN at 28 images/s, 1 at 190."""
    return max(1, min(cores, round(cores * (1.0 - busy))))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """Capture every global RNG state as tensors/plain values (loadable with weights_only=True)."""
    np_state: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]  # a tuple when legacy
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]) + [random.getstate()[2]],
        "python_version": random.getstate()[0],
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what get_rng_state captured."""
    py = state["python"]
    random.setstate((state["python_version"], tuple(int(v) for v in py[:-1]), py[-1]))
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", keys, state["numpy_pos"], int(has_gauss), float(gauss)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
