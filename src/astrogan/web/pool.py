"""The image pool: PNG files plus an SQLite index (WAL) shared by every server process and the refill worker.

Claiming is one `UPDATE ... RETURNING` inside `BEGIN IMMEDIATE`, so two processes never hand out the same
image. Claimed images stay as a reservoir of recent pictures (for `--when-empty reuse`) until pruned.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1
COUNTERS = ("generated", "served_pool", "served_reuse", "served_inline", "pruned")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seed INTEGER NOT NULL,
    trunc REAL NOT NULL,
    file TEXT NOT NULL,
    created_at REAL NOT NULL,
    claimed_at REAL,
    claimed_by INTEGER
);
CREATE INDEX IF NOT EXISTS images_unseen ON images(id) WHERE claimed_at IS NULL;
CREATE INDEX IF NOT EXISTS images_claimed ON images(claimed_at) WHERE claimed_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class PoolImage:
    """One picture out of the pool: its row id, seed, truncation and PNG bytes."""

    id: int
    seed: int
    trunc: float
    png: bytes


class Pool:
    """A folder with `pool.sqlite` and `images/*.png`; safe to open from many processes and threads.

    `model_id` identifies the model the pictures came from: opening the pool with another model empties it.
    """

    def __init__(self, root: str | Path, *, model_id: str, busy_timeout_s: float = 30.0) -> None:
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "pool.sqlite"
        self.model_id = model_id
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._init()

    # -- connections -------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            # isolation_level=None: we issue BEGIN ourselves, so transactions are explicit and short.
            conn = sqlite3.connect(
                self.db_path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _init(self) -> None:
        conn = self._conn()
        conn.executescript(_SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR IGNORE INTO counters(name, value) VALUES (?, 0)", [(n,) for n in COUNTERS]
            )
            row = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()
            if row is None or row[0] != self.model_id:
                # Pictures of another model must never be served for this one.
                files = [r[0] for r in conn.execute("SELECT file FROM images")]
                conn.execute("DELETE FROM images")
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('model_id', ?)", (self.model_id,)
                )
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                self._unlink(files)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writing -------------------------------------------------------------------------------------------
    def add_many(self, items: Iterable[tuple[int, float, bytes]]) -> list[int]:
        """Store `(seed, trunc, png)` pictures; each file is written before its row, so no row lacks one.

        A failure removes the files this call wrote; a process killed between the files and the commit leaves
        orphans, which `remove_orphans` deletes when the refill worker starts.
        """
        rows: list[tuple[int, float, str, float]] = []
        try:
            for seed, trunc, png in items:
                name = f"{uuid.uuid4().hex}.png"
                tmp = self.images_dir / f".{name}.tmp"
                try:
                    with open(tmp, "wb") as fh:
                        fh.write(png)
                    os.replace(tmp, self.images_dir / name)
                finally:
                    tmp.unlink(missing_ok=True)
                rows.append((int(seed), float(trunc), name, time.time()))
        except BaseException:
            self._unlink([r[2] for r in rows])
            raise
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            ids = [
                conn.execute(
                    "INSERT INTO images(seed, trunc, file, created_at) VALUES (?, ?, ?, ?) RETURNING id", r
                ).fetchone()[0]
                for r in rows
            ]
            conn.execute("UPDATE counters SET value = value + ? WHERE name = 'generated'", (len(rows),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._unlink([r[2] for r in rows])
            raise
        return ids

    def claim(self) -> PoolImage | None:
        """Atomically take the oldest unseen picture (None when the pool is dry)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "UPDATE images SET claimed_at = ?, claimed_by = ? WHERE id = "
                "(SELECT id FROM images WHERE claimed_at IS NULL ORDER BY id LIMIT 1) "
                "RETURNING id, seed, trunc, file",
                (time.time(), os.getpid()),
            ).fetchone()
            if row is not None:
                conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'served_pool'")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if row is None:
            return None
        return PoolImage(row[0], row[1], row[2], (self.images_dir / row[3]).read_bytes())

    def reuse(self, *, num_recent: int, rng: random.Random | None = None) -> PoolImage | None:
        """A random picture among the `num_recent` most recently claimed (None if there are none)."""
        rows = (
            self._conn()
            .execute(
                "SELECT id, seed, trunc, file FROM images WHERE claimed_at IS NOT NULL "
                "ORDER BY claimed_at DESC LIMIT ?",
                (num_recent,),
            )
            .fetchall()
        )
        pick = rng.randrange if rng is not None else random.randrange
        while rows:
            row = rows.pop(pick(len(rows)))
            try:
                png = (self.images_dir / row[3]).read_bytes()
            except FileNotFoundError:  # pruned meanwhile by the worker: try another
                continue
            self.incr("served_reuse")
            return PoolImage(row[0], row[1], row[2], png)
        return None

    def incr(self, name: str, n: int = 1) -> None:
        """Add `n` to a shared counter."""
        self._conn().execute("UPDATE counters SET value = value + ? WHERE name = ?", (n, name))

    def prune(self, *, keep_claimed: int) -> int:
        """Delete claimed pictures beyond the `keep_claimed` most recent ones; returns how many went."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                "DELETE FROM images WHERE id IN (SELECT id FROM images WHERE claimed_at IS NOT NULL "
                "ORDER BY claimed_at DESC LIMIT -1 OFFSET ?) RETURNING file",
                (keep_claimed,),
            ).fetchall()
            if rows:
                conn.execute("UPDATE counters SET value = value + ? WHERE name = 'pruned'", (len(rows),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._unlink([r[0] for r in rows])
        return len(rows)

    def remove_orphans(self, *, grace_s: float = 60.0) -> int:
        """Delete image files no row names (a writer killed before its commit), older than `grace_s`.

        The grace period spares files a live writer has just made and not yet committed. Returns how many went.
        """
        cutoff = time.time() - grace_s
        candidates = []
        for entry in os.scandir(self.images_dir):
            if not entry.is_file(follow_symlinks=False):
                continue
            if not (entry.name.endswith(".png") or entry.name.endswith(".tmp")):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    candidates.append(entry.name)
            except FileNotFoundError:
                continue
        if not candidates:
            return 0
        known = {r[0] for r in self._conn().execute("SELECT file FROM images")}
        orphans = [name for name in candidates if name not in known]
        self._unlink(orphans)
        return len(orphans)

    def beat(self, name: str = "refill", *, at: float | None = None) -> None:
        """Record that the `name` worker is alive now (or at `at`, a Unix time)."""
        self._conn().execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            (f"heartbeat_{name}", repr(time.time() if at is None else float(at))),
        )

    # -- reading -------------------------------------------------------------------------------------------
    def heartbeat(self, name: str = "refill") -> float | None:
        """When the `name` worker last said it was alive (Unix time), None if it never did."""
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (f"heartbeat_{name}",)).fetchone()
        return None if row is None else float(row[0])

    def depth(self) -> int:
        """Unseen pictures waiting in the pool."""
        return int(self._conn().execute("SELECT COUNT(*) FROM images WHERE claimed_at IS NULL").fetchone()[0])

    def counters(self) -> dict[str, int]:
        """Shared totals: generated, served_pool, served_reuse, served_inline, pruned."""
        return {k: int(v) for k, v in self._conn().execute("SELECT name, value FROM counters")}

    def _unlink(self, files: Iterable[str]) -> None:
        for name in files:
            try:
                (self.images_dir / name).unlink()
            except FileNotFoundError:
                pass
