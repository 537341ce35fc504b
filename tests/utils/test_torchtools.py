"""physical_cores counts hyper-threads of one core once (unknown topology: each CPU); pick_device names the choices."""

from __future__ import annotations

import os
import re

import pytest
import torch

from astrogan.utils.torchtools import busy_fraction, free_threads, physical_cores


def _topology(root, cpu: int, package: int, core: int) -> None:
    d = root / f"cpu{cpu}" / "topology"
    d.mkdir(parents=True)
    (d / "physical_package_id").write_text(f"{package}\n")
    (d / "core_id").write_text(f"{core}\n")


@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)


def test_two_hyperthreads_of_one_core_are_one_core(tmp_path, two_cpus) -> None:
    _topology(tmp_path, 0, 0, 0)
    _topology(tmp_path, 1, 0, 0)
    assert physical_cores(tmp_path) == 1


def test_two_cores_or_two_packages_are_two(tmp_path, two_cpus) -> None:
    _topology(tmp_path, 0, 0, 0)
    _topology(tmp_path, 1, 0, 1)
    assert physical_cores(tmp_path) == 2
    other = tmp_path / "other"
    _topology(other, 0, 0, 0)
    _topology(other, 1, 1, 0)  # same core id on another socket
    assert physical_cores(other) == 2


def test_unreadable_topology_counts_each_cpu_the_process_may_use(tmp_path, two_cpus) -> None:
    assert physical_cores(tmp_path / "missing") == 2


def _stat(path, rows) -> None:
    """A /proc/stat with the aggregate line and one line per CPU: (user, idle, iowait) jiffies."""
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]
    lines += [f"cpu{i} {u} 0 0 {idle} {io} 0 0 0 0 0" for i, (u, idle, io) in enumerate(rows)]
    path.write_text("\n".join([*lines, "intr 12 0", "ctxt 99"]) + "\n")


def test_busy_fraction_counts_the_process_cpus_only(tmp_path, monkeypatch, two_cpus) -> None:
    import time

    stat = tmp_path / "stat"
    _stat(stat, [(100, 100, 0), (100, 100, 0), (0, 0, 0)])
    # over the interval: cpu0 fully busy, cpu1 idle (iowait counts as idle), cpu2 (not ours) busy
    monkeypatch.setattr(time, "sleep", lambda s: _stat(stat, [(200, 100, 0), (100, 150, 50), (500, 0, 0)]))
    assert busy_fraction(0.01, stat) == pytest.approx(0.5)


def test_busy_fraction_is_zero_where_unreadable(tmp_path, two_cpus) -> None:
    assert busy_fraction(0.0, tmp_path / "missing") == 0.0


def test_free_threads_leave_busy_cores_alone() -> None:
    assert free_threads(2, 0.0) == 2 and free_threads(2, 0.2) == 2
    assert free_threads(2, 0.5) == 1 and free_threads(2, 1.0) == 1  # never fewer than one
    assert free_threads(8, 0.25) == 6


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "meta", ""])
def test_an_unknown_device_is_one_line_naming_the_choices(name) -> None:
    from astrogan.utils.errors import UserError
    from astrogan.utils.torchtools import pick_device

    with pytest.raises(UserError, match=re.escape(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")):
        pick_device(name)
    assert pick_device("cpu") == torch.device("cpu")
