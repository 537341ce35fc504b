"""Continuous labels for `dataset build`: a CSV keyed by file name (or a synth params.csv), rows matched to files.

A labels CSV has one row per image. Its key column is the first of `file`, `filename`, `file_name`, `name`,
`path` (case-insensitive) that it has; a row matches an input file whose base name equals the key's base
name, with or without the extension. Keys may share a base name when each names folders (`a/img.png`,
`b/img.png`): a file then takes the row whose folders match most of its own, nearest first. A table
with none of those but an `index` column (a Sérsic synth table) matches `sersic_<index>` stamps instead.
Values are read as given, in the source file's pixels; the pipeline rescales the length-like ones (unit "px")
to each stored image.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.conditions import unit_of
from astrogan.data.preprocess import is_supported
from astrogan.data.provenance import Provenance, file_sha256, synth_index
from astrogan.utils.errors import UserError

__all__ = [
    "KEY_COLUMNS",
    "NO_ROW_REASON",
    "BuildLabels",
    "LabelTable",
    "parse_columns",
    "read_label_table",
    "resolve_labels",
]

KEY_COLUMNS = ("file", "filename", "file_name", "name", "path")
INDEX_KEY = "index"
# Never labels by default: the key, the synth's stamp index and its per-stamp noise seed.
NOT_LABELS = frozenset({INDEX_KEY, "seed"})
NO_ROW_REASON = "no row in labels CSV"
_FITS_SUFFIXES = (".fits", ".fit", ".fts")
_MAX_LISTED = 200  # unmatched rows listed one by one in report.json (the count is always exact)


@dataclass
class _Csv:
    """A CSV as text: header, key column, per-row key and line number, raw cells by column."""

    path: Path
    header: list[str]
    key_column: str
    keys: list[str]
    lines: list[int]
    cells: dict[str, list[str]]


@dataclass
class LabelTable:
    """One labels table: a key per row and float64 values `(R, K)` of the chosen columns."""

    path: Path
    sha256: str
    key_column: str
    columns: tuple[str, ...]
    keys: tuple[str, ...]
    lines: tuple[int, ...]
    values: np.ndarray
    folder: Path | None = None  # a synth table labels only the files of its own folder
    matched: set[int] = field(default_factory=set)
    used_by: dict[int, Path] = field(default_factory=dict)  # row -> the file it labels

    def __post_init__(self) -> None:
        self._rows: dict[str, list[int]] = {}  # base name -> rows (several only when their folders differ)
        for i, k in enumerate(self.keys):
            self._rows.setdefault(k.rsplit("/", 1)[-1], []).append(i)

    def row_of(self, f: Path) -> int | None:
        """The row that labels file `f`, or None; UserError when rows' folders cannot tell which is its."""
        if self.folder is not None and f.parent != self.folder:
            return None
        if self.key_column == INDEX_KEY:
            index = synth_index(f.name)
            return None if index is None else self._rows.get(str(index), [None])[0]
        # Candidates: (folders in common with f's, counted from the file up; name form: full name first), row.
        ranked = [
            ((_folders_in_common(self.keys[row], f), -form), row)
            for form, name in enumerate(_name_forms(f.name))
            for row in self._rows.get(name, [])
        ]
        if not ranked:
            return None
        ranked.sort(reverse=True)
        if len(ranked) > 1 and ranked[0][0] == ranked[1][0]:
            lines = " and ".join(str(n) for n in sorted(self.lines[r] for _, r in ranked[:2]))
            raise UserError(
                f"labels file {self.path} lines {lines} both name {f.name} and neither's folders match {f.parent} "
                "more closely: give the folders under the input folder"
            )
        return ranked[0][1]


def _folders_in_common(key: str, f: Path) -> int:
    """How many folders of `key` (a/b/img.png) match those of file `f`, counted up from the file."""
    folders, parents = key.split("/")[-2::-1], f.parent.parts[::-1]
    n = 0
    while n < min(len(folders), len(parents)) and folders[n] == parents[n]:
        n += 1
    return n


