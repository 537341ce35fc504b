"""The arch-agnostic GAN training loop: the family's loss runs its phases; the loop owns data, EMA and state.

Read top to bottom: set up (data, nets, optimizers, run dir) -> maybe resume -> for each step: every phase
the loss family declares (`Dmain`, lazy `Dreg`, `Gmain`, lazy `Greg`...), the augmentation's update (ADA),
EMA, tick (stats), snapshot, save. A resumed run continues bit-exactly (on CUDA too, with deterministic
kernels: `_deterministic_cuda`) because every source of randomness (global RNGs, the data sampler's
generator) and every piece of adaptive state (ADA's p, the path-length mean) is in `TrainingState`, and a
non-finite loss rolls back to the last good state with lower learning rates instead of writing garbage.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from astrogan._version import __version__
from astrogan.config import TrainConfig, from_dict
from astrogan.data.augment import DiffAugment
from astrogan.data.dataset import open_dataset
from astrogan.data.views import num_views, take_views
from astrogan.imaging import make_grid, model_to_unit, to_uint8
from astrogan.models import ARCHS, ArchSpec, get_arch
from astrogan.models.io import check_buildable, generator_pair_intact, save_generator
from astrogan.models.sersic_prior import has_prior_columns
from astrogan.sampling.post import DISPLAY_KEY, PictureView, fit_display, save_png
from astrogan.sampling.video import save_snapshot_bands
from astrogan.science import ScienceSpec
from astrogan.training import cond_aux
from astrogan.training import distributed as dist_utils
from astrogan.training.ema import ema_beta, update_ema
from astrogan.training.losses import PROFILE_WEIGHT, Batch, GANLoss, Phase, make_loss, reg_intervals
from astrogan.training.resume import open_resumed
from astrogan.training.signals import StopRequests
from astrogan.training.state import (
    TrainingState,
    list_states,
    prune_states,
    rampdown_factor,
    save_state,
    state_path,
)
from astrogan.training.stats import StatsWriter
from astrogan.utils.atomic import write_json
from astrogan.utils.errors import Interrupted, UserError
from astrogan.utils.log import info, progress
from astrogan.utils.rundir import RunLock, make_run_dir
from astrogan.utils.seeds import latents_for_seeds
from astrogan.utils.torchtools import pick_device, seed_everything

NUM_STATES_KEPT = 3

StepCallback = Callable[[int, dict[str, Any]], None]


class NonFiniteLoss(RuntimeError):
    """Raised inside a step when a loss is NaN/inf; the loop rolls back and lowers the learning rates."""


class BatchSampler:
    """Shuffled passes over the dataset, drawn from a private torch.Generator (its state is resumable).

    With `views` > 1 (`--mirror`) a pass visits every (picture, view) pair once: indices run over
    `num_images * views` (`data.views.take_views` reads them); `views=1` draws exactly the stream it always did.
    """

    def __init__(
        self, num_images: int, *, seed: int, labels: torch.Tensor | None = None, views: int = 1
    ) -> None:
        self.num_images = num_images
        self.size = num_images * views
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(self.size, generator=self.gen)
        self.pos = 0
        self.labels = labels

    def next_indices(self, batch: int) -> torch.Tensor:
        out = []
        while batch > 0:
            if self.pos >= self.size:
                self.perm = torch.randperm(self.size, generator=self.gen)
                self.pos = 0
            take = min(batch, self.size - self.pos)
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


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _open_run(
    cfg: TrainConfig,
    resume: bool | str | Path,
    explicit: Collection[str] | None,
    dist: dist_utils.DistInfo,
    lock: RunLock,
) -> tuple[Path, TrainConfig, dict[str, Any] | None]:
    """The run directory (none yet for a new run: `make_run_dir` once set-up has passed), the config to train
    with (the saved one when resuming) and the state to resume; a resumed run is locked before it is touched."""
    if not resume:
        return Path(), cfg, None
    return open_resumed(cfg, resume, explicit, is_main=dist.is_main, hold=lock.take)


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
    cond_spec = None
    if cfg.cond:  # physical conditions: float (N, K) in their units; the model normalises them
        values, cond_spec = ds.cond(cfg.image_size, cfg.cond)
        labels = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    # Keep the whole set on the training device when it is small (saves the host->device copy per step).
    if device.type == "cuda" and images.numel() < 4 * 2**30:
        images = images.to(device)
        labels = None if labels is None else labels.to(device)
    return ds, images, labels, cond_spec


def _to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> [-1, 1]; float data (FITS, already stretched to [0, 1]) -> [-1, 1]."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(127.5).sub_(1.0)
    return batch.float().mul(2.0).sub(1.0)


def _make_augment(cfg: TrainConfig, channels: int) -> Any:
    """The augmentation object: DiffAugment (fixed probability) or ADA (adaptive p, starts at --aug-prob)."""
    if cfg.aug == "ada":
        from astrogan.data.ada import AdaptiveAugment

        return AdaptiveAugment(
            channels=channels, p=cfg.aug_prob, target=cfg.ada_target, speed_kimg=cfg.ada_kimg
        )
    return DiffAugment(cfg.aug_types, cfg.aug_prob)


def _memory_format(cfg: TrainConfig, device: torch.device) -> torch.memory_format:
    """NHWC when asked for, or by default on CUDA and, for the architectures where it pays, on the CPU."""
    auto = device.type == "cuda" or get_arch(cfg.arch).nhwc_on_cpu
    use_nhwc = cfg.channels_last if cfg.channels_last is not None else auto
    return torch.channels_last if use_nhwc else torch.contiguous_format


def _deterministic_cuda(device: torch.device) -> None:
    """On CUDA, kernels that give the same bits every time, so that a resumed run continues bit-exactly.

    Seen on an H200 (bench/gpu_check.sh, torch 2.11): fp32 runs (no --amp) of each architecture, run twice
    from the same seed, differed after 12 steps (G by up to 5e-3) and so did their resumes, while the same
    runs under --amp were bit-exact. cuDNN picks among convolution algorithms by heuristics, some of them
    accumulating with atomics; `cudnn.deterministic` restricts it to reproducible ones, `benchmark` off stops
    run-to-run timing from choosing, and `use_deterministic_algorithms` switches the ops that have a
    deterministic variant to it (warning, not failing, on the few that have none). cuBLAS needs its
    workspace fixed before its first call for the same. Costs some speed; the README promises exact resume.
    """
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def _amp_context(cfg: TrainConfig, device: torch.device) -> tuple[Callable[[], Any], bool]:
    """(autocast factory, whether fp16 loss scaling is needed): bf16 where the device has it, else fp16."""
    if not cfg.amp:
        return contextlib.nullcontext, False
    bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float16
    return (lambda: torch.autocast(device.type, dtype=dtype)), not bf16


def _cxx_compiler() -> str | None:
    """The C++ compiler inductor would build CPU kernels with (the names its own config searches), or None."""
    try:
        from torch._inductor import config as inductor_config

        cxx = inductor_config.cpp.cxx
        names = [cxx] if isinstance(cxx, str) else list(cxx)
    except (ImportError, AttributeError):  # inductor's config is internal: fall back to the usual names
        names = [os.environ.get("CXX"), "c++", "g++", "clang++"]
    return next((found for name in names if name and (found := shutil.which(name))), None)


def _check_compile(cfg: TrainConfig, device: torch.device) -> None:
    """--compile on a CPU needs a C++ compiler: say so now, not after the data has loaded."""
    if cfg.compile and device.type == "cpu" and _cxx_compiler() is None:
        raise UserError(
            "--compile on a CPU needs a C++ compiler for inductor (g++, or the one $CXX names) and none is "
            "on PATH: install one (e.g. apt install g++) or drop --compile"
        )


def _compile_nets(st: TrainingState) -> None:
    """torch.compile (inductor) G and D in place, for the training step only.

    `nn.Module.compile` keeps the modules themselves (no `_orig_mod.` wrapper), so state_dict keys, the
    optimizers' parameters, the hand-made gradient all-reduce and checkpoints are those of an eager run.
    `dynamic=False`: a graph per input shape, never one made dynamic by the order shapes came in, so a
    resumed run runs the same kernels as an uninterrupted one. G_ema, the losses and augmentation stay eager.
    """
    for net in (st.G, st.D):
        net.compile(dynamic=False)


def _build_state(
    cfg: TrainConfig,
    spec: ArchSpec,
    mcfg: Any,
    *,
    loss: GANLoss,
    augment: Any,
    sampler: BatchSampler,
    device: torch.device,
    dist: dist_utils.DistInfo,
    use_scaler: bool,
) -> TrainingState:
    """Networks (identical init on every rank) and optimizers, with Adam rescaled for lazy regularisation."""
    seed_everything(cfg.seed)
    G = spec.build_generator(mcfg).to(device).train()
    D = spec.build_discriminator(mcfg).to(device).train()
    G, D = G.to(memory_format=_memory_format(cfg, device)), D.to(memory_format=_memory_format(cfg, device))
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    base_lrs = {"G": cfg.lr_g or spec.lr, "D": cfg.lr_d or spec.lr}
    # A net regularised every k steps takes k/(k+1) of the steps' lr and beta exponents (StyleGAN2, App. B).
    ratios = {net: k / (k + 1) if k > 1 else 1.0 for net, k in reg_intervals(loss.phases).items()}
    opts = {
        net: torch.optim.Adam(
            module.parameters(),
            lr=base_lrs[net] * ratios[net],
            betas=(spec.betas[0] ** ratios[net], spec.betas[1] ** ratios[net]),
        )
        for net, module in (("G", G), ("D", D))
    }
    if dist.enabled:
        seed_everything(cfg.seed + 7919 * dist.rank)
        for m in (G, D, G_ema):
            dist_utils.broadcast_module(m, dist)
    return TrainingState(
        G=G,
        D=D,
        G_ema=G_ema,
        opt_g=opts["G"],
        opt_d=opts["D"],
        scaler_g=torch.amp.GradScaler("cuda", enabled=use_scaler),
        scaler_d=torch.amp.GradScaler("cuda", enabled=use_scaler),
        augment=augment,
        loss=loss,
        sampler=sampler,
        base_lrs=base_lrs,
        mb_ratios=ratios,
        dist=dist,
        config=cfg.to_dict(),
    )


@dataclasses.dataclass
class _Stepper:
    """One training step: every due phase of the loss over `accum` micro-batches, ADA update, EMA."""

    st: TrainingState
    cfg: TrainConfig
    images: torch.Tensor
    labels: torch.Tensor | None
    device: torch.device
    per_rank_batch: int
    images_per_step: int
    amp_ctx: Callable[[], Any]
    memory_format: torch.memory_format

    def _batch(self, phase: Phase) -> Batch:
        real = c_real = None
        if phase.needs_real:
            idx = self.st.sampler.next_indices(self.per_rank_batch)
            picked, pic = take_views(self.images, idx, num_views(self.cfg.mirror))
            real = _to_float(picked.to(self.device, non_blocking=True))
            real = real.contiguous(memory_format=self.memory_format)
            c_real = None if self.labels is None else self.labels[pic.to(self.labels.device)].to(self.device)
        z = torch.randn(self.per_rank_batch, self.st.G.z_dim, device=self.device)
        c_gen = self.st.sampler.sample_labels(self.per_rank_batch)
        return Batch(z=z, c_gen=None if c_gen is None else c_gen.to(self.device), real=real, c_real=c_real)

    def _phase(self, phase: Phase, tick: dict[str, float]) -> None:
        st, accum = self.st, self.cfg.gradient_accumulate_every
        net, other = (st.G, st.D) if phase.net == "G" else (st.D, st.G)
        opt, scaler = st.opt[phase.net], st.scaler[phase.net]
        opt.zero_grad(set_to_none=True)
        other.requires_grad_(False)
        try:
            for _ in range(accum):
                batch = self._batch(phase)
                with self.amp_ctx():
                    loss, stats = st.loss.run(phase, G=st.G, D=st.D, augment=st.augment, batch=batch)
                if not torch.isfinite(loss):
                    raise NonFiniteLoss(f"{phase.name} loss is {loss.item()}")
                scaler.scale(loss / accum).backward()
                for k, v in stats.items():
                    tick[k] = tick.get(k, 0.0) + v / accum
        finally:
            other.requires_grad_(True)
        dist_utils.all_reduce_grads(net, st.dist)
        scaler.step(opt)
        scaler.update()

    def __call__(self) -> dict[str, float]:
        st, tick = self.st, {}
        for phase in st.loss.phases:
            if st.step % phase.interval == 0:
                self._phase(phase, tick)
        if "d_real_sign" in tick:  # every rank must see the same p: average the overfitting signal first
            sign = dist_utils.all_reduce_mean(tick["d_real_sign"], st.dist)
            st.augment.update({"d_real_sign": sign, "num_images": self.images_per_step})
        st.cur_nimg += self.images_per_step
        beta = ema_beta(
            batch_images=self.images_per_step,
            cur_nimg=st.cur_nimg,
            ema_kimg=self.cfg.ema_kimg,
            rampup=self.cfg.ema_rampup,
        )
        update_ema(st.G_ema, st.G, beta)
        return tick


class _Ticker:
    """Averages step stats over a tick; a key counts only the steps that produced it (lazy phases)."""

    def __init__(self, cur_nimg: int) -> None:
        self.reset(cur_nimg)

    def reset(self, cur_nimg: int) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.steps, self.t0, self.nimg0 = 0, time.perf_counter(), cur_nimg

    def add(self, tick: dict[str, float]) -> None:
        self.steps += 1
        for k, v in tick.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def record(self, st: TrainingState, device: torch.device) -> dict[str, Any]:
        dt = time.perf_counter() - self.t0
        record: dict[str, Any] = {
            "step": st.step,
            "kimg": st.cur_nimg / 1000,
            **{
                k: dist_utils.all_reduce_mean(v / self.counts[k], st.dist)
                for k, v in sorted(self.sums.items())
            },
            "images_per_s": (st.cur_nimg - self.nimg0) / max(dt, 1e-9),
            "sec_per_step": dt / max(self.steps, 1),
            "lr_g": st.opt["G"].param_groups[0]["lr"],
            "lr_d": st.opt["D"].param_groups[0]["lr"],
            "aug_prob": float(st.augment.p),
            "mem_cpu_peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "time": time.time(),
        }
        if hasattr(st.augment, "r_t") and st.augment.r_t is not None:
            record["ada_rt"] = float(st.augment.r_t)
        if device.type == "cuda":
            record["mem_gpu_peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        self.reset(st.cur_nimg)
        return record


def _generate(G: nn.Module, z: torch.Tensor, c: torch.Tensor | None, *, batch: int) -> np.ndarray:
    """float32 (N, C, H, W) in [-1, 1] on the CPU from the EMA generator, in batches."""
    with torch.no_grad():
        outs = [
            G(z[i : i + batch], None if c is None else c[i : i + batch]).float()
            for i in range(0, len(z), batch)
        ]
    return torch.cat(outs).clamp(-1, 1).cpu().numpy()


def _write_run_config(
    run_dir: Path,
    cfg: TrainConfig,
    st: TrainingState,
    mcfg: Any,
    spec: ArchSpec,
    *,
    ds: Any,
    num_images: int,
    extra: dict,
) -> None:
    """config.json: the resolved config, model, optimizers, phases, dataset provenance and versions."""
    manifest = ds.manifest
    write_json(
        run_dir / "config.json",
        {
            "format": "astrogan.run",
            "format_version": 1,
            "train": cfg.to_dict(),
            "arch": cfg.arch,
            "image_size": cfg.image_size,
            "model": dataclasses.asdict(mcfg),
            "lr_g": st.base_lrs["G"],
            "lr_d": st.base_lrs["D"],
            "betas": list(spec.betas),
            "loss": spec.loss,
            "phases": [dataclasses.asdict(p) for p in st.loss.phases],
            **extra,
            "dataset": {
                "path": str(Path(cfg.data).resolve()),
                "content_hash": ds.content_hash,
                "label_names": ds.label_names,
                "cond": None if ds.cond_spec is None else ds.cond_spec.to_dict(),
                "sources": manifest.get("sources_summary", manifest.get("sources")),
                "credits": manifest.get("credits"),
                "licences": manifest.get("licences"),
                "stretch": manifest.get("stretch"),
                "science": manifest.get("science"),  # ScienceSpec dict: bands, stretch to undo, units
                "num_images": num_images,
            },
            "astrogan_version": __version__,
            "torch_version": torch.__version__,
            "python_version": sys.version.split()[0],
            "git_commit": _git_commit(),
        },
    )


def _evaluate_metrics(
    cfg: TrainConfig, st: TrainingState, images: torch.Tensor, labels: torch.Tensor | None, ds: Any
) -> dict[str, float]:
    """`--metrics` on `num_metric_images` EMA fakes (fixed seeds) against an even spread of reals."""
    from astrogan.metrics.compute import compute_metrics

    device = next(st.G_ema.parameters()).device
    seeds = list(range(10_000, 10_000 + cfg.num_metric_images))
    z = torch.from_numpy(latents_for_seeds(seeds, st.G.z_dim)).to(device)
    c = None
    if labels is not None:
        c = torch.cat([st.sampler.sample_labels(len(z[i : i + 64])) for i in range(0, len(z), 64)]).to(device)
    fake = _generate(st.G_ema, z, c, batch=64)
    real_idx = np.linspace(0, len(images) - 1, min(len(images), cfg.num_metric_images)).astype(int)
    real = images[torch.from_numpy(real_idx).to(images.device)].permute(0, 2, 3, 1).cpu().numpy()
    if real.dtype != np.uint8:
        fake_arr = model_to_unit(fake).transpose(0, 2, 3, 1).astype(np.float32)
    else:
        fake_arr = to_uint8(fake)
    figures = compute_metrics(
        list(cfg.metrics),
        real,
        fake_arr,
        cache_dir=Path(cfg.results_dir) / ".cache",
        cache_key=ds.content_hash,
        science=ds.science,  # per-band figures named by the data's bands, and its colours
    )
    return {f"metric_{k}": float(v) for k, v in figures.items()}


@dataclasses.dataclass
class _Setup:
    """What a run trains with: data, the architecture and its config, the TrainingState and the step."""

    spec: ArchSpec
    mcfg: Any
    ds: Any
    images: torch.Tensor
    labels: torch.Tensor | None
    st: TrainingState
    step_fn: _Stepper
    images_per_step: int
    science: ScienceSpec | None  # the dataset's, with a display mapping fitted when it records none


# Pixels (all bands) a run's colour mapping is fitted to: enough for stable percentiles, little memory.
DISPLAY_FIT_PIXELS = 2**23


def _run_science(ds: Any, images: torch.Tensor) -> ScienceSpec | None:
    """The dataset's science spec, checked against its channels; a multi-band one without a colour mapping
    gets one fitted to an even spread of its images, so every picture of the run is drawn the same way."""
    try:
        spec = ds.science
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"dataset {ds.path} has a malformed science entry in manifest.json ({exc}): rebuild it"
        ) from None
    if spec is None:
        return None
    if spec.num_bands != images.shape[1]:
        raise UserError(
            f"dataset {ds.path} names {spec.num_bands} band(s) ({', '.join(spec.bands)}) but stores "
            f"{images.shape[1]} channel(s): rebuild it"
        )
    if spec.display is not None or spec.num_bands < 2:
        return spec
    num = min(len(images), 256, max(8, DISPLAY_FIT_PIXELS // images[0].numel()))
    pick = torch.from_numpy(np.linspace(0, len(images) - 1, num).astype(np.int64))
    sample = images[pick.to(images.device)].float().cpu().numpy()
    return fit_display(spec, sample if images.dtype != torch.uint8 else sample / 255.0)


def _takes_cond(spec: ArchSpec) -> bool:
    """True when the architecture's config has a `cond` field (continuous conditioning input)."""
    return "cond" in {f.name for f in dataclasses.fields(spec.config_cls)}


