"""`run_denoise`: Holzschuh et al. 2022's denoising experiment on any real set and generator, resumable cell by cell.

A denoiser is trained per (alpha, repeat), each batch drawn from the generated set with probability alpha,
and tested on the held-out real split as trained, with coarser pixels, with four times the noise, and both
(see `degrade` for the exact meaning of each). One seed decides the split, the degradation noise of the
validation and test images, and each repeat's initial weights and batches.

The output folder:

    OUT/
      experiment.json        settings, their fingerprint, the two sets (kind, name, content hash); checked on re-runs
      splits.json            real image indices (at the chosen size) of the train / val / test splits
      generated/             only for a generator: images.npy (N, H, W, C) in the real set's dtype, seeds 0..N-1,
                             and generated.json (generator fingerprint, seeds, dtype): made once, reused
      cells/a0.800-r2/       one folder per (alpha, repeat): state.pt while training, best.safetensors,
                             examples.npz, result.json when finished (see `cell`)
      metrics.json           MSE / PSNR / SSIM mean ± std over repeats per alpha and condition, conclusions
      mse-<condition>.png    test MSE against alpha with error bars, one per condition
      examples.png           truth, degraded input, prediction at the lowest and the highest alpha
      report.html            the conclusion in one sentence per condition, the tables and the figures

Re-running with the same settings skips finished cells and resumes interrupted ones; more alphas,
repeats or conditions add only what is missing. Other settings (PSF, noise, steps, seed, either set...)
are refused unless `overwrite`, which removes the old cells and cache first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from astrogan.downstream.cell import CellData, CellTask, read_examples, read_result, run_cell, worker_threads
from astrogan.downstream.config import DenoiseConfig, alpha_key
from astrogan.downstream.degrade import Degradation, parse_conditions, parse_noise, parse_psf, psf_kernel
from astrogan.downstream.report import build_metrics, write_report
from astrogan.downstream.sets import (
    ImageSet,
    SetInfo,
    common_size,
    describe,
    generated_cache,
    load_set,
    split_indices,
)
from astrogan.utils.atomic import write_json
from astrogan.utils.errors import UserError
from astrogan.utils.log import info as say
from astrogan.utils.log import progress, warn

EXPERIMENT_SCHEMA = "astrogan.downstream.experiment/1"
OWN_ENTRIES = ("cells", "generated", "splits.json", "metrics.json", "report.html", "examples.png")

# Called after each training step of the cell running in this process: (cell key, step, total, val MSE).
OnStep = Callable[[str, int, int, "float | None"], None]


def run_denoise(
    real: Any,
    generated: Any,
    *,
    out: str | Path,
    config: DenoiseConfig | None = None,
    overwrite: bool = False,
    generated_name: str | None = None,
    show_progress: bool = True,
    on_step: OnStep | None = None,
) -> dict[str, Any]:
    """Run (or finish) the experiment in `out` and write its report; returns the metrics.json document.

    real: a dataset directory or an array `(N, H, W, C)` (uint8, or float32 in [0, 1]).
    generated: a dataset directory, an array, or a generator object (`Generator` or `OnnxGenerator`);
    `generated_name` names it in the report (default: its path or type). `on_step` is called in this
    process only (not from the worker processes of `jobs` > 1).
    """
    cfg = (config or DenoiseConfig()).validate()
    t0 = time.perf_counter()
    real_info = describe(real, role="real")
    gen_info = describe(generated, role="generated", name=generated_name)
    size = common_size(real_info, gen_info, image_size=cfg.image_size)
    conditions = parse_conditions(cfg.conditions)
    if size % 2 and any(c.bin_factor > 1 for c in conditions):
        raise UserError(f"{size} px images cannot be binned 2x2: drop half-res/both from --test-conditions")
    noise = parse_noise(cfg.noise, real_info.channels)
    kernel = psf_kernel(parse_psf(cfg.psf))
    Degradation(kernel, noise).check_size(size)
    real_set = load_set(real, real_info, image_size=size)
    splits = split_indices(len(real_set), cfg.seed)
    num_gen = _num_generated(generated, gen_info, cfg)
    settings = {
        **cfg.cell_settings(),
        "image_size": size,
        "channels": real_info.channels,
        "noise_sigma": list(noise),
        "real": real_info.fingerprint,
        "generated": gen_info.fingerprint,
        "num_generated": num_gen,
    }
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        _prepare_out(out, fingerprint, settings, overwrite=overwrite)
        write_json(
            out / "experiment.json",
            {
                "schema": EXPERIMENT_SCHEMA,
                "fingerprint": fingerprint,
                "settings": settings,
                "config": cfg.to_json(),
                "real": real_info.to_json(),
                "generated": gen_info.to_json(),
            },
        )
        write_json(out / "splits.json", {k: v.tolist() for k, v in splits.items()} | {"seed": cfg.seed})

        gen_set = None
        if max(cfg.alphas) > 0:
            gen_set = _generated_set(
                generated,
                gen_info,
                num=num_gen,
                dtype=real_info.dtype,
                size=size,
                out=out,
                show_progress=show_progress,
            )
        data = CellData(
            train=real_set.subset(splits["train"]),
            val=real_set.subset(splits["val"]),
            test=real_set.subset(splits["test"]),
            generated=gen_set,
            kernel=kernel,
            noise_sigma=noise,
        )
        names = tuple(c.name for c in conditions)
        tasks = [
            CellTask(alpha=a, repeat=r, config=cfg, fingerprint=fingerprint, conditions=names)
            for a in cfg.alphas
            for r in range(cfg.repeats)
        ]
        tasks = _with_time_budget(tasks, out / "cells", cfg)
        results = _run_cells(
            tasks, data, out / "cells", jobs=cfg.jobs, show_progress=show_progress, on_step=on_step
        )

        header = {
            "fingerprint": fingerprint,
            "settings": settings,
            "repeats": cfg.repeats,
            "real": {**real_info.to_json(), "num_images": len(real_set)},
            "generated": {
                **gen_info.to_json(),
                "num_images": 0 if gen_set is None else len(gen_set),
                **({"seeds": f"0-{num_gen - 1}"} if gen_info.kind == "generator" else {}),
            },
            "splits": {k: len(v) for k, v in splits.items()},
            "wall_seconds": round(time.perf_counter() - t0, 1),
        }
        doc = build_metrics(results, alphas=cfg.alphas, conditions=names, header=header)
        lo, hi = cfg.alphas[0], cfg.alphas[-1]
        examples = (
            read_examples(out / "cells" / f"{alpha_key(lo)}-r0"),
            read_examples(out / "cells" / f"{alpha_key(hi)}-r0"),
        )
        return write_report(out, doc, examples=examples)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold an exclusive flock on folder `out`: two runs in one experiment folder would write the same cells."""
    fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another run is using {out}: wait for it to finish, or use another --out"
            ) from None
        except (ImportError, OSError):  # no locks here (Windows, some network mounts): go on unguarded
            pass
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _num_generated(generated: Any, info: SetInfo, cfg: DenoiseConfig) -> int:
    if info.kind == "generator":
        return cfg.num_generated
    count = len(generated) if info.kind == "array" else _dataset_count(generated)
    return min(cfg.num_generated, count)


