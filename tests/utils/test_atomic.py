"""utils/atomic.py: modes under the umask, atomic_dir's conflicts, failures, stale partials, .old and the swap."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from astrogan.utils import atomic
from astrogan.utils.atomic import (
    atomic_dir,
    atomic_open,
    atomic_path,
    clean_stale,
    current_umask,
    write_json,
)
from tests.helpers.processes import child_env

UMASKS = [0o022, 0o077, 0o027]


@pytest.fixture
def umask(request):
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ----------------------------------------------------------------------------------------------------
# Permissions


@pytest.mark.parametrize("umask", UMASKS, indirect=True)
def test_current_umask_reads_without_changing_it(umask, monkeypatch):
    assert current_umask() == umask
    monkeypatch.setattr(atomic, "_umask_from_proc", lambda: None)  # no /proc: the set-and-restore way
    assert current_umask() == umask
    assert os.umask(umask) == umask  # still what the test set


@pytest.mark.parametrize("umask", UMASKS, indirect=True)
def test_files_get_the_umask_mode_not_mkstemps_0600(umask, tmp_path):
    want = 0o666 & ~umask
    with atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic_open(tmp_path / "b.txt") as fh:
        fh.write("y")
    write_json(tmp_path / "sub" / "c.json", {"k": 1})
    for name in ("a.bin", "b.txt", "sub/c.json"):
        assert mode(tmp_path / name) == want, (name, oct(mode(tmp_path / name)))
    assert mode(tmp_path / "sub") == 0o777 & ~umask
    # A writer that replaces the temp file it was given still ends with the umask's mode.
    with atomic_path(tmp_path / "d.bin") as tmp:
        tmp.unlink()
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    assert mode(tmp_path / "d.bin") == want
    # Rewriting an existing file gives the mode of the current umask (as a new file would get).
    os.chmod(tmp_path / "a.bin", 0o600)
    with atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"z")
    assert mode(tmp_path / "a.bin") == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "d.bin", "sub"]


@pytest.mark.parametrize("umask", UMASKS, indirect=True)
def test_folders_get_the_umask_mode_not_mkdtemps_0700(umask, tmp_path):
    with atomic_dir(tmp_path / "out") as tmp:
        assert mode(tmp) == 0o700  # private while it is being built
        (tmp / "plain.txt").write_text("a")
        write_json(tmp / "doc.json", {})
        (tmp / "inner").mkdir()
    out = tmp_path / "out"
    assert mode(out) == 0o777 & ~umask and mode(out / "inner") == 0o777 & ~umask
    assert mode(out / "plain.txt") == mode(out / "doc.json") == 0o666 & ~umask


# ----------------------------------------------------------------------------------------------------
# atomic_dir: conflicts first, failures clean, the swap


def test_existing_target_is_refused_before_the_work(tmp_path):
    (tmp_path / "out").mkdir()
    ran = []
    with pytest.raises(FileExistsError), atomic_dir(tmp_path / "out"):
        ran.append(1)
    assert ran == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failure_removes_its_partial_and_keeps_the_old_target(tmp_path, exc):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("old")
    with pytest.raises(type(exc)), atomic_dir(tmp_path / "out", overwrite=True) as tmp:
        (tmp / "half").write_text("new")
        raise exc
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "keep").read_text() == "old"


def test_overwrite_swaps_and_leaves_nothing_beside(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "v").write_text("1")
    with atomic_dir(tmp_path / "out", overwrite=True) as tmp:
        (tmp / "v").write_text("2")
    assert (tmp_path / "out" / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_partial_names_carry_the_builders_pid_and_host(tmp_path):
    with atomic_dir(tmp_path / "out") as tmp:
        assert tmp.name.startswith(f".out.{os.getpid()}@") and tmp.name.endswith(".partial")
        assert atomic._partial_re("out").fullmatch(tmp.name)
        assert clean_stale(tmp_path / "out") == [f"kept {tmp.name} (in use by a running build)"]
        assert tmp.is_dir()


def test_a_leftover_old_never_breaks_the_swap(tmp_path):
    """`.out.old` before the work (a stale one) and one appearing during the work: both are removed."""
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / ".out.old").mkdir()
    (tmp_path / ".out.old" / "junk").write_text("x")
    lines = []
    with atomic_dir(out, overwrite=True, notify=lines.append) as tmp:
        assert not (tmp_path / ".out.old").exists()  # gone before the work started
        (tmp_path / ".out.old").mkdir()  # and if one appears meanwhile, the swap copes too
        (tmp / "v").write_text("new")
    assert (out / "v").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert len(lines) == 1 and ".out.old" in lines[0]


def test_an_old_without_its_target_is_put_back(tmp_path):
    """A kill between the swap's two renames leaves the previous version as `.out.old` and no `out`."""
    (tmp_path / ".out.old").mkdir()
    (tmp_path / ".out.old" / "v").write_text("previous")
    lines = clean_stale(tmp_path / "out")
    assert len(lines) == 1 and lines[0].startswith(f"restored {tmp_path / 'out'} from .out.old")
    assert (tmp_path / "out" / "v").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_kill_mid_swap_is_recovered(tmp_path, monkeypatch):
    """The swap dies after moving the old version aside: the next run restores it, then replaces it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "v").write_text("1")
    monkeypatch.setattr(atomic, "_swap_into_place", _swap_killed_halfway)
    with pytest.raises(KeyboardInterrupt), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "v").write_text("2")
    monkeypatch.undo()
    assert not out.exists() and (tmp_path / ".out.old" / "v").read_text() == "1"
    lines = []
    with atomic_dir(out, overwrite=True, notify=lines.append) as tmp:
        assert (out / "v").read_text() == "1"  # put back before the work
        (tmp / "v").write_text("3")
    assert lines and lines[0].startswith("restored")
    assert (out / "v").read_text() == "3" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _swap_killed_halfway(tmp, target, *, overwrite):
    """The swap's first rename, then a kill (standing in: no rollback runs in a killed process)."""
    os.replace(target, atomic._old_path(target))
    raise KeyboardInterrupt


