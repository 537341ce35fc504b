"""`dataset review` outputs (review.csv, exclude.txt, review.html) and the plan `dataset build --review` reads.

review.csv (format version REVIEW_VERSION; one row per picture or FITS file found, in the build's walk order):
`path` (relative to its input folder, the name the build gives the file: its meta `source`), `root` (that
folder), `sha256`, `bytes`, `width`, `height` (original size, EXIF orientation applied), `status` (`ok` or
`unreadable`), `reason`, `flags` (`;`-separated, FLAG_NAMES order), the suggested crop `crop_x0 crop_y0
crop_x1 crop_y1` (original pixels, x1/y1 exclusive; empty when none) and `crop_reason`, `duplicate_of`,
then every score (SCORE_COLUMNS; see review_flags for each one's meaning and threshold).
exclude.txt: `#` comment lines, then one `path` per line of the files with an excluded flag.
"""

from __future__ import annotations

import csv
import html
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrogan.data.review_flags import DEFAULT_EXCLUDE, FLAG_NAMES, FLAG_RULES
from astrogan.utils.atomic import atomic_open
from astrogan.utils.errors import UserError

REVIEW_VERSION = 1
CSV_FILE, EXCLUDE_FILE, HTML_FILE, THUMBS_DIR = "review.csv", "exclude.txt", "review.html", "thumbs"
SCORE_COLUMNS = (
    "blank_frac",
    "blank_border",
    "seam",
    "seam_noise",
    "sat_extent",
    "sat_frac",
    "text_chars",
    "scale_bar",
    "object_size",
    "contrast",
    "aspect",
    "dup_bits",
    "dup_rms",
)
CROP_COLUMNS = ("crop_x0", "crop_y0", "crop_x1", "crop_y1")
COLUMNS = (
    "path",
    "root",
    "sha256",
    "bytes",
    "width",
    "height",
    "status",
    "reason",
    "flags",
    *CROP_COLUMNS,
    "crop_reason",
    "duplicate_of",
    *SCORE_COLUMNS,
)
FLAG_SEP = ";"