def _with_default_prior(cfg: TrainConfig, dist: dist_utils.DistInfo) -> TrainConfig:
    """A new run of an architecture with a Sérsic prior (StyleGAN2) on conditions naming a Sérsic index and
    a half-light radius in px draws on the prior (models.sersic_prior) unless `--model cond_prior=...` is given.
    Its template is blurred by a learned Gaussian unless `--model prior_psf=... prior_truncate=...` say how the
    data was drawn: the exact template measured no better at 52 kimg (Spearman n / r_e / q 0.92 / 0.89 / 0.97
    with it, 0.90 / 0.92 / 0.98 without; one seed each), so it is not picked up from the data by default.
    On data stretched linearly with white at each peak the image also starts as the template
    (`prior_residual`, `_peak_white_linear`) unless `--model prior_residual=...` is given, and a model that
    starts so keeps the asked radial light (`--loss profile_weight`, PROFILE_WEIGHT) unless told otherwise.

    Measured (bench/conditioning_sersic.py, 52 kimg): Spearman of asked vs measured n, r_e, q 0.90 / 0.92 /
    0.98 with the prior, 0.70 / 0.86 / 0.78 without.
    """
    fields = {f.name for f in dataclasses.fields(get_arch(cfg.arch).config_cls)}
    if "cond_prior" not in fields or not has_prior_columns(cfg.cond):
        return cfg
    model = dict(cfg.model)
    if "cond_prior" not in model:
        model["cond_prior"] = "sersic"
        if dist.is_main:
            info(
                "note: the Sérsic prior is on: the generator builds on the analytic profile of the asked "
                f"{', '.join(cfg.cond)} (--model cond_prior=none turns it off)"
            )
    if model["cond_prior"] == "sersic" and "prior_residual" not in model and _peak_white_linear(cfg.data):
        model["prior_residual"] = True
        if dist.is_main:
            info(
                "note: the data are stretched linearly with white at each peak, so the image starts as the "
                "prior's profile and the synthesis learns what to add (--model prior_residual=false turns it off)"
            )
    if model.get("prior_residual") is True and "prior_lock" not in model:
        model["prior_lock"] = True
        if dist.is_main:
            info(
                "note: what the synthesis adds to the prior's profile cannot move the asked parameters "
                "(--model prior_lock=false turns it off)"
            )
    loss = dict(cfg.loss)
    if model.get("prior_residual") is True and "profile_weight" not in loss:
        loss["profile_weight"] = PROFILE_WEIGHT
        if dist.is_main:
            info(
                f"note: what the synthesis adds to the prior's profile keeps its radial light (--loss "
                f"profile_weight={PROFILE_WEIGHT:g}; 0 turns it off)"
            )
    return dataclasses.replace(cfg, model=model, loss=loss)


