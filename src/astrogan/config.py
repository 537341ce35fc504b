"""Stage configs: frozen dataclasses, loaded from TOML presets, merged with command-line flags, dumped as JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from astrogan.utils.errors import UserError

T = TypeVar("T")

AUG_TYPES = ("color", "translation", "cutout")
MIRRORS = ("none", "x", "dihedral")  # views of each real picture (`data.views`)
MAX_ACCUMULATE = 1024  # micro-batches per step: beyond this a step would take hours

# Top-level settings an architecture config also has: `--model image_size=32` would silently beat
# `--image-size`, so such keys are refused with the flag (or the source) to use instead.
_MODEL_KEYS_SET_ELSEWHERE = {
    "image_size": "use --image-size",
    "num_classes": "use --num-classes",
    "cond": "use --cond",
    "channels": "the dataset sets the band count",
}
_LOSS_KEYS_SET_ELSEWHERE = {"image_size": "use --image-size", "batch_size": "use --batch-size"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything `astrogan train` needs; flag names follow lightweight-gan's."""

    data: str = ""
    arch: str = "fastgan"
    image_size: int = 64
    batch_size: int = 16
    gradient_accumulate_every: int = 1
    num_train_steps: int = 1000
    save_every: int = 100
    evaluate_every: int = 50
    name: str = "default"
    results_dir: str = "results"
    amp: bool = False
    aug_prob: float = 0.0
    aug_types: tuple[str, ...] = ("color", "translation", "cutout")
    aug: str = "diffaugment"  # or "ada": adaptive p from D's overfitting (starts at aug_prob)
    # The reals' symmetries as extra training images: "x" mirrors, "dihedral" quarter turns and mirrors (8 views;
    # for sky pictures, which have no up or left), "none" (`data.views`).
    mirror: str = "none"
    ada_target: float = 0.6  # ADA's target for r_t = E[sign(D(real))]
    ada_kimg: float = 500.0  # ADA: p can move 0 -> 1 in this many thousand real images
    loss: dict[str, Any] = field(default_factory=dict)  # loss-family options (e.g. r1_gamma, pl_weight)
    lr_g: float | None = None  # None: the architecture's default
    lr_d: float | None = None
    ema_kimg: float = 1.0  # EMA half-life in thousands of images (StyleGAN2's convention)
    ema_rampup: float | None = 0.05  # half-life <= this fraction of images seen, early on
    lr_rampdown: float = 0.0  # learning rates fall to 0 (half cosine) over this last fraction of the steps
    seed: int = 0
    device: str = "auto"
    num_snapshot_seeds: int = 64  # fixed-seed grid size (8x8)
    log_every: int = 10  # steps per stats tick
    nan_lr_factor: float = 0.5  # learning rates are multiplied by this after a NaN rollback
    max_nan_rollbacks: int = 5
    max_minutes: float | None = None  # wall-clock budget: stop (and save) early once it is spent
    metrics: tuple[str, ...] = ()  # evaluated every `evaluate_every` steps (issue: metrics)
    num_metric_images: int = 256
    model: dict[str, Any] = field(default_factory=dict)  # architecture width knobs (e.g. ngf, ndf)
    num_classes: int = 0  # > 0: class-conditional (dataset must carry labels)
    cond: tuple[str, ...] = ()  # physical conditions to generate from (dataset condition columns)
    # NHWC memory format; None: on CUDA, and on the CPU for the architectures where it gains (nhwc_on_cpu).
    channels_last: bool | None = None
    # torch.compile (inductor) on G and D: ~1.2x on CPU for long runs of the default FastGAN, after minutes of
    # compiling first. Not bit-identical to eager (rounding; inductor draws in-graph dropout and noise from its
    # own RNG stream, seeded from torch's), but a run resumed under compile continues bit-exactly.
    compile: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.aug_types, str):
            object.__setattr__(self, "aug_types", tuple(t for t in self.aug_types.split(",") if t))
        for name in ("metrics", "cond"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [t.strip() for t in value.split(",") if t.strip()]
            if isinstance(value, list | tuple):  # anything else is left for validate() to name
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.aug_types, list | tuple):
            object.__setattr__(self, "aug_types", tuple(self.aug_types))

    def _check_types(self) -> None:
        """Every field of the type its annotation says (a preset or a saved config.json can hold anything)."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _is_a(value, hints[f.name]):
                raise UserError(f"{f.name} must be {_describe(hints[f.name])}, got {value!r}")
            if isinstance(value, float) and math.isnan(value):
                raise UserError(f"{f.name} must be a number, got nan")

    def validate(self, *, archs: Collection[str] = (), metrics: Collection[str] = ()) -> TrainConfig:
        """Check ranges and names; raise UserError with one actionable line.

        `archs` and `metrics` are the registries' names (`models.ARCHS`, `metrics.METRICS`): config sits
        below both layers, so the caller passes them in; an empty collection skips that check.
        """
        positive = (
            "batch_size",
            "gradient_accumulate_every",
            "num_train_steps",
            "save_every",
            "evaluate_every",
            "image_size",
            "log_every",
        )
        self._check_types()
        for name in positive:
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.gradient_accumulate_every > MAX_ACCUMULATE:  # 10^9 micro-batches would be one endless step
            raise UserError(
                f"--gradient-accumulate-every must be at most {MAX_ACCUMULATE}, got {self.gradient_accumulate_every}"
            )
        if self.num_classes < 0:
            raise UserError(f"--num-classes must be 0 (unconditional) or more, got {self.num_classes}")
        for name in ("lr_g", "lr_d"):  # 0 would silently mean the architecture's default (`lr or spec.lr`)
            value = getattr(self, name)
            if value is not None and not 0 < value < math.inf:
                raise UserError(f"--lr must be a positive number, got {value} ({name})")
        if not 0.0 <= self.lr_rampdown < 1.0:
            raise UserError(f"--lr-rampdown is a fraction of the steps in [0, 1), got {self.lr_rampdown}")
        if not 0.0 <= self.aug_prob <= 1.0:
            raise UserError(f"--aug-prob must be in [0, 1], got {self.aug_prob}")
        if self.aug not in ("diffaugment", "ada"):
            raise UserError(f"unknown --aug {self.aug!r}: choose diffaugment or ada")
        if not 0.0 < self.ada_target < 1.0:
            raise UserError(f"--ada-target must be in (0, 1), got {self.ada_target}")
        if self.ada_kimg <= 0:
            raise UserError(f"--ada-kimg must be positive, got {self.ada_kimg}")
        if self.mirror not in MIRRORS:
            raise UserError(f"unknown --mirror {self.mirror!r}: choose {', '.join(MIRRORS)}")
        bad = [t for t in self.aug_types if t not in AUG_TYPES]
        if bad:
            raise UserError(f"unknown --aug-types {','.join(bad)}: choose from {','.join(AUG_TYPES)}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise UserError(f"--max-minutes must be positive, got {self.max_minutes}")
        if self.num_snapshot_seeds <= 0:
            raise UserError("num_snapshot_seeds must be positive")
        for flag, options, elsewhere in (
            ("--model", self.model, _MODEL_KEYS_SET_ELSEWHERE),
            ("--loss", self.loss, _LOSS_KEYS_SET_ELSEWHERE),
        ):
            clash = next((k for k in options if k in elsewhere), None)
            if clash is not None:
                raise UserError(f"{flag} {clash}=... is not an option there: {elsewhere[clash]}")
        if self.cond and self.num_classes:
            raise UserError("--cond and --num-classes cannot be combined: condition on one or the other")
        if len(set(self.cond)) != len(self.cond):
            raise UserError(f"--cond names a column twice: {','.join(self.cond)}")
        if archs and self.arch not in archs:
            raise UserError(f"unknown architecture {self.arch!r}: choose one of {', '.join(sorted(archs))}")
        bad = [m for m in self.metrics if m not in metrics] if metrics else []
        if bad:
            raise UserError(f"unknown metric {bad[0]!r} in --metrics; choose from {', '.join(metrics)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table"}


def _is_a(value: Any, hint: Any) -> bool:
    """`value` fits the annotation `hint` (int, float, bool, str, dict, tuple[str, ...] and `X | None`)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, tuple) and all(_is_a(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _describe(hint: Any) -> str:
    """An annotation in words, for an error message."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _describe(a) for a in args)
    if origin is tuple:
        return f"a list of {_describe(args[0]).removeprefix('a ')}s"
    return _TYPE_NAMES.get(origin or hint, str(hint))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a config dataclass from a dict; an unknown key is a UserError naming it."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}")
    return cls(**data)


def _parse_value(text: str) -> Any:
    """Read an override's value: JSON when it parses (numbers, bools, lists), else the bare string."""
    lowered = text.strip()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        return lowered


def _split_options(item: str) -> list[str]:
    """`a=1,b="x,c=2"` -> ["a=1", 'b="x,c=2"']: at commas followed by `key=`, outside double quotes."""
    parts, start, quoted = [], 0, False
    for i, ch in enumerate(item):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted and re.match(r"\s*[A-Za-z_][A-Za-z0-9_.]*\s*=", item[i + 1 :]):
            parts.append(item[start:i])
            start = i + 1
    return [*parts, item[start:]]


def parse_options(items: Iterable[str], *, flag: str) -> dict[str, Any]:
    """`["ngf=32", "dropout=0.1"]` (or `["ngf=32,dropout=0.1"]`) -> {"ngf": 32, "dropout": 0.1}; values read as
    JSON where they parse. A comma starts a new option only when `key=` follows it, so `[1,2]` stays a list,
    and never inside double quotes: `prior_psf="moffat:fwhm_px=2,beta=3"` is one string option."""
    out: dict[str, Any] = {}
    split = [part for item in items for part in _split_options(item)]
    for item in split:
        if "=" not in item:
            raise UserError(f"{flag} {item!r} must look like key=value (e.g. {flag} ngf=32)")
        key, value = item.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def preset_names() -> list[str]:
    """Names of the presets that ship with astrogan (`--preset small` reads presets/small.toml)."""
    from importlib.resources import files

    return sorted(p.name[:-5] for p in files("astrogan.presets").iterdir() if p.name.endswith(".toml"))


def load_preset(path: str | Path) -> dict[str, Any]:
    """Read a preset: a TOML file, or the name of a built-in one; a `[train]` table or top-level keys."""
    p = Path(path)
    if p.is_file():
        text, where = p.read_text(encoding="utf-8"), str(p)
    elif str(path) in preset_names():
        from importlib.resources import files

        text, where = (
            files("astrogan.presets").joinpath(f"{path}.toml").read_text(encoding="utf-8"),
            str(path),
        )
    else:
        raise UserError(
            f"no preset file at {p} and no built-in preset {str(path)!r} (built-in: {', '.join(preset_names())})"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"preset {where} is not valid TOML: {exc}") from None
    table = data.get("train", data)
    if not isinstance(table, dict):
        raise UserError(f"preset {where}: [train] must be a table of settings, got {table!r}")
    return dict(table)


def resolve_train_config(
    preset: str | Path | None, given: dict[str, Any], explicit: Collection[str] | None = None
) -> TrainConfig:
    """The TrainConfig for a preset (a built-in name or TOML file) and `given` settings on top of it.

    `given` maps TrainConfig fields to values; `explicit` names those the user typed (default: all of
    them). A preset's value beats a default, a typed value beats the preset's, and the `model`/`loss`
    tables are merged key by key (keys given here refine the preset's). Not validated: call `validate()`.
    """
    values = load_preset(preset) if preset else {}
    typed = set(given) if explicit is None else set(explicit)
    for key, value in given.items():
        if key in ("model", "loss") and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        elif key in typed or key not in values:
            values[key] = value
    return from_dict(TrainConfig, values)
