"""`dataset build` under faults: symlinks, loops, unreadable folders, killed builds, leftovers, conflicts, umask.

Kill points are deterministic: leftovers are made by hand as a killed build leaves them, and the one real
SIGKILL comes from a subprocess whose PictureBuilder.add kills its own process at the third picture (a
monkeypatch inside that subprocess; the build itself has no test hook).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from astrogan.data import build as build_mod
from astrogan.data import pipeline as pipeline_mod
from astrogan.data.dataset import open_dataset
from astrogan.utils import atomic
from astrogan.utils.errors import UserError
from tests.helpers import datasets
from tests.helpers.processes import child_env


def picture(path: Path, seed: int, size: int = 40) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def build(inputs, out, **kwargs):
    return datasets.build(inputs, out, image_sizes=(16,), min_size_px=8, **kwargs)


def rows_by_path(result) -> dict[str, dict]:
    return {r["path"]: r for r in result.report}


def unaccounted(root: Path, report: list[dict]) -> list[str]:
    """Paths under `root` that report.json neither built nor gave a row.

    A row of a path stands for everything under it (a folder not searched); a folder without a row was
    searched, so its entries are checked in turn (following folder symlinks, as the build does).
    """
    named = {r["path"] for r in report} | {r["link"] for r in report if r.get("link")}
    if str(root) in named:
        return []
    missing: list[str] = []
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        assert depth < 50, "the test tree has no deeper folders"
        for entry in os.scandir(folder):
            if entry.path in named:
                continue
            if entry.is_dir():  # followed links too: the build searched it, so its entries must be there
                stack.append((Path(entry.path), depth + 1))
            else:
                missing.append(entry.path)
    return missing


# ----------------------------------------------------------------------------------------------------
# Every path accounted for: symlinks, loops, dangling links, special files, hidden entries


@pytest.fixture
def messy_tree(tmp_path):
    """An input folder with every kind of path a user's data folder may hold (root resolved)."""
    base = tmp_path.resolve()
    raw, elsewhere = base / "raw", base / "elsewhere"
    (raw / "sub").mkdir(parents=True)
    (elsewhere / "deeper").mkdir(parents=True)
    picture(raw / "a.png", 1)
    picture(raw / "sub" / "b.png", 2)
    picture(elsewhere / "far.png", 3)
    picture(elsewhere / "deeper" / "far2.png", 4)
    os.symlink(elsewhere / "far.png", raw / "link_out.png")  # file outside the tree: built
    os.symlink("sub/b.png", raw / "link_in.png")  # file inside: same file as sub/b.png, built once
    os.symlink(elsewhere / "deeper", raw / "linked_folder")  # folder outside: searched
    os.symlink("nowhere.png", raw / "dangling.png")
    os.symlink("self.png", raw / "self.png")  # a link to itself
    os.symlink("ping.png", raw / "pong.png")  # two links pointing at each other
    os.symlink("pong.png", raw / "ping.png")
    os.symlink(raw, raw / "sub" / "up")  # a folder link to a folder above it
    os.symlink(raw / "sub", raw / "sub_again")  # a folder searched already
    os.mkfifo(raw / "pipe.png")  # reading it would block forever
    (raw / ".hidden").mkdir()
    picture(raw / ".hidden" / "h.png", 5)
    (raw / ".DS_Store").write_bytes(b"\0")
    (raw / "notes.txt").write_text("not a picture")
    return raw, elsewhere