def _data_stretch(data: str) -> dict[str, Any] | None:
    """The dataset manifest's `stretch` ({} for pictures), or None when there is no readable dataset."""
    try:
        return dict(open_dataset(data).manifest.get("stretch") or {})
    except UserError:
        return None


def _with_stretch_levels(cfg: TrainConfig) -> TrainConfig:
    """`--loss black_weight` / `peak_weight` ask fakes to obey the data's per-image stretch: its black and white
    percentiles come from the dataset's manifest (saved in the run's config) unless given."""
    if not (cfg.loss.get("black_weight") or cfg.loss.get("peak_weight")):
        return cfg
    stretch = _data_stretch(cfg.data)
    if stretch is None:
        return cfg  # set-up opens it next and says why, in one line
    if stretch.get("black_percentile") is None or stretch.get("headroom", 1.0) != 1.0:
        raise UserError(
            "--loss black_weight and peak_weight need data stretched per image between two percentiles with no "
            "headroom (`dataset build` of FITS files without --headroom); drop them for this dataset"
        )
    levels = {"stretch_black": stretch["black_percentile"], "stretch_white": stretch["white_percentile"]}
    return dataclasses.replace(cfg, loss={**levels, **cfg.loss})


def _peak_white_linear(data: str) -> bool:
    """True for a dataset stretched linearly with white at each image's peak and no headroom (`dataset build
    --stretch linear --white-percentile 100`): there the prior's template, 1 on its peak, is the image's
    noise-free part, which `prior_residual` starts from. Measured (bench/conditioning_sersic.py, ~50 kimg, seed 0):
    n's median relative error 0.068 with it against 0.118-0.144 from gain 0 (learned blur), 0.066 against 0.132
    (the data's PSF); r_e and q no worse."""
    stretch = _data_stretch(data)
    if stretch is None:
        return False  # no readable dataset: set-up opens it next and says so, in one line
    return (
        stretch.get("kind") == "linear"
        and stretch.get("white_percentile") == 100.0
        and stretch.get("headroom", 1.0) == 1.0
    )


