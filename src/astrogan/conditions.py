"""Physical conditions (continuous labels such as Sérsic n or half-light radius): names, units, ranges, parsing.

Torch-free, so the dataset builder, the models, the sampler, the exporter and the web app share one
description of a conditioning vector. A `CondSpec` travels with the data (manifest.json), the model
(its config in generator.json) and the export (model.json): column names, units, the range seen in
training (what users may ask for) and the mean/std the model normalises with.

Length-like columns are the ones in pixels (unit "px", names ending in `_px`): they scale with the
image, so a dataset stored at several sizes rescales them per size (`scale_lengths`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from astrogan.utils.errors import UserError

__all__ = ["CondSpec", "parse_assignments", "unit_of"]

# Units read from a column name's suffix (the field's habit, and DESIGN.md's: units in names).
_SUFFIX_UNITS = {"_px": "px", "_arcsec": "arcsec", "_deg": "deg", "_rad": "rad", "_kpc": "kpc", "_mag": "mag"}
# How far outside the trained range a request may go and still count as inside: printed ranges are
# rounded to 4 significant digits, and asking for the printed bound must work.
RANGE_SLACK = 0.005
MAX_GRID_AXES = 2
MAX_GRID_STEPS = 64


def unit_of(name: str) -> str:
    """The unit a column name declares by its suffix ("px" for `half_light_radius_px`), else ""."""
    for suffix, unit in _SUFFIX_UNITS.items():
        if name.endswith(suffix):
            return unit
    return ""


def _floats(values: Any, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a list of numbers, got {values!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise UserError(f"{what} must be finite numbers, got {list(out)}")
    return out


@dataclasses.dataclass(frozen=True)
class CondSpec:
    """K named continuous conditions: units, the trained range [low, high] and the normalisation mean/std."""

    names: tuple[str, ...]
    units: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.names)
        if k == 0:
            raise UserError("a condition spec needs at least one column")
        if len(set(self.names)) != k:
            raise UserError(f"condition names repeat: {list(self.names)}")
        for field in ("units", "low", "high", "mean", "std"):
            if len(getattr(self, field)) != k:
                raise UserError(
                    f"condition spec {field} has {len(getattr(self, field))} entries, names have {k}"
                )
        if any(s <= 0 for s in self.std):
            raise UserError(f"condition std must be > 0, got {list(self.std)}")

    # -- construction and serialisation -------------------------------------------------------------------

    @classmethod
    def from_values(
        cls, names: Sequence[str], values: np.ndarray, *, units: Sequence[str] | None = None
    ) -> CondSpec:
        """The spec of a table `values` (N, K): range, mean and std per column (a constant column gets std 1)."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != len(names) or v.shape[0] == 0:
            raise UserError(f"condition values must have shape (N>0, {len(names)}), got {v.shape}")
        if not np.isfinite(v).all():
            bad = [n for i, n in enumerate(names) if not np.isfinite(v[:, i]).all()]
            raise UserError(f"condition columns {', '.join(bad)} hold NaN or infinite values")
        std = v.std(axis=0)
        return cls(
            names=tuple(str(n) for n in names),
            units=tuple(units) if units is not None else tuple(unit_of(n) for n in names),
            low=tuple(float(x) for x in v.min(axis=0)),
            high=tuple(float(x) for x in v.max(axis=0)),
            mean=tuple(float(x) for x in v.mean(axis=0)),
            std=tuple(float(s) if s > 1e-12 else 1.0 for s in std),
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CondSpec:
        """Inverse of `to_dict`; UserError (one line) for a malformed entry."""
        if not isinstance(d, Mapping):
            raise UserError(f"a condition spec must be a mapping, got {type(d).__name__}")
        missing = [k for k in ("names", "low", "high", "mean", "std") if k not in d]
        if missing:
            raise UserError(f"condition spec lacks {', '.join(missing)}")
        names = tuple(str(n) for n in d["names"])
        return cls(
            names=names,
            units=tuple(str(u) for u in d.get("units", [unit_of(n) for n in names])),
            low=_floats(d["low"], "condition low"),
            high=_floats(d["high"], "condition high"),
            mean=_floats(d["mean"], "condition mean"),
            std=_floats(d["std"], "condition std"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: names, units, low, high, mean, std (lists)."""
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}

    @property
    def dim(self) -> int:
        return len(self.names)

    def select(self, names: Sequence[str]) -> tuple[CondSpec, list[int]]:
        """The spec of a subset of columns, and their indices; UserError naming the known columns."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise UserError(f"unknown condition column {unknown[0]!r}: this data has {', '.join(self.names)}")
        idx = [self.names.index(n) for n in names]
        pick = {f.name: tuple(getattr(self, f.name)[i] for i in idx) for f in dataclasses.fields(self)}
        return CondSpec(**pick), idx

    # -- values ---------------------------------------------------------------------------------------------

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """(values - mean) / std, float32 (..., K)."""
        v = np.asarray(values, dtype=np.float64)
        return ((v - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def denormalize(self, values: np.ndarray) -> np.ndarray:
        """Inverse of `normalize`, float32 (..., K)."""
        v = np.asarray(values, dtype=np.float64)
        return (v * np.asarray(self.std) + np.asarray(self.mean)).astype(np.float32)

    def centre(self) -> np.ndarray:
        """The training mean, float32 (K,): the value of every condition a request leaves out."""
        return np.asarray(self.mean, dtype=np.float32)

    def describe_range(self, i: int) -> str:
        unit = f" {self.units[i]}" if self.units[i] else ""
        return f"{self.names[i]} must be within [{self.low[i]:.4g}, {self.high[i]:.4g}]{unit}"

    def check_range(self, values: np.ndarray) -> None:
        """UserError naming the trained range of the first condition in `values` (..., K) outside it."""
        v = np.asarray(values, dtype=np.float64).reshape(-1, self.dim)
        if not np.isfinite(v).all():
            raise UserError("condition values must be finite numbers")
        for i in range(self.dim):
            span = self.high[i] - self.low[i]
            slack = RANGE_SLACK * span if span > 0 else RANGE_SLACK * max(abs(self.high[i]), 1.0)
            lo, hi = self.low[i] - slack, self.high[i] + slack
            bad = (v[:, i] < lo) | (v[:, i] > hi)
            if bad.any():
                got = float(v[bad, i][0])
                raise UserError(
                    f"{self.describe_range(i)} (the range the model was trained on), got {got:.4g}"
                )

    def values(self, given: Mapping[str, float] | str | None, *, check: bool = True) -> np.ndarray:
        """One condition vector float32 (K,): the given values, the training mean for the rest.

        `given` is a mapping or text `"sersic_n=1.2,half_light_radius_px=6"`. With `check` a value
        outside the trained range is a UserError that names the range.
        """
        assigned = parse_assignments(given) if isinstance(given, str) else dict(given or {})
        unknown = [k for k in assigned if k not in self.names]
        if unknown:
            raise UserError(f"unknown condition {unknown[0]!r}: this model takes {', '.join(self.names)}")
        out = self.centre().copy()
        for k, v in assigned.items():
            try:
                out[self.names.index(k)] = float(v)
            except (TypeError, ValueError):
                raise UserError(f"condition {k} must be a number, got {v!r}") from None
        if check:
            self.check_range(out)
        return out

    def rows(self, cond: Any, n: int, *, check: bool = True) -> np.ndarray:
        """Conditions for `n` images as float32 (n, K), in physical units.

        `cond`: None (the training mean for every image: without the data there is no per-seed draw to
        make), text `"sersic_n=1.2,q=0.4"` or a mapping (the rest take the mean), one vector (K,) for
        every image, or rows (n, K). With `check` a value outside the trained range is a UserError that
        names the range; non-finite values are refused even unchecked (NaN would draw noise, not a galaxy).
        """
        if cond is None or isinstance(cond, str | Mapping):
            return np.tile(self.values(cond, check=check) if cond is not None else self.centre(), (n, 1))
        try:
            values = np.asarray(cond, dtype=np.float32)
        except (TypeError, ValueError):
            raise UserError(f"conditions must be numbers ({', '.join(self.names)}), got {cond!r}") from None
        values = np.tile(values, (n, 1)) if values.shape == (self.dim,) else values
        if values.shape != (n, self.dim):
            raise UserError(
                f"conditions must have shape ({self.dim},) or ({n}, {self.dim}) for "
                f"{', '.join(self.names)}, got {values.shape}"
            )
        if not np.isfinite(values).all():
            raise UserError("condition values must be finite numbers")
        if check:
            self.check_range(values)
        return np.ascontiguousarray(values)

    def grid(
        self, axes_text: str, *, base: Mapping[str, float] | str | None = None, check: bool = True
    ) -> tuple[list[tuple[str, np.ndarray]], np.ndarray]:
        """A sheet of conditions from `"sersic_n=1:4:5,q=0.3:1:4"` (start:stop:count, one or two axes).

        Returns the axes `[(name, values)]` and float32 `(rows, cols, K)`: the first axis runs along the
        columns, the second (if any) down the rows; the other conditions come from `base` (else the mean).
        """
        axes: list[tuple[str, np.ndarray]] = []
        for part in [p.strip() for p in axes_text.split(",") if p.strip()]:
            name, _, spec = part.partition("=")
            bits = spec.split(":")
            if not name or len(bits) != 3:
                raise UserError(f"--cond-grid takes name=start:stop:count per axis, got {part!r}")
            try:
                start, stop, count = float(bits[0]), float(bits[1]), int(bits[2])
            except ValueError:
                raise UserError(f"--cond-grid takes name=start:stop:count per axis, got {part!r}") from None
            if not 1 <= count <= MAX_GRID_STEPS:
                raise UserError(f"--cond-grid count must be 1..{MAX_GRID_STEPS}, got {count} for {name}")
            if name.strip() not in self.names:
                raise UserError(
                    f"unknown condition {name.strip()!r}: this model takes {', '.join(self.names)}"
                )
            axes.append((name.strip(), np.linspace(start, stop, count, dtype=np.float64)))
        if not 1 <= len(axes) <= MAX_GRID_AXES or len({a for a, _ in axes}) != len(axes):
            raise UserError(
                "--cond-grid varies one or two different conditions, e.g. sersic_n=1:4:5,q=0.3:1:4"
            )
        centre = self.values(base, check=check)
        cols = axes[0][1]
        rows = axes[1][1] if len(axes) == 2 else np.zeros(1)
        out = np.broadcast_to(centre, (len(rows), len(cols), self.dim)).astype(np.float32).copy()
        out[:, :, self.names.index(axes[0][0])] = cols[None, :]
        if len(axes) == 2:
            out[:, :, self.names.index(axes[1][0])] = rows[:, None]
        if check:
            self.check_range(out)
        return axes, out

    def grid_requests(
        self,
        seeds: Sequence[int],
        grid: str,
        *,
        base: Mapping[str, float] | str | None = None,
        check: bool = True,
    ) -> tuple[list[int], np.ndarray, list[tuple[str, np.ndarray]], np.ndarray]:
        """What to generate for a condition sheet: (seeds (M,), conditions float32 (M, K), axes, conds).

        One axis: one sheet row per seed, the condition varying along the row, so each row shows one
        galaxy across the values. Two axes: a single seed for the whole sheet, the first condition along
        the columns, the second down the rows. M = rows * cols, row-major (`make_grid(ncols=cols)`);
        `conds` is float32 (rows, cols, K).
        """
        seed_list = [int(s) for s in seeds]
        if not seed_list:
            raise UserError("a condition grid needs at least one seed")
        axes, conds = self.grid(grid, base=base, check=check)
        if len(axes) == 2 and len(seed_list) != 1:
            raise UserError(f"a two-axis condition grid shows one seed, got {len(seed_list)}: pass one seed")
        if len(axes) == 1:
            conds = np.repeat(conds, len(seed_list), axis=0)  # (seeds, cols, K): one row per seed
        rows, cols, k = conds.shape
        row_seeds = seed_list if len(axes) == 1 else seed_list * rows
        flat_seeds = [s for s in row_seeds for _ in range(cols)]
        return flat_seeds, conds.reshape(rows * cols, k), axes, conds

    def regular_grid(self, per_axis: int) -> np.ndarray:
        """Every combination of `per_axis` evenly spaced values over each trained range, float32
        (per_axis**K, K), the last condition varying fastest."""
        axes = [np.linspace(lo, hi, per_axis) for lo, hi in zip(self.low, self.high, strict=True)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=1).astype(np.float32)

    def scale_lengths(self, values: np.ndarray, factor: float) -> np.ndarray:
        """Columns in pixels times `factor` (the image was resized by it), others unchanged; (N, K) copy."""
        out = np.array(values, dtype=np.float32, copy=True)
        for i, unit in enumerate(self.units):
            if unit == "px":
                out[..., i] *= factor
        return out


def parse_assignments(text: str) -> dict[str, float]:
    """`"a=1.2,b=6"` -> {"a": 1.2, "b": 6.0}; UserError for anything else (one line)."""
    out: dict[str, float] = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, eq, value = part.partition("=")
        if not eq or not name.strip():
            raise UserError(f"conditions are name=value pairs separated by commas, got {part!r}")
        try:
            v = float(value)
        except ValueError:
            raise UserError(f"condition {name.strip()} must be a number, got {value!r}") from None
        if not math.isfinite(v):
            raise UserError(f"condition {name.strip()} must be a finite number, got {value!r}")
        if name.strip() in out:
            raise UserError(f"condition {name.strip()} given twice")
        out[name.strip()] = v
    if not out:
        raise UserError("no conditions given: use name=value pairs, e.g. sersic_n=1.2,q=0.4")
    return out