def test_every_path_is_built_or_has_a_reason(messy_tree, tmp_path):
    raw, elsewhere = messy_tree
    res = build([raw], tmp_path / "ds")
    assert unaccounted(raw, res.report) == []
    converted = {(r["path"], r.get("link")) for r in res.report if r["status"] == "converted"}
    assert converted == {
        (str(raw / "a.png"), None),
        # found first through link_in.png (sorted order), named by its real place in the tree
        (str(raw / "sub" / "b.png"), str(raw / "link_in.png")),
        (str(elsewhere / "far.png"), str(raw / "link_out.png")),
        (str(elsewhere / "deeper" / "far2.png"), str(raw / "linked_folder" / "far2.png")),
    }
    reasons = {Path(r["path"]).relative_to(raw).as_posix(): r["reason"] for r in res.report if r["reason"]}
    assert reasons["dangling.png"] == "dangling symlink (points to nowhere.png, which does not exist)"
    for name in ("self.png", "ping.png", "pong.png"):
        assert reasons[name].startswith("symlink loop"), name
    assert reasons["sub/up"] == f"symlink loop (points to {raw}, a folder above it)"
    assert reasons["sub_again"] == f"folder already searched (same folder as {raw / 'sub'})"
    assert reasons["sub/b.png"] == f"already listed (same file as {raw / 'link_in.png'})"
    assert reasons["pipe.png"] == "not a regular file (fifo)"
    assert reasons[".hidden"].startswith("hidden folder") and reasons[".DS_Store"].startswith("hidden file")
    assert reasons["notes.txt"].startswith("not a picture")
    assert res.skip_reasons() == {
        "already listed": 1,
        "dangling symlink": 1,
        "folder already searched": 1,
        "not a regular file": 1,
        "symlink loop": 4,
    }
    ds = open_dataset(res.path)
    assert ds.num_images == 4
    assert sorted(ds.meta()["source"]) == ["a.png", "link_out.png", "linked_folder/far2.png", "sub/b.png"]
    m = ds.manifest
    assert (
        m["counts"]["files"]
        == len(res.report)
        == len(json.loads((res.path / "report.json").read_text())["files"])
    )
    assert m["counts"]["converted"] == 4


def test_a_symlinked_input_file_is_followed(messy_tree, tmp_path):
    raw, elsewhere = messy_tree
    res = build([raw / "link_out.png"], tmp_path / "ds")
    (row,) = res.report
    assert row["status"] == "converted" and row["path"] == str(elsewhere / "far.png")
    assert row["link"] == str(raw / "link_out.png")
    with pytest.raises(UserError, match="dangling symlink"):
        build([raw / "dangling.png"], tmp_path / "ds2")
    with pytest.raises(UserError, match="symlink loop"):
        build([raw / "self.png"], tmp_path / "ds3")


def test_the_same_folder_twice_is_searched_once(messy_tree, tmp_path):
    raw, _ = messy_tree
    res = build([raw, raw / "sub"], tmp_path / "ds")
    assert unaccounted(raw, res.report) == [] and res.num_images == 4
    rows = [r for r in res.report if r["path"] == str(raw / "sub")]
    assert rows == [
        {
            "path": str(raw / "sub"),
            "status": "skipped",
            "reason": f"folder already searched (same folder as {raw / 'sub'})",
            "flags": [],
        }
    ]
    # The other way round, raw is reached first through sub/up (a link to the folder above sub).
    res = build([raw / "sub", raw], tmp_path / "ds2")
    assert unaccounted(raw / "sub", res.report) == [] and res.num_images == 4
    assert res.report[-1]["reason"] == f"folder already searched (same folder as {raw / 'sub' / 'up'})"
    assert [r["reason"] for r in res.report if r["path"] == str(raw / "sub" / "up" / "sub")] == [
        f"symlink loop (points to {raw / 'sub'}, a folder above it)"
    ]


def test_a_file_name_that_is_not_utf8_has_a_reason_not_a_traceback(tmp_path):
    """A Latin-1 name from an old archive: its bytes cannot go into meta or review.csv, which hold text."""
    from astrogan.data.review import review_pictures

    raw = tmp_path / "raw"
    raw.mkdir()
    latin1 = raw / os.fsdecode(b"caf\xe9.png")
    picture(latin1, 1)
    picture(raw / "ok.png", 2)
    res = build([raw], tmp_path / "ds")
    assert res.num_images == 1 and open_dataset(res.path).meta()["source"].tolist() == ["ok.png"]
    assert rows_by_path(res)[str(latin1)]["reason"].startswith("file name is not UTF-8 text")
    review = review_pictures([raw], tmp_path / "review")
    assert [r["path"] for r in review.rows] == ["ok.png"]


