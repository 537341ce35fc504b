"""Progress animations: the fixed-seed snapshot grids of a run, in order, as an animated GIF.

A science run keeps each snapshot's bands beside its picture (`step-XXXXXXX.npz`: uint8 `(N, H, W, B)`,
`round((x + 1) * 127.5)` of every band, and the grid's column count), so the animation can be redrawn with
another band -> colour mapping or one band alone; otherwise the snapshot PNGs are used as they are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from astrogan.imaging import make_grid
from astrogan.sampling.post import PictureView, to_pil
from astrogan.utils.atomic import atomic_open, atomic_path
from astrogan.utils.errors import UserError

_SNAP_RE = re.compile(r"^step-(\d+)\.png$")


def snapshot_files(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's snapshot grids, in step order."""
    snap_dir = Path(run_dir) / "snapshots"
    if not snap_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in snap_dir.iterdir() if (m := _SNAP_RE.match(p.name))]
    return sorted(found)


def save_snapshot_bands(path: Path, bands_uint8: np.ndarray, *, ncols: int) -> Path:
    """Keep a snapshot's bands: uint8 `(N, H, W, B)` and the grid's column count, compressed, atomically."""
    with atomic_open(path, "wb") as fh:
        np.savez_compressed(fh, images=np.ascontiguousarray(bands_uint8), ncols=np.int64(ncols))
    return path


def load_snapshot_bands(path: Path) -> tuple[np.ndarray, int]:
    """(model values float32 `(N, B, H, W)` in [-1, 1], column count) from `save_snapshot_bands`' file."""
    with np.load(path, allow_pickle=False) as z:
        images, ncols = z["images"], int(z["ncols"])
    return images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0, ncols


def run_science_view(run_dir: Path, *, rgb: str | None = None, band: str | None = None) -> PictureView:
    """The view (`post.make_view`) of a run's snapshots: its science spec from config.json, `rgb`/`band` on top."""
    from astrogan.sampling.post import make_view
    from astrogan.science import ScienceSpec

    try:
        config = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"run {run_dir} has no readable config.json ({exc}): point at a run directory"
        ) from None
    spec = ScienceSpec.from_dict(config.get("science") or (config.get("dataset") or {}).get("science"))
    return make_view(spec, int(config.get("channels") or 3), rgb=rgb, band=band)


def _frame(path: Path, view: PictureView | None) -> Image.Image:
    if view is None:
        with Image.open(path) as im:
            return im.convert("RGB")
    bands = path.with_suffix(".npz")
    if not bands.is_file():
        raise UserError(
            f"{bands.name} is missing: --rgb/--band redraw a science run's snapshots from the bands kept beside "
            "them (runs on plain pictures keep none); drop --rgb/--band"
        )
    images, ncols = load_snapshot_bands(bands)
    return to_pil(make_grid(view.pictures(images), ncols=ncols)).convert("RGB")


def progress_gif(
    run_dir: Path,
    out: Path,
    *,
    frame_ms: int = 250,
    hold_last_ms: int = 1500,
    max_side_px: int = 768,
    rgb: str | None = None,
    band: str | None = None,
) -> Path:
    """Write an animated GIF of all snapshot grids, each labelled with its step; returns `out`.

    `rgb` ("i,r,g") or `band` redraw a science run's snapshots with that colour mapping or that band, grey.
    """
    snaps = snapshot_files(run_dir)
    if not snaps:
        raise UserError(f"run {run_dir} has no snapshots yet (snapshots/step-*.png): train it first")
    view = None if rgb is None and band is None else run_science_view(run_dir, rgb=rgb, band=band)
    frames = []
    for step, path in snaps:
        frame = _frame(path, view)
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
