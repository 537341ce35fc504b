"""One cell of the experiment: train a denoiser at one (alpha, repeat), resumably, then score it on the test split.

A cell folder (`cells/a0.800-r2/`) holds, as the cell goes:

- `state.pt`: the resumable state after the latest validation (weights, Adam, step, early-stopping record,
  time spent); `weights_only` loading. Removed when the cell is finished.
- `best.safetensors`: the weights with the lowest validation MSE so far (the ones that are tested).
- `result.json`: written last, atomically: the cell is finished. It records the settings' fingerprint,
  the steps done, why training stopped (`steps`, `early-stop`, `time`), the validation curve and the test
  scores per condition. A re-run skips a finished cell whose fingerprint matches, and scores only the
  conditions it lacks.
- `examples.npz`: degraded input, truth and prediction of the first test images, per condition.

Validation uses the real validation split, as trained (the paper splits the real data 60/20/20; an alpha = 1
network never trains on a real pixel, but its stopping point is chosen on real images).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from astrogan.downstream.config import (
    INIT_STREAM,
    REPEAT_STREAM,
    TEST_STREAM,
    VAL_STREAM,
    DenoiseConfig,
    alpha_key,
    derive_seed,
)
from astrogan.downstream.degrade import AS_TRAINED, CONDITIONS, Condition, Degradation
from astrogan.downstream.denoiser import Denoiser
from astrogan.downstream.mixing import MixingLoader, MixingSampler
from astrogan.downstream.scores import crop, mse, psnr, ssim
from astrogan.downstream.sets import ImageSet
from astrogan.utils.atomic import atomic_path, write_json
from astrogan.utils.errors import UserError
from astrogan.utils.torchtools import pick_device

STATE_FORMAT = 1
EVAL_CHUNK = 256  # test and validation noise is drawn per chunk of this many images: batch-size independent
EVAL_BATCH = 64
RESULT, STATE, BEST, EXAMPLES = "result.json", "state.pt", "best.safetensors", "examples.npz"
CONDITION_IDS = {name: i for i, name in enumerate(CONDITIONS)}  # fixed: a condition's noise never moves

# Called after every training step with (step, total steps, latest validation MSE or None).
StepCallback = Callable[[int, int, float | None], None]


@dataclass(frozen=True)
class CellData:
    """The images and degradation every cell shares: real splits, generated set, PSF kernel, noise sigmas."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    generated: ImageSet | None
    kernel: np.ndarray
    noise_sigma: tuple[float, ...]

    def degradation(self) -> Degradation:
        return Degradation(self.kernel, self.noise_sigma)


@dataclass(frozen=True)
class CellTask:
    """One (alpha, repeat) of an experiment, with the settings and the fingerprint its result depends on."""

    alpha: float
    repeat: int
    config: DenoiseConfig
    fingerprint: str
    conditions: tuple[str, ...]
    max_seconds: float | None = None

    @property
    def key(self) -> str:
        return f"{alpha_key(self.alpha)}-r{self.repeat}"


