"""FITS out: generated images as float32 cubes in the data's physical units, one header each, flipped once.

A science run's cube holds fluxes (`science.model_to_flux`: its dataset-wide stretch undone) in BUNIT; a run
on plain pictures holds the model's values mapped to [0, 1] with BUNIT 'display'. The header carries the
band names, units, pixel scale (`science.fits_header_cards`) and where the image came from: run, step, seed,
truncation, architecture, and the class or the physical conditions it was drawn with. `science.write_fits`
does the one flip from image order (row 0 on top) to FITS order (row 0 at the bottom).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from astrogan.sampling.post import science_of
from astrogan.science import ScienceSpec, cube_values, generated_cube_cards, write_fits
from astrogan.utils.seeds import class_names, labels_for_seeds

if TYPE_CHECKING:  # torch-free at run time: `generate --model x.onnx --format fits` runs without torch
    from astrogan.sampling.generator import CondRequest

__all__ = ["cube_cards", "generate_fits", "science_of", "write_cube"]

Card = tuple[str, Any, str]


cube_cards = generated_cube_cards  # the one header of a generated cube lives in astrogan.science


def write_cube(
    path: str | Path, image: np.ndarray, *, spec: ScienceSpec | None, cards: Sequence[Card]
) -> Path:
    """One model output (C, H, W) in [-1, 1], image order -> a float32 FITS cube at `path` (atomic)."""
    values = cube_values(np.asarray(image)[None], spec)[0]
    write_fits(path, values, cards)
    return Path(path)


def _images_and_conditions(
    gen: Any,
    seeds: list[int],
    *,
    trunc: float,
    labels: Any,
    cond: CondRequest,
    check_cond: bool,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(images (N, C, H, W) in [-1, 1], class labels (N,) or None, conditions (N, K) or None) for `seeds`."""
    if hasattr(gen, "synthesize"):  # the PyTorch Generator: the network's own `c`, as `generate` feeds it
        c = gen.condition(seeds, labels=labels, cond=cond, check_cond=check_cond)
        imgs = gen.synthesize(gen.latents(seeds), c, trunc=trunc, batch_size=batch_size).numpy()
        c_np = None if c is None else c.cpu().numpy()
        if gen.cond_spec is not None and c_np is not None and c_np.ndim == 2:
            return imgs, None, c_np
        return imgs, c_np, None
    # An exported model (ONNX Runtime): the same rules, through its own inputs.
    spec = getattr(gen, "cond_spec", None)
    conds = gen.cond_rows(cond, len(seeds), check=check_cond) if spec is not None else None
    given = labels.tolist() if isinstance(labels, np.ndarray) else labels
    lab = labels_for_seeds(seeds, gen.num_classes if getattr(gen, "has_class_input", False) else 0, given)
    imgs = gen.generate_float(gen.latents(seeds), labels=lab, cond=conds, trunc=trunc, batch_size=batch_size)
    return imgs, None if lab is None else np.asarray(lab), conds


def generate_fits(
    gen: Any,
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    trunc: float = 1.0,
    labels: Sequence[int] | int | None = None,
    cond: CondRequest = None,
    check_cond: bool = True,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write `out_dir/seedNNNN.fits` per seed: float32 (B, H, W) cubes in physical units; returns the paths.

    `gen`: a PyTorch `Generator` (or an exported `OnnxGenerator`); `labels`, `cond`, `check_cond` as in
    `Generator.generate`. Seed N gives the same cube alone or in any batch.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = science_of(gen)
    meta = getattr(gen, "meta", None) or {}
    extra = meta.get("extra") or {}
    given_names = extra.get("label_names") or meta.get("labels")
    label_names = class_names(given_names, int(getattr(gen, "num_classes", 0) or 0)) if given_names else None
    cond_spec = getattr(gen, "cond_spec", None)
    # An exported model's model.json has no `extra`: its model card says where it came from.
    card_raw = meta.get("model_card")
    card: dict[str, Any] = card_raw if isinstance(card_raw, dict) else {}
    trained_raw = card.get("training")
    trained: dict[str, Any] = trained_raw if isinstance(trained_raw, dict) else {}
    run = extra.get("run", meta.get("run", trained.get("run")))
    step = extra.get("step", meta.get("step", trained.get("steps")))
    step = int(step) if isinstance(step, int | float) and not isinstance(step, bool) else None
    arch = meta.get("arch") or card.get("arch")
    paths: list[Path] = []
    seed_list = [int(s) for s in seeds]
    for i in range(0, len(seed_list), max(1, batch_size)):
        chunk = seed_list[i : i + batch_size]
        # A list of labels follows the seeds: this chunk's part of it.
        lab = labels[i : i + len(chunk)] if isinstance(labels, (list, tuple, np.ndarray)) else labels
        rows = cond
        if isinstance(cond, np.ndarray) and cond.ndim == 2 and len(cond) == len(seed_list):
            rows = cond[i : i + len(chunk)]
        imgs, cls, conds = _images_and_conditions(
            gen, chunk, trunc=trunc, labels=lab, cond=rows, check_cond=check_cond, batch_size=batch_size
        )
        for j, s in enumerate(chunk):
            label = None if cls is None else int(cls[j])
            named = None
            if conds is not None and cond_spec is not None:
                named = {
                    n: (float(v), u)
                    for n, v, u in zip(cond_spec.names, conds[j], cond_spec.units, strict=True)
                }
            cards = cube_cards(
                spec,
                channels=int(imgs.shape[1]),
                seed=s,
                trunc=trunc,
                label=label,
                label_name=None if label is None or not label_names else str(label_names[label]),
                cond=named,
                run=run,
                step=step,
                arch=arch,
            )
            paths.append(write_cube(out / f"seed{s:04d}.fits", imgs[j], spec=spec, cards=cards))
        if on_batch is not None:
            on_batch(len(chunk))
    return paths
