"""The shared polite HTTP client: rate parsing, token bucket, safe names, redirects to foreign hosts."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from apod_mirror import MirrorServer  # noqa: E402
from astrogan.data.sources.http import (  # noqa: E402
    FetchError,
    HttpConfig,
    PoliteClient,
    TokenBucket,
    extension_for,
    parse_rate,
    safe_name,
)
from astrogan.utils.errors import UserError  # noqa: E402


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