def test_trash_of_an_interrupted_removal_is_removed(tmp_path):
    (tmp_path / ".out.0123abcd.trash").mkdir()
    (tmp_path / ".out.0123abcd.trash" / "f").write_text("x")
    (tmp_path / ".other.0123abcd.trash").mkdir()  # another target's: not ours to judge
    lines = clean_stale(tmp_path / "out")
    assert len(lines) == 1 and ".out.0123abcd.trash" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.0123abcd.trash"]


# ----------------------------------------------------------------------------------------------------
# Stale partials: removed when their owner is gone, kept while it lives


@pytest.mark.slow  # starts a process
def test_stale_partials_go_in_one_line_and_others_stay(tmp_path):
    legacy = tmp_path / ".out.abcd1234.partial"  # older versions' name: no pid, no lock
    dead = tmp_path / f".out.{dead_pid()}@{atomic._host()}.q1w2e3r4.partial"
    other = tmp_path / ".out2.abcd1234.partial"  # another target
    for p in (legacy, dead, other):
        p.mkdir()
        (p / "images.h5").write_bytes(b"half")
    lines = []
    with atomic_dir(tmp_path / "out", notify=lines.append) as tmp:
        (tmp / "v").write_text("x")
    assert len(lines) == 1
    assert lines[0].startswith(f"removed leftovers of interrupted runs beside {tmp_path / 'out'}: ")
    assert legacy.name in lines[0] and dead.name in lines[0] and other.name not in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "out"]


_HOLDER = textwrap.dedent(
    """
    import sys
    from astrogan.utils.atomic import atomic_dir
    with atomic_dir(sys.argv[1]) as tmp:
        print(tmp, flush=True)
        sys.stdin.readline()
    """
)


@pytest.mark.slow  # starts a process
def test_a_partial_of_a_live_process_is_never_removed(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "out")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(one_thread=False),
    )
    try:
        from pathlib import Path

        live = Path(proc.stdout.readline().strip())
        assert live.is_dir() and f".{proc.pid}@" in live.name
        lines = clean_stale(tmp_path / "out")
        assert lines == [f"kept {live.name} (in use by a running build)"] and live.is_dir()
        with atomic_dir(tmp_path / "out", notify=lines.append) as tmp:  # a second builder runs beside it
            (tmp / "v").write_text("x")
        assert live.is_dir()
    finally:
        proc.kill()
        proc.wait()
    lines = clean_stale(tmp_path / "out")  # its owner is dead now (killed: no cleanup ran)
    assert len(lines) == 1 and live.name in lines[0] and "its build is gone" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.slow  # starts processes
def test_without_file_locks_the_pid_and_host_decide(tmp_path, monkeypatch):
    """Where flock does not work (some network mounts), a partial is judged by the pid@host in its name."""
    monkeypatch.setattr(atomic, "_flock", lambda fd, *, wait: atomic._NO_LOCKS)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host = atomic._host()
    try:
        names = {
            "dead": f".out.{dead_pid()}@{host}.aaaa1111.partial",
            "live": f".out.{sleeper.pid}@{host}.bbbb2222.partial",
            "own_pid_earlier_process": f".out.{os.getpid()}@{host}.cccc3333.partial",
            "other_host": f".out.{dead_pid()}@elsewhere-{host}.dddd4444.partial",
            "legacy": ".out.eeee5555.partial",
        }
        for n in names.values():
            (tmp_path / n).mkdir()
        lines = clean_stale(tmp_path / "out")
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted([names["live"], names["other_host"], names["legacy"]])
        assert lines[0].startswith("removed") and names["dead"] in lines[0]
        assert names["own_pid_earlier_process"] in lines[0]
        assert lines[1].startswith("kept") and f"in use by pid {sleeper.pid}" in lines[1]
        assert "made on host elsewhere-" in lines[1] and "no builder pid in its name" in lines[1]
        with atomic_dir(tmp_path / "out2") as tmp:  # our own live partial is known as ours
            assert clean_stale(tmp_path / "out2") == [f"kept {tmp.name} (in use by pid {os.getpid()})"]
    finally:
        sleeper.kill()
        sleeper.wait()
