"""Training throughput: images/s and peak memory per architecture and size, through the real training loop.

Prints one JSON line. Each configuration runs in its own subprocess (so peak RSS is its own) and is compared,
in the same run, with a bare step (the family's main D and G phases with the same loss and optimizers; no
augmentation, lazy regularisation, EMA, logging or RNG bookkeeping): `loop_over_bare` is the loop's overhead
(for StyleGAN2 it includes R1 and path length), and the bare step in both memory formats gives
`channels_last_speedup`. The physical limit beside each figure: training FLOPs per image (forward ~1x,
backward ~2x, counted by torch's FlopCounterMode) against this machine's measured fp32 matmul peak.
StyleGAN2 runs the `small` preset's model.

    python bench/train_throughput.py [--sizes 64,128] [--archs dcgan,fastgan,stylegan2] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _widths(arch: str) -> dict:
    """The demo-class "small" models on CPU (StyleGAN2: the `small` preset's)."""
    if arch == "stylegan2":
        from astrogan.config import load_preset

        return dict(load_preset("small")["model"])
    return {"dcgan": {}, "fastgan": {"ngf": 16, "ndf": 16}}[arch]


def _matmul_peak_gflops(device: str) -> float:
    import torch

    n = 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    reps = 5
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def _flops(module, *args) -> int:  # noqa: ANN001
    """FLOPs of one forward (2 x multiply-adds of every conv and matrix product, functional ones too)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:  # autograd on: the counter's module tracker needs it
        module(*args)
    return int(counter.get_total_flops())


def _child(arch: str, size: int, steps: int, batch: int, device: str, amp: bool) -> dict:
    """Runs in a subprocess: the real loop on a synthetic dataset, then a bare step, in one process."""
    import resource

    import numpy as np
    import torch

    from astrogan.config import TrainConfig
    from astrogan.models import get_arch
    from astrogan.training.loop import train
    from astrogan.training.losses import Batch, make_loss
    from astrogan.training.stats import read_stats

    tmp = Path(tempfile.mkdtemp(prefix="astrogan-bench-"))
    # A dataset artifact through the real builder: smooth blobs, enough images for a few passes.
    from PIL import Image

    from astrogan.data.build import BuildOptions, build_dataset

    raw = tmp / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(64):
        cy, cx, s = rng.uniform(size * 0.3, size * 0.7), rng.uniform(size * 0.3, size * 0.7), size * 0.1
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        Image.fromarray((np.stack([blob] * 3, -1) * 255).astype(np.uint8)).save(raw / f"{i}.png")
    build_dataset(
        [raw],
        tmp / "ds",
        options=BuildOptions(image_sizes=(size,), min_size_px=min(32, size)),
        show_progress=False,
    )

    half = steps // 2
    cfg = TrainConfig(
        data=str(tmp / "ds"),
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
        "images_per_s": round(loop_ips, 2),
        "bare_images_per_s": round(bare_ips, 2),
        "loop_over_bare": round(loop_ips / bare_ips, 3),
        "bare_channels_last_images_per_s": round(bare_nhwc_ips, 2),
        "channels_last_speedup": round(bare_nhwc_ips / bare_nchw_ips, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "train_gflop_per_image": round(train_flops / 1e9, 3),
        "achieved_gflops": round(loop_ips * train_flops / 1e9, 1),
        "g_params": sum(p.numel() for p in G.parameters()),
        "d_params": sum(p.numel() for p in D.parameters()),
    }
    if device.startswith("cuda"):
        out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="dcgan,fastgan,stylegan2")
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        arch, size = args.child.split(":")
        print(json.dumps(_child(arch, int(size), args.steps, args.batch_size, args.device, args.amp)))
        return

    import torch

    results = []
    env = {**os.environ, "ASTROGAN_QUIET": "1"}
    for arch in args.archs.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                f"{arch}:{size}",
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
                "--device",
                args.device,
            ] + (["--amp"] if args.amp else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                results.append(
                    {"arch": arch, "image_size": size, "error": proc.stderr.strip().splitlines()[-1]}
                )
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    peak = _matmul_peak_gflops(args.device)
    for r in results:
        if "achieved_gflops" in r:
            r["fraction_of_matmul_peak"] = round(r["achieved_gflops"] / peak, 3)
    print(
        json.dumps(
            {
                "bench": "train_throughput",
                "results": results,
                "matmul_peak_gflops": round(peak, 1),
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
