"""Atomic writes: write to a temp file beside the target, fsync, rename; nothing half-written survives.

Permissions. `mkstemp`/`mkdtemp` make their temps 0600/0700 whatever the umask; what these helpers rename
into place gets the mode a plain `open()`/`mkdir()` would give under the process umask instead
(`0o666 & ~umask` for files, `0o777 & ~umask` for folders), so a dataset, run file, report or export
written by one user is readable by a colleague or a web server exactly when the umask says so.

Folders (`atomic_dir`) are built under `.<NAME>.<pid>@<host>.<random>.partial` beside the target and renamed
into place at the end, so a kill leaves nothing half-written at the target. The builder holds an exclusive
`flock` on its partial for the partial's whole life; a later `atomic_dir`/`clean_stale` of the same target
removes the partials whose lock is free (their builder is gone, killed or crashed) and keeps those a running
process holds. Creating a partial, judging partials and the final swap all happen under a short `flock` on
the parent folder, so a partial is never seen between its creation and its owner's lock. Where the file
system has no `flock` (some network mounts) the pid and host in the name decide instead: a partial of this
host whose pid is gone is removed; one from another host, or without a pid (older versions), is kept and
named in the message, to be removed by hand.

Replacing (`overwrite`): the old folder is renamed to `.<NAME>.old`, the new one into place, then the old one
to `.<NAME>.<random>.trash` and removed. So a `.<NAME>.old` is always a complete previous version: found
with the target missing (a kill between the two renames) it is put back; found beside the target it is
removed, before any work starts and again just before the swap. `.trash` folders are removed on sight.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

try:  # POSIX only; elsewhere partials are judged by the pid in their name
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "announce",
    "atomic_dir",
    "atomic_open",
    "atomic_path",
    "clean_stale",
    "current_umask",
    "dir_mode",
    "file_mode",
    "write_json",
]

# ----------------------------------------------------------------------------------------------------
# Permissions

_UMASK_LOCK = threading.Lock()


def _umask_from_proc() -> int | None:
    """The umask from /proc/self/status (Linux 4.7+), or None where it is not there."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_umask() -> int:
    """The process umask, read without changing it where /proc tells it.

    Elsewhere it is read by setting and restoring it (`os.umask` returns the old value). The umask is
    process-wide, so for that instant other threads would create files under the temporary value: it is
    0o077 (the strictest), so a race can only make a file less readable, never more.
    """
    mask = _umask_from_proc()
    if mask is not None:
        return mask
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return old


def file_mode() -> int:
    """The mode `open(path, "w")` gives a new file under the current umask."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode `os.mkdir(path)` gives a new folder under the current umask."""
    return 0o777 & ~current_umask()


# ----------------------------------------------------------------------------------------------------
# Files


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path in the target's directory; on success it is renamed onto `path`.

    Use it for writers that want a filename (h5py, torch.save, Pillow). On error the temp is removed. The
    file ends with the umask's mode (`file_mode()`), not mkstemp's 0600.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # After the writer ran: some writers replace the file they are given rather than reuse it.
        os.chmod(tmp_path, file_mode())
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temp file for writing; renamed onto `path` when the block ends without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")


# ----------------------------------------------------------------------------------------------------
# Locks (flock: released by the kernel when the holder dies, however it dies)

_LOCKED, _HELD, _NO_LOCKS = "locked", "held", "no-locks"

# Partials this process is building right now (their pid is ours, so only this set tells them apart from
# a partial left by an earlier process that had the same pid, as happens in containers).
_OWNED: set[str] = set()


