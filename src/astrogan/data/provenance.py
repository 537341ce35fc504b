"""Where a build's input files came from: catalog rows, synthetic folders, file hashes, credit/licence summaries.

Rules: a file that a `catalog.sqlite` lists with a status other than `ok` (failed, skipped, not-found:
found through `local_path` or the fetcher's `<source>/<safe item id>.<ext>` name), or whose sha256
differs from its `ok` row, or that sits in a `synth.json` folder but is not in its `params.csv`, is
skipped (SkipFile, reason in report.json): its credit would be a guess.
"""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrogan.data.preprocess import SkipFile
from astrogan.imaging import sha256_file

CATALOG_NAME = "catalog.sqlite"
SYNTH_NAME = "synth.json"  # written by `astrogan synth` beside its stamps (settings, licence, credit)
SYNTH_PARAMS_NAME = "params.csv"  # the true parameters table `astrogan synth` writes beside synth.json
# Per-image meta extras (source_file, credit, licence, params_table, params_row) when none are given.
NO_PROVENANCE = ("", "", "", -1, -1)

# A Sérsic synth stamp's file name (synthetic.synth_sersic: `sersic_000012.png`); group 1 is its index.
_SYNTH_STAMP = re.compile(r"sersic_(\d+)(?:\.[A-Za-z0-9.]+)?")

_CATALOG_COLUMNS = ("source", "item_id", "title", "page_url", "credit", "copyright", "licence")


@dataclass
class Provenance:
    """Where input files came from: catalog rows (`ok` ones and the others) and synthetic folders."""

    ok_rows: dict[Path, dict[str, Any]] = field(default_factory=dict)  # file -> carried catalog fields
    ok_sha256: dict[Path, str] = field(default_factory=dict)  # file -> sha256 its `ok` row recorded
    ok_local: dict[Path, str] = field(default_factory=dict)  # file -> the row's local_path
    blocked: dict[Path, str] = field(default_factory=dict)  # file -> why its catalog row rules it out
    synthetic: list[dict[str, Any]] = field(default_factory=list)  # manifest entries, one per synth.json
    synth_by_folder: dict[Path, int] = field(default_factory=dict)  # resolved folder -> index in synthetic
    synth_rows: list[dict[str, int]] = field(default_factory=list)  # per table: params.csv file -> row


def synth_index(name: str) -> int | None:
    """The stamp index in a Sérsic synth file name (`sersic_000012.fits` -> 12), else None."""
    m = _SYNTH_STAMP.fullmatch(name)
    return int(m.group(1)) if m else None


def _synth_row_key(name: str) -> str:
    """A params.csv row key for a table without a `file` column: the stamp index (`#12`)."""
    index = synth_index(name)
    return name if index is None else f"#{index}"


