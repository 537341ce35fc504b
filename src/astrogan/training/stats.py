"""Per-tick training statistics: one JSON object per line in stats.jsonl, mirrored to TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from astrogan.utils.atomic import atomic_open


class StatsWriter:
    """Append-only stats log; on resume, lines past the resumed step are dropped so the log stays linear."""

    def __init__(self, run_dir: Path, *, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = run_dir / "stats.jsonl"
        if resume_step is not None and self.path.exists():
            kept = [
                ln
                for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= resume_step
            ]
            with atomic_open(self.path, "w", encoding="utf-8") as fh:  # a kill here keeps the old file
                fh.write("".join(ln + "\n" for ln in kept))
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=resume_step)
            except ImportError:  # TensorBoard is optional at run time
                self._tb = None

    def write(self, record: dict[str, Any]) -> None:
        """Log one tick; non-finite floats are written as null (JSON has no NaN)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._fh.write(json.dumps(clean, sort_keys=True) + "\n")
        self._fh.flush()
        if self._tb is not None:
            step = int(record.get("step", 0))
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                    self._tb.add_scalar(_tb_tag(key), value, step)

    def add_image(self, tag: str, image_hwc: Any, step: int) -> None:
        if self._tb is not None:
            self._tb.add_image(tag, image_hwc, step, dataformats="HWC")

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def _tb_tag(key: str) -> str:
    for prefix in ("loss", "acc", "lr", "metric", "time", "mem"):
        if key.startswith(prefix):
            return f"{prefix}/{key}"
    return f"progress/{key}"


def read_stats(run_dir: Path) -> list[dict[str, Any]]:
    """All records of a run's stats.jsonl (empty list when none)."""
    path = Path(run_dir) / "stats.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
