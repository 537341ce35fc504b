"""Opening a run to resume: find it, continue it with its own settings, pick the newest intact state.

A resumed run trains as it was started: its saved `config.json` is the config, and only the flags the user
typed on the resume command line override it, each reported in one line. Settings that give the run its
shape (architecture, batch, model, losses, seeds...) cannot change on resume; bookkeeping ones (steps,
time budget, device, save and evaluation cadence, metrics, the dataset's location) can. A truncated newest
state (a kill or a full disk mid-write) falls back to the newest one that loads, and says so; temp files
left by a killed write are removed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from astrogan.config import TrainConfig, from_dict
from astrogan.training.state import list_states, load_state
from astrogan.utils.errors import UserError
from astrogan.utils.log import info

# Settings a resumed run may change: where and how long it runs, and what it writes how often.
RESUME_OVERRIDABLE = frozenset(
    {
        "num_train_steps",
        "max_minutes",
        "device",
        "data",
        "save_every",
        "evaluate_every",
        "log_every",
        "metrics",
        "num_metric_images",
        "amp",
        "channels_last",
        "compile",  # the same maths: eager and compiled differ in rounding and in-graph random draws
        "max_nan_rollbacks",
        "nan_lr_factor",
    }
)
# Settings that only locate the run.
_LOCATORS = frozenset({"name", "results_dir"})
# What atomic writes leave behind when killed: `.<target>.<random><suffix>` beside the checkpoint files.
_TEMP_RE = re.compile(r"^\.(state-\d{7}\.pt|generator\.safetensors|generator\.json|config\.json)\..+")


def find_run_dir(cfg: TrainConfig, resume: bool | str | Path) -> Path:
    """The run to resume: the given directory, or the latest run named `cfg.name` in `cfg.results_dir`."""
    if isinstance(resume, str | Path) and not isinstance(resume, bool):
        run_dir = Path(resume)
        if not (run_dir / "config.json").is_file():
            raise UserError(f"cannot resume: {run_dir} is not a run directory (no config.json)")
        return run_dir
    from astrogan.utils.rundir import latest_run_dir

    latest = latest_run_dir(cfg.results_dir, cfg.name)
    if latest is None:
        raise UserError(
            f"nothing to resume: no run named {cfg.name!r} in {Path(cfg.results_dir).resolve()}; "
            "drop --resume to start one (or pass --results-dir)"
        )
    return latest


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) or "none"
    return str(value)


def explicit_fields(cfg: TrainConfig) -> set[str]:
    """For API callers: the fields of `cfg` that differ from TrainConfig's defaults (what they asked for)."""
    default = TrainConfig()
    return {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)}


def resumed_config(
    saved: dict[str, Any], given: TrainConfig, explicit: Collection[str], *, saved_data_path: str | None
) -> tuple[TrainConfig, list[str]]:
    """The run's saved settings with the typed `explicit` ones on top; also the changes, for one line.

    A typed setting that would change the run's shape is a UserError naming both values. The dataset is
    found at its recorded absolute path unless --data is typed (so resuming works from any directory).
    """
    base = from_dict(TrainConfig, saved)
    values = dataclasses.asdict(base)
    if saved_data_path and Path(saved_data_path).exists():
        values["data"] = saved_data_path  # absolute: the run resumes from any working directory
    changes: list[str] = []
    for name in sorted(set(explicit) - _LOCATORS):
        new, old = getattr(given, name), getattr(base, name)
        if new == old or (
            name == "data" and Path(new).resolve() == Path(str(saved_data_path or old)).resolve()
        ):
            continue
        if (
            name == "model"
            and isinstance(new, dict)
            and all(k in old and old[k] == v for k, v in new.items())
        ):
            continue  # each typed option is the run's own; the run also keeps ones train chose (cond_prior)
        if name not in RESUME_OVERRIDABLE:
            raise UserError(
                f"{_flag(name)} {_show(new)} differs from the run's {_show(old)}: a resumed run keeps its "
                "shape; drop the flag, or drop --resume to start a new run"
            )
        values[name] = new
        changes.append(f"{_flag(name)} {_show(old)} -> {_show(new)}")
    return from_dict(TrainConfig, values).validate(), changes