def test_an_unreadable_folder_has_a_reason(tmp_path, monkeypatch):
    """Any user, root included: reading `locked` fails as it does for a folder without read permission."""
    raw = tmp_path.resolve() / "raw"
    (raw / "locked").mkdir(parents=True)
    picture(raw / "locked" / "x.png", 1)
    picture(raw / "ok.png", 2)
    real = build_mod._scandir

    def scandir(folder):
        if Path(folder).name == "locked":
            raise PermissionError(13, "Permission denied", str(folder))
        return real(folder)

    monkeypatch.setattr(build_mod, "_scandir", scandir)
    res = build([raw], tmp_path / "ds")
    rows = rows_by_path(res)
    assert rows[str(raw / "locked")] == {
        "path": str(raw / "locked"),
        "status": "skipped",
        "reason": "cannot read folder (Permission denied)",
        "flags": [],
    }
    assert res.num_images == 1 and unaccounted(raw, res.report) == []
    monkeypatch.setattr(build_mod, "_scandir", lambda folder: scandir(folder) if folder != raw else 1 / 0)
    with pytest.raises(ZeroDivisionError):  # only OSError means "unreadable"; other errors surface
        build([raw], tmp_path / "ds2")


def test_an_unreadable_folder_for_real(tmp_path):
    raw = tmp_path.resolve() / "raw"
    (raw / "locked").mkdir(parents=True)
    picture(raw / "locked" / "x.png", 1)
    picture(raw / "ok.png", 2)
    os.chmod(raw / "locked", 0)
    try:
        try:
            os.listdir(raw / "locked")
        except PermissionError:
            pass
        else:
            pytest.skip("this user reads folders without permission (root)")
        res = build([raw], tmp_path / "ds")
    finally:
        os.chmod(raw / "locked", 0o755)
    assert rows_by_path(res)[str(raw / "locked")]["reason"] == "cannot read folder (Permission denied)"
    assert res.num_images == 1


def test_a_deep_tree_needs_no_recursion(tmp_path):
    """A tree deeper than the recursion limit allows frames (the limit lowered, so the tree stays small)."""
    raw = tmp_path.resolve() / "raw"
    deep = raw.joinpath(*["d"] * 400)
    deep.mkdir(parents=True)
    picture(deep / "x.png", 1)
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 250)  # room for the build's own calls, not for one frame per folder
    try:
        res = build([raw], tmp_path / "ds")
    finally:
        sys.setrecursionlimit(old)
    assert res.num_images == 1 and res.report[0]["path"] == str(deep / "x.png")


# ----------------------------------------------------------------------------------------------------
# Killed builds: nothing at the target, partials removed by the next build unless their owner lives


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for i in range(4):
        picture(folder / f"{i}.png", i)
    return folder


_KILLED_BUILD = textwrap.dedent(
    """
    import os, signal, sys
    from astrogan.data import pipeline
    from astrogan.data.build import BuildOptions, build_dataset

    real_add, calls = pipeline.PictureBuilder.add, []

    def add(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_add(self, *args, **kwargs)

    pipeline.PictureBuilder.add = add
    build_dataset([sys.argv[1]], sys.argv[2], options=BuildOptions(image_sizes=(16,)), show_progress=False,
                  overwrite=sys.argv[3] == "1")
    """
)


