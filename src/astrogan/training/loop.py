"""The arch-agnostic GAN training loop: each family brings its loss object; the loop owns data, EMA, state.

Read top to bottom: set up (data, nets, optimizers, run dir) -> maybe resume -> for each step: D update,
G update, EMA, tick (stats), snapshot, save. A resumed run continues bit-exactly on CPU because every
source of randomness (global RNGs, the data sampler's generator) is part of the saved state, and a
non-finite loss rolls back to the last good state with lower learning rates instead of writing garbage.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from astrogan._version import __version__
from astrogan.config import TrainConfig, from_dict
from astrogan.data.augment import DiffAugment
from astrogan.data.dataset import open_dataset
from astrogan.imaging import make_grid, model_to_unit, to_uint8
from astrogan.models import get_arch
from astrogan.models.io import save_generator
from astrogan.sampling.post import save_png
from astrogan.training import distributed as dist_utils
from astrogan.training.ema import ema_beta, update_ema
from astrogan.training.losses import make_loss
from astrogan.training.state import list_states, load_state, prune_states, save_state, state_path
from astrogan.training.stats import StatsWriter
from astrogan.utils.atomic import write_json
from astrogan.utils.errors import UserError
from astrogan.utils.log import info, progress
from astrogan.utils.rundir import latest_run_dir, next_run_dir
from astrogan.utils.seeds import latents_for_seeds
from astrogan.utils.torchtools import get_rng_state, pick_device, seed_everything, set_rng_state

NUM_STATES_KEPT = 3

StepCallback = Callable[[int, dict[str, Any]], None]


class NonFiniteLoss(RuntimeError):
    """Raised inside a step when a loss is NaN/inf; the loop rolls back and lowers the learning rates."""


class BatchSampler:
    """Shuffled passes over the dataset, drawn from a private torch.Generator (its state is resumable)."""

    def __init__(self, num_images: int, *, seed: int, labels: torch.Tensor | None = None) -> None:
        self.num_images = num_images
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(num_images, generator=self.gen)
        self.pos = 0
        self.labels = labels

    def next_indices(self, batch: int) -> torch.Tensor:
        out = []
        while batch > 0:
            if self.pos >= self.num_images:
                self.perm = torch.randperm(self.num_images, generator=self.gen)
                self.pos = 0
            take = min(batch, self.num_images - self.pos)
            out.append(self.perm[self.pos : self.pos + take])
            self.pos += take
            batch -= take
        return torch.cat(out)

    def sample_labels(self, batch: int) -> torch.Tensor | None:
        """Labels for fake images, drawn from the dataset's label distribution."""
        if self.labels is None:
            return None
        idx = torch.randint(0, self.num_images, (batch,), generator=self.gen)
        return self.labels[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.perm = state["perm"].clone()
        self.pos = int(state["pos"])


@dataclasses.dataclass
class _Nets:
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _find_resume_dir(cfg: TrainConfig, resume: bool | str | Path) -> Path:
    if isinstance(resume, str | Path) and not isinstance(resume, bool):
        run_dir = Path(resume)
        if not (run_dir / "config.json").is_file():
            raise UserError(f"cannot resume: {run_dir} is not a run directory (no config.json)")
        return run_dir
    run_dir = latest_run_dir(cfg.results_dir, cfg.name)
    if run_dir is None:
        raise UserError(
            f"nothing to resume: no run named {cfg.name!r} in {cfg.results_dir}; drop --resume to start one"
        )
    return run_dir


def _load_images(cfg: TrainConfig, device: torch.device):
    """Dataset -> uint8/float tensor (N, C, H, W) kept in memory (on the GPU when training there)."""
    if not cfg.data:
        raise UserError("no dataset given: pass --data DS (build one with `astrogan dataset build`)")
    ds = open_dataset(cfg.data)
    arr = ds.images(cfg.image_size)
    if arr.ndim != 4 or arr.shape[1] != cfg.image_size or arr.shape[2] != cfg.image_size:
        raise UserError(
            f"dataset {cfg.data} gives images of shape {arr.shape[1:]}, not "
            f"{cfg.image_size}x{cfg.image_size}; rebuild it with --image-size {cfg.image_size}"
        )
    if len(arr) == 0:
        raise UserError(f"dataset {cfg.data} is empty")
    images = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous()
    labels = None
    if cfg.num_classes > 0:
        lab = ds.labels()
        if lab is None:
            raise UserError(
                f"--num-classes {cfg.num_classes} needs a labelled dataset, and {cfg.data} has no "
                "labels (build it with --galaxy10, or drop --num-classes)"
            )
        if lab.max() >= cfg.num_classes:
            raise UserError(
                f"dataset labels go up to {int(lab.max())}, more than --num-classes {cfg.num_classes}"
            )
        labels = torch.from_numpy(lab.astype(np.int64))
    # Keep the whole set on the training device when it is small (saves the host->device copy per step).
    if device.type == "cuda" and images.numel() < 4 * 2**30:
        images = images.to(device)
        labels = None if labels is None else labels.to(device)
    return ds, images, labels


def _to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> [-1, 1]; float data (FITS, already stretched to [0, 1]) -> [-1, 1]."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(127.5).sub_(1.0)
    return batch.float().mul(2.0).sub(1.0)


def train(
    cfg: TrainConfig,
    *,
    resume: bool | str | Path = False,
    callbacks: Sequence[StepCallback] = (),
    show_progress: bool = True,
) -> Path:
    """Train a GAN as `cfg` says; returns the run directory. `resume` continues the latest run (or a given one)."""
    cfg.validate()
    device = pick_device(cfg.device)
    dist = dist_utils.init_from_env(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)

    # ---- run directory and (for resume) the saved config ------------------------------------------
    resume_state: dict[str, Any] | None = None
    if resume:
        run_dir = _find_resume_dir(cfg, resume)
        saved = json.loads((run_dir / "config.json").read_text())["train"]
        saved["num_train_steps"] = max(cfg.num_train_steps, 1)
        saved["device"] = cfg.device
        cfg = from_dict(TrainConfig, saved).validate()
        states = list_states(run_dir / "checkpoints")
        if states:
            resume_state = load_state(states[-1][1])
        elif dist.is_main:
            info(f"[yellow]no checkpoint in {run_dir}/checkpoints yet: starting that run from step 0")
    else:
        run_dir = next_run_dir(cfg.results_dir, cfg.name) if dist.is_main else Path()

    spec = get_arch(cfg.arch)
    # Check the architecture can do this size before reading any data.
    from_dict(spec.config_cls, {"image_size": cfg.image_size, **cfg.model}).validate()
    ds, images, labels = _load_images(cfg, device)
    channels = int(images.shape[1])
    model_kwargs = {"image_size": cfg.image_size, "channels": channels, **cfg.model}
    if cfg.num_classes:
        model_kwargs["num_classes"] = cfg.num_classes
    mcfg = from_dict(spec.config_cls, model_kwargs)
    mcfg.validate()

    # ---- networks and optimizers (identical init on every rank, then rank-specific randomness) ----
    seed_everything(cfg.seed)
    G = spec.build_generator(mcfg).to(device).train()
    D = spec.build_discriminator(mcfg).to(device).train()
    use_nhwc = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    memory_format = torch.channels_last if use_nhwc else torch.contiguous_format
    G, D = G.to(memory_format=memory_format), D.to(memory_format=memory_format)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    lr_g, lr_d = cfg.lr_g or spec.lr, cfg.lr_d or spec.lr
    opt_g = torch.optim.Adam(G.parameters(), lr=lr_g, betas=spec.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=spec.betas)
    use_scaler = cfg.amp and device.type == "cuda"
    nets = _Nets(
        G,
        D,
        G_ema,
        opt_g,
        opt_d,
        torch.amp.GradScaler("cuda", enabled=use_scaler),
        torch.amp.GradScaler("cuda", enabled=use_scaler),
    )
    if dist.enabled:
        seed_everything(cfg.seed + 7919 * dist.rank)
        for m in (G, D, G_ema):
            dist_utils.broadcast_module(m, dist)
    loss = make_loss(spec.loss)
    augment = DiffAugment(cfg.aug_types, cfg.aug_prob)
    sampler = BatchSampler(len(images), seed=cfg.seed * 1000 + dist.rank, labels=labels)
    amp_ctx: Callable[[], contextlib.AbstractContextManager[Any]]
    if cfg.amp:
        amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        amp_ctx = lambda: torch.autocast(device.type, dtype=amp_dtype)  # noqa: E731
    else:
        amp_ctx = contextlib.nullcontext

    per_rank_batch = cfg.batch_size // dist.world_size if dist.enabled else cfg.batch_size
    if per_rank_batch < 1:
        raise UserError(
            f"--batch-size {cfg.batch_size} is smaller than the number of processes ({dist.world_size})"
        )
    images_per_step = per_rank_batch * dist.world_size * cfg.gradient_accumulate_every
    counters = {"step": 0, "cur_nimg": 0, "lr_scale": 1.0, "nan_rollbacks": 0}

    def capture() -> dict[str, Any]:
        """Everything needed to continue bit-exactly (tensors cloned, so later steps do not change it)."""
        rng = get_rng_state()
        smp = sampler.state_dict()
        if dist.enabled:
            rng_all: list[Any] = [None] * dist.world_size
            smp_all: list[Any] = [None] * dist.world_size
            torch.distributed.all_gather_object(rng_all, rng)
            torch.distributed.all_gather_object(smp_all, smp)
        else:
            rng_all, smp_all = [rng], [smp]
        return copy.deepcopy(
            {
                **counters,
                "G": G.state_dict(),
                "D": D.state_dict(),
                "G_ema": G_ema.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "scaler_g": nets.scaler_g.state_dict(),
                "scaler_d": nets.scaler_d.state_dict(),
                "aug_prob": augment.prob,
                "rng": rng_all,
                "sampler": smp_all,
                "world_size": dist.world_size,
                "config": cfg.to_dict(),
            }
        )

    def restore(state: dict[str, Any]) -> None:
        if int(state.get("world_size", 1)) != dist.world_size:
            raise UserError(
                f"checkpoint was written by {state.get('world_size')} processes; resume it with "
                f"the same number (now {dist.world_size})"
            )
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        G_ema.load_state_dict(state["G_ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        nets.scaler_g.load_state_dict(state["scaler_g"])
        nets.scaler_d.load_state_dict(state["scaler_d"])
        augment.prob = float(state["aug_prob"])
        for key in counters:
            counters[key] = type(counters[key])(state[key])
        set_rng_state(state["rng"][dist.rank])
        sampler.load_state_dict(state["sampler"][dist.rank])
        for group in opt_g.param_groups:
            group["lr"] = lr_g * counters["lr_scale"]
        for group in opt_d.param_groups:
            group["lr"] = lr_d * counters["lr_scale"]

    if resume_state is not None:
        restore(resume_state)

    # ---- files: config.json, stats, fixed seeds ----------------------------------------------------
    snap_seeds = list(range(cfg.num_snapshot_seeds))
    snap_z = torch.from_numpy(latents_for_seeds(snap_seeds, G.z_dim)).to(device)
    snap_c = None
    if cfg.num_classes:
        snap_c = torch.tensor([s % cfg.num_classes for s in snap_seeds], device=device)
    ckpt_dir = run_dir / "checkpoints"
    writer = None
    if dist.is_main:
        (run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        manifest = ds.manifest
        write_json(
            run_dir / "config.json",
            {
                "format": "astrogan.run",
                "format_version": 1,
                "train": cfg.to_dict(),
                "arch": cfg.arch,
                "image_size": cfg.image_size,
                "channels": channels,
                "model": dataclasses.asdict(mcfg),
                "lr_g": lr_g,
                "lr_d": lr_d,
                "betas": list(spec.betas),
                "loss": spec.loss,
                "images_per_step": images_per_step,
                "world_size": dist.world_size,
                "device": str(device),
                "dataset": {
                    "path": str(Path(cfg.data).resolve()),
                    "content_hash": ds.content_hash,
                    "num_images": len(images),
                    "label_names": ds.label_names,
                    "sources": manifest.get("sources_summary", manifest.get("sources")),
                    "credits": manifest.get("credits"),
                    "licences": manifest.get("licences"),
                    "stretch": manifest.get("stretch"),
                },
                "astrogan_version": __version__,
                "torch_version": torch.__version__,
                "python_version": sys.version.split()[0],
                "git_commit": _git_commit(),
            },
        )
        writer = StatsWriter(run_dir, resume_step=counters["step"] if resume else None)

    def snapshot(step: int) -> None:
        with torch.no_grad():
            imgs = (
                torch.cat(
                    [
                        G_ema(snap_z[i : i + 32], None if snap_c is None else snap_c[i : i + 32]).float()
                        for i in range(0, len(snap_seeds), 32)
                    ]
                )
                .clamp(-1, 1)
                .cpu()
                .numpy()
            )
        grid = make_grid(to_uint8(imgs), ncols=int(math.ceil(math.sqrt(len(snap_seeds)))))
        save_png(grid, run_dir / "snapshots" / f"step-{step:07d}.png")
        if writer is not None:
            writer.add_image("snapshots", grid, step)

    def save(step: int) -> dict[str, Any]:
        state = capture()  # collective in DDP: every rank takes part
        if dist.is_main:
            save_state(state_path(ckpt_dir, step), state)
            prune_states(ckpt_dir, keep=NUM_STATES_KEPT)
            save_generator(
                G_ema,
                arch=cfg.arch,
                config=mcfg,
                out_dir=ckpt_dir,
                extra={
                    "step": step,
                    "kimg": counters["cur_nimg"] / 1000,
                    "dataset_hash": ds.content_hash,
                    "label_names": ds.label_names,
                    "run": run_dir.name,
                },
            )
        dist_utils.barrier(dist)
        return state

    metric_fn = None
    if cfg.metrics:
        try:
            from astrogan.metrics.compute import compute_metrics
        except ImportError as exc:
            raise UserError(f"--metrics needs the metrics package ({exc})") from None
        metric_fn = compute_metrics

    def evaluate_metrics(step: int) -> dict[str, float]:
        seeds = list(range(10_000, 10_000 + cfg.num_metric_images))
        z = torch.from_numpy(latents_for_seeds(seeds, G.z_dim)).to(device)
        with torch.no_grad():
            fake = (
                torch.cat(
                    [
                        G_ema(
                            z[i : i + 64],
                            None if labels is None else sampler.sample_labels(len(z[i : i + 64])),
                        ).float()
                        for i in range(0, len(z), 64)
                    ]
                )
                .clamp(-1, 1)
                .cpu()
                .numpy()
            )
        real_idx = np.linspace(0, len(images) - 1, min(len(images), cfg.num_metric_images)).astype(int)
        real = images[torch.from_numpy(real_idx).to(images.device)].permute(0, 2, 3, 1).cpu().numpy()
        if real.dtype != np.uint8:
            fake_arr = model_to_unit(fake).transpose(0, 2, 3, 1).astype(np.float32)
        else:
            fake_arr = to_uint8(fake)
        figures = metric_fn(
            list(cfg.metrics),
            real,
            fake_arr,
            cache_dir=Path(cfg.results_dir) / ".cache",
            cache_key=ds.content_hash,
        )
        return {f"metric_{k}": float(v) for k, v in figures.items()}

    # ---- the loop -----------------------------------------------------------------------------------
    def one_step() -> dict[str, float]:
        """One D update and one G update, each over `gradient_accumulate_every` micro-batches."""
        tick: dict[str, float] = {}
        accum = cfg.gradient_accumulate_every

        nets.opt_d.zero_grad(set_to_none=True)
        for _ in range(accum):
            idx = sampler.next_indices(per_rank_batch)
            real = _to_float(images[idx.to(images.device)].to(device, non_blocking=True))
            real = real.contiguous(memory_format=memory_format)
            c = None if labels is None else labels[idx.to(labels.device)].to(device)
            z = torch.randn(per_rank_batch, G.z_dim, device=device)
            with torch.no_grad(), amp_ctx():
                fake = G(z, c)
            with amp_ctx():
                loss_d, s = loss.d_loss(D, augment(real), augment(fake.float()), c)
            if not torch.isfinite(loss_d):
                raise NonFiniteLoss(f"discriminator loss is {loss_d.item()}")
            nets.scaler_d.scale(loss_d / accum).backward()
            for k, v in s.items():
                tick[k] = tick.get(k, 0.0) + v / accum
        dist_utils.all_reduce_grads(D, dist)
        nets.scaler_d.step(opt_d)
        nets.scaler_d.update()

        D.requires_grad_(False)
        nets.opt_g.zero_grad(set_to_none=True)
        try:
            for _ in range(accum):
                z = torch.randn(per_rank_batch, G.z_dim, device=device)
                c = sampler.sample_labels(per_rank_batch)
                c = None if c is None else c.to(device)
                with amp_ctx():
                    fake = G(z, c)
                    loss_g, s = loss.g_loss(D, augment(fake.float()), c)
                if not torch.isfinite(loss_g):
                    raise NonFiniteLoss(f"generator loss is {loss_g.item()}")
                nets.scaler_g.scale(loss_g / accum).backward()
                for k, v in s.items():
                    tick[k] = tick.get(k, 0.0) + v / accum
        finally:
            D.requires_grad_(True)
        dist_utils.all_reduce_grads(G, dist)
        nets.scaler_g.step(opt_g)
        nets.scaler_g.update()

        counters["cur_nimg"] += images_per_step
        beta = ema_beta(
            batch_images=images_per_step,
            cur_nimg=counters["cur_nimg"],
            ema_kimg=cfg.ema_kimg,
            rampup=cfg.ema_rampup,
        )
        update_ema(G_ema, G, beta)
        return tick

    start_step = counters["step"]
    if dist.is_main and resume_state is None:
        snapshot(0)
    last_good = capture()
    tick_sums: dict[str, float] = {}
    tick_steps, tick_t0, tick_nimg0 = 0, time.perf_counter(), counters["cur_nimg"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    deadline = None if cfg.max_minutes is None else time.monotonic() + 60.0 * cfg.max_minutes
    bar = progress(disable=None if (show_progress and dist.is_main) else True)
    with bar:
        task = bar.add_task("training", total=cfg.num_train_steps, completed=start_step, info="")
        while counters["step"] < cfg.num_train_steps:
            try:
                tick = one_step()
            except NonFiniteLoss as exc:
                counters_before = dict(counters)
                restore(last_good)
                counters["nan_rollbacks"] = counters_before["nan_rollbacks"] + 1
                counters["lr_scale"] = counters_before["lr_scale"] * cfg.nan_lr_factor
                for group in opt_g.param_groups:
                    group["lr"] = lr_g * counters["lr_scale"]
                for group in opt_d.param_groups:
                    group["lr"] = lr_d * counters["lr_scale"]
                msg = (
                    f"{exc} at step {counters_before['step']}: rolled back to step {counters['step']}, "
                    f"learning rates x{counters['lr_scale']:g}"
                )
                if writer is not None:
                    writer.write({"step": counters["step"], "event": "nan_rollback", "message": msg})
                info(f"[yellow]warning: {msg}")
                if counters["nan_rollbacks"] > cfg.max_nan_rollbacks:
                    raise RuntimeError(
                        f"training diverged: {counters['nan_rollbacks']} NaN rollbacks; "
                        "lower the learning rate or turn off --amp"
                    ) from None
                bar.update(task, completed=counters["step"])
                continue
            counters["step"] += 1
            step = counters["step"]
            # Out of time: make this the last step (every rank agrees, so collectives stay in step).
            out_of_time = deadline is not None and time.monotonic() > deadline
            if dist.enabled and deadline is not None:
                out_of_time = dist_utils.all_reduce_mean(float(out_of_time), dist) > 0
            last = step == cfg.num_train_steps or out_of_time
            for k, v in tick.items():
                tick_sums[k] = tick_sums.get(k, 0.0) + v
            tick_steps += 1

            if step % cfg.log_every == 0 or last:
                dt = time.perf_counter() - tick_t0
                record: dict[str, Any] = {
                    "step": step,
                    "kimg": counters["cur_nimg"] / 1000,
                    **{
                        k: dist_utils.all_reduce_mean(v / tick_steps, dist)
                        for k, v in sorted(tick_sums.items())
                    },
                    "images_per_s": (counters["cur_nimg"] - tick_nimg0) / max(dt, 1e-9),
                    "sec_per_step": dt / tick_steps,
                    "lr_g": opt_g.param_groups[0]["lr"],
                    "lr_d": opt_d.param_groups[0]["lr"],
                    "aug_prob": augment.prob,
                    "mem_cpu_peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                    "time": time.time(),
                }
                if device.type == "cuda":
                    record["mem_gpu_peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                if writer is not None:
                    writer.write(record)
                bar.update(
                    task,
                    info=f"D {record.get('loss_d', 0):.3f} G {record.get('loss_g', 0):.3f} "
                    f"{record['images_per_s']:.0f} img/s",
                )
                tick_sums, tick_steps = {}, 0
                tick_t0, tick_nimg0 = time.perf_counter(), counters["cur_nimg"]

            if step % cfg.evaluate_every == 0 or last:
                if dist.is_main:
                    snapshot(step)
                if metric_fn is not None and dist.is_main:
                    figures = evaluate_metrics(step)
                    if writer is not None:
                        writer.write({"step": step, "kimg": counters["cur_nimg"] / 1000, **figures})
            if step % cfg.save_every == 0 or last:
                last_good = save(step)
            bar.update(task, completed=step)
            for cb in callbacks:
                cb(step, {"run_dir": run_dir, "G": G, "D": D, "G_ema": G_ema, "loss": loss})
            if out_of_time:
                info(f"[yellow]--max-minutes {cfg.max_minutes:g} spent: stopped and saved at step {step}")
                break

    if writer is not None:
        writer.close()
    dist_utils.shutdown(dist)
    return run_dir
