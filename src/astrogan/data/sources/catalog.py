"""The fetch catalog ``<RAW>/catalog.sqlite``: one row per remote item, its provenance, licence and status.

Format (version 2; stdlib sqlite3, WAL journal, one commit per item so kill -9 loses no finished
work). Table ``items``, primary key ``(source, item_id)``, columns in this order:

``source`` (apod | nasa-images | esa-hubble | esa-webb | eso), ``item_id`` (APOD date, NASA id,
ESA/ESO id), ``date`` (ISO date), ``title``, ``page_url``, ``image_url``, ``local_path`` (relative to
the catalog's folder, POSIX separators), ``sha256``, ``bytes``, ``width``, ``height``, ``credit``,
``copyright``, ``licence``, ``keywords`` (JSON list), ``explanation``, ``status``, ``fetched_at``
(UTC ISO 8601), then (version 2) ``page_text`` and ``page_html``.

``page_text`` (TEXT) is the visible text of the item's web page, whitespace squashed, and
``page_html`` (BLOB) the page itself, decoded to text (by its declared charset) and stored as
zlib-compressed UTF-8 (`pack_page` / `unpack_page`). APOD fills both for every day whose page it
read and parsed, whatever the day's status: they are what the keyword filter reads (``--match-in
text`` or ``html``), so a re-run with another ``--keyword`` decides every day locally, and a day the
filter now keeps, or whose picture failed or went missing, needs its picture only, never its page
again. Other sources leave them NULL.

Version 1 catalogs (no page columns) open as they are: the missing columns are added (``ALTER TABLE
... ADD COLUMN``, NULL in the old rows) and ``user_version`` becomes 2; an old row without a stored
page is fetched again when it is not done, and stores its page then. Readers of version 1 read a
version 2 catalog unchanged (the new columns come last).

``status`` is one of ``ok`` (the picture downloaded and decoded whole), ``skipped-video``
(video/interactive day, also when it shows a thumbnail picture), ``skipped-no-image``,
``skipped-keyword`` (APOD day outside the ``--keyword`` filter; re-evaluated from the stored page on
every run, without a request), ``pending`` (APOD: page read and kept, picture not yet fetched: a run
was stopped in between), ``not-found`` (404/410) or ``failed:<reason>`` (e.g. ``failed:timeout``,
``failed:http-500``, ``failed:content-type``, ``failed:too-large`` (over ``--max-bytes`` or
``--max-pixels``, decompression bombs included), ``failed:too-big`` (over ``--max-side``),
``failed:truncated`` (body cut short, found by decoding when no ``Content-Length`` said so),
``failed:corrupt`` (a picture whose data does not decode), ``failed:not-an-image``,
``failed:host-not-allowed``). A re-run skips ``ok`` rows whose file is intact (same sha256) and the
other final states (``skipped-video``, ``skipped-no-image``, ``not-found``; APOD also
``skipped-keyword`` days the filter still leaves out) and tries the rest again.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astrogan.imaging import sha256_file

CATALOG_NAME = "catalog.sqlite"
SCHEMA_VERSION = 2
COLUMNS = (
    "source",
    "item_id",
    "date",
    "title",
    "page_url",
    "image_url",
    "local_path",
    "sha256",
    "bytes",
    "width",
    "height",
    "credit",
    "copyright",
    "licence",
    "keywords",
    "explanation",
    "status",
    "fetched_at",
    "page_text",  # version 2
    "page_html",  # version 2: zlib-compressed UTF-8
)
_COLUMN_TYPES = {"bytes": "INTEGER", "width": "INTEGER", "height": "INTEGER", "page_html": "BLOB"}
FINAL_STATUSES = frozenset({"skipped-video", "skipped-no-image", "not-found"})


def pack_page(html: str | None) -> bytes | None:
    """A page as stored in ``page_html``: zlib-compressed UTF-8."""
    return None if html is None else zlib.compress(html.encode("utf-8"), 6)


def unpack_page(blob: bytes | None) -> str | None:
    """The page text stored by `pack_page` (None when there is none, or it does not unpack)."""
    if not blob:
        return None
    try:
        return zlib.decompress(blob).decode("utf-8")
    except (zlib.error, UnicodeDecodeError):
        return None


def now_utc() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class Catalog:
    """``<root>/catalog.sqlite``; ``upsert`` commits each row at once."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / CATALOG_NAME
        self.conn = sqlite3.connect(self.path, timeout=30.0)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"{c} {_COLUMN_TYPES.get(c, 'TEXT')}" for c in COLUMNS)
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS items ({cols}, PRIMARY KEY (source, item_id))")
        # An older catalog: add the columns it lacks (NULL in its rows); nothing is rewritten.
        have = {r[1] for r in self.conn.execute("PRAGMA table_info(items)")}
        for c in COLUMNS:
            if c not in have:
                self.conn.execute(f"ALTER TABLE items ADD COLUMN {c} {_COLUMN_TYPES.get(c, 'TEXT')}")
        self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.conn.commit()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(self, row: dict[str, Any]) -> None:
        """Insert or replace one item (missing columns become NULL) and commit."""
        unknown = set(row) - set(COLUMNS)
        assert not unknown, f"unknown catalog columns {unknown}"
        values = dict.fromkeys(COLUMNS)
        values.update(row)
        if isinstance(values["keywords"], list | tuple):
            values["keywords"] = json.dumps(list(values["keywords"]), ensure_ascii=False)
        values["fetched_at"] = values["fetched_at"] or now_utc()
        marks = ", ".join("?" for _ in COLUMNS)
        self.conn.execute(
            f"INSERT OR REPLACE INTO items ({', '.join(COLUMNS)}) VALUES ({marks})",
            [values[c] for c in COLUMNS],
        )
        self.conn.commit()

    def get(self, source: str, item_id: str) -> dict[str, Any] | None:
        """The row of one item, or None."""
        cur = self.conn.execute("SELECT * FROM items WHERE source=? AND item_id=?", (source, item_id))
        r = cur.fetchone()
        return dict(r) if r else None

    def rows(self, source: str | None = None) -> list[dict[str, Any]]:
        """All rows (of one source), ordered by source and id."""
        if source is None:
            cur = self.conn.execute("SELECT * FROM items ORDER BY source, item_id")
        else:
            cur = self.conn.execute("SELECT * FROM items WHERE source=? ORDER BY item_id", (source,))
        return [dict(r) for r in cur.fetchall()]

    def is_done(self, source: str, item_id: str) -> bool:
        """True when a re-run need not touch the item: a final skip, or ``ok`` with an intact file."""
        return self.is_done_row(self.get(source, item_id))

    def is_done_row(self, row: dict[str, Any] | None) -> bool:
        """`is_done` of a row already read."""
        if row is None:
            return False
        if row["status"] in FINAL_STATUSES:
            return True
        if row["status"] != "ok" or not row["local_path"]:
            return False
        path = self.root / row["local_path"]
        return path.is_file() and path.stat().st_size == row["bytes"] and sha256_file(path) == row["sha256"]

    def summary(self, source: str | None = None) -> Counter[str]:
        """Count of rows per status."""
        if source is None:
            cur = self.conn.execute("SELECT status, COUNT(*) FROM items GROUP BY status")
        else:
            cur = self.conn.execute(
                "SELECT status, COUNT(*) FROM items WHERE source=? GROUP BY status", (source,)
            )
        return Counter({s: n for s, n in cur.fetchall()})


def read_catalog(root: str | Path) -> list[dict[str, Any]]:
    """All rows of ``<root>/catalog.sqlite`` (read-only; empty list when there is none)."""
    path = Path(root) / CATALOG_NAME
    if not path.is_file():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM items ORDER BY source, item_id")]
    finally:
        conn.close()
