"""Training throughput: astrogan's loop per architecture, and FastGAN against lightweight-gan's trainer step.

    python bench/train_throughput.py            # the real run (tens of minutes on a 2-core CPU)
    python bench/train_throughput.py --quick    # tiny sizes, every code path (about a minute)

Prints one JSON line with four parts, each figure beside the machine's measured fp32 matmul peak on the same
threads (lwgan_env.matmul_peak) and the load average before and after:

`results`: images/s and peak memory per architecture and size through the real training loop (each in its own
subprocess, so peak RSS is its own), against a bare step in the same process (the family's main D and G phases
with the same loss and optimizers; no augmentation, lazy regularisation, EMA, logging or RNG bookkeeping):
`loop_over_bare` is the loop's overhead, and the bare step in both memory formats gives
`channels_last_speedup`. Demo-class widths (FastGAN ngf=ndf=16; StyleGAN2 the `small` preset's). Training
FLOPs per image are estimated as 4 G forwards + 9 D forwards (torch's FlopCounterMode).

`race`: astrogan's FastGAN at ngf=ndf=64 (the paper's width, the default; its generator has at least as many
parameters as lightweight-gan's default one at these sizes) through `astrogan.training.loop.train`, against
lightweight-gan 1.2.1's own `Trainer.train()` (command-line defaults: hinge loss, gradient penalty every 4th
step, DiffAugment cutout+translation, Adam 2e-4 (0.5, 0.9)), same batch, same threads, in the same run.
lightweight-gan lives in a scratch virtual environment (bench/lwgan_env.py; never a dependency of astrogan)
and runs in bench/lwgan_worker.py, which redirects its `.cuda()` calls to the CPU and changes nothing else.
Both sides: images/s, training FLOPs per image counted over real steps (torch's formulas, double backward
included; lightweight-gan's weighted 1:3 for its penalty cadence), the fraction of the matmul peak, the top
ops of one step by self CPU time (torch.profiler), peak RSS and the bytes of one checkpoint.

`compile`: torch.compile (inductor) on astrogan's G and D for the training step (when a C++ compiler is
present): compile time apart, steady images/s against eager, whether a run resumed from a captured state
continues bit-exactly under compile, and how far compiled training drifts from eager.

`state_sizes`: what one checkpoint writes (state-*.pt, generator.safetensors) for the default FastGAN (64 px)
and for `--preset cpu`, and per run with the loop's 3 states kept.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lwgan_env import (  # noqa: E402
    FlopCount,
    LwganUnavailable,
    best_peak,
    has_cxx_compiler,
    loadavg,
    machine,
    matmul_peak,
    start_worker,
    top_ops,
)

QUICK = {
    "archs": "fastgan",
    "sizes": "32",
    "steps": 4,
    "batch_size": 2,
    "race_sizes": "32",
    "race_steps": 2,
    "lw_steps": 1,
    "lw_flop_steps": 0,
}


def _widths(arch: str) -> dict:
    """The demo-class "small" models on CPU (StyleGAN2: the `small` preset's)."""
    if arch == "stylegan2":
        from astrogan.config import load_preset

        return dict(load_preset("small")["model"])
    return {"dcgan": {}, "fastgan": {"ngf": 16, "ndf": 16}}[arch]


def _flops(module, *args) -> int:  # noqa: ANN001
    """FLOPs of one forward (2 x multiply-adds of every conv and matrix product, functional ones too)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:  # autograd on: the counter's module tracker needs it
        module(*args)
    return int(counter.get_total_flops())


def _dataset(tmp: Path, size: int, num: int = 64) -> Path:
    """A dataset artifact through the real builder: smooth blobs, enough images for a few passes."""
    import numpy as np
    from PIL import Image

    from astrogan.data.build import BuildOptions, build_dataset

    raw = tmp / "raw"
    raw.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(num):
        cy, cx, s = rng.uniform(size * 0.3, size * 0.7), rng.uniform(size * 0.3, size * 0.7), size * 0.1
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        Image.fromarray((np.stack([blob] * 3, -1) * 255).astype(np.uint8)).save(raw / f"{i}.png")
    build_dataset(
        [raw],
        tmp / "ds",
        options=BuildOptions(image_sizes=(size,), min_size_px=min(32, size)),
        show_progress=False,
    )
    return tmp / "ds"


def _tmpdir() -> Path:
    """A scratch folder for one child, removed when it exits (a default FastGAN run writes ~0.7 GB)."""
    tmp = Path(tempfile.mkdtemp(prefix="astrogan-bench-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp


def _peak_rss_gb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def _ckpt_sizes(run: Path) -> dict[str, Any]:
    from astrogan.training.loop import NUM_STATES_KEPT

    ck = run / "checkpoints"
    states = sorted(ck.glob("state-*.pt"))
    state = states[-1].stat().st_size if states else 0
    gen = (ck / "generator.safetensors").stat().st_size if (ck / "generator.safetensors").exists() else 0
    meta = (ck / "generator.json").stat().st_size if (ck / "generator.json").exists() else 0
    return {
        "state_pt_bytes": state,
        "generator_safetensors_bytes": gen,
        "states_kept": NUM_STATES_KEPT,
        "per_run_bytes": NUM_STATES_KEPT * state + gen + meta,
        "state_mb": round(state / 1e6, 1),
        "per_run_mb": round((NUM_STATES_KEPT * state + gen + meta) / 1e6, 1),
    }


# ---- children (one subprocess each) ------------------------------------------------------------------------


def _child_arch(arch: str, size: int, steps: int, batch: int, device: str, amp: bool) -> dict:
    """The real loop on a synthetic dataset, then a bare step, in one process."""
    import torch

    from astrogan.config import TrainConfig
    from astrogan.models import get_arch
    from astrogan.training.loop import train
    from astrogan.training.losses import Batch, make_loss
    from astrogan.training.stats import read_stats

    tmp = _tmpdir()
    half = max(steps // 2, 1)
    cfg = TrainConfig(
        data=str(_dataset(tmp, size)),
        arch=arch,
        image_size=size,
        batch_size=batch,
        num_train_steps=steps,
        save_every=10**9,
        evaluate_every=10**9,
        log_every=half,
        results_dir=str(tmp / "runs"),
        aug_prob=0.25,
        model=_widths(arch),
        device=device,
        amp=amp,
        num_snapshot_seeds=16,
    )
    run = train(cfg, show_progress=False)
    ticks = [r for r in read_stats(run) if "images_per_s" in r]
    loop_ips = ticks[-1]["images_per_s"]  # second half: warm

    spec = get_arch(arch)
    mcfg = spec.config_cls(image_size=size, channels=3, **_widths(arch))
    loss = make_loss(spec.loss, image_size=size, batch_size=batch)
    main_phases = [p for p in loss.phases if p.name in ("Dmain", "Gmain")]

    def bare_rate(memory_format: torch.memory_format) -> float:
        """Images/s of a bare D+G step (same nets, loss and optimizers; nothing else) in one memory format."""
        torch.manual_seed(0)
        G = spec.build_generator(mcfg).to(device).to(memory_format=memory_format)
        D = spec.build_discriminator(mcfg).to(device).to(memory_format=memory_format)
        opt_g = torch.optim.Adam(G.parameters(), lr=spec.lr, betas=spec.betas)
        opt_d = torch.optim.Adam(D.parameters(), lr=spec.lr, betas=spec.betas)
        real = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(
            memory_format=memory_format
        )

        def step() -> None:
            z = torch.randn(batch, G.z_dim, device=device)
            for phase in main_phases:
                opt, other = (opt_g, D) if phase.net == "G" else (opt_d, G)
                opt.zero_grad()
                other.requires_grad_(False)
                value, _ = loss.run(phase, G=G, D=D, augment=lambda x: x, batch=Batch(z=z, real=real))
                value.backward()
                other.requires_grad_(True)
                opt.step()

        step()
        t = time.perf_counter()
        for _ in range(half):
            step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return half * batch / (time.perf_counter() - t)

    bare_nhwc_ips = bare_rate(torch.channels_last)
    bare_nchw_ips = bare_rate(torch.contiguous_format)
    # The loop trains channels_last on CUDA and in the default format on CPU (no gain measured there).
    bare_ips = bare_nhwc_ips if device.startswith("cuda") else bare_nchw_ips
    G, D = spec.build_generator(mcfg).to(device), spec.build_discriminator(mcfg).to(device)

    g_flops = _flops(G.eval(), torch.zeros(2, G.z_dim, device=device)) // 2  # batch 2: D's minibatch std
    d_flops = _flops(D.eval(), torch.zeros(2, 3, size, size, device=device)) // 2
    # Per training image: G fwd (D step) + G fwd+bwd (G step) = 4 G; D fwd+bwd on real and fake + fwd+bwd on fake.
    train_flops = 4 * g_flops + 9 * d_flops
    out = {
        "arch": arch,
        "image_size": size,
        "batch_size": batch,
        "amp": amp,
        "device": device,
        "model": _widths(arch),
        "images_per_s": round(loop_ips, 2),
        "bare_images_per_s": round(bare_ips, 2),
        "loop_over_bare": round(loop_ips / bare_ips, 3),
        "bare_channels_last_images_per_s": round(bare_nhwc_ips, 2),
        "channels_last_speedup": round(bare_nhwc_ips / bare_nchw_ips, 3),
        "peak_rss_gb": _peak_rss_gb(),
        "train_gflop_per_image": round(train_flops / 1e9, 3),
        "train_flops": "estimated: 4 G + 9 D forwards per image",
        "achieved_gflops": round(loop_ips * train_flops / 1e9, 1),
        "g_params": sum(p.numel() for p in G.parameters()),
        "d_params": sum(p.numel() for p in D.parameters()),
        **_ckpt_sizes(run),
    }
    if device.startswith("cuda"):
        out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def _race_cfg(tmp: Path, size: int, *, ngf: int, batch: int, steps: int, device: str) -> Any:
    from astrogan.config import TrainConfig

    return TrainConfig(
        data=str(_dataset(tmp, size)),
        arch="fastgan",
        image_size=size,
        batch_size=batch,
        num_train_steps=steps,
        save_every=10**9,  # the run saves once, at its last step: the checkpoint sizes
        evaluate_every=10**9,
        log_every=max(steps // 2, 1),
        results_dir=str(tmp / "runs"),
        aug_prob=0.25,  # lightweight-gan's side runs at the same p (its own types, cutout + translation)
        model={"ngf": ngf, "ndf": ngf},
        device=device,
        num_snapshot_seeds=16,
    )


def _setup(cfg: Any, device: str) -> Any:
    """The loop's own set-up (networks, loss, augmentation, optimizers, the step) without its run files."""
    import torch

    from astrogan.training.distributed import DistInfo
    from astrogan.training.loop import _set_up

    return _set_up(cfg, torch.device(device), DistInfo())


def _steps(setup: Any, n: int) -> None:
    for _ in range(n):
        setup.step_fn()
        setup.st.step += 1  # as the loop does after each step


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_steps(setup: Any, n: int, device: str) -> float:
    _sync(device)
    t = time.perf_counter()
    _steps(setup, n)
    _sync(device)
    return n * setup.images_per_step / (time.perf_counter() - t)


def _params_of(setup: Any) -> list:
    return [p.detach().clone() for m in (setup.st.G, setup.st.D) for p in m.parameters()]


def _max_diff(a: list, b: list) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def _graphs() -> int:
    """Graphs dynamo has compiled in this process (its internal counter; 0 where it has none)."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"].get("unique_graphs", 0))
    except Exception:
        return 0


def _compile_experiment(cfg: Any, device: str, *, warmup: int, steps: int) -> dict[str, Any]:
    """torch.compile (inductor) on G and D for the loop's step, against the same step eager, same init."""
    import torch

    res: dict[str, Any] = {
        "what": "G.compile() and D.compile() (inductor), the loop's step otherwise unchanged"
    }
    runs: dict[str, dict[str, Any]] = {}
    for mode in ("eager", "compiled"):
        torch._dynamo.reset()
        s = _setup(cfg, device)
        if mode == "compiled":
            s.st.G.compile()
            s.st.D.compile()
        torch.manual_seed(1)
        t = time.perf_counter()
        _steps(s, 1)
        first = time.perf_counter() - t
        t = time.perf_counter()
        _steps(s, warmup)
        warm = time.perf_counter() - t
        after = _params_of(s)  # both modes after the same steps from the same start: the drift between them
        # Compiled: a step's Python-level branches (D's random crop quadrant, say) compile a graph per value
        # the first time each is seen; step on until no new graph came in 3 steps (at most 4 * warmup).
        extra, quiet = 0, 0
        while mode == "compiled" and quiet < 3 and extra < 4 * warmup:
            before = _graphs()
            _steps(s, 1)
            extra += 1
            quiet = quiet + 1 if _graphs() == before else 0
        graphs = _graphs()
        ips = _time_steps(s, steps, device)
        new_graphs_while_timed = _graphs() - graphs
        # Resume inside the same mode: capture, run, restore, run again; bit-exact means equal parameters.
        state = s.st.capture()
        _steps(s, 2)
        p1 = _params_of(s)
        s.st.restore(state)
        _steps(s, 2)
        p2 = _params_of(s)
        runs[mode] = {
            "first_step_s": round(first, 2),
            "warmup_steps_s": round(warm, 2),
            "extra_warmup_steps": extra,
            "images_per_s": round(ips, 2),
            "graphs_compiled": graphs if mode == "compiled" else 0,
            "new_graphs_while_timed": new_graphs_while_timed if mode == "compiled" else 0,
            "resume_bit_exact": all(torch.equal(x, y) for x, y in zip(p1, p2, strict=True)),
            "_params": after,
        }
    e, c = runs["eager"], runs["compiled"]
    drift = _max_diff(e.pop("_params"), c.pop("_params"))
    res.update(
        eager=e,
        compiled=c,
        compile_s=round(c["first_step_s"] - e["first_step_s"], 1),
        speedup=round(c["images_per_s"] / e["images_per_s"], 3),
        steps_compared=1 + warmup,
        max_abs_param_diff_compiled_vs_eager=drift,
        bit_identical_to_eager=drift == 0.0,
    )
    try:
        from torch._dynamo.utils import counters

        res["graph_breaks"] = {str(k)[:160]: v for k, v in counters["graph_break"].items()}
    except Exception:  # dynamo's counters are internal; a missing figure must not stop the bench
        pass
    res["keep"] = bool(c["images_per_s"] > e["images_per_s"] and c["resume_bit_exact"])
    return res


def _child_race(
    size: int, *, ngf: int, steps: int, batch: int, device: str, compile_: bool, compile_steps: int
) -> dict:
    """astrogan's side of the race: the loop's images/s, then the same step's FLOPs, profile, (compile)."""
    from torch.profiler import ProfilerActivity, profile

    from astrogan.training.loop import train
    from astrogan.training.stats import read_stats

    tmp = _tmpdir()
    cfg = _race_cfg(tmp, size, ngf=ngf, batch=batch, steps=steps, device=device)
    run = train(cfg, show_progress=False)
    ticks = [r for r in read_stats(run) if "images_per_s" in r]
    out: dict[str, Any] = {
        "arch": "fastgan",
        "model": {"ngf": ngf, "ndf": ngf},
        "image_size": size,
        "batch_size": batch,
        "aug_prob": cfg.aug_prob,
        "aug_types": list(cfg.aug_types),
        "images_per_s": round(ticks[-1]["images_per_s"], 3),  # second half: warm
        "loop_steps": steps,
        "peak_rss_gb": _peak_rss_gb(),
        **_ckpt_sizes(run),
    }
    s = _setup(cfg, device)
    out["g_params"] = sum(p.numel() for p in s.st.G.parameters())
    out["d_params"] = sum(p.numel() for p in s.st.D.parameters())
    _steps(s, 1)
    with FlopCount() as fc:
        _steps(s, 1)
    out["train_gflop_per_image"] = round(fc.total / s.images_per_step / 1e9, 3)
    out["train_flops"] = "counted over one step of the loop (lwgan_env.FlopCount)"
    bare = 2 if steps >= 8 else 1
    out["bare_step_images_per_s"] = round(_time_steps(s, bare, device), 3)  # the loop's step without the loop
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _steps(s, 1)
    out["profile_top_ops"] = top_ops(prof, 12)
    del s
    if compile_:
        try:
            out["compile"] = _compile_experiment(cfg, device, warmup=compile_steps, steps=compile_steps)
        except Exception as exc:  # inductor failing here is a finding, not a reason to lose the race figures
            out["compile"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return out


def _child_state(which: str, device: str, batch: int) -> dict:
    """One step of a run (`default`: TrainConfig's defaults; else a preset's name) and what its checkpoint
    writes; the step count does not change the size (Adam's moments exist after the first step)."""
    from astrogan.config import TrainConfig, resolve_train_config
    from astrogan.training.loop import train

    tmp = _tmpdir()
    given = {
        "results_dir": str(tmp / "runs"),
        "num_train_steps": 1,
        "device": device,
        "num_snapshot_seeds": 4,
    }
    given["batch_size"] = batch
    base = TrainConfig() if which == "default" else resolve_train_config(which, {})
    given["data"] = str(_dataset(tmp, base.image_size, num=16))
    cfg = resolve_train_config(None if which == "default" else which, given)
    run = train(cfg, show_progress=False)
    from astrogan.models import get_arch

    spec = get_arch(cfg.arch)
    mcfg = spec.config_cls(image_size=cfg.image_size, **cfg.model)
    G = spec.build_generator(mcfg)
    D = spec.build_discriminator(mcfg)
    return {
        "config": which if which == "default" else f"--preset {which}",
        "arch": cfg.arch,
        "image_size": cfg.image_size,
        "model": dict(cfg.model) or "defaults",
        "g_params": sum(p.numel() for p in G.parameters()),
        "d_params": sum(p.numel() for p in D.parameters()),
        **_ckpt_sizes(run),
    }


# ---- the parent ----------------------------------------------------------------------------------------------


def _run_child(spec: str, args: argparse.Namespace, env: dict[str, str]) -> dict:
    cmd = [sys.executable, __file__, "--child", spec, "--threads", str(args.threads)]
    cmd += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--device", args.device]
    cmd += ["--race-ngf", str(args.race_ngf), "--race-steps", str(args.race_steps)]
    cmd += ["--compile-steps", str(args.compile_steps)]
    cmd += (["--amp"] if args.amp else []) + (["--compile"] if args.compile else ["--no-compile"])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["(no output)"]
        return {"child": spec, "error": lines[-1][:500]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _lwgan_race(worker: Any, size: int, args: argparse.Namespace) -> dict:
    build = worker.call(
        "train_build",
        image_size=size,
        batch_size=args.batch_size,
        grad_accum=args.lw_grad_accum,
        aug_prob=0.25,
    )
    out: dict[str, Any] = {**build}
    # Warm-up steps 0 (with the gradient penalty) and 1 (without), counted: per image, weighted 1:3 as trained.
    flops = [worker.call("train_flops", steps=1) for _ in range(args.lw_flop_steps)]
    pen = [f["train_gflop_per_image"] for f in flops if f["penalty_steps"]]
    plain = [f["train_gflop_per_image"] for f in flops if not f["penalty_steps"]]
    if pen and plain:
        out["train_gflop_per_image"] = round((pen[0] + 3 * plain[0]) / 4, 3)
        out["train_gflop_per_image_steps"] = {"with_penalty": pen[0], "without": plain[0]}
    elif flops:
        out["train_gflop_per_image"] = (pen or plain)[0]
        out["train_gflop_per_image_note"] = "one step counted: " + (
            "with penalty" if pen else "without penalty"
        )
    else:
        out["train_gflop_per_image"] = None
        out["train_gflop_per_image_note"] = (
            "not counted (--lw-flop-steps 0); the timed steps include the warm-up"
        )
    timed = worker.call("train_time", steps=args.lw_steps)
    out["images_per_s"] = round(timed["images_per_s"], 3)
    out["timed_steps"] = {k: timed[k] for k in ("steps", "first_step", "penalty_steps", "seconds")}
    out["peak_rss_gb"] = timed.get("peak_rss_gb")
    if args.lw_profile:
        out["profile_top_ops"] = worker.call("train_profile", top=12)
    out["checkpoint_bytes"] = worker.call("state_size")["checkpoint_bytes"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="dcgan,fastgan,stylegan2", help="per-architecture table ('' skips it)")
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--steps", type=int, default=12, help="loop steps per architecture (second half timed)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--race-sizes", default="64,128", help="FastGAN vs lightweight-gan sizes ('' skips it)")
    ap.add_argument("--race-ngf", type=int, default=64, help="astrogan FastGAN width in the race (ngf = ndf)")
    ap.add_argument("--race-steps", type=int, default=12, help="astrogan loop steps per race size")
    ap.add_argument(
        "--lw-steps", type=int, default=4, help="lightweight-gan steps timed (4: one penalty cycle)"
    )
    ap.add_argument(
        "--lw-flop-steps", type=int, default=2, help="lightweight-gan warm-up steps, FLOPs counted"
    )
    ap.add_argument(
        "--lw-grad-accum", type=int, default=1, help="its CLI default is 4 (images/s is per image)"
    )
    ap.add_argument("--lw-profile", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--no-lwgan", action="store_true")
    ap.add_argument("--lwgan-venv", default=None)
    ap.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on, not --quick"
    )
    ap.add_argument(
        "--compile-steps", type=int, default=4, help="compile experiment: warm-up and timed steps"
    )
    ap.add_argument("--no-state-sizes", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny check that the script works")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        for k, v in QUICK.items():
            if getattr(args, k) == ap.get_default(k):
                setattr(args, k, v)
    if args.compile is None:
        args.compile = not args.quick
    if args.lw_profile is None:
        args.lw_profile = not args.quick

    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        kind, _, rest = args.child.partition(":")
        if kind == "race":
            res = _child_race(
                int(rest),
                ngf=args.race_ngf,
                steps=args.race_steps,
                batch=args.batch_size,
                device=args.device,
                compile_=args.compile,
                compile_steps=args.compile_steps,
            )
        elif kind == "state":
            res = _child_state(rest, args.device, args.batch_size)
        else:
            res = _child_arch(kind, int(rest), args.steps, args.batch_size, args.device, args.amp)
        print(json.dumps(res))
        return

    started = time.perf_counter()
    load0 = loadavg()
    peak0 = matmul_peak(args.threads, device=args.device, quick=args.quick)
    env = {**os.environ, "ASTROGAN_QUIET": "1", "OMP_NUM_THREADS": str(args.threads)}
    compile_note = None
    if args.compile and args.device == "cpu" and has_cxx_compiler() is None:
        args.compile, compile_note = False, "skipped: inductor on CPU needs a C++ compiler and none was found"

    results = []
    for arch in filter(None, args.archs.split(",")):
        for size in (int(s) for s in args.sizes.split(",")):
            results.append({**_run_child(f"{arch}:{size}", args, env), "loadavg_after": loadavg()})

    if results:  # the peak again between parts: on a shared machine the best of several is the figure
        peak0 = best_peak(peak0, matmul_peak(args.threads, device=args.device, quick=args.quick))
    race: list[dict[str, Any]] = []
    compile_res: dict[str, Any] | None = None
    race_sizes = [int(s) for s in filter(None, args.race_sizes.split(","))]
    worker, lw_note, lw_hello = None, None, None
    if race_sizes and not args.no_lwgan:
        try:
            worker = start_worker(threads=args.threads, device=args.device, venv_dir=args.lwgan_venv)
            lw_hello = worker.hello
        except LwganUnavailable as exc:
            lw_note = str(exc)
    try:
        for i, size in enumerate(race_sizes):
            entry: dict[str, Any] = {
                "image_size": size,
                "batch_size": args.batch_size,
                "loadavg_before": loadavg(),
            }
            compile_here = args.compile and i == 0  # once, at the first size: compiling is slow on a CPU
            child_args = argparse.Namespace(**{**vars(args), "compile": compile_here})
            a = {**_run_child(f"race:{size}", child_args, env), "loadavg_after": loadavg()}
            if "compile" in a:
                compile_res = {"image_size": size, **a.pop("compile")}
            entry["astrogan"] = a
            if worker is not None:
                try:
                    entry["lightweight_gan"] = {**_lwgan_race(worker, size, args), "loadavg_after": loadavg()}
                except LwganUnavailable as exc:
                    entry["lightweight_gan"] = {"error": str(exc)}
            lw = entry.get("lightweight_gan") or {}
            if "images_per_s" in a and "images_per_s" in lw:
                entry["ratio_images_per_s_astrogan_over_lightweight_gan"] = round(
                    a["images_per_s"] / lw["images_per_s"], 2
                )
                entry["g_params_ratio_astrogan_over_lightweight_gan"] = round(
                    a["g_params"] / lw["g_params"], 3
                )
            entry["loadavg_after"] = loadavg()
            race.append(entry)
    finally:
        if worker is not None:
            worker.close()

    state_sizes = []
    if not args.no_state_sizes:
        for which in ("default", "cpu"):
            state_sizes.append(
                _run_child(f"state:{which}", argparse.Namespace(**{**vars(args), "batch_size": 2}), env)
            )

    peaks = best_peak(peak0, matmul_peak(args.threads, device=args.device, quick=args.quick))
    peak = peaks["gflops"]
    for r in results:
        if "achieved_gflops" in r:
            r["fraction_of_matmul_peak"] = round(r["achieved_gflops"] / peak, 3)
    for entry in race:
        for side in ("astrogan", "lightweight_gan"):
            r = entry.get(side) or {}
            if "images_per_s" in r and r.get("train_gflop_per_image"):
                r["achieved_gflops"] = round(r["images_per_s"] * r["train_gflop_per_image"], 2)
                r["fraction_of_matmul_peak"] = round(r["achieved_gflops"] / peak, 3)
    print(
        json.dumps(
            {
                "bench": "train_throughput",
                "machine": machine(
                    args.threads, matmul_peak_gflops=peaks, loadavg_at_start=load0, device=args.device
                ),
                "settings": {
                    k: getattr(args, k)
                    for k in (
                        "archs",
                        "sizes",
                        "steps",
                        "batch_size",
                        "race_sizes",
                        "race_ngf",
                        "race_steps",
                        "lw_steps",
                        "lw_flop_steps",
                        "lw_grad_accum",
                        "compile",
                        "quick",
                    )
                }
                | ({"compile": compile_note} if compile_note else {}),
                "baseline": (
                    {"name": "lightweight-gan", **lw_hello}
                    if lw_hello
                    else {"name": "lightweight-gan", "error": lw_note or "skipped"}
                ),
                "aim": ">= 2x lightweight-gan's training images/s at 64 and 128 px, batch 16, same threads",
                "results": results,
                "race": race,
                "compile": compile_res,
                "state_sizes": state_sizes,
                "wall_s": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
