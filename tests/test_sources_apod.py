"""APOD fetcher against a loopback mirror built from the real archive metadata, with faults injected."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from apod_mirror import MirrorServer, is_picture_day  # noqa: E402
from astrogan.data.sources import SOURCES, HttpConfig, parse_rate  # noqa: E402
from astrogan.data.sources.catalog import COLUMNS, read_catalog, sha256_file  # noqa: E402

FAST = HttpConfig(rate_per_s=None, timeout_s=0.5, max_retries=2, backoff_s=0.02, max_backoff_s=2.0)
DAY = date(2013, 6, 1)  # a picture day with a copyright line
PAGE = "/apod/ap130601.html"


@pytest.fixture(scope="module")
def mirror(shared_data):
    with MirrorServer(shared_data / "apod-metadata", slow_s=1.2) as srv:
        yield srv


@pytest.fixture()
def server(mirror):
    mirror.faults.clear()
    mirror.latency_s = 0.0
    start = len(mirror.log)
    mirror.mark = start
    yield mirror
    mirror.faults.clear()
    mirror.latency_s = 0.0


def _fetch(server, out, start=DAY, end=DAY, *, http=FAST, **kw):
    return SOURCES["apod"].build(http, start=start, end=end, base_url=server.apod_url, **kw).fetch(out)


def _since(server, prefix):
    return [p for p, _ in server.log[server.mark :] if p.startswith(prefix)]


def _image_path(server, day: date) -> str:
    entry = server.archive.entry(day)
    url = entry.get("hdurl") or entry["url"]
    return "/apod/" + url.split("/apod/", 1)[1]


def _no_partials(out: Path) -> bool:
    return not any(".part-" in p.name for p in out.rglob("*"))


def test_range_rows_files_and_metadata(server, tmp_path):
    first, last = date(2013, 6, 1), date(2013, 6, 10)
    summary = _fetch(server, tmp_path, first, last)
    rows = {r["item_id"]: r for r in read_catalog(tmp_path)}
    assert sorted(rows) == [(first + timedelta(i)).isoformat() for i in range(10)]
    with sqlite3.connect(tmp_path / "catalog.sqlite") as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(items)")]
        assert tuple(cols[: len(COLUMNS)]) == COLUMNS
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for day_id, row in rows.items():
        entry = server.archive.entry(date.fromisoformat(day_id))
        assert row["title"] == " ".join(entry["title"].split())
        assert row["explanation"] == " ".join(entry["explanation"].split())
        assert row["copyright"] == (" ".join(entry["copyright"].split()) if entry.get("copyright") else None)
        assert row["licence"]
        if is_picture_day(entry):
            assert row["status"] == "ok", row
            path = tmp_path / row["local_path"]
            assert row["local_path"] == f"apod/{day_id}.jpg"
            assert sha256_file(path) == row["sha256"] and path.stat().st_size == row["bytes"]
            from PIL import Image

            assert Image.open(path).size == (row["width"], row["height"])
            assert row["image_url"].endswith(_image_path(server, date.fromisoformat(day_id)))
        else:
            assert row["status"] == "skipped-video" and row["local_path"] is None
    assert rows["2013-06-06"]["status"] == "skipped-video" and rows["2013-06-09"]["status"] == "skipped-video"
    assert summary.num_fetched == 8 and summary.num_skipped == 2 and summary.failed == {}
    assert all(
        ua.startswith("astrogan/") and "(+https://github.com/astrogan)" in ua
        for _, ua in server.log[server.mark :]
    )


def test_rerun_resumes_and_refetches_only_damaged_files(server, tmp_path):
    first, last = date(2013, 6, 1), date(2013, 6, 5)
    _fetch(server, tmp_path, first, last)
    before = read_catalog(tmp_path)
    server.mark = len(server.log)
    again = _fetch(server, tmp_path, first, last)
    assert _since(server, "/") == [] and again.num_already_done == 5
    # Damage two files: one deleted, one altered; only those two days are fetched again.
    (tmp_path / "apod" / "2013-06-02.jpg").unlink()
    (tmp_path / "apod" / "2013-06-04.jpg").write_bytes(b"garbage")
    server.mark = len(server.log)
    third = _fetch(server, tmp_path, first, last)
    assert sorted(p for p in _since(server, "/apod/ap")) == ["/apod/ap130602.html", "/apod/ap130604.html"]
    assert third.num_fetched == 2 and third.num_already_done == 3
    after = read_catalog(tmp_path)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "fetched_at"} for r in rows]  # noqa: E731
    assert strip(after) == strip(before)


@pytest.mark.parametrize(
    ("target", "faults", "status", "num_requests"),
    [
        ("page", ["500", "503"], "ok", 3),
        ("page", ["500"] * 5, "failed:http-500", 3),
        ("page", ["403"], "failed:http-403", 1),
        ("page", ["slow"], "ok", 2),
        ("page", ["slow"] * 3, "failed:timeout", 3),
        ("page", ["noimage"], "skipped-no-image", 1),
        ("page", ["offsite"], "failed:host-not-allowed", 1),
        ("image", ["drop"], "ok", 2),
        ("image", ["drop"] * 3, "failed:truncated", 3),
        ("image", ["html"], "failed:content-type", 1),
        ("image", ["huge"], "failed:too-large", 1),
        ("image", ["badbytes"], "failed:not-an-image", 1),
        ("image", ["404"], "not-found", 1),
    ],
)
def test_faults(server, tmp_path, target, faults, status, num_requests):
    path = PAGE if target == "page" else _image_path(server, DAY)
    server.faults[path] = list(faults)
    summary = _fetch(server, tmp_path)
    (row,) = read_catalog(tmp_path)
    assert row["status"] == status
    assert len(_since(server, path)) == num_requests
    files = [p for p in (tmp_path / "apod").glob("*")] if (tmp_path / "apod").exists() else []
    if status == "ok":
        assert [p.name for p in files] == ["2013-06-01.jpg"]
        assert sha256_file(files[0]) == row["sha256"]
    else:
        assert files == [] and row["local_path"] is None and row["sha256"] is None
        if status.startswith("skipped"):
            assert summary.num_skipped == 1 and summary.failed == {}
        else:
            assert summary.failed == {status.removeprefix("failed:"): 1}
    assert _no_partials(tmp_path)


def test_429_honours_retry_after(server, tmp_path):
    server.faults[PAGE] = ["429:1"]
    t0 = time.perf_counter()
    _fetch(server, tmp_path)
    elapsed = time.perf_counter() - t0
    (row,) = read_catalog(tmp_path)
    assert row["status"] == "ok" and len(_since(server, PAGE)) == 2
    assert elapsed >= 0.95  # the backoff alone is 0.02 s: only Retry-After explains the wait


def test_failed_items_are_retried_on_the_next_run(server, tmp_path):
    server.faults[PAGE] = ["500"] * 3
    _fetch(server, tmp_path)
    assert read_catalog(tmp_path)[0]["status"] == "failed:http-500"
    _fetch(server, tmp_path)
    assert read_catalog(tmp_path)[0]["status"] == "ok"


def test_parse_failure_records_the_reason_warns_and_is_retried(server, tmp_path, monkeypatch):
    """A page the parser chokes on: failed:parse with the exception in the status, one warning naming the
    day and URL, the run goes on; the next run retries that day only (like any failed:<reason>)."""
    from astrogan.data.sources import apod

    real_parse = apod.parse_apod_page
    long_msg = "unexpected <center> nesting\n  at line 12: " + "x" * 300

    def choking_parse(html: str, page_url: str):
        if page_url.endswith(PAGE):
            raise ValueError(long_msg)
        return real_parse(html, page_url)

    monkeypatch.setattr(apod, "parse_apod_page", choking_parse)
    with pytest.warns(UserWarning) as record:
        summary = _fetch(server, tmp_path, DAY, DAY + timedelta(days=1))
    rows = {r["item_id"]: r for r in read_catalog(tmp_path)}
    bad, good = rows[DAY.isoformat()], rows[(DAY + timedelta(days=1)).isoformat()]
    assert bad["status"].startswith("failed:parse:ValueError: unexpected <center> nesting at line 12: xxx")
    assert bad["status"].endswith("...") and len(bad["status"]) < 160 and "\n" not in bad["status"]
    assert bad["local_path"] is None and good["status"] == "ok"
    assert summary.failed == {"parse": 1} and summary.num_fetched == 1  # counted as plain failed:parse
    msgs = [str(w.message) for w in record if "not parsed" in str(w.message)]
    assert len(msgs) == 1
    assert DAY.isoformat() in msgs[0] and PAGE in msgs[0] and "ValueError: unexpected <center>" in msgs[0]

    monkeypatch.setattr(apod, "parse_apod_page", real_parse)
    server.mark = len(server.log)
    again = _fetch(server, tmp_path, DAY, DAY + timedelta(days=1))
    assert _since(server, "/apod/ap") == [PAGE]  # the ok day is done; the failed one is tried again
    assert again.num_already_done == 1 and again.num_fetched == 1
    assert read_catalog(tmp_path)[0]["status"] == "ok"


def test_not_found_days_and_bad_input(server, tmp_path):
    _fetch(server, tmp_path, date(1995, 6, 17), date(1995, 6, 17))  # the archive has no record of it
    assert read_catalog(tmp_path)[0]["status"] == "not-found"
    from astrogan.utils.errors import UserError

    with pytest.raises(UserError, match="before --start"):
        _fetch(server, tmp_path, date(2013, 6, 2), date(2013, 6, 1))
    with pytest.raises(UserError, match="date like"):
        SOURCES["apod"].build(start="June 1", end="2013-06-02", base_url=server.apod_url).fetch(tmp_path)
    with pytest.raises(UserError, match="--rate"):
        _fetch(server, tmp_path, http=HttpConfig(rate_per_s=parse_rate("fast")))


def _keyword_expectation(server, first, last, pred):
    out = set()
    d = first
    while d <= last:
        e = server.archive.entry(d)
        if e is not None:
            fields = [e.get(k) or "" for k in ("title", "explanation", "copyright", "url", "hdurl")]
            if any(pred(f) for f in fields):
                out.add(d.isoformat())
        d += timedelta(days=1)
    return out


@pytest.mark.parametrize(
    ("keywords", "regex", "pred"),
    [
        (["NGC"], False, lambda f: "NGC" in f),
        (["Mars", "Jupiter"], False, lambda f: "Mars" in f or "Jupiter" in f),
        ([r"\bM ?\d{1,3}\b"], True, lambda f: re.search(r"\bM ?\d{1,3}\b", f) is not None),
    ],
)
def test_keyword_filter_on_real_metadata(server, tmp_path, keywords, regex, pred):
    first, last = date(2012, 1, 1), date(2012, 2, 29)
    _fetch(server, tmp_path, first, last, keywords=keywords, regex=regex, http=replace(FAST, concurrency=8))
    rows = read_catalog(tmp_path)
    kept = {r["item_id"] for r in rows if r["status"] not in ("skipped-keyword", "not-found")}
    expected = _keyword_expectation(server, first, last, pred)
    assert kept == expected and 3 <= len(expected) < 55  # a real selection, neither none nor all
    for r in rows:
        if r["item_id"] in kept:
            assert r["keywords"] != "[]"


def _run_cli_subprocess(server, out: Path, first: date, last: date) -> subprocess.Popen:
    code = "import sys; from astrogan.cli.main import main; sys.exit(main(sys.argv[1:]))"
    args = [
        "fetch",
        "apod",
        "--start",
        first.isoformat(),
        "--end",
        last.isoformat(),
        "--out",
        str(out),
        "--base-url",
        server.apod_url,
        "--rate",
        "off",
        "--concurrency",
        "2",
        "--timeout",
        "2",
    ]
    env = {**os.environ, "ASTROGAN_QUIET": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env)


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_matches_uninterrupted(server, tmp_path):
    first, last = date(2013, 6, 1), date(2013, 6, 30)
    server.latency_s = 0.03
    killed = tmp_path / "killed"
    proc = _run_cli_subprocess(server, killed, first, last)
    deadline = time.monotonic() + 60
    n_ok = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            n_ok = sum(r["status"] == "ok" for r in read_catalog(killed))
        except sqlite3.Error:
            n_ok = 0
        if n_ok >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the fetch finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {r["item_id"]: r for r in read_catalog(killed) if r["status"] == "ok"}
    assert 6 <= len(done_before) < 25
    for r in done_before.values():  # finished work is on disk, intact
        assert sha256_file(killed / r["local_path"]) == r["sha256"]
    server.latency_s = 0.0
    server.mark = len(server.log)
    _fetch(server, killed, first, last, http=replace(FAST, concurrency=4))
    refetched = {p for p in _since(server, "/apod/ap")}
    for day_id in done_before:
        assert f"/apod/ap{date.fromisoformat(day_id):%y%m%d}.html" not in refetched
    assert _no_partials(killed)

    clean = tmp_path / "clean"
    _fetch(server, clean, first, last, http=replace(FAST, concurrency=4))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "fetched_at"} for r in rows]  # noqa: E731
    assert strip(read_catalog(killed)) == strip(read_catalog(clean))
    files = lambda root: sorted(p.relative_to(root).as_posix() for p in (root / "apod").iterdir())  # noqa: E731
    assert files(killed) == files(clean)


def test_cli_fetch_apod(server, tmp_path, capsys):
    from astrogan.cli.main import main

    rc = main(
        [
            "fetch",
            "apod",
            "--start",
            "2013-06-05",
            "--end",
            "2013-06-06",
            "--out",
            str(tmp_path),
            "--base-url",
            server.apod_url,
            "--rate",
            "off",
        ]
    )
    assert rc == 0
    assert [r["status"] for r in read_catalog(tmp_path)] == ["ok", "skipped-video"]
    rc = main(["fetch", "apod", "--start", "2013-13-01", "--end", "2013-06-06", "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert re.search(r"^error: --start must be a date", err, re.M)