def _open_dir(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None


def _flock(fd: int | None, *, wait: bool) -> str:
    """Take an exclusive flock on `fd`: _LOCKED, _HELD (another holder; only when not waiting) or _NO_LOCKS."""
    if fd is None or fcntl is None:
        return _NO_LOCKS
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return _HELD
    except OSError:  # EBADF for folders on NFS, ENOLCK, EOPNOTSUPP...
        return _NO_LOCKS
    return _LOCKED


@contextlib.contextmanager
def _parent_locked(parent: Path) -> Iterator[None]:
    """Hold an exclusive flock on folder `parent` (best effort) for a short critical section."""
    fd = _open_dir(parent)
    try:
        _flock(fd, wait=True)
        yield
    finally:
        if fd is not None:
            os.close(fd)


# ----------------------------------------------------------------------------------------------------
# Leftovers of killed runs: partials, .old, .trash


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:32] or "host"


def _partial_re(name: str) -> re.Pattern[str]:
    # `.<name>.<pid>@<host>.<random>.partial`; older versions wrote `.<name>.<random>.partial`.
    return re.compile(
        r"\." + re.escape(name) + r"\.(?:(?P<pid>\d+)@(?P<host>[A-Za-z0-9_-]*)\.)?[A-Za-z0-9_]+\.partial"
    )


def _trash_re(name: str) -> re.Pattern[str]:
    return re.compile(r"\." + re.escape(name) + r"\.[0-9a-f]+\.trash")


def _old_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def _pid_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this machine (True when it cannot be told)."""
    if pid <= 0:
        return False
    if os.name != "posix":  # pragma: no cover - os.kill(pid, 0) is not a probe there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user
        return True
    return True


def _judge_partial(path: Path, match: re.Match[str]) -> tuple[bool, str]:
    """(stale, why) for one partial folder; call it holding the parent's lock."""
    fd = _open_dir(path)
    try:
        state = _flock(fd, wait=False)
    finally:
        if fd is not None:
            os.close(fd)  # a lock we took is released: nobody takes it back while we hold the parent's
    if state == _HELD:
        return False, "in use by a running build"
    if state == _LOCKED:
        return True, "its build is gone"
    pid, host = match.group("pid"), match.group("host")
    if pid is None:
        return False, "no file locks here and no builder pid in its name: remove it by hand if no build runs"
    if host != _host():
        return False, f"made on host {host}: remove it by hand if no build runs there"
    if int(pid) == os.getpid():
        alive = os.path.abspath(path) in _OWNED
    else:
        alive = _pid_alive(int(pid))
    return (False, f"in use by pid {pid}") if alive else (True, f"its build, pid {pid}, is gone")


def _trash_name(target: Path) -> Path:
    while True:
        p = target.with_name(f".{target.name}.{secrets.token_hex(4)}.trash")
        if not os.path.lexists(p):
            return p


