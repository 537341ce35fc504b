"""Progress animations: the fixed-seed snapshot grids of a run, in order, as an animated GIF."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, ImageDraw

from astrogan.utils.atomic import atomic_path
from astrogan.utils.errors import UserError

_SNAP_RE = re.compile(r"^step-(\d+)\.png$")


def snapshot_files(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's snapshot grids, in step order."""
    snap_dir = Path(run_dir) / "snapshots"
    if not snap_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in snap_dir.iterdir() if (m := _SNAP_RE.match(p.name))]
    return sorted(found)


def progress_gif(
    run_dir: Path, out: Path, *, frame_ms: int = 250, hold_last_ms: int = 1500, max_side_px: int = 768
) -> Path:
    """Write an animated GIF of all snapshot grids, each labelled with its step; returns `out`."""
    snaps = snapshot_files(run_dir)
    if not snaps:
        raise UserError(f"run {run_dir} has no snapshots yet (snapshots/step-*.png): train it first")
    frames = []
    for step, path in snaps:
        with Image.open(path) as im:
            frame = im.convert("RGB")
        if max(frame.size) > max_side_px:
            ratio = max_side_px / max(frame.size)
            frame = frame.resize(
                (int(frame.width * ratio), int(frame.height * ratio)), Image.Resampling.LANCZOS
            )
        draw = ImageDraw.Draw(frame)
        label = f"step {step}"
        draw.rectangle((0, 0, 8 + 7 * len(label), 14), fill=(0, 0, 0))
        draw.text((4, 2), label, fill=(255, 255, 255))
        frames.append(frame)
    durations = [frame_ms] * (len(frames) - 1) + [hold_last_ms]
    with atomic_path(out, suffix=".gif") as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return out
