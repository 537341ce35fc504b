"""Full, resumable training state on disk: written atomically, loaded with weights_only=True (no code runs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from astrogan.utils.atomic import atomic_path
from astrogan.utils.errors import UserError

STATE_FORMAT_VERSION = 1
_STATE_RE = re.compile(r"^state-(\d{7})\.pt$")


def state_path(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"state-{step:07d}.pt"


def save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file, fsync and rename: a kill mid-write leaves the old checkpoint intact."""
    state = {"format_version": STATE_FORMAT_VERSION, **state}
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        torch.save(state, tmp)


def load_state(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a state file safely; a corrupt or foreign file is a one-line UserError."""
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, wrong file type...
        reason = " ".join(str(exc).split())[:160]
        raise UserError(f"checkpoint {path} is corrupt or not an astrogan state ({reason})") from None
    if not isinstance(state, dict) or state.get("format_version") != STATE_FORMAT_VERSION:
        raise UserError(f"checkpoint {path} is not an astrogan training state (format version mismatch)")
    return state


def list_states(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every state file in `ckpt_dir`, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _STATE_RE.match(p.name))]
    return sorted(found)


def prune_states(ckpt_dir: Path, *, keep: int) -> None:
    """Delete all but the newest `keep` state files."""
    for _, p in list_states(ckpt_dir)[:-keep]:
        p.unlink(missing_ok=True)
