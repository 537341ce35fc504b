"""utils/log.py's Bar: counts what advance adds, shows done/total and the rate in its unit, silent when off."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

from astrogan.utils import log
from astrogan.utils.log import Bar


@pytest.fixture
def screen(monkeypatch) -> io.StringIO:
    """What the bars draw: the shared console swapped for one writing to a string, quiet mode off."""
    out = io.StringIO()
    monkeypatch.setattr(log, "console", Console(file=out, width=200, color_system=None))
    monkeypatch.delenv("ASTROGAN_QUIET", raising=False)
    return out


def test_bar_counts_and_shows_the_rate_in_its_unit(screen):
    t0 = time.perf_counter()
    with Bar("rendering Sérsic stamps", 10, unit="stamps") as bar:
        bar.advance(3)
        bar.advance()
        bar.advance(4, status="last chunk")
    wall = time.perf_counter() - t0
    assert bar.done == 8
    text = screen.getvalue()
    assert "rendering Sérsic stamps" in text and "8/10" in text, text
    rate = re.search(r"(\d+\.\d) stamps/s last chunk", text)
    assert rate is not None, text
    assert (
        float(rate.group(1)) >= 8 / wall - 0.05
    )  # 8 done in at most `wall` seconds (the text rounds to 0.1)
    assert "items/s" not in text


def test_bar_with_an_unknown_total_and_the_default_unit(screen):
    with Bar("fetching", None) as bar:
        for status in ("ok", "ok", "not-found"):
            bar.advance(status=status)
    assert bar.done == 3
    assert re.search(r"\d+\.\d items/s not-found", screen.getvalue()), screen.getvalue()


@pytest.mark.parametrize("how", ["disabled", "quiet"])
def test_a_bar_that_is_off_draws_nothing_but_still_counts(screen, monkeypatch, how):
    if how == "quiet":
        monkeypatch.setenv("ASTROGAN_QUIET", "1")
    with Bar("rendering bulge+disc galaxies", 5, enabled=how == "quiet", unit="galaxies") as bar:
        bar.advance(2)
        bar.advance(3, status="done")
    assert bar.done == 5
    assert screen.getvalue() == ""


@pytest.mark.parametrize("debug", [False, True])
def test_one_line_warnings_change_only_the_text_and_only_within(monkeypatch, debug):
    import warnings

    if debug:
        monkeypatch.setenv("ASTROGAN_DEBUG", "1")
    else:
        monkeypatch.delenv("ASTROGAN_DEBUG", raising=False)
    before = warnings.formatwarning
    with log.one_line_warnings():
        text = warnings.formatwarning("a  lost\nfile", UserWarning, "/src/x.py", 7, "warn(...)")
        with pytest.warns(UserWarning, match="still recorded"):
            warnings.warn("still recorded", stacklevel=1)
    assert warnings.formatwarning is before
    if debug:  # Python's own format, with the file and line, for developers
        assert text.startswith("/src/x.py:7: UserWarning: a  lost")
    else:
        assert text == "warning: a lost file\n"
