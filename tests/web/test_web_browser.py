"""The page in a real browser (Debian's Chromium via Playwright) against `astrogan serve` on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from astrogan.web.onnx_generator import write_tiny_model
from tests.helpers.serve import running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason="needs /usr/bin/chromium (Debian: apt-get install -y chromium)"
    ),
]


@pytest.fixture()
def server(tmp_path):
    model = write_tiny_model(tmp_path / "model.onnx", z_dim=8, image_size=32, channels=3)
    with running_server(
        model,
        tmp_path / "pool",
        "--pool-size",
        "20",
        "--low-water",
        "5",
        ready=lambda r: r.json()["pool_depth"] >= 5,
    ) as srv:
        yield srv.url


def test_page_shows_a_decodable_image_and_another_on_click(server, tmp_path):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            response = page.goto(server + "/")
            assert response.status == 200
            assert page.locator("h1").inner_text() == "This sky does not exist"  # a tiny model: no subject
            img = page.locator("#nebula")
            assert page.evaluate("document.getElementById('nebula').decode().then(() => true)")
            size = img.evaluate("e => [e.complete, e.naturalWidth, e.naturalHeight]")
            assert size == [True, 32, 32]
            assert img.evaluate("e => getComputedStyle(e).imageRendering") == "pixelated"
            shown = img.bounding_box()
            assert shown["width"] >= 256  # shown large, not at 32 px
            assert "Model card" in page.content() and "tiny-analytic" in page.locator(".card").inner_text()
            first = img.get_attribute("data-seed")
            first_src = img.get_attribute("src")
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            if os.environ.get("ASTROGAN_SCREENSHOT"):
                shutil.copy(tmp_path / "page.png", os.environ["ASTROGAN_SCREENSHOT"])
            with page.expect_navigation():
                page.click("#another")
            img = page.locator("#nebula")
            assert page.evaluate("document.getElementById('nebula').decode().then(() => true)")
            assert img.evaluate("e => e.naturalWidth") == 32
            assert img.get_attribute("data-seed") != first and img.get_attribute("src") != first_src
        finally:
            browser.close()
    assert errors == [], errors  # no CSP violations or script errors