def parse_flags(text: str | None, *, option: str = "--exclude-flags") -> frozenset[str]:
    """`"blank,text"` -> the flag set; None -> DEFAULT_EXCLUDE; `"none"` or `""` -> nothing excluded."""
    if text is None:
        return frozenset(DEFAULT_EXCLUDE)
    parts = {p.strip() for p in text.replace(FLAG_SEP, ",").split(",") if p.strip()}
    if parts <= {"none"}:
        return frozenset()
    unknown = sorted(parts - set(FLAG_NAMES))
    if unknown:
        raise UserError(f"unknown flag(s) in {option}: {', '.join(unknown)} (known: {', '.join(FLAG_NAMES)})")
    return frozenset(parts)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return FLAG_SEP.join(str(v) for v in value)
    return str(value)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """review.csv: COLUMNS, one row per reviewed file (missing values empty)."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for row in rows:
            crop = row.get("crop") or (None,) * 4
            values = {**row, **dict(zip(CROP_COLUMNS, crop, strict=True))}
            writer.writerow([_cell(values.get(c)) for c in COLUMNS])


def write_exclude(path: Path, rows: list[dict[str, Any]], exclude: frozenset[str]) -> list[str]:
    """exclude.txt: the `path` of every file with a flag in `exclude`; returns those paths."""
    names = [r["path"] for r in rows if exclude & set(r.get("flags") or ())]
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(f"# astrogan dataset review (format {REVIEW_VERSION}): files flagged ")
        fh.write(", ".join(f for f in FLAG_NAMES if f in exclude) or "(no flag excluded)")
        fh.write("\n# one path per line, relative to its input folder (review.csv has `root` and `sha256`)\n")
        for name in names:
            fh.write(name + "\n")
    return names


# ----------------------------------------------------------------------------------------------------
# review.html: a contact sheet per flag, the flagged regions outlined and the suggested crop drawn

_STYLE = """
body{font:14px system-ui,sans-serif;background:#111;color:#ddd;margin:1.5em}
a{color:#8cf}table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #333;text-align:left}
.sheet{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;width:200px}
figcaption{font-size:11px;word-break:break-all;color:#aaa}svg{background:#000;display:block}
.region{fill:none;stroke:#ff3b3b;stroke-width:2;vector-effect:non-scaling-stroke}
.crop{fill:none;stroke:#3bff6b;stroke-width:2;stroke-dasharray:5 3;vector-effect:non-scaling-stroke}
"""


def _figure(row: dict[str, Any], flag: str | None) -> str:
    """One thumbnail (original-pixel boxes scaled onto it) with its caption."""
    w, h = row.get("width") or 1, row.get("height") or 1
    parts = [f'<svg viewBox="0 0 {w} {h}" width="{200 if w >= h else round(200 * w / h)}">']
    if row.get("thumb"):
        parts.append(f'<image href="{html.escape(row["thumb"])}" width="{w}" height="{h}"/>')
    regions = (row.get("regions") or {}).get(flag, []) if flag else []
    for x0, y0, x1, y1 in regions:
        parts.append(
            f'<rect class="region" x="{x0:.0f}" y="{y0:.0f}" width="{x1 - x0:.0f}" height="{y1 - y0:.0f}"/>'
        )
    if row.get("crop"):
        x0, y0, x1, y1 = row["crop"]
        parts.append(f'<rect class="crop" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}"/>')
    parts.append("</svg>")
    score = ""
    if flag in FLAG_RULES and flag not in ("small", "large"):
        name = FLAG_RULES[flag][0]
        score = f" · {name} {_cell(row.get(name))}"
    elif flag in ("small", "large"):
        score = f" · {row.get('width')}×{row.get('height')} px"
    if flag == "duplicate" and row.get("duplicate_of"):
        score += f" of {html.escape(str(row['duplicate_of']))}"
    caption = html.escape(row["path"]) + score
    return f"<figure>{''.join(parts)}<figcaption>{caption}</figcaption></figure>"


def write_html(path: Path, rows: list[dict[str, Any]], *, inputs: list[str], exclude: frozenset[str]) -> None:
    """review.html: a summary table, then one contact sheet per flag (and the unflagged files, folded)."""
    counts = Counter(f for r in rows for f in r.get("flags") or ())
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>astrogan dataset review</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Review of {len(rows)} file(s)</h1>",
        "<p>Inputs: "
        + ", ".join(html.escape(p) for p in inputs)
        + ". Red: the flagged region; green dashes: "
        "the suggested crop. Files with an excluded flag are listed in "
        f"<a href='{EXCLUDE_FILE}'>{EXCLUDE_FILE}</a>; every score is in <a href='{CSV_FILE}'>{CSV_FILE}</a>.</p>",
        "<table><tr><th>flag</th><th>files</th><th>excluded by default</th><th>rule (score)</th></tr>",
    ]
    for flag in FLAG_NAMES:
        rule = f"{html.escape(FLAG_RULES[flag][1])} ({FLAG_RULES[flag][0]})"
        link = f"<a href='#flag-{flag}'>{flag}</a>" if counts[flag] else flag
        mark = "yes" if flag in exclude else ""
        out.append(f"<tr><td>{link}</td><td>{counts[flag]}</td><td>{mark}</td><td>{rule}</td></tr>")
    out.append("</table>")
    for flag in FLAG_NAMES:
        hits = [r for r in rows if flag in (r.get("flags") or ())]
        if hits:
            out.append(f"<h2 id='flag-{flag}'>{flag} ({len(hits)})</h2><div class='sheet'>")
            out.extend(_figure(r, flag) for r in hits)
            out.append("</div>")
    bad = [r for r in rows if r.get("status") != "ok"]
    if bad:
        out.append(f"<h2 id='unreadable'>unreadable ({len(bad)})</h2><ul>")
        out.extend(f"<li>{html.escape(r['path'])}: {html.escape(str(r.get('reason')))}</li>" for r in bad)
        out.append("</ul>")
    clean = [r for r in rows if r.get("status") == "ok" and not r.get("flags")]
    out.append(f"<details><summary>no flag ({len(clean)})</summary><div class='sheet'>")
    out.extend(_figure(r, None) for r in clean)
    out.append("</div></details></body></html>\n")
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out))


# ----------------------------------------------------------------------------------------------------
# The plan `dataset build --review` follows


@dataclass(frozen=True)
class ReviewRow:
    """One review.csv row as the build needs it."""

    path: str
    sha256: str
    width: int
    height: int
    flags: tuple[str, ...]
    crop: tuple[int, int, int, int] | None


@dataclass(frozen=True)
class Decision:
    """What the build does with one input file: `exclude`, `crop`, `keep`, `unreviewed` or `stale`."""

    action: str
    row: ReviewRow | None = None
    excluded_flags: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return f"excluded by review ({', '.join(self.excluded_flags)})"


def _int(text: str, what: str, line: int) -> int | None:
    if text.strip() == "":
        return None
    try:
        return int(float(text))
    except ValueError:
        raise UserError(f"review.csv line {line}: {what} {text!r} is not a number") from None


@dataclass
class ReviewPlan:
    """review.csv read for a build, with the flags to exclude and whether to apply crops; it also records
    what it decided for each input (`summary()` is the manifest's `review` entry)."""

    path: Path
    sha256: str
    exclude: frozenset[str]
    apply_crops: bool
    rows: list[ReviewRow]
    by_sha: dict[str, list[ReviewRow]] = field(default_factory=dict)
    by_path: dict[str, ReviewRow] = field(default_factory=dict)
    excluded: list[dict[str, Any]] = field(default_factory=list)
    cropped: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, exclude_flags: str | None = None, apply_crops: bool = False
    ) -> ReviewPlan:
        """Read review.csv (a folder means its review.csv); UserError for a missing or malformed file."""
        from astrogan.imaging import sha256_file

        p = Path(path).expanduser()
        if p.is_dir():
            p = p / CSV_FILE
        if not p.is_file():
            raise UserError(
                f"--review {path}: no such file (give the review.csv of `astrogan dataset review`)"
            )
        exclude = parse_flags(exclude_flags)
        rows: list[ReviewRow] = []
        try:
            with open(p, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                missing = {"path", "sha256", "width", "height", "flags", *CROP_COLUMNS} - set(
                    reader.fieldnames or ()
                )
                if missing:
                    raise UserError(f"{p} is not a review.csv (no column(s) {', '.join(sorted(missing))})")
                for line, rec in enumerate(reader, start=2):
                    flags = tuple(f for f in (rec.get("flags") or "").split(FLAG_SEP) if f)
                    box = [_int(rec.get(c) or "", c, line) for c in CROP_COLUMNS]
                    crop = None
                    if all(v is not None for v in box):
                        x0, y0, x1, y1 = (int(v or 0) for v in box)
                        if not (0 <= x0 < x1 and 0 <= y0 < y1):
                            raise UserError(f"review.csv line {line}: crop box {box} is empty or negative")
                        crop = (x0, y0, x1, y1)
                    rows.append(
                        ReviewRow(
                            path=rec["path"],
                            sha256=(rec.get("sha256") or "").lower(),
                            width=_int(rec.get("width") or "", "width", line) or 0,
                            height=_int(rec.get("height") or "", "height", line) or 0,
                            flags=flags,
                            crop=crop,
                        )
                    )
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"cannot read {p}: {exc}") from None
        plan = cls(
            path=p.resolve(), sha256=sha256_file(p), exclude=exclude, apply_crops=apply_crops, rows=rows
        )
        for row in rows:
            plan.by_sha.setdefault(row.sha256, []).append(row)
            plan.by_path.setdefault(row.path, row)
        return plan

    def match(self, rel: str, sha: str) -> tuple[ReviewRow | None, bool]:
        """(row, stale): the row of the file with content `sha` (several: the one named `rel`, else the first);
        else the row named `rel`, which then describes other content (stale)."""
        same = self.by_sha.get(sha)
        if same:
            return next((r for r in same if r.path == rel), same[0]), False
        row = self.by_path.get(rel)
        return row, row is not None

    def decide(self, rel: str, sha: str) -> Decision:
        """The decision for one input file (before decoding it); counted and, if excluded, recorded."""
        row, stale = self.match(rel, sha)
        if row is None or stale:
            action = "stale" if stale else "unreviewed"
            self.counts[action] += 1
            return Decision(action, row)
        hit = tuple(f for f in FLAG_NAMES if f in self.exclude and f in row.flags)
        if hit:
            self.counts["excluded"] += 1
            self.excluded.append({"path": rel, "sha256": sha, "flags": list(hit), "review_path": row.path})
            return Decision("exclude", row, hit)
        if self.apply_crops and row.crop is not None:
            return Decision("crop", row)
        self.counts["kept"] += 1
        return Decision("keep", row)

    def record_crop(self, rel: str, sha: str, row: ReviewRow, *, applied: bool) -> None:
        """Count a crop decision once the picture's size has been checked against the row's."""
        if applied:
            self.counts["cropped"] += 1
            self.cropped.append(
                {"path": rel, "sha256": sha, "box": list(row.crop or ()), "flags": list(row.flags)}
            )
        else:
            self.counts["stale"] += 1

    def warn(self) -> None:
        """One warning per kind of file the review did not cover."""
        if self.counts["unreviewed"]:
            warnings.warn(
                f"{self.counts['unreviewed']} input(s) have no row in {self.path}: built unreviewed",
                stacklevel=3,
            )
        if self.counts["stale"]:
            warnings.warn(
                f"{self.counts['stale']} input(s) changed since {self.path} was written (sha256 or size differ): "
                "built without its verdict; review them again",
                stacklevel=3,
            )

    def summary(self) -> dict[str, Any]:
        """The manifest's `review` entry."""
        return {
            "csv": str(self.path),
            "sha256": self.sha256,
            "format": REVIEW_VERSION,
            "exclude_flags": [f for f in FLAG_NAMES if f in self.exclude],
            "apply_crops": self.apply_crops,
            "counts": {
                k: int(self.counts[k]) for k in ("excluded", "cropped", "kept", "unreviewed", "stale")
            },
            "excluded": self.excluded,
            "cropped": self.cropped,
            "match": "by file sha256 (then by path relative to the input folder; a path whose sha256 "
            "differs is `stale` and built without the review's verdict)",
        }