def _dataset_count(path: Any) -> int:
    from astrogan.data.dataset import open_dataset

    return open_dataset(path).num_images


def _prepare_out(out: Path, fingerprint: str, settings: dict[str, Any], *, overwrite: bool) -> None:
    """Check `out` holds nothing, or an experiment with these settings; with `overwrite` clear an old one."""
    if not any(out.iterdir()):
        return
    try:
        old = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(
            f"--out {out} is not empty and holds no denoise experiment: pick a new folder"
        ) from None
    if old.get("fingerprint") == fingerprint:
        return
    if not overwrite:
        before = old.get("settings", {})
        changed = [k for k in sorted(set(before) | set(settings)) if before.get(k) != settings.get(k)]
        raise UserError(
            f"--out {out} holds an experiment with other settings ({', '.join(changed) or 'format'}): "
            "use a new --out, or --overwrite to start it again"
        )
    for name in OWN_ENTRIES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for p in out.glob("mse-*.png"):
        p.unlink()


def _generated_set(
    generated: Any, info: SetInfo, *, num: int, dtype: str, size: int, out: Path, show_progress: bool
) -> ImageSet:
    if info.kind != "generator":
        if info.dtype != dtype:
            warn(
                f"the generated set is {info.dtype}, the real set {dtype}: both are compared on the unit scale"
            )
        return load_set(generated, info, image_size=size, limit=num)
    with progress(disable=not show_progress or None) as bar:
        task = bar.add_task("generating", total=num, info="")
        gen_set, reused = generated_cache(
            generated,
            info,
            num=num,
            dtype=dtype,
            cache_dir=out / "generated",
            on_batch=lambda n: bar.advance(task, n),
        )
    if reused:
        say(f"reusing {num} generated images from {out / 'generated'}")
    return gen_set