def _set_up(cfg: TrainConfig, device: torch.device, dist: dist_utils.DistInfo) -> _Setup:
    """Data, networks, loss, augmentation and optimizers, all of it in one TrainingState (cheap checks first)."""
    _deterministic_cuda(device)  # before the first CUDA kernel (cuBLAS reads its workspace setting once)
    spec = get_arch(cfg.arch)
    from_dict(spec.config_cls, {"image_size": cfg.image_size, **cfg.model}).validate()  # before any I/O
    loss = make_loss(spec.loss, image_size=cfg.image_size, batch_size=cfg.batch_size, **cfg.loss)
    if getattr(loss, "profile_weight", 0.0) > 0 and cfg.model.get("cond_prior") != "sersic":
        raise UserError(
            "--loss profile_weight needs the Sérsic prior: train on --cond with a Sérsic index and a "
            "half-light radius in px (the prior is then on), or drop profile_weight"
        )
    if cfg.metrics:
        try:
            import astrogan.metrics.compute  # noqa: F401  (fail now, not after the first tick)
        except ImportError as exc:
            raise UserError(f"--metrics needs the metrics package ({exc})") from None
    if cfg.cond and not _takes_cond(spec):
        able = ", ".join(n for n, s in ARCHS.items() if _takes_cond(s))
        raise UserError(
            f"--cond needs an architecture with a conditioning input ({able}); {cfg.arch} has none"
        )
    ds, images, labels, cond_spec = _load_images(cfg, device)
    science = _run_science(ds, images)
    cond_aux.attach(loss, cond_spec, channels=int(images.shape[1]), image_size=cfg.image_size, device=device)
    model_kwargs = {"image_size": cfg.image_size, "channels": int(images.shape[1]), **cfg.model}
    if cfg.num_classes:
        model_kwargs["num_classes"] = cfg.num_classes
    if cond_spec is not None:  # the model keeps the names, ranges and normalisation (generator.json)
        model_kwargs["cond"] = cond_spec.to_dict()
    mcfg = from_dict(spec.config_cls, model_kwargs)
    mcfg.validate()
    check_buildable(spec, mcfg, what="the model config")  # on the meta device: nothing allocated yet
    per_rank_batch = cfg.batch_size // dist.world_size if dist.enabled else cfg.batch_size
    if per_rank_batch < 1:
        raise UserError(
            f"--batch-size {cfg.batch_size} is smaller than the number of processes ({dist.world_size})"
        )
    images_per_step = per_rank_batch * dist.world_size * cfg.gradient_accumulate_every
    amp_ctx, use_scaler = _amp_context(cfg, device)
    st = _build_state(
        cfg,
        spec,
        mcfg,
        loss=loss,
        augment=_make_augment(cfg, int(images.shape[1])),
        sampler=BatchSampler(
            len(images), seed=cfg.seed * 1000 + dist.rank, labels=labels, views=num_views(cfg.mirror)
        ),
        device=device,
        dist=dist,
        use_scaler=use_scaler,
    )
    step_fn = _Stepper(
        st, cfg, images, labels, device, per_rank_batch, images_per_step, amp_ctx, _memory_format(cfg, device)
    )
    return _Setup(spec, mcfg, ds, images, labels, st, step_fn, images_per_step, science)