def killed_build(raw: Path, out: Path, *, overwrite: bool) -> int:
    """Run a build in a subprocess that SIGKILLs itself at its third picture; returns its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_BUILD, str(raw), str(out), "1" if overwrite else "0"],
        env=child_env(one_thread=False),
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    return proc.pid


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


@pytest.mark.slow  # starts processes
def test_a_killed_build_leaves_nothing_at_the_target_and_the_next_one_cleans_up(raw, tmp_path):
    out = tmp_path / "ds"
    pid = killed_build(raw, out, overwrite=False)
    assert not out.exists()
    (left,) = partials(tmp_path)
    assert left.startswith(f".ds.{pid}@") and (tmp_path / left / "images.h5").is_file()  # half-built, aside
    res = build([raw], out)
    assert res.num_images == 4 and partials(tmp_path) == []
    assert len(res.notes) == 1 and left in res.notes[0] and "its build is gone" in res.notes[0]
    # Killed while replacing: the previous dataset stays as it was, and the next build cleans up.
    before = open_dataset(out).content_hash
    killed_build(raw, out, overwrite=True)
    assert open_dataset(out).content_hash == before and len(partials(tmp_path)) == 1
    res = build([raw], out, overwrite=True)
    assert partials(tmp_path) == [] and len(res.notes) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "raw"]


@pytest.mark.slow  # starts a process
def test_stale_partials_made_by_hand_are_removed_in_one_line(raw, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [".ds.abcd1234.partial", f".ds.{dead.pid}@{atomic._host()}.q1w2e3r4.partial"]
    for name in stale:
        (tmp_path / name).mkdir()
        (tmp_path / name / "images.h5").write_bytes(b"half")
    (tmp_path / ".ds2.abcd1234.partial").mkdir()  # another target's
    res = build([raw], tmp_path / "ds")
    assert len(res.notes) == 1 and all(n in res.notes[0] for n in stale)
    assert ".ds2" not in res.notes[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds2.abcd1234.partial", "ds", "raw"]


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
def test_the_partial_of_a_running_build_is_kept(raw, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "ds")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(one_thread=False),
    )
    try:
        live = Path(proc.stdout.readline().strip())
        res = build([raw], tmp_path / "ds")
        assert live.is_dir() and res.num_images == 4
        assert res.notes == [f"kept {live.name} (in use by a running build)"]
    finally:
        proc.kill()
        proc.wait()
    res = build([raw], tmp_path / "ds", overwrite=True)
    assert not live.exists() and len(res.notes) == 1 and live.name in res.notes[0]


# ----------------------------------------------------------------------------------------------------
# .old leftovers and conflicts: handled before the build, never after it


def count_pictures(monkeypatch) -> list[int]:
    """Count PictureBuilder.add calls (the expensive part of a build)."""
    calls: list[int] = []
    real_add = pipeline_mod.PictureBuilder.add

    def add(self, *args, **kwargs):
        calls.append(1)
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(pipeline_mod.PictureBuilder, "add", add)
    return calls


def test_a_leftover_old_does_not_break_overwrite(raw, tmp_path, monkeypatch):
    first = build([raw], tmp_path / "ds")
    (tmp_path / ".ds.old").mkdir()
    (tmp_path / ".ds.old" / "images.h5").write_bytes(b"old")
    res = build([raw], tmp_path / "ds", overwrite=True)
    assert res.content_hash == first.content_hash
    assert len(res.notes) == 1 and ".ds.old" in res.notes[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "raw"]
    # One appearing while the build runs does not break the swap either.
    calls = count_pictures(monkeypatch)
    real_add = pipeline_mod.PictureBuilder.add

    def add_and_leave_an_old(self, *args, **kwargs):
        (tmp_path / ".ds.old").mkdir(exist_ok=True)
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(pipeline_mod.PictureBuilder, "add", add_and_leave_an_old)
    build([raw], tmp_path / "ds", overwrite=True)
    assert calls and sorted(p.name for p in tmp_path.iterdir()) == ["ds", "raw"]
    assert open_dataset(tmp_path / "ds").num_images == 4


def test_an_old_without_its_target_is_restored_not_lost(raw, tmp_path):
    """A kill between the swap's renames: the previous dataset is `.ds.old` and `ds` is missing."""
    first = build([raw], tmp_path / "ds")
    os.replace(tmp_path / "ds", tmp_path / ".ds.old")
    with pytest.raises(UserError, match="already exists: pass --overwrite"):
        build([raw], tmp_path / "ds")
    assert open_dataset(tmp_path / "ds").content_hash == first.content_hash
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "raw"]