def _with_time_budget(tasks: list[CellTask], cells: Path, cfg: DenoiseConfig) -> list[CellTask]:
    """Share `max_minutes` equally between the cells still to train (several at once when jobs > 1)."""
    if cfg.max_minutes is None:
        return tasks
    pending = [t for t in tasks if (read_result(cells / t.key) or {}).get("fingerprint") != t.fingerprint]
    if not pending:
        return tasks
    seconds = cfg.max_minutes * 60.0 * min(cfg.jobs, len(pending)) / len(pending)
    import dataclasses

    return [dataclasses.replace(t, max_seconds=seconds) for t in tasks]


def _run_cells(
    tasks: list[CellTask],
    data: CellData,
    cells: Path,
    *,
    jobs: int,
    show_progress: bool,
    on_step: OnStep | None,
) -> list[dict[str, Any]]:
    """Run every cell, one after the other or `jobs` at a time in worker processes; their results in order."""
    results: dict[str, dict[str, Any]] = {}
    with progress(disable=not show_progress or None) as bar:
        overall = bar.add_task("cells", total=len(tasks), info="")

        def done(res: dict[str, Any]) -> None:
            results[res["key"]] = res
            bar.advance(overall)
            mse = res["test"].get("none", next(iter(res["test"].values())))["mse"]
            bar.update(overall, info=f"{res['key']} {res['status']}, test MSE {mse:.3g}")

        if jobs == 1 or len(tasks) == 1:
            for task in tasks:
                step_task = bar.add_task(f"  {task.key}", total=task.config.steps, info="")

                def tick(
                    step: int, total: int, val: float | None, _key: str = task.key, _t: Any = step_task
                ) -> None:
                    bar.update(_t, completed=step, info="" if val is None else f"val MSE {val:.3g}")
                    if on_step is not None:
                        on_step(_key, step, total, val)

                done(run_cell(task, data, cells / task.key, on_step=tick))
                bar.remove_task(step_task)
        else:
            ctx = mp.get_context("spawn")  # safe beside torch's threads, the same on every OS
            threads = worker_threads(jobs)
            with ProcessPoolExecutor(
                jobs, mp_context=ctx, initializer=_init_worker, initargs=(data, threads)
            ) as pool:
                futures = {pool.submit(_worker_cell, t, str(cells / t.key)): t for t in tasks}
                pending = set(futures)
                try:
                    while pending:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in finished:
                            done(f.result())  # re-raises a cell's error here, in the parent
                except BaseException:
                    for f in pending:
                        f.cancel()
                    raise
    return [results[t.key] for t in tasks]


_WORKER_DATA: CellData | None = None


def _init_worker(data: CellData, threads: int) -> None:
    import torch

    global _WORKER_DATA
    _WORKER_DATA = data
    torch.set_num_threads(threads)


def _worker_cell(task: CellTask, cell_dir: str) -> dict[str, Any]:
    assert _WORKER_DATA is not None
    return run_cell(task, _WORKER_DATA, Path(cell_dir))


def finished_cells(out: str | Path) -> list[dict[str, Any]]:
    """The result.json of every finished cell under `out/cells`, sorted by alpha then repeat."""
    cells = Path(out) / "cells"
    found = [r for p in sorted(cells.glob("a*-r*")) if (r := read_result(p)) is not None]
    return sorted(found, key=lambda r: (r["alpha"], r["repeat"]))


__all__ = ["DenoiseConfig", "finished_cells", "run_denoise"]