def read_result(cell_dir: Path) -> dict[str, Any] | None:
    """A finished cell's result.json, or None when there is none (or it is unreadable)."""
    import json

    try:
        doc = json.loads((cell_dir / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def run_cell(
    task: CellTask,
    data: CellData,
    cell_dir: Path,
    *,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    """Train (or resume, or skip) the cell in `cell_dir` and score it; returns its result.json content.

    `result["status"]` says what happened this time: `trained`, `resumed`, `skipped` (finished before,
    every condition scored) or `rescored` (finished before, missing conditions scored now).
    """
    cfg = task.config
    device = pick_device(cfg.device)
    old = read_result(cell_dir)
    if old is not None and old.get("fingerprint") == task.fingerprint:
        missing = [c for c in task.conditions if c not in old.get("test", {})]
        if not missing:
            (cell_dir / STATE).unlink(missing_ok=True)  # left by a kill between result.json and its removal
            return {**old, "status": "skipped"}
        model = _load_best(cell_dir, data, cfg, device)
        scores, examples = evaluate(
            model, data, missing, seed=cfg.seed, device=device, num_examples=cfg.num_examples
        )
        _merge_examples(cell_dir, examples)
        result = {**old, "test": {**old["test"], **scores}}
        write_json(cell_dir / RESULT, result)
        return {**result, "status": "rescored"}

    cell_dir.mkdir(parents=True, exist_ok=True)
    model = _new_model(data, cfg, seed=derive_seed(cfg.seed, INIT_STREAM, task.repeat)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rec = _load_state(cell_dir / STATE, task.fingerprint, model, opt)
    status = "resumed" if rec["step"] > 0 else "trained"
    if rec["stopped_by"] is None:
        _train(task, data, cell_dir, model, opt, rec, device=device, on_step=on_step)
    best = _load_best(cell_dir, data, cfg, device)
    scores, examples = evaluate(
        best, data, task.conditions, seed=cfg.seed, device=device, num_examples=cfg.num_examples
    )
    _merge_examples(cell_dir, examples, replace=True)
    result = {
        "key": task.key,
        "alpha": task.alpha,
        "repeat": task.repeat,
        "fingerprint": task.fingerprint,
        "steps_done": rec["step"],
        "best_step": rec["best_step"],
        "best_val_mse": rec["best_val"],
        "stopped_by": rec["stopped_by"],
        "train_seconds": round(rec["elapsed_s"], 2),
        "history": rec["history"],
        "num_train_real": len(data.train),
        "num_generated": 0 if data.generated is None else len(data.generated),
        "device": str(device),
        "test": scores,
    }
    write_json(cell_dir / RESULT, result)
    (cell_dir / STATE).unlink(missing_ok=True)  # Adam's moments are not needed once the cell is done
    return {**result, "status": status}


def _new_model(data: CellData, cfg: DenoiseConfig, *, seed: int) -> Denoiser:
    """The denoiser with the initial weights of `seed` (the same for every alpha of one repeat)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return Denoiser(data.train.shape[2], width=cfg.width, num_blocks=cfg.num_blocks)
    finally:
        torch.random.set_rng_state(gen_state)


def _load_state(path: Path, fingerprint: str, model: Denoiser, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The training record to continue from (a fresh one when there is no usable state file)."""
    fresh: dict[str, Any] = {
        "step": 0,
        "best_val": math.inf,
        "best_step": 0,
        "bad_evals": 0,
        "history": [],
        "elapsed_s": 0.0,
        "stopped_by": None,
    }
    if not path.is_file():
        return fresh
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file: this cell starts again (its result is not yet written)
        return fresh
    if (
        not isinstance(state, dict)
        or state.get("format") != STATE_FORMAT
        or state.get("fingerprint") != fingerprint
    ):
        return fresh
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return {k: state[k] for k in fresh}


def _save_state(path: Path, fingerprint: str, model: Denoiser, opt: torch.optim.Optimizer, rec: dict) -> None:
    state = {
        "format": STATE_FORMAT,
        "fingerprint": fingerprint,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        **rec,
    }
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        torch.save(state, tmp)


def _save_best(path: Path, model: Denoiser, *, step: int) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "astrogan.denoiser/1", "step": str(step)})


def _load_best(cell_dir: Path, data: CellData, cfg: DenoiseConfig, device: torch.device) -> Denoiser:
    from safetensors.torch import load_file

    path = cell_dir / BEST
    if not path.is_file():
        raise UserError(f"cell {cell_dir} has no {BEST}: remove the folder and run again")
    model = Denoiser(data.train.shape[2], width=cfg.width, num_blocks=cfg.num_blocks)
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


def _fixed_set(images: ImageSet, degradation: Degradation, condition: Condition, *, keys: tuple[int, ...]):  # noqa: ANN202
    """Yield (input, truth, box, start) per chunk of EVAL_CHUNK images, the noise fixed by `keys` + chunk."""
    for chunk, start in enumerate(range(0, len(images), EVAL_CHUNK)):
        clean = images.take(slice(start, start + EVAL_CHUNK))
        noise = torch.Generator().manual_seed(derive_seed(*keys, chunk))
        inputs, truth, box = degradation(clean, generator=noise, condition=condition)
        yield inputs, truth, box, start


@torch.no_grad()
def _predict(model: Denoiser, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    outs = [
        model(inputs[i : i + EVAL_BATCH].to(device)).float().cpu() for i in range(0, len(inputs), EVAL_BATCH)
    ]
    return torch.cat(outs)


def _train(
    task: CellTask,
    data: CellData,
    cell_dir: Path,
    model: Denoiser,
    opt: torch.optim.Optimizer,
    rec: dict[str, Any],
    *,
    device: torch.device,
    on_step: StepCallback | None,
) -> None:
    """The training loop: MSE, Adam, validation every `val_every` steps, early stopping; updates `rec`."""
    cfg = task.config
    degradation = data.degradation()
    sampler = MixingSampler(
        task.alpha,
        num_real=len(data.train),
        num_generated=0 if data.generated is None else len(data.generated),
        batch_size=cfg.batch_size,
        seed=derive_seed(cfg.seed, REPEAT_STREAM, task.repeat),
    )
    loader = MixingLoader(
        sampler, real=data.train, generated=data.generated, degradation=degradation, device=device
    )
    val = data.val.subset(np.arange(min(len(data.val), cfg.max_val_images)))
    val_chunks = [
        (x, t) for x, t, _, _ in _fixed_set(val, degradation, AS_TRAINED, keys=(cfg.seed, VAL_STREAM))
    ]

    def validate() -> float:
        model.eval()
        total = sum(float(mse(_predict(model, x, device), t).sum()) for x, t in val_chunks)
        model.train()
        return total / len(val)

    t0 = time.perf_counter() - rec["elapsed_s"]
    model.train()
    last_val: float | None = None
    while rec["step"] < cfg.steps:
        inputs, truth, _ = loader.batch(rec["step"])
        loss = F.mse_loss(model(inputs), truth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rec["step"] += 1
        step = rec["step"]
        out_of_time = task.max_seconds is not None and time.perf_counter() - t0 >= task.max_seconds
        if step % cfg.val_every == 0 or step == cfg.steps or out_of_time:
            last_val = validate()
            rec["history"].append([step, last_val])
            if last_val < rec["best_val"]:
                rec.update(best_val=last_val, best_step=step, bad_evals=0)
                _save_best(cell_dir / BEST, model, step=step)
            else:
                rec["bad_evals"] += 1
            rec["elapsed_s"] = time.perf_counter() - t0
            if step >= cfg.steps:
                rec["stopped_by"] = "steps"
            elif rec["bad_evals"] >= cfg.patience:
                rec["stopped_by"] = "early-stop"
            elif out_of_time:
                rec["stopped_by"] = "time"
            _save_state(cell_dir / STATE, task.fingerprint, model, opt, rec)
        if on_step is not None:
            on_step(step, cfg.steps, last_val)
        if rec["stopped_by"] is not None:
            break
    if not math.isfinite(rec["best_val"]):
        raise RuntimeError(f"cell {task.key}: validation MSE never finite (training diverged)")


def evaluate(
    model: Denoiser,
    data: CellData,
    conditions: tuple[str, ...] | list[str],
    *,
    seed: int,
    device: torch.device,
    num_examples: int = 2,
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Score `model` on the real test split under each condition: mean MSE, PSNR and SSIM per image.

    The degraded test inputs depend on the experiment seed, the condition and the image only, so every
    network of the experiment sees the same ones. Returns (scores per condition, example arrays).
    """
    degradation = data.degradation()
    scores: dict[str, dict[str, float]] = {}
    examples: dict[str, np.ndarray] = {}
    model.eval()
    for name in conditions:
        cond = CONDITIONS[name]
        sums = {"mse": 0.0, "psnr": 0.0, "ssim": 0.0, "mse_input": 0.0}
        keys = (seed, TEST_STREAM, CONDITION_IDS[name])
        for inputs, truth, box, start in _fixed_set(data.test, degradation, cond, keys=keys):
            pred = crop(_predict(model, inputs, device), box)
            t = crop(truth, box)
            m = mse(pred, t)
            sums["mse"] += float(m.sum())
            sums["psnr"] += float(psnr(m).sum())
            sums["ssim"] += float(ssim(pred, t).sum())
            sums["mse_input"] += float(mse(crop(inputs, box), t).sum())
            if start == 0 and num_examples:
                k = min(num_examples, len(inputs))
                examples[f"{name}.input"] = inputs[:k].numpy()
                examples[f"{name}.truth"] = truth[:k].numpy()
                examples[f"{name}.pred"] = _predict(model, inputs[:k], device).numpy()
                examples[f"{name}.box"] = np.asarray(box, dtype=np.int64)
        n = len(data.test)
        scores[name] = {k: v / n for k, v in sums.items()} | {"num_images": n}
    return scores, examples


def _merge_examples(cell_dir: Path, examples: dict[str, np.ndarray], *, replace: bool = False) -> None:
    """Write examples.npz atomically, keeping the conditions already there unless `replace`."""
    path = cell_dir / EXAMPLES
    merged: dict[str, np.ndarray] = {}
    if path.is_file() and not replace:
        with np.load(path) as old:
            merged = {k: old[k] for k in old.files}
    merged.update(examples)
    # Into a file object, so NumPy appends no second .npz to the temp name (NumPy's stub types **kwargs as
    # its allow_pickle flag, hence the ignore).
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **merged)  # type: ignore[arg-type]


def read_examples(cell_dir: Path) -> dict[str, np.ndarray]:
    """A cell's example arrays (`{condition}.input|truth|pred|box`), empty when it has none."""
    path = cell_dir / EXAMPLES
    if not path.is_file():
        return {}
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def worker_threads(jobs: int) -> int:
    """torch threads per cell process when `jobs` cells run at once: the cores shared out, at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, jobs))