def file_sha256(path: Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file."""
    return sha256_file(path), path.stat().st_size


def read_catalogs(catalogs: Iterable[Path], prov: Provenance) -> None:
    """Index catalog rows by local file: `ok` rows carry credit/licence; any other status blocks the file.

    Rows that are not `ok` usually have no `local_path` (a failed re-fetch clears it while an older or
    damaged file stays on disk), so they also claim the fetcher's own file name for the item,
    `<catalog folder>/<source>/<safe_name(item_id)>.<ext>`.
    """
    for cat in catalogs:
        try:
            con = sqlite3.connect(f"file:{cat}?mode=ro", uri=True)
            try:
                cols = ", ".join(_CATALOG_COLUMNS)
                recs = con.execute(f"SELECT local_path, status, sha256, {cols} FROM items").fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            warnings.warn(f"ignoring catalog {cat}: {exc}", stacklevel=3)
            continue
        base = cat.parent.resolve()
        not_ok: list[tuple[Path, str]] = []
        for local_path, status, sha, *values in recs:
            fields = {k: v for k, v in zip(_CATALOG_COLUMNS, values, strict=True) if v not in (None, "")}
            if status == "ok" and local_path:
                local = (base / local_path).resolve()
                prov.ok_rows[local] = fields
                prov.ok_local[local] = str(local_path)
                if sha:
                    prov.ok_sha256[local] = str(sha)
                continue
            why = (
                f"catalog status not ok ({status or 'no status'} for {fields.get('source', '?')} "
                f"{fields.get('item_id', '?')} in {cat}): its credit and licence do not apply to this file"
            )
            for path in _catalog_candidates(base, local_path, fields):
                not_ok.append((path, why))
        for path, why in not_ok:
            if path not in prov.ok_rows:  # an `ok` row for the same file wins (e.g. two sources, one file)
                prov.blocked.setdefault(path, why)


def _catalog_candidates(base: Path, local_path: str | None, fields: dict[str, Any]) -> list[Path]:
    """Files on disk that a (not `ok`) catalog row may describe."""
    out = [(base / local_path).resolve()] if local_path else []
    source, item_id = fields.get("source"), fields.get("item_id")
    if source and item_id:
        # The fetchers' naming (sources.base.fetch_image); imported here so httpx loads only with a catalog.
        from astrogan.data.sources.http import safe_name

        folder = base / str(source)
        stem = safe_name(str(item_id))
        if folder.is_dir():
            out.extend(p.resolve() for p in folder.glob(f"{stem}.*") if p.name == stem + p.suffix)
    return out


def synth_credit(settings: dict[str, Any]) -> str:
    """The credit line of a synthetic folder: its synth.json `credit`, else one naming the generator."""
    if settings.get("credit"):
        return str(settings["credit"])
    generator = str(settings.get("generator") or "astrogan")
    if generator.endswith("synth_sersic"):
        return "synthetic Sérsic galaxies (astrogan synth sersic, rendered with GalSim)"
    return f"synthetic images ({generator})"


def read_synths(synths: Iterable[Path], prov: Provenance) -> None:
    """Read each synth.json and its params.csv: settings, credit, licence, table path/sha256, file -> row."""
    for path in synths:
        folder = path.parent.resolve()
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(settings, dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            warnings.warn(f"ignoring {path}: {exc}", stacklevel=3)
            continue
        entry: dict[str, Any] = {
            "folder": str(folder),
            "settings": settings,
            "settings_sha256": file_sha256(path)[0],
            "credit": synth_credit(settings),
            "licence": str(settings.get("licence") or "unknown"),
            "params": None,
            "num_images": 0,
        }
        rows: dict[str, int] = {}
        table = folder / str(settings.get("params_file") or SYNTH_PARAMS_NAME)
        if table.is_file():
            entry["params"], rows = _read_params_table(table)
        else:
            warnings.warn(
                f"{path} has no {table.name} beside it: true parameters cannot be joined", stacklevel=3
            )
        prov.synth_by_folder[folder] = len(prov.synthetic)
        prov.synthetic.append(entry)
        prov.synth_rows.append(rows)


def _read_params_table(table: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """(the manifest's `params` entry for a params.csv, its `file` column -> 0-based data row)."""
    import csv

    sha, num_bytes = file_sha256(table)
    rows: dict[str, int] = {}
    with open(table, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        key = header.index("file") if "file" in header else None
        # A table without `file` but with `index` names its stamps by index (sersic_<index>.*).
        index = header.index("index") if key is None and "index" in header else None
        for i, rec in enumerate(reader):
            if key is not None and key < len(rec):
                rows[rec[key]] = i
            elif index is not None and index < len(rec):
                try:
                    rows[f"#{int(float(rec[index]))}"] = i
                except ValueError:
                    continue
    params = {
        "path": str(table),
        "file": table.name,
        "sha256": sha,
        "bytes": num_bytes,
        "num_rows": len(rows),
        "columns": header,
        "join": "params.csv `file` == images.h5 meta.source_file; row = meta.params_row",
    }
    return params, rows


def provenance_of(f: Path, sha: str, prov: Provenance) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """(fields for the manifest source entry, per-image meta extras); raises SkipFile when unknown/unsafe."""
    if f in prov.blocked:
        raise SkipFile(prov.blocked[f])
    if f in prov.ok_rows:
        want = prov.ok_sha256.get(f)
        if want and want != sha:
            raise SkipFile(
                f"file differs from its catalog row (sha256 {sha[:12]} on disk, {want[:12]} fetched): "
                "re-run the fetch to repair it"
            )
        row = prov.ok_rows[f]
        credit = row.get("credit") or row.get("copyright") or ""
        return dict(row), (prov.ok_local[f], credit, row.get("licence", ""), -1, -1)
    table = prov.synth_by_folder.get(f.parent)
    if table is not None:
        rows = prov.synth_rows[table]
        key = f.name if f.name in rows else _synth_row_key(f.name)
        return _synth_provenance(prov, table, key, f.name, missing=f"{f.name} is missing from")
    return {}, (f.name, "", "", -1, -1)


def _synth_provenance(
    prov: Provenance, table: int, key: str, name: str, *, missing: str
) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The provenance of file(s) `name` of synthetic folder `table`, found in its params.csv as `key`."""
    entry = prov.synthetic[table]
    rows = prov.synth_rows[table]
    if entry["params"] is not None and key not in rows:
        raise SkipFile(
            f"not in the synthetic parameters table ({missing} {entry['params']['path']}): "
            "its provenance is unknown"
        )
    row_index = rows.get(key, -1)
    fields: dict[str, Any] = {
        "source": "synthetic",
        "credit": entry["credit"],
        "licence": entry["licence"],
        "synthetic": {"table": table, "file": name, "row": row_index},
    }
    return fields, (name, entry["credit"], entry["licence"], table, row_index)


def provenance_of_files(
    files: Sequence[tuple[Path, str]], prov: Provenance, *, stem: str
) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """`provenance_of` for one image made of several files `(path, sha256)` (one per band), named `stem`.

    Every file is checked as `provenance_of` checks one (a blocked file or a catalog sha256 mismatch skips
    the image); the first file with an `ok` catalog row gives the credit. In a synthetic folder the params.csv
    `file` column may name any band file or the stem (with or without a suffix).
    """
    first: tuple[dict[str, Any], tuple[Any, ...]] | None = None
    for f, sha in files:
        if f in prov.blocked or f in prov.ok_rows:
            found = provenance_of(f, sha, prov)
            first = first or found
    if first is not None:
        return first
    folder = files[0][0].parent
    table = prov.synth_by_folder.get(folder)
    if table is not None:
        rows = prov.synth_rows[table]
        names = [f.name for f, _ in files]
        keys = [*names, stem, *(k for k in rows if k.rsplit(".", 1)[0] == stem)]
        key = next((k for k in keys if k in rows), stem)
        return _synth_provenance(
            prov, table, key, key, missing=f"none of {stem}, {', '.join(names)} is listed in"
        )
    return {}, (files[0][0].name, "", "", -1, -1)


def credit_summary(sources: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Source files per credit line (a catalog's `copyright` when it has no credit), sorted by credit."""
    credits = Counter(s.get("credit") or s.get("copyright") or "unknown" for s in sources)
    return dict(sorted(credits.items()))


def licence_summary(sources: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Source files per licence ("unknown" when none is known), sorted by licence."""
    licences = Counter(s.get("licence") or "unknown" for s in sources)
    return dict(sorted(licences.items()))
