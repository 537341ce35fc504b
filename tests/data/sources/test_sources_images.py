"""What the fetchers accept as a picture (`check_picture`), the run summary's verdict, and the catalog's
schema migration: fault cases made here, in the test, byte by byte."""

from __future__ import annotations

import io
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from astrogan.data.sources.base import FetchSummary, check_picture, header_size, jpeg_problem
from astrogan.data.sources.catalog import COLUMNS, Catalog, pack_page, unpack_page
from astrogan.data.sources.http import FetchError
from tests.helpers.apod_mirror import bomb_png, header_then_junk

LIMIT = 8192 * 8192


def _picture(fmt: str, size: tuple[int, int] = (64, 48), **kw) -> bytes:
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _write(tmp_path: Path, data: bytes, name: str = "x.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _reason(path: Path, **kw) -> tuple[str, bool]:
    with pytest.raises(FetchError) as err:
        check_picture(path, **{"max_pixels": LIMIT, **kw})
    return err.value.reason, err.value.retry


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "TIFF", "WEBP"])
def test_whole_pictures_pass_with_their_size(tmp_path, fmt):
    path = _write(tmp_path, _picture(fmt))
    assert check_picture(path, max_pixels=LIMIT) == (64, 48)
    assert check_picture(path, max_pixels=64 * 48, max_side_px=64) == (64, 48)  # limits are inclusive


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_a_body_cut_short_is_truncated_and_retryable(tmp_path, fmt):
    """What a server that closes early without a Content-Length leaves: the header, part of the data."""
    data = _picture(fmt)
    assert _reason(_write(tmp_path, data[: len(data) // 2])) == ("truncated", True)


def test_a_jpeg_cut_after_its_last_full_block_is_still_truncated(tmp_path):
    """libjpeg may finish a small picture before the data runs out; the missing end marker tells."""
    data = _picture("JPEG")
    assert jpeg_problem(data) is None
    assert _reason(_write(tmp_path, data[:-2])) == ("truncated", True)  # everything but FF D9


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_valid_header_followed_by_junk_is_corrupt(tmp_path, fmt):
    data = header_then_junk(_picture(fmt), "junk")
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (64, 48)  # the header is fine: Pillow opens it
    reason, retry = _reason(_write(tmp_path, data))
    assert reason == "corrupt" and not retry


def test_junk_in_jpeg_scan_data_is_caught_although_libjpeg_decodes_it(tmp_path):
    """A marker byte that cannot appear inside a scan (FF 02) between valid header and end marker."""
    data = _picture("JPEG", quality=95)
    sos = data.find(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    bad = data[: start + 10] + b"\xff\x02" + data[start + 12 :]
    assert jpeg_problem(bad) == "corrupt"
    assert _reason(_write(tmp_path, bad)) == ("corrupt", False)


def test_real_jpegs_pass_the_structure_walk(shared_data):
    files = sorted((shared_data / "nasa-esa-press").glob("*.jp*g"))[:20]
    files += sorted((shared_data / "galaxyzoo-examples").glob("*.jp*g"))[:20]
    assert files
    for f in files:
        assert jpeg_problem(f.read_bytes()) is None, f
    progressive = io.BytesIO()
    Image.open(files[0]).convert("RGB").save(progressive, "JPEG", progressive=True)
    assert jpeg_problem(progressive.getvalue()) is None


def test_a_decompression_bomb_is_too_large_not_a_crash(tmp_path):
    """60000 x 60000 px declared in a 74-byte PNG: refused from the header (Pillow's own guard fires
    first here; an explicit ``max_pixels`` below Pillow's catches smaller ones)."""
    bomb = _write(tmp_path, bomb_png(), "bomb.png")
    assert bomb.stat().st_size < 100
    assert _reason(bomb) == ("too-large", False)
    with pytest.raises(FetchError, match="too-large"):
        header_size(bomb.read_bytes())
    mid = _write(tmp_path, bomb_png(9000, 9000), "mid.png")  # 81 Mpx: under Pillow's warning, over ours
    assert _reason(mid, max_pixels=8192 * 8192) == ("too-large", False)
    assert _reason(_write(tmp_path, _picture("PNG")), max_pixels=100) == ("too-large", False)


def test_max_side_and_not_a_picture(tmp_path):
    assert _reason(_write(tmp_path, _picture("PNG")), max_side_px=63) == ("too-big", False)
    assert _reason(_write(tmp_path, b"<html>not a picture</html>")) == ("not-an-image", False)


def test_every_frame_of_an_animation_is_decoded(tmp_path):
    frames = [Image.new("P", (32, 32), k) for k in range(4)]
    for k, f in enumerate(frames):
        f.putpixel((k, k), 200)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    data = buf.getvalue()
    assert check_picture(_write(tmp_path, data), max_pixels=LIMIT) == (32, 32)
    assert _reason(_write(tmp_path, data[: len(data) - 30])) == ("truncated", True)


def test_fits_is_read_whole_with_astropy(tmp_path):
    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(np.zeros((30, 40), np.float32)).writeto(buf)
    data = buf.getvalue()
    assert check_picture(_write(tmp_path, data), "image/fits", max_pixels=LIMIT) == (40, 30)
    assert check_picture(_write(tmp_path, data), "", max_pixels=LIMIT) == (40, 30)  # by its SIMPLE card
    reason, _ = _reason(_write(tmp_path, data[: len(data) // 2]))
    assert reason == "truncated"
    assert _reason(_write(tmp_path, data), max_pixels=100) == ("too-large", False)


def test_header_size_reads_only_what_it_needs():
    data = _picture("JPEG")
    assert header_size(data[: data.find(b"\xff\xda") + 16]) == (64, 48)  # through the scan header
    assert header_size(data[:10]) is None


def test_summary_verdict_comes_first():
    s = FetchSummary("apod", Counter({"failed:http-500": 14}))
    assert s.all_failed and s.line().startswith(
        "apod: FAILED, nothing fetched: 14 of 14 failed (http-500 14)"
    )
    s = FetchSummary("apod", Counter({"not-found": 2}), num_already_done=3)
    assert s.all_failed and "2 of 2 failed (not-found 2), already done 3" in s.line()
    s = FetchSummary("apod", Counter(), num_already_done=90)
    assert not s.all_failed and s.line().startswith("apod: nothing new: 90 already done in ")
    s = FetchSummary("nasa-images", Counter())
    assert not s.all_failed and s.line().startswith("nasa-images: nothing to fetch")
    s = FetchSummary("apod", Counter({"ok": 1, "skipped-video": 1, "failed:timeout": 3}))
    assert not s.all_failed and s.line().startswith("apod: fetched 1, skipped 1, failed 3 (timeout 3) in")
    s = FetchSummary("apod", Counter({"skipped-keyword": 5}))
    assert not s.all_failed  # skipping is a decision, not a failure


def test_a_version_1_catalog_gains_the_page_columns(tmp_path):
    old = COLUMNS[: COLUMNS.index("fetched_at") + 1]
    with sqlite3.connect(tmp_path / "catalog.sqlite") as conn:
        conn.execute(f"CREATE TABLE items ({', '.join(old)}, PRIMARY KEY (source, item_id))")
        conn.execute("INSERT INTO items (source, item_id, status) VALUES ('apod', '2001-01-01', 'ok')")
    with Catalog(tmp_path) as cat:
        (row,) = cat.rows()
        assert row["status"] == "ok" and row["page_text"] is None and row["page_html"] is None
        cat.upsert(
            {
                "source": "apod",
                "item_id": "2001-01-02",
                "status": "skipped-keyword",
                "page_html": pack_page("é"),
            }
        )
        assert unpack_page(cat.get("apod", "2001-01-02")["page_html"]) == "é"
    with sqlite3.connect(tmp_path / "catalog.sqlite") as conn:
        assert tuple(r[1] for r in conn.execute("PRAGMA table_info(items)")) == COLUMNS
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    with Catalog(tmp_path) as cat:  # opening again changes nothing
        assert len(cat.rows()) == 2
    assert unpack_page(None) is None and unpack_page(b"not zlib") is None


def test_only_raster_picture_formats_are_opened(tmp_path):
    """An EPS (which Pillow would hand to Ghostscript) is not a picture here."""
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    assert _reason(_write(tmp_path, eps)) == ("not-an-image", False)
    assert header_size(eps) is None