def clean_temp_files(ckpt_dir: Path) -> list[Path]:
    """Remove temp files a killed checkpoint write left in `ckpt_dir` (only this run writes there)."""
    removed = []
    if ckpt_dir.is_dir():
        for p in ckpt_dir.iterdir():
            if _TEMP_RE.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def newest_intact_state(ckpt_dir: Path, *, announce: bool = True) -> dict[str, Any] | None:
    """Load the newest state that loads; a corrupt newer one is skipped with a one-line warning.

    Returns None when there is no state file; a UserError when every state file is corrupt.
    """
    states = list_states(ckpt_dir)
    if not states:
        return None
    bad: list[str] = []
    for step, path in reversed(states):
        try:
            state = load_state(path)
        except UserError as exc:
            bad.append(f"{path.name} ({exc})")
            continue
        if bad and announce:
            info(
                f"[yellow]warning: {len(bad)} newer checkpoint(s) could not be read "
                f"({'; '.join(b.split(' (')[0] for b in bad)}): resuming from the intact {path.name} "
                f"(step {step})"
            )
        return state
    raise UserError(
        f"every checkpoint in {ckpt_dir} is corrupt ({bad[0]}); the run cannot resume: start a new one"
    )


def open_resumed(
    cfg: TrainConfig,
    resume: bool | str | Path,
    explicit: Collection[str] | None,
    *,
    is_main: bool,
    hold: Callable[[Path], None] | None = None,
) -> tuple[Path, TrainConfig, dict[str, Any] | None]:
    """(run dir, the config to continue with, the state to restore or None) for `train(..., resume=...)`;
    `hold(run_dir)` (the main process only) before anything in it is read or cleaned: the run's lock."""
    run_dir = find_run_dir(cfg, resume)
    if is_main and hold is not None:
        hold(run_dir)
    try:
        saved_all = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        saved = saved_all["train"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot resume: {run_dir / 'config.json'} is unreadable ({exc})") from None
    data_path = (saved_all.get("dataset") or {}).get("path")
    typed = explicit_fields(cfg) if explicit is None else set(explicit)
    new_cfg, changes = resumed_config(saved, cfg, typed, saved_data_path=data_path)
    if "data" not in typed and not Path(new_cfg.data).exists():
        raise UserError(
            f"the run's dataset {data_path or new_cfg.data} is gone: pass --data to point at it "
            "(it must have the same content hash)"
        )
    expected_hash = (saved_all.get("dataset") or {}).get("content_hash")
    if "data" in typed and expected_hash:
        from astrogan.data.dataset import open_dataset

        found = open_dataset(new_cfg.data).content_hash
        if found != expected_hash:
            raise UserError(
                f"--data {new_cfg.data} is another dataset (content hash {found[:12]}, the run trained on "
                f"{str(expected_hash)[:12]}): point --data at the run's dataset, or drop --resume to start a new run"
            )
    ckpt_dir = run_dir / "checkpoints"
    if is_main:
        clean_temp_files(ckpt_dir)
    state = newest_intact_state(ckpt_dir, announce=is_main)
    if is_main:
        step = 0 if state is None else int(state["step"])
        told = f"; overridden: {', '.join(changes)}" if changes else ""
        info(f"resuming {run_dir.name} at step {step} with its own settings{told}")
        if state is None:
            info(f"[yellow]no checkpoint in {ckpt_dir} yet: starting that run from step 0")
        elif step >= new_cfg.num_train_steps:
            info(
                f"[yellow]{run_dir.name} already reached step {step} of {new_cfg.num_train_steps}: "
                "pass --num-train-steps N to train it longer"
            )
    return run_dir, new_cfg, state
