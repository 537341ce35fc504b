"""The polite HTTP client and its one `HttpConfig` (checked; builds every source): rates, names, redirects."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from astrogan.data.sources import parse_rate
from astrogan.data.sources.http import (
    FetchError,
    HttpConfig,
    PoliteClient,
    TokenBucket,
    decode_html,
    extension_for,
    safe_name,
)
from astrogan.utils.errors import UserError
from tests.helpers.apod_mirror import MirrorServer


def test_parse_rate():
    assert parse_rate("2/s") == 2.0
    assert parse_rate("30/min") == 0.5
    assert parse_rate("off") is None and parse_rate(None) is None and parse_rate(0) is None
    with pytest.raises(UserError, match="--rate"):
        parse_rate("two per second")


def test_token_bucket_limits_rate():
    async def go() -> float:
        bucket = TokenBucket(20.0)
        t0 = time.perf_counter()
        for _ in range(11):
            await bucket.acquire()
        return time.perf_counter() - t0

    elapsed = asyncio.run(go())
    assert 0.45 <= elapsed < 1.5  # 1 burst token, then 10 more at 20/s


@pytest.mark.parametrize("item_id", ["../../etc/passwd", ".hidden", "a/b\\c", "x" * 500, "", "NGC 1300?"])
def test_safe_name_never_escapes_the_folder(item_id):
    name = safe_name(item_id)
    assert "/" not in name and "\\" not in name and not name.startswith(".") and 0 < len(name) <= 90
    assert (Path("/root/folder") / name).parent == Path("/root/folder")


def test_safe_names_do_not_collide_and_keep_clean_ids():
    assert safe_name("2015-01-01") == "2015-01-01"
    assert safe_name("a/b") != safe_name("a_b")
    assert extension_for("image/jpeg; charset=binary") == ".jpg" and extension_for("text/html") == ".bin"


def test_redirect_to_a_foreign_host_is_refused(tmp_path):
    with MirrorServer(None) as srv:
        srv.faults["/esa/hubble/media/x/large.jpg"] = ["redirect:http://offsite.invalid/x.jpg"]
        cfg = HttpConfig(
            rate_per_s=None, timeout_s=1.0, max_retries=0, allowed_hosts=frozenset({"127.0.0.1"})
        )

        async def go() -> None:
            async with PoliteClient(cfg) as client:
                await client.download(f"{srv.root}/esa/hubble/media/x/large.jpg", tmp_path / "x.jpg")

        with pytest.raises(FetchError, match="host-not-allowed"):
            asyncio.run(go())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["download", "get_body", "peek"])
def test_a_body_that_trickles_in_is_a_timeout_not_a_hang(tmp_path, how):
    """Every read is quicker than the timeout, so only the slow-body guard can end it (~0.5 s)."""
    with MirrorServer(None) as srv:
        path = "/esa/hubble/archives/images/large/x.jpg"  # a 40x30 JPEG: ~1 KB, ~50 s at a byte a tick
        srv.faults[path] = ["trickle"]
        cfg = HttpConfig(
            rate_per_s=None, timeout_s=0.5, max_retries=0, allowed_hosts=frozenset({"127.0.0.1"})
        )

        async def go() -> None:
            async with PoliteClient(cfg) as client:
                url = f"{srv.root}{path}"
                if how == "download":
                    await client.download(url, tmp_path / "x.jpg")
                elif how == "get_body":
                    await client.get_body(url, accept=("image/",))
                else:
                    await client.peek(url, lambda head: None)

        t0 = time.monotonic()
        with pytest.raises(FetchError, match="timeout"):
            asyncio.run(asyncio.wait_for(go(), 20))
        assert time.monotonic() - t0 < 5
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("knobs", "flag"),
    [
        ({"concurrency": 0}, "--concurrency"),
        ({"rate_per_s": 0.0}, "--rate"),
        ({"timeout_s": 0.0}, "--timeout"),
        ({"connect_timeout_s": -1.0}, "connect_timeout_s"),
        ({"max_retries": -1}, "--retries"),
        ({"backoff_s": -0.1}, "backoff_s"),
        ({"max_backoff_s": -1.0}, "max_backoff_s"),
        ({"max_bytes": 0}, "--max-bytes"),
        ({"max_redirects": -1}, "max_redirects"),
    ],
)
def test_http_config_rejects_bad_values_in_one_line(knobs, flag):
    with pytest.raises(UserError, match=flag) as err:
        HttpConfig(**knobs)
    assert "\n" not in str(err.value)


def test_http_config_is_frozen_with_the_documented_defaults():
    cfg = HttpConfig(allowed_hosts=frozenset({"Example.ORG"}))
    assert (cfg.concurrency, cfg.rate_per_s, cfg.timeout_s, cfg.max_retries, cfg.max_bytes) == (
        4,
        2.0,
        30.0,
        4,
        200 * 1024 * 1024,
    )
    assert cfg.allowed_hosts == {"example.org"} and cfg.allowing({"CDN.example.org"}).allowed_hosts == {
        "example.org",
        "cdn.example.org",
    }
    with pytest.raises(AttributeError):
        cfg.concurrency = 8  # type: ignore[misc]


# The required options of each registered source; a new source needs a line here.
REQUIRED = {
    "apod": {"start": "2013-06-01", "end": "2013-06-02"},
    "nasa-images": {"query": "nebula"},
    "esa": {"site": "webb"},
}


def test_every_registered_source_is_built_from_one_http_config():
    from astrogan.data.sources import SOURCES
    from astrogan.data.sources.base import Source

    assert set(SOURCES) == set(REQUIRED)
    http = HttpConfig(concurrency=3, rate_per_s=None, timeout_s=2.0, allowed_hosts=frozenset({"mirror.test"}))
    for name, spec in SOURCES.items():
        source = spec.build(http, **REQUIRED[name])
        assert isinstance(source, Source) and source.base_url.startswith("https://")
        # The shared knobs pass through; the source only adds its archive's hosts.
        assert source.http == HttpConfig(
            concurrency=3, rate_per_s=None, timeout_s=2.0, allowed_hosts=source.http.allowed_hosts
        )
        assert "mirror.test" in source.http.allowed_hosts and len(source.http.allowed_hosts) > 1
        local = spec.build(http, **REQUIRED[name], base_url="http://127.0.0.1:8000/x")
        assert local.base_url == "http://127.0.0.1:8000/x/" and "127.0.0.1:8000" in local.http.allowed_hosts
        with pytest.raises(UserError, match="--base-url"):
            spec.build(http, **REQUIRED[name], base_url="file:///etc/")
        with pytest.raises(TypeError, match="no option"):
            spec.build(http, **REQUIRED[name], concurrency=2)  # a shared knob belongs in the HttpConfig


@pytest.mark.slow  # starts a process
def test_fetch_commands_come_from_the_registry_and_the_cli_starts_without_httpx(capsys):
    from astrogan.cli.main import main
    from astrogan.data.sources import SOURCES

    shared = ["--out", "--concurrency", "--rate", "--timeout", "--retries", "--max-bytes", "--max-pixels"]
    shared += ["--base-url"]
    for name, spec in SOURCES.items():
        assert main(["fetch", name, "--help"]) == 0
        text = capsys.readouterr().out
        for flag in [o.flag for o in spec.options] + shared:
            assert flag in text, (name, flag)
    code = "import sys, astrogan.cli.main; print(sorted({'httpx', 'astrogan.data.sources.http'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


LATIN1_PAGE = (
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
    "<title>APOD</title></head><body>Credit: P-M Hed\xe9n, Pe\xf1arrubia, 5 \xbd years</body></html>"
)


@pytest.mark.parametrize(
    ("content", "header", "want"),
    [
        (LATIN1_PAGE.encode("latin-1"), None, "P-M Hedén, Peñarrubia, 5 ½ years"),  # <meta> only
        (LATIN1_PAGE.encode("latin-1"), "utf-8", "P-M Hedén"),  # a header that lies: not UTF-8
        (LATIN1_PAGE.encode("latin-1"), "ISO-8859-1", "Hedén"),
        # Windows-1252 as browsers read "iso-8859-1": curly quotes in 0x80-0x9F.
        ('<meta charset="iso-8859-1">“Pillars” – NGC'.encode("cp1252"), None, "“Pillars” – NGC"),
        ('<meta charset="utf-8">Hedén ½'.encode(), None, "Hedén ½"),
        ('<meta charset="iso-8859-1">Hedén'.encode(), None, "Hedén"),  # valid UTF-8 beats a wrong label
        ('<meta charset="utf-8">Hedén'.encode("utf-8-sig"), None, "Hedén"),  # byte-order mark
        ("<p>Hed\xe9n</p>".encode("latin-1"), None, "Hedén"),  # nothing declared: Windows-1252
        ("<p>Hed\xe9n</p>".encode("latin-1"), "x-no-such-charset", "Hedén"),
        (b"<p>plain ascii</p>", "utf-16", "plain ascii"),
    ],
)
def test_decode_html_by_declared_charset(content, header, want):
    text = decode_html(content, header)
    assert want in text and "\ufffd" not in text


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_downloads_follow_the_umask(tmp_path, umask):
    """mkstemp makes 0600 files: a fetched picture must get what a plain open() would (colleagues read RAW/)."""
    import os
    import stat

    with MirrorServer(None) as srv:
        cfg = HttpConfig(
            rate_per_s=None, timeout_s=2.0, max_retries=0, allowed_hosts=frozenset({"127.0.0.1"})
        )

        async def go():
            async with PoliteClient(cfg) as client:
                url = f"{srv.root}/esa/hubble/archives/images/large/heic0001.jpg"
                return await client.download(url, tmp_path / "x.jpg")

        old = os.umask(umask)
        try:
            got = asyncio.run(go())
        finally:
            os.umask(old)
    assert stat.S_IMODE(got.path.stat().st_mode) == 0o666 & ~umask


def test_an_error_answer_keeps_its_connection(tmp_path):
    """A 404 page or a 5xx (read out, being short) leaves the keep-alive connection in the pool: the
    requests after it need no new handshake (nor DNS look-up)."""
    from astrogan.data.sources.http import NotFound

    with MirrorServer(None) as srv:
        srv.faults["/esa/hubble/archives/images/large/heic0001.jpg"] = ["503"]
        cfg = HttpConfig(
            concurrency=1,
            rate_per_s=None,
            timeout_s=2.0,
            backoff_s=0.01,
            allowed_hosts=frozenset({"127.0.0.1"}),
        )

        async def go():
            async with PoliteClient(cfg) as client:
                with pytest.raises(NotFound):
                    await client.get_body(f"{srv.root}/no/such/page.html")
                url = f"{srv.root}/esa/hubble/archives/images/large/heic0001.jpg"
                return await client.download(url, tmp_path / "x.jpg"), client.num_retries

        got, retries = asyncio.run(go())
    assert got.path.is_file() and retries == 1
    assert len(srv.requests) == 3 and len({r["port"] for r in srv.requests}) == 1, srv.requests


def test_a_download_past_the_memory_share_spills_to_its_temp_file(tmp_path, monkeypatch):
    """A body bigger than SPILL_BYTES goes on to its hidden temp file: the same file and sha256 as a small
    one kept in memory; a check that fails leaves no file behind either way."""
    import hashlib

    from astrogan.data.sources import http

    with MirrorServer(None) as srv:
        cfg = HttpConfig(
            rate_per_s=None, timeout_s=2.0, max_retries=0, allowed_hosts=frozenset({"127.0.0.1"})
        )
        url = f"{srv.root}/esa/hubble/archives/images/large/heic0001.jpg"

        def refuse(path, ctype):
            raise FetchError("corrupt", "refused by the test")

        async def go(dest, check=None):
            async with PoliteClient(cfg) as client:
                return await client.download(url, dest, check=check)

        whole = asyncio.run(go(tmp_path / "memory.jpg"))
        monkeypatch.setattr(http, "SPILL_BYTES", 100)
        spilled = asyncio.run(go(tmp_path / "spilled.jpg"))
        with pytest.raises(FetchError, match="corrupt"):
            asyncio.run(go(tmp_path / "refused.jpg", refuse))
    data = spilled.path.read_bytes()
    assert data == whole.path.read_bytes() and len(data) == spilled.num_bytes > 100
    assert spilled.sha256 == whole.sha256 == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.jpg", "spilled.jpg"]