def _name_forms(name: str) -> list[str]:
    """A file name with and without its extension (`a.fits.gz` -> a.fits.gz, a.fits, a)."""
    forms = [name, Path(name).stem]
    if Path(forms[1]).suffix.lower() in _FITS_SUFFIXES:
        forms.append(Path(forms[1]).stem)
    return forms


def parse_columns(text: str | Sequence[str] | None) -> list[str] | None:
    """`"a,b,c"` (or a list) -> ["a", "b", "c"]; None or empty -> None; UserError for a repeated name."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = [str(p).strip() for p in parts if str(p).strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"--label-columns names {repeated[0]!r} twice")
    return names or None


def _read_csv(path: Path) -> _Csv:
    """The CSV's text, its key column found; UserError (one line) for a missing file, no key, repeated keys."""
    if not path.is_file():
        raise UserError(f"labels file {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets write a BOM
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            records = [(reader.line_num, rec) for rec in reader if any(c.strip() for c in rec)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read labels file {path}: {exc}") from None
    lower = [h.lower() for h in header]
    key = next((k for k in KEY_COLUMNS if k in lower), None)
    if key is None and INDEX_KEY not in header:
        raise UserError(
            f"labels file {path} has no key column: name one of {', '.join(KEY_COLUMNS)} "
            f"(the image file names); it has {', '.join(header) or 'no header'}"
        )
    key_column = header[lower.index(key)] if key is not None else INDEX_KEY
    cells = {h: [rec[i].strip() if i < len(rec) else "" for _, rec in records] for i, h in enumerate(header)}
    keys = [
        _key_of(path, key_column, v, line) for v, (line, _) in zip(cells[key_column], records, strict=True)
    ]
    lines = [line for line, _ in records]
    # One base name twice is allowed only when both keys name folders (and differ): a file picks by its folders.
    seen: dict[str, list[tuple[str, int]]] = {}
    for k, line in zip(keys, lines, strict=True):
        name = k.rsplit("/", 1)[-1]
        for other, first in seen.get(name, []):
            if other == k or "/" not in other or "/" not in k:
                raise UserError(f"labels file {path} lists {name!r} twice (lines {first} and {line})")
        seen.setdefault(name, []).append((k, line))
    return _Csv(path, header, key_column, keys, lines, cells)


def _key_of(path: Path, key_column: str, value: str, line: int) -> str:
    """A row's key: its file's path with `/` between folders (no empty or `.` parts), or its synth index."""
    if key_column == INDEX_KEY:
        try:
            return str(int(float(value)))
        except ValueError:
            raise UserError(f"labels file {path} line {line}: index {value!r} is not a number") from None
    parts = [p for p in value.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or value.replace("\\", "/").endswith("/"):
        raise UserError(f"labels file {path} line {line}: the {key_column} column is empty")
    return "/".join(parts)


def _column(table: _Csv, name: str) -> np.ndarray:
    """float64 `(R,)` of one column; UserError naming the line, file and column of a bad value."""
    out = np.empty(len(table.keys), dtype=np.float64)
    for i, text in enumerate(table.cells[name]):
        where = f"labels file {table.path} line {table.lines[i]} ({table.keys[i]}), column {name}"
        try:
            out[i] = float(text)
        except ValueError:
            raise UserError(f"{where}: {text!r} is not a number") from None
        if not math.isfinite(out[i]):
            raise UserError(
                f"{where}: {text!r} is not a finite number (NaN and inf cannot condition a model)"
            )
    return out


def _numeric_columns(table: _Csv) -> list[str]:
    """Columns (other than the key, index and seed) whose every cell reads as a number."""

    def numeric(name: str) -> bool:
        try:
            [float(v) for v in table.cells[name]]
        except ValueError:
            return False
        return True

    skip = NOT_LABELS | {table.key_column}
    return [h for h in table.header if h not in skip and h.lower() not in KEY_COLUMNS and numeric(h)]


def _check_columns(table: _Csv, columns: Sequence[str]) -> None:
    for c in columns:
        if c not in table.header:
            raise UserError(f"unknown label column {c!r} in {table.path}: it has {', '.join(table.header)}")


def read_label_table(
    path: str | os.PathLike[str], columns: Sequence[str] | None = None, *, folder: Path | None = None
) -> LabelTable:
    """Read a labels CSV: `columns` (default: every numeric column that varies, but key/index/seed).

    `folder` restricts the table to the files of one folder (a synth folder's own table).
    """
    p = Path(path).expanduser()
    raw = _read_csv(p)
    if columns is None:
        columns = _varying(raw, _numeric_columns(raw))
    _check_columns(raw, columns)
    values = np.stack([_column(raw, c) for c in columns], axis=1) if raw.keys else np.zeros((0, len(columns)))
    return LabelTable(
        path=p,
        sha256=file_sha256(p)[0],
        key_column=raw.key_column,
        columns=tuple(columns),
        keys=tuple(raw.keys),
        lines=tuple(raw.lines),
        values=values,
        folder=folder,
    )


def _varying(raw: _Csv, names: Sequence[str]) -> list[str]:
    """The columns of `names` that take more than one value; UserError when none does."""
    out = [n for n in names if len(set(_column(raw, n).tolist())) > 1]
    if not out:
        raise UserError(
            f"labels file {raw.path} has no numeric column that varies: name the columns with --label-columns"
        )
    return out


@dataclass
class BuildLabels:
    """The conditions of one build: one user CSV or the synth folders' own tables, same columns."""

    tables: list[LabelTable]
    kind: str  # "csv" (--labels) or "synth" (picked up from `astrogan synth` folders)
    num_unmatched_images: int = 0

    @property
    def columns(self) -> tuple[str, ...]:
        return self.tables[0].columns

    @property
    def px_mask(self) -> np.ndarray:
        """bool `(K,)`: True for the columns in pixels (they scale with the image)."""
        return np.array([unit_of(c) == "px" for c in self.columns], dtype=bool)

    @property
    def num_matched(self) -> int:
        return sum(len(t.matched) for t in self.tables)

    def lookup(self, f: Path) -> np.ndarray | None:
        """float64 `(K,)` values of file `f` (source pixels), or None when no row names it; marks the row."""
        for t in self.tables:
            row = t.row_of(f)
            if row is not None:
                other = t.used_by.setdefault(row, f)
                if other != f:  # a bare name would give two pictures one row of values
                    raise UserError(
                        f"labels file {t.path} line {t.lines[row]} ({t.keys[row]}) names both {other} and {f}: "
                        "give each its folders under the input folder (sdss/gal_00.png) or rename one"
                    )
                t.matched.add(row)
                return t.values[row]
        self.num_unmatched_images += 1
        return None

    def unmatched_rows(self) -> list[dict[str, Any]]:
        """Rows that matched no input file: table, CSV line and key."""
        return [
            {"table": str(t.path), "line": t.lines[i], "key": t.keys[i]}
            for t in self.tables
            for i in range(len(t.keys))
            if i not in t.matched
        ]

    def no_match_error(self, files: Sequence[Path]) -> UserError:
        """The error of a build where no input file has a row."""
        t = self.tables[0]
        keys = ", ".join(repr(k) for k in t.keys[:3]) or "nothing"
        names = ", ".join(repr(f.name) for f in files[:3])
        how = "synth index" if t.key_column == INDEX_KEY else "file base name, with or without extension"
        return UserError(
            f"no input image has a row in {t.path} (matched by {how} on column {t.key_column!r}: "
            f"keys like {keys}, files like {names})"
        )

    def report(self) -> dict[str, Any]:
        """The report.json `labels` entry: unmatched counts and the first unmatched rows."""
        rows = self.unmatched_rows()
        return {
            "tables": [str(t.path) for t in self.tables],
            "num_unmatched_images": self.num_unmatched_images,
            "num_unmatched_rows": len(rows),
            "unmatched_rows": rows[:_MAX_LISTED],
        }

    def manifest_extras(self, primary_size_px: int) -> dict[str, Any]:
        """Keys added to the manifest's `cond` entry beside the CondSpec: size, source tables, rescale rule."""
        return {
            "size_px": primary_size_px,
            "source": {
                "kind": self.kind,
                "tables": [
                    {
                        "path": str(t.path),
                        "sha256": t.sha256,
                        "key_column": t.key_column,
                        "num_rows": len(t.keys),
                        **({"folder": str(t.folder)} if t.folder is not None else {}),
                    }
                    for t in self.tables
                ],
            },
            "rescale": rescale_sentence(self.columns, primary_size_px),
            "num_unmatched_images": self.num_unmatched_images,
            "num_unmatched_rows": len(self.unmatched_rows()),
        }


def rescale_sentence(columns: Sequence[str], primary_size_px: int) -> str:
    """How the px columns of a build were rescaled (the manifest's `cond.rescale`)."""
    px = [c for c in columns if unit_of(c) == "px"]
    if not px:
        return "no column is in pixels (unit px): values are stored as the table gives them"
    return (
        f"{', '.join(px)} (unit px) are in the stored {primary_size_px} px image's pixels: the table's value "
        f"(source-file pixels) times {primary_size_px} / crop side (meta.crop_size, per crop); for another "
        f"stored size S times S / {primary_size_px} (DatasetArtifact.cond(image_size=S)); other columns "
        "are stored as given"
    )


def _synth_tables(prov: Provenance) -> list[tuple[Path, Path]]:
    """(folder, params table) of every `astrogan synth` folder among the inputs that has a table."""
    return [(Path(e["folder"]), Path(e["params"]["path"])) for e in prov.synthetic if e.get("params")]


def _synth_labels(pairs: list[tuple[Path, Path]], columns: Sequence[str] | None) -> BuildLabels:
    """The synth folders' own tables: `columns`, else the numeric ones all share that vary across them."""
    if columns is None:
        raws = [_read_csv(p) for _, p in pairs]
        shared = [c for c in _numeric_columns(raws[0]) if all(c in _numeric_columns(r) for r in raws[1:])]
        # Varying across all the folders together (a column constant within one folder may still vary).
        columns = [c for c in shared if np.unique(np.concatenate([_column(r, c) for r in raws])).size > 1]
        if not columns:
            raise UserError(
                f"{pairs[0][1]} has no numeric column that varies: name columns with --label-columns"
            )
    tables = [read_label_table(p, columns, folder=folder) for folder, p in pairs]
    return BuildLabels(tables, kind="synth")


def resolve_labels(
    labels_csv: str | os.PathLike[str] | None,
    label_columns: Sequence[str] | None,
    *,
    files: Sequence[Path],
    prov: Provenance,
) -> BuildLabels | None:
    """The build's conditions: `--labels` CSV, else the synth folders' tables when every input is in one.

    Returns None for an unconditioned build. UserError for `--label-columns` without a table to read.
    """
    if labels_csv is not None:
        return BuildLabels([read_label_table(labels_csv, label_columns)], kind="csv")
    pairs = _synth_tables(prov)
    outside = [f for f in files if is_supported(f) and f.parent not in {folder for folder, _ in pairs}]
    if pairs and not outside:
        return _synth_labels(pairs, label_columns)
    if label_columns is not None:
        where = f" ({len(outside)} input file(s) are outside `astrogan synth` folders)" if pairs else ""
        raise UserError(
            f"--label-columns needs --labels CSV (a table keyed by file name){where}; only folders written by "
            "`astrogan synth sersic` bring their own"
        )
    if pairs:
        warnings.warn(
            f"conditions not stored: {len(outside)} input file(s) are outside `astrogan synth` folders; "
            "pass --labels CSV to label every image",
            stacklevel=3,
        )
    return None
