"""Fetching at the latency limit, checked without a clock: every request slot busy, round trips counted at
the server (a lockstep mirror), the slow work off the event loop, and nothing reported done before it is
committed (what a kill -9 relies on)."""

from __future__ import annotations

import hashlib
import sqlite3
import sys
import threading
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from astrogan.data.sources import SOURCES, HttpConfig
from tests.helpers.apod_mirror import MirrorServer

# 22 days: 20 pictures, a video day (05-14) and a day the archive lacks (05-25): 42 requests.
FIRST, LAST = date(2013, 5, 10), date(2013, 5, 31)


def _fetch(srv: MirrorServer, out: Path, http: HttpConfig):
    return SOURCES["apod"].build(http, start=FIRST, end=LAST, base_url=srv.apod_url).fetch(out)


@pytest.mark.parametrize("rate", [None, 1000.0])
def test_every_request_slot_stays_busy_until_the_work_runs_out(shared_data, tmp_path, rate):
    """A mirror that answers in rounds (as soon as ``concurrency`` requests wait, or none came for a
    second) counts the round trips a fetch waits: all of them full but the last two, so the run takes
    ceil(requests / concurrency) + 1 round trips at most, and the server never sees more than
    ``concurrency`` requests at once. A connection pool, a rate limiter (at a rate above what the round
    trips allow), a thread pool or a listen backlog that caps the concurrency leaves slots idle."""
    conc = 8
    with MirrorServer(shared_data / "apod-metadata", lockstep=conc, quiet_s=1.0) as srv:
        summary = _fetch(
            srv, tmp_path, HttpConfig(concurrency=conc, rate_per_s=rate, timeout_s=20, max_retries=0)
        )
    num_requests = len(srv.log)
    assert summary.num_requests == num_requests == 42 and summary.num_retries == 0
    assert dict(summary.statuses) == {"ok": 20, "skipped-video": 1, "not-found": 1}
    assert srv.max_in_flight == conc  # reached, and never exceeded
    assert sum(srv.rounds) == num_requests
    assert all(n == conc for n in srv.rounds[:-2]), str(srv.rounds)  # every slot busy while there is work
    assert len(srv.rounds) <= -(-num_requests // conc) + 1, str(srv.rounds)
    assert all(ua.startswith("astrogan/") for _, ua in srv.log)  # polite: it says who it is


def test_files_hashes_checks_and_parsing_stay_off_the_event_loop(shared_data, tmp_path, monkeypatch):
    """The event loop (the main thread) only moves bytes and writes the catalog: creating, syncing and
    renaming files, hashing, decoding pictures, parsing and packing pages all run in worker threads."""
    from astrogan.data.sources import apod, base, http

    seen: dict[str, set[str]] = {}
    lock = threading.Lock()

    def spy(name, fn):
        def wrapper(*args, **kwargs):
            with lock:
                seen.setdefault(name, set()).add(threading.current_thread().name)
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(http, "hashlib", SimpleNamespace(sha256=spy("sha256", hashlib.sha256)))
    monkeypatch.setattr(http, "sha256_file", spy("sha256_file", http.sha256_file))
    for module, name in [
        (http.tempfile, "mkstemp"),
        (http.os, "fsync"),
        (http.os, "replace"),
        (base, "check_picture"),
        (apod, "parse_apod_page"),
        (apod, "pack_page"),
        (apod, "decode_html"),
    ]:
        monkeypatch.setattr(module, name, spy(name, getattr(module, name)))
    with MirrorServer(shared_data / "apod-metadata", latency_s=0.01) as srv:
        summary = _fetch(srv, tmp_path, HttpConfig(concurrency=4, rate_per_s=None, timeout_s=20))
    assert summary.num_fetched == 20
    expected = {"mkstemp", "fsync", "replace", "sha256", "check_picture", "parse_apod_page", "pack_page"}
    assert expected | {"decode_html"} <= set(seen), seen  # (sha256_file: only for bodies past SPILL_BYTES)
    on_loop = {name for name, threads in seen.items() if threading.main_thread().name in threads}
    assert on_loop == set(), f"ran on the event loop: {sorted(on_loop)}"


def test_nothing_is_reported_done_before_its_row_is_committed(shared_data, tmp_path, monkeypatch):
    """Whenever the run counts an item done (progress, summary), another connection to the catalog
    (a kill -9 right then) already reads its final row: a killed fetch loses nothing it reported."""
    from astrogan.utils.log import Bar

    checks: list[tuple[int, int]] = []
    real_advance = Bar.advance

    def advance(self, k=1, status=None):
        real_advance(self, k, status)
        with sqlite3.connect(f"file:{tmp_path / 'catalog.sqlite'}?mode=ro", uri=True) as conn:
            (final,) = conn.execute("SELECT COUNT(*) FROM items WHERE status != 'pending'").fetchone()
        checks.append((self.done, final))

    monkeypatch.setattr(Bar, "advance", advance)
    with MirrorServer(shared_data / "apod-metadata", latency_s=0.02) as srv:
        summary = _fetch(srv, tmp_path, HttpConfig(concurrency=8, rate_per_s=None, timeout_s=20))
    assert len(checks) == summary.num_attempted == 22
    assert all(final >= done for done, final in checks), checks


def test_a_warm_fetch_searches_sys_path_for_no_module(shared_data, tmp_path, monkeypatch):
    """No request costs an import: Python does not remember a failed one, and httpcore tries the optional
    ``sniffio`` for every lock it sets up (several per request): without it installed, each try walked
    sys.path again, 1-1.5 ms of event-loop CPU per request, as much as the rest of httpx's work."""
    searched: list[str] = []

    class Spy:  # the first finder Python asks: sees every import that is not already in sys.modules
        def find_spec(self, name, path=None, target=None):
            searched.append(name)

    with MirrorServer(shared_data / "apod-metadata") as srv:
        _fetch(srv, tmp_path / "warm", HttpConfig(concurrency=4, rate_per_s=None, timeout_s=20))
        monkeypatch.setattr(sys, "meta_path", [Spy(), *sys.meta_path])
        summary = _fetch(srv, tmp_path / "again", HttpConfig(concurrency=4, rate_per_s=None, timeout_s=20))
    assert summary.num_fetched == 20 and searched == []