class _RunFiles:
    """What a run writes (on the main process): config.json, stats, fixed-seed snapshot grids, checkpoints."""

    def __init__(
        self, run_dir: Path, cfg: TrainConfig, setup: _Setup, *, device: torch.device, resumed: bool
    ) -> None:
        self.run_dir, self.cfg, self.setup = run_dir, cfg, setup
        self.st, self.dist = setup.st, setup.st.dist
        self.ckpt_dir = run_dir / "checkpoints"
        seeds = list(range(cfg.num_snapshot_seeds))
        self.snap_z = torch.from_numpy(latents_for_seeds(seeds, self.st.G.z_dim)).to(device)
        self.snap_c = None
        if cfg.num_classes:
            self.snap_c = torch.tensor([s % cfg.num_classes for s in seeds], device=device)
        elif cfg.cond:  # fixed rows of the data's conditions, so the grids compare across steps
            rows = np.random.default_rng(cfg.seed).integers(0, len(setup.labels), len(seeds))
            self.snap_c = setup.labels[torch.from_numpy(rows).to(setup.labels.device)].to(device)
        channels = int(setup.images.shape[1])
        self.view = PictureView(spec=setup.science, channels=channels)
        # Science runs also keep each snapshot's bands, so `progress-video --rgb/--band` can redraw them.
        self.keep_bands = setup.science is not None or channels not in (1, 3)
        self.writer: StatsWriter | None = None
        if not self.dist.is_main:
            return
        (run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        extra = {
            "channels": channels,
            "images_per_step": setup.images_per_step,
            "world_size": self.dist.world_size,
            "device": str(device),
            # The spec the run's pictures and FITS use (the dataset's, plus the colour mapping in use).
            "science": None if setup.science is None else setup.science.to_dict(),
        }
        _write_run_config(
            run_dir,
            cfg,
            self.st,
            setup.mcfg,
            setup.spec,
            ds=setup.ds,
            num_images=len(setup.images),
            extra=extra,
        )
        self.writer = StatsWriter(run_dir, resume_step=self.st.step if resumed else None)

    def write(self, record: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.write(record)

    def snapshot(self, step: int) -> None:
        """The EMA generator's fixed-seed grid: snapshots/step-XXXXXXX.png and TensorBoard."""
        imgs = _generate(self.st.G_ema, self.snap_z, self.snap_c, batch=32)
        ncols = int(math.ceil(math.sqrt(len(self.snap_z))))
        grid = make_grid(self.view.pictures(imgs), ncols=ncols)
        path = self.run_dir / "snapshots" / f"step-{step:07d}.png"
        if self.keep_bands:
            save_snapshot_bands(path.with_suffix(".npz"), to_uint8(imgs), ncols=ncols)
        save_png(grid, path, text={DISPLAY_KEY: self.view.describe()})
        if self.writer is not None:
            self.writer.add_image("snapshots", grid, step)

    def save(self, step: int) -> dict[str, Any]:
        """Full state (resumable) and the EMA inference snapshot; returns the captured state (last good)."""
        state = self.st.capture()  # collective in DDP: every rank takes part
        if self.dist.is_main:
            with _disk_full_is_a_user_error(self.ckpt_dir):
                save_state(state_path(self.ckpt_dir, step), state)
                self._save_generator(step)
            prune_states(self.ckpt_dir, keep=NUM_STATES_KEPT)  # only once the new pair is on disk
        dist_utils.barrier(self.dist)
        return state

    def _save_generator(self, step: int) -> None:
        ds = self.setup.ds
        extra = {"step": step, "kimg": self.st.cur_nimg / 1000, "dataset_hash": ds.content_hash}
        extra |= {"label_names": ds.label_names, "run": self.run_dir.name}
        if self.setup.science is not None:  # the inference snapshot carries what turns its output into flux
            extra["science"] = self.setup.science.to_dict()
        save_generator(
            self.st.G_ema, arch=self.cfg.arch, config=self.setup.mcfg, out_dir=self.ckpt_dir, extra=extra
        )

    def repair_generator(self) -> None:
        """On resume: make generator.safetensors + .json the restored state's again if a kill split them."""
        if not generator_pair_intact(self.ckpt_dir):
            with _disk_full_is_a_user_error(self.ckpt_dir):
                self._save_generator(self.st.step)
            info(f"rewrote {self.ckpt_dir / 'generator.json'} and its weights from step {self.st.step}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _is_disk_full(exc: BaseException, folder: Path) -> bool:
    """ENOSPC anywhere in the chain, or torch's zip writer failing ("enforce fail ... file write failed")
    on a disk with (almost) nothing left: the C++ writer does not pass the OS error on."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "file write failed" in text or "inline_container" in text:
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free < 256 * 2**20
    return False


@contextlib.contextmanager
def _disk_full_is_a_user_error(folder: Path) -> Iterator[None]:
    """A full disk while checkpointing: one line that says so, where, and that older checkpoints are intact."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if not _is_disk_full(exc, folder):
            raise
        free_mb = shutil.disk_usage(folder).free / 2**20
        kept = [p.name for _, p in list_states(folder)]
        raise UserError(
            f"the disk is full writing a checkpoint to {folder} ({free_mb:.0f} MB free); nothing was half-written "
            f"and the earlier checkpoints are intact ({', '.join(kept) or 'none yet'}): free some space and "
            f"continue with `astrogan train --resume-from {folder.parent}`"
        ) from None


def _roll_back(
    st: TrainingState, last_good: dict[str, Any], cfg: TrainConfig, files: _RunFiles, *, reason: str
) -> None:
    """A non-finite loss: back to the last good state, learning rates lowered; give up after too many."""
    failed_step, rollbacks, scale = st.step, st.nan_rollbacks + 1, st.lr_scale * cfg.nan_lr_factor
    st.restore(last_good)
    st.nan_rollbacks = rollbacks
    st.set_lr_scale(scale)
    msg = f"{reason} at step {failed_step}: rolled back to step {st.step}, learning rates x{scale:g}"
    files.write({"step": st.step, "event": "nan_rollback", "message": msg})
    info(f"[yellow]warning: {msg}")
    if rollbacks > cfg.max_nan_rollbacks:
        raise RuntimeError(
            f"training diverged: {rollbacks} NaN rollbacks; lower the learning rate or turn off --amp"
        ) from None


def train(
    cfg: TrainConfig,
    *,
    resume: bool | str | Path = False,
    overrides: Collection[str] | None = None,
    callbacks: Sequence[StepCallback] = (),
    show_progress: bool = True,
) -> Path:
    """Train a GAN as `cfg` says; returns the run directory. `resume` continues the latest run (or a given one).

    On resume the run's saved settings are used, with the fields named in `overrides` (the flags the user
    typed; None: the fields of `cfg` that differ from the defaults) on top. SIGTERM or SIGINT saves after
    the current step and raises `Interrupted`. While it trains, the run directory is locked (`RunLock`): a
    second `train` resuming it is refused in one line.
    """
    lock = RunLock()
    try:
        return _train(cfg, resume, overrides, callbacks, show_progress, lock)
    finally:
        lock.release()


def _train(
    cfg: TrainConfig,
    resume: bool | str | Path,
    overrides: Collection[str] | None,
    callbacks: Sequence[StepCallback],
    show_progress: bool,
    lock: RunLock,
) -> Path:
    """`train`'s body; `lock` takes the run directory as soon as it is known (main process only)."""
    from astrogan.metrics import METRICS

    cfg.validate(archs=ARCHS, metrics=METRICS)  # every name, before a device, a dataset or a run dir
    device = pick_device(cfg.device)
    dist = dist_utils.init_from_env(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    run_dir, cfg, resume_state = _open_run(cfg, resume, overrides, dist, lock)
    if not resume:  # a resumed run keeps the model it was built with (older runs have no prior)
        cfg = _with_stretch_levels(_with_default_prior(cfg, dist))
    _check_compile(cfg, device)  # the resumed run's own settings may compile though this call did not say so

    setup = _set_up(cfg, device, dist)
    if not resume and dist.is_main:  # only now: a set-up that fails leaves no empty run behind
        run_dir = make_run_dir(cfg.results_dir, cfg.name)
        lock.take(run_dir)
    st = setup.st
    if resume_state is not None:
        st.restore(resume_state)
    if cfg.compile:  # once the resumed weights are in (compiling itself waits for the first step)
        _compile_nets(st)
    files = _RunFiles(run_dir, cfg, setup, device=device, resumed=bool(resume))
    if resume_state is not None and dist.is_main:
        files.repair_generator()

    # ---- the loop -----------------------------------------------------------------------------------
    if dist.is_main and resume_state is None:
        files.snapshot(0)
    last_good = st.capture()
    ticker = _Ticker(st.cur_nimg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    deadline = None if cfg.max_minutes is None else time.monotonic() + 60.0 * cfg.max_minutes
    bar = progress(disable=None if (show_progress and dist.is_main) else True)
    stopping = False
    with bar, StopRequests() as stops:
        task = bar.add_task("training", total=cfg.num_train_steps, completed=st.step, info="")
        while st.step < cfg.num_train_steps:
            st.set_lr_ramp(rampdown_factor(st.step, cfg.num_train_steps, cfg.lr_rampdown))
            try:
                tick = setup.step_fn()
            except NonFiniteLoss as exc:
                _roll_back(st, last_good, cfg, files, reason=str(exc))
                bar.update(task, completed=st.step)
                continue
            st.step += 1
            step = st.step
            ticker.add(tick)
            # Out of time: make this the last step (every rank agrees, so collectives stay in step).
            out_of_time = deadline is not None and time.monotonic() > deadline
            if dist.enabled and deadline is not None:
                out_of_time = dist_utils.all_reduce_mean(float(out_of_time), dist) > 0
            # A signal (cluster pre-emption, Ctrl-C) on any rank: every rank saves and stops here.
            stopping = stops.signum is not None
            if dist.enabled:
                stopping = dist_utils.all_reduce_mean(float(stopping), dist) > 0
            last = step == cfg.num_train_steps or out_of_time or stopping

            if step % cfg.log_every == 0 or last:
                record = ticker.record(st, device)
                files.write(record)
                loss_d, loss_g = record.get("loss_d", 0), record.get("loss_g", 0)
                bar.update(task, info=f"D {loss_d:.3f} G {loss_g:.3f} {record['images_per_s']:.0f} img/s")
            if step % cfg.evaluate_every == 0 or last:
                if dist.is_main:
                    files.snapshot(step)
                if cfg.metrics and dist.is_main:
                    figures = _evaluate_metrics(cfg, st, setup.images, setup.labels, setup.ds)
                    files.write({"step": step, "kimg": st.cur_nimg / 1000, **figures})
            if step % cfg.save_every == 0 or last:
                last_good = files.save(step)
            bar.update(task, completed=step)
            context = {
                "run_dir": run_dir,
                "G": st.G,
                "D": st.D,
                "G_ema": st.G_ema,
                "loss": st.loss,
                "state": st,
            }
            for cb in callbacks:
                cb(step, context)
            if out_of_time:
                info(f"[yellow]--max-minutes {cfg.max_minutes:g} spent: stopped and saved at step {step}")
                break
            if stopping:
                break

    files.close()
    dist_utils.shutdown(dist)
    if stopping:
        signum = stops.signum or signal.SIGTERM
        raise Interrupted(
            f"stopped by {signal.Signals(signum).name} at step {st.step}: state saved in {run_dir}; "
            f"continue with `astrogan train --resume-from {run_dir}`",
            signum=signum,
        )
    return run_dir