def test_conflicts_are_found_before_any_picture_is_read(raw, tmp_path, monkeypatch):
    build([raw], tmp_path / "ds")
    calls = count_pictures(monkeypatch)
    with pytest.raises(UserError, match="already exists: pass --overwrite"):
        build([raw], tmp_path / "ds")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="not a dataset"):
        build([raw], tmp_path / "notes", overwrite=True)
    (tmp_path / "file.h5").write_bytes(b"x")
    with pytest.raises(UserError, match="not a folder"):
        build([raw], tmp_path / "file.h5", overwrite=True)
    os.symlink(tmp_path / "ds", tmp_path / "ds_link")
    with pytest.raises(UserError, match="is a symlink"):
        build([raw], tmp_path / "ds_link", overwrite=True)
    picture(tmp_path / "ds" / "inside.png", 9)
    with pytest.raises(UserError, match="inside --out"):
        build([tmp_path / "ds" / "inside.png"], tmp_path / "ds", overwrite=True)
    assert calls == []
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "years of work"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (tmp_path / "empty").mkdir()
    build([raw], tmp_path / "empty", overwrite=True)  # an empty folder may be replaced
    assert open_dataset(tmp_path / "empty").num_images == 4


def test_a_failed_build_removes_its_partial(raw, tmp_path, monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_mod.PictureBuilder, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build([raw], tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_ctrl_c_in_the_command_exits_130_and_leaves_nothing(raw, tmp_path, capsys, monkeypatch):
    """Typer turns Ctrl-C into an exit code that its non-standalone mode returns: it must not become 0."""
    from astrogan.cli.main import main

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_mod.PictureBuilder, "add", interrupted)
    assert main(["dataset", "build", str(raw), "--out", str(tmp_path / "ds"), "--image-size", "16"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


# ----------------------------------------------------------------------------------------------------
# Permissions follow the umask


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_a_dataset_gets_the_umask_modes(raw, tmp_path, mask):
    old = os.umask(mask)
    try:
        res = build([raw], tmp_path / "ds")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(res.path).st_mode) == 0o777 & ~mask
    for name in ("images.h5", "manifest.json", "report.json"):
        assert stat.S_IMODE(os.stat(res.path / name).st_mode) == 0o666 & ~mask, name


def test_the_command_cleans_up_says_it_once_and_refuses_early(raw, tmp_path, capsys, monkeypatch):
    from astrogan.cli.main import main

    argv = ["dataset", "build", str(raw), "--out", str(tmp_path / "ds"), "--image-size", "16"]
    assert main(argv) == 0
    (tmp_path / ".ds.old").mkdir()  # what a killed --overwrite leaves beside a finished dataset
    (tmp_path / ".ds.abcd1234.partial").mkdir()  # and what a killed build leaves
    monkeypatch.setenv("ASTROGAN_QUIET", "0")
    capsys.readouterr()
    assert main([*argv, "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert err.count("removed leftovers of interrupted runs") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "raw"]
    assert main(argv) == 2  # exists, no --overwrite: one line, before any work
    assert "already exists: pass --overwrite" in capsys.readouterr().err


def test_provenance_files_have_a_row_too(raw, tmp_path):
    import sqlite3

    con = sqlite3.connect(raw / "catalog.sqlite")
    con.execute(
        "CREATE TABLE items (local_path TEXT, status TEXT, sha256 TEXT, source TEXT, item_id TEXT, "
        "title TEXT, page_url TEXT, credit TEXT, copyright TEXT, licence TEXT)"
    )
    con.execute("INSERT INTO items (local_path, status, credit) VALUES ('0.png', 'ok', 'Someone')")
    con.commit()
    con.close()
    res = build([raw], tmp_path / "ds")
    (row,) = [r for r in res.report if r["path"].endswith("catalog.sqlite")]
    assert row["status"] == "ignored" and row["reason"].startswith("provenance file")
    assert open_dataset(res.path).manifest["credits"]["Someone"] == 1
    assert unaccounted(raw, res.report) == []