def _remove_tree(path: Path) -> bool:
    """Remove a folder, file or link; True when it is gone."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(OSError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


def _to_trash(path: Path, target: Path) -> Path:
    """Rename `path` to a fresh `.<target>.<random>.trash` (fast; the removal comes later); returns where."""
    trash = _trash_name(target)
    os.replace(path, trash)
    return trash


def clean_stale(path: str | os.PathLike[str]) -> list[str]:
    """Tidy what killed or crashed runs left beside folder `path`; returns the lines to show (none if nothing).

    Removes `.<name>.*.partial` folders no running process owns (see the module docstring for how that is
    told) and `.<name>.*.trash` folders; puts a `.<name>.old` back when `path` is missing (a swap was
    interrupted between its two renames, so the old folder is the last complete one), else removes it.
    Partials in use are kept and named. Every removal is listed on ONE line.
    """
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        return []
    partial, trash_re = _partial_re(target.name), _trash_re(target.name)
    removed: list[str] = []
    kept: list[str] = []
    lines: list[str] = []
    doomed: list[Path] = []
    with _parent_locked(parent):
        try:
            names = sorted(os.listdir(parent))
        except OSError:
            return []
        for name in names:
            p = parent / name
            m = partial.fullmatch(name)
            if m is not None:
                stale, why = _judge_partial(p, m)
                if not stale:
                    kept.append(f"{name} ({why})")
                    continue
                try:
                    doomed.append(_to_trash(p, target))
                except OSError:
                    doomed.append(p)
                removed.append(f"{name} ({why})")
            elif trash_re.fullmatch(name):
                doomed.append(p)
                removed.append(f"{name} (an interrupted removal)")
        old = _old_path(target)
        if os.path.lexists(old):
            if not os.path.lexists(target):
                try:
                    os.replace(old, target)
                    lines.append(
                        f"restored {target} from {old.name}: a run replacing it was interrupted between "
                        "moving the old one aside and moving the new one in"
                    )
                except OSError as exc:
                    lines.append(f"could not restore {target} from {old.name} ({exc.strerror or exc})")
            else:
                try:
                    doomed.append(_to_trash(old, target))
                except OSError:
                    doomed.append(old)
                removed.append(f"{old.name} (the previous version a finished replace had kept)")
    failed = [p.name for p in doomed if not _remove_tree(p)]
    if removed:
        lines.insert(0, f"removed leftovers of interrupted runs beside {target}: {', '.join(removed)}")
    if failed:
        lines.append(f"could not remove {', '.join(failed)} (remove by hand)")
    if kept:
        lines.append(f"kept {', '.join(kept)}")
    return lines


def announce(line: str) -> None:
    """Print one status line to stderr (nothing when ASTROGAN_QUIET=1); the default `notify` of atomic_dir."""
    if os.environ.get("ASTROGAN_QUIET") == "1":
        return
    from astrogan.utils.log import console  # Rich loads only when there is something to say

    console.print(line, markup=False, highlight=False, soft_wrap=True)  # one line, however long


# ----------------------------------------------------------------------------------------------------
# Folders


def _make_partial(target: Path) -> tuple[Path, int | None]:
    """Create and lock `.<name>.<pid>@<host>.<random>.partial` beside `target`: (path, the lock's fd)."""
    owner = f"{os.getpid()}@{_host()}."
    if len(target.name) + len(owner) + 20 > 255:  # keep within NAME_MAX: drop the owner, the lock remains
        owner = ""
    with _parent_locked(target.parent):
        made = tempfile.mkdtemp(prefix=f".{target.name}.{owner}", suffix=".partial", dir=target.parent)
        tmp = Path(os.path.abspath(made))  # absolute: the same key in _OWNED whatever the cwd does
        fd = _open_dir(tmp)
        _flock(fd, wait=False)
        _OWNED.add(str(tmp))
    return tmp, fd


def _swap_into_place(tmp: Path, target: Path, *, overwrite: bool) -> None:
    """Rename finished folder `tmp` onto `target`; with `overwrite` an existing target is replaced."""
    doomed: list[Path] = []
    with _parent_locked(target.parent):
        if not os.path.lexists(target):
            os.replace(tmp, target)
            return
        if not overwrite:
            raise FileExistsError(f"{target} already exists")  # made by someone else during the work
        old = _old_path(target)
        if os.path.lexists(old):  # a leftover (or one made during the work): never in the way of the swap
            doomed.append(_to_trash(old, target))
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)  # put the previous version back
            raise
        try:
            doomed.append(_to_trash(old, target))
        except OSError:
            pass  # the new folder is in place; the next clean_stale removes `.old`
    for p in doomed:
        _remove_tree(p)


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    notify: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Build a whole directory under a temp name and rename it into place on success.

    Before the block runs: leftovers of killed runs beside the target are cleaned (`clean_stale`; each line
    goes to `notify`, default `announce`) and an existing target without `overwrite` is a FileExistsError,
    so a conflict never costs the work. An existing target is replaced only when `overwrite` is set, and
    only after success. A failure (or Ctrl-C) removes the partial; a kill leaves it for the next run to
    remove. The folder ends with the umask's mode (`dir_mode()`), not mkdtemp's 0700.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    say = notify or announce
    for line in clean_stale(target):
        say(line)
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(f"{target} already exists")
    tmp, fd = _make_partial(target)
    try:
        yield tmp
        os.chmod(tmp, dir_mode())
        _swap_into_place(tmp, target, overwrite=overwrite)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        _OWNED.discard(str(tmp))
        if fd is not None:
            os.close(fd)
