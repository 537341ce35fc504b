"""Per-band figures: a single-band metric applied to each band's plane of multi-band data, or to the band named."""

from __future__ import annotations

import html
import math
import re
from typing import Any

from astrogan.metrics.base import Context, Metric, Row
from astrogan.science import ScienceSpec
from astrogan.utils.errors import UserError

__all__ = ["PerBandMetric", "band_key", "band_table", "resolve_band"]


def band_key(name: str) -> str:
    """A band name as it appears inside scalar names (`spectrum_g_w1_mean`): letters, digits, `+.-`."""
    return re.sub(r"[^0-9A-Za-z+.-]", "_", name)


def resolve_band(band: str | int | None, science: ScienceSpec | None, channels: int) -> int | None:
    """The plane index of `band` (a band name of `science`, or an index `0..channels-1`); None stays None."""
    if band is None:
        return None
    if isinstance(band, int) and not isinstance(band, bool):
        if not 0 <= band < channels:
            raise UserError(f"band index {band} is out of range: the data have {channels} band(s)")
        return band
    names = list(science.bands) if science is not None else []
    text = str(band).strip()
    if text in names:
        return names.index(text)
    lower = [n.lower() for n in names]
    if text.lower() in lower and lower.count(text.lower()) == 1:
        return lower.index(text.lower())
    if text.isdigit() and int(text) < channels:
        return int(text)
    have = (
        ", ".join(names)
        if names
        else f"planes 0..{channels - 1} (no band names: the data carry no science spec)"
    )
    raise UserError(f"unknown band {text!r}: the data have {have}")


def rename_scalars(scalars: dict[str, float], prefix: str, band: str, *, taken: set[str]) -> dict[str, float]:
    """`{prefix}_rest` -> `{prefix}_{band}_rest`; other names (another protocol's) get the band appended.

    A name that would collide with one in `taken` (a band called `floor`...) gets `band_` before the band.
    """
    key = band_key(band)

    def new(k: str, b: str) -> str:
        return f"{prefix}_{b}_{k[len(prefix) + 1 :]}" if k.startswith(prefix + "_") else f"{k}_{b}"

    names = {k: new(k, key) for k in scalars}
    if taken & set(names.values()):
        names = {k: new(k, f"band_{key}") for k in scalars}
    return {names[k]: v for k, v in scalars.items()}


def band_table(
    rows: list[tuple[str, dict[str, float]]], keys: tuple[str, ...], heads: tuple[str, ...]
) -> str:
    """An HTML table of per-band figures: one row per band, `keys` of its scalars under `heads`, plus the ratio
    of the first two (value / floor)."""

    def f(v: float | None) -> str:
        return f"{v:.3g}" if v is not None and math.isfinite(v) else "n/a"

    body = ""
    for name, s in rows:
        value, floor = s[keys[0]], s[keys[1]]
        ratio = value / floor if math.isfinite(floor) and floor > 0 else None
        cells = "".join(f"<td>{f(s[k])}</td>" for k in keys)
        body += f"<tr><td>{html.escape(name)}</td>{cells}<td>{f(ratio)}</td></tr>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    return f"<table><tr><th>band</th>{head}<th>ratio</th></tr>{body}</table>"


class PerBandMetric(Metric):
    """A metric defined on images of any band count, also reported band by band.

    Subclasses give the single-band pieces (`compute_one`, `scalars_one`, `rows_one`, `to_json_one`) and
    `prefix`; this class runs them on the whole set (the combined figure: what `combined_how` says) and on
    every plane `ctx.bands_measured()` names, each on `ctx.plane(b)`: a band's figures are exactly the
    single-band metric on a 1-band set made of that plane. With `ctx.band` set only that plane is measured.
    """

    prefix: str = ""

    def compute_one(self, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError

    def scalars_one(self, d: dict[str, Any]) -> dict[str, float]:
        raise NotImplementedError

    def rows_one(self, d: dict[str, Any], ctx: Context, where: str) -> list[Row]:
        """Summary rows; `where` is "" (one band or pictures), "band g" or the combined figure's description."""
        raise NotImplementedError

    def to_json_one(self, d: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def combined_how(self, names: list[str]) -> str:
        """How the combined figure of these bands is formed (one phrase, e.g. "mean over bins and bands ...")."""
        raise NotImplementedError

    def compute(self, ctx: Context) -> dict[str, Any]:
        if ctx.band is not None:
            only = ctx.band_name(ctx.band)
            return {**self.compute_one(ctx.plane(ctx.band)), "only": only, "bands": {}, "band_names": [only]}
        out = self.compute_one(ctx)
        measured = ctx.bands_measured()
        out["only"] = None
        out["band_names"] = [ctx.band_name(b) for b in range(int(ctx.real.shape[-1]))] if measured else []
        out["bands"] = {ctx.band_name(b): self.compute_one(ctx.plane(b)) for b in measured}
        return out

    def scalars(self, details: dict[str, Any]) -> dict[str, float]:
        base = self.scalars_one(details)
        if details["only"] is not None:
            return rename_scalars(base, self.prefix, details["only"], taken=set())
        out = dict(base)
        for name, d in details["bands"].items():
            out.update(rename_scalars(self.scalars_one(d), self.prefix, name, taken=set(base)))
        return out

    def rows(self, details: dict[str, Any], ctx: Context) -> list[Row]:
        if details["only"] is not None:
            return self.rows_one(details, ctx, f"band {details['only']}")
        where = self.combined_how(details["band_names"]) if details["bands"] else ""
        rows = self.rows_one(details, ctx, where)
        for name, d in details["bands"].items():
            rows += self.rows_one(d, ctx, f"band {name}")
        return rows

    def to_json(self, details: dict[str, Any]) -> dict[str, Any]:
        out = self.to_json_one(details)
        if details["only"] is not None:
            out["band"] = details["only"]
            out["bands_note"] = f"measured on band {details['only']} only (eval --band)"
            return out
        if details["bands"]:
            out["combined"] = self.combined_how(details["band_names"])
            out["bands"] = {name: self.to_json_one(d) for name, d in details["bands"].items()}
        return out
