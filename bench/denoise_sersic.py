"""Denoising with generated Sérsic galaxies (Holzschuh et al. 2022's downstream test), on a CPU budget.

Renders noiseless Sérsic stamps with GalSim (`astrogan synth sersic --psf none --noise none`: the truth is
known), builds a 1-band dataset, trains a GAN on it for `--gan-minutes` (the "good" generator) and a
deliberately poor one for `--poor-steps` steps, then runs `astrogan.downstream.experiment.run_denoise`
with each: the good generator over every alpha, the poor one at `--poor-alphas`. Both experiments share
the seed, the real split and the degradation noise, so their alpha = 0 cells are the same networks and
the contrast at high alpha is paired. Prints one JSON object: the alpha x condition table (test MSE
mean ± std over repeats), the best alpha, generated-only vs real-only per condition, whether the paper's
qualitative findings hold here (best alpha in 0.6..0.8 as trained; generated data more robust to the
noise shift: its gain over real-only larger under four times the noise than as trained), the poor
generator's contrast, and the wall times.

    python bench/denoise_sersic.py --smoke      # about 3 minutes on 2 cores: a smoke run, not a result
    python bench/denoise_sersic.py --num-images 4000 --gan-minutes 30 --num-generated 20000 --repeats 3 \
        --steps 4000 --width 32 --blocks 5 --threads 8 --jobs 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ASTROGAN_QUIET", "1")

SMOKE = {
    "num_images": 300,
    "gan_minutes": 0.6,
    "poor_steps": 5,
    "num_generated": 300,
    "alphas": "0,0.6,1",
    "poor_alphas": "1",
    "repeats": 2,
    "steps": 120,
    "val_every": 40,
    "width": 8,
    "blocks": 1,
    "batch_size": 8,
    "gan_width": 16,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a ~3-minute version (overrides the sizes below)")
    ap.add_argument("--num-images", type=int, default=2000, help="real Sérsic stamps (split 60/20/20)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--gan-arch", default="dcgan")
    ap.add_argument("--gan-width", type=int, default=32, help="ngf = ndf of the GAN")
    ap.add_argument("--gan-minutes", type=float, default=10.0, help="training budget of the good generator")
    ap.add_argument("--gan-batch-size", type=int, default=32)
    ap.add_argument(
        "--poor-steps", type=int, default=20, help="training steps of the deliberately poor generator"
    )
    ap.add_argument("--num-generated", type=int, default=5000)
    ap.add_argument("--alphas", default="0,0.2,0.4,0.6,0.8,1")
    ap.add_argument(
        "--poor-alphas", default="1", help="alphas run with the poor generator (alpha 0 is shared)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2000, help="denoiser steps at most")
    ap.add_argument("--val-every", type=int, default=200)
    ap.add_argument("--patience", type=int, default=6)
    ap.add_argument("--denoise-minutes", type=float, default=None, help="budget of all denoiser training")
    ap.add_argument("--width", type=int, default=32, help="denoiser channels (the paper: 32)")
    ap.add_argument("--blocks", type=int, default=5, help="denoiser residual blocks (the paper: 5)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--psf", default="gaussian:sigma=2")
    ap.add_argument("--noise", default="gaussian:sigma=0.05")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all CPUs)")
    ap.add_argument("--jobs", type=int, default=1, help="denoisers trained at once")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default="", help="keep everything in this directory (default: a temp dir)")
    args = ap.parse_args()
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)

    import torch

    from astrogan.config import TrainConfig
    from astrogan.data.build import BuildOptions, build_dataset
    from astrogan.data.synthetic import synth_sersic
    from astrogan.downstream.config import DenoiseConfig, parse_alphas
    from astrogan.downstream.experiment import run_denoise
    from astrogan.sampling.generator import load_generator
    from astrogan.training.loop import train
    from astrogan.training.state import list_states

    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    t_all = time.perf_counter()
    out: dict = {
        "bench": "denoise_sersic",
        "smoke": bool(args.smoke),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "args": vars(args),
        "seconds": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        stamps = root / "stamps"
        if not stamps.exists():
            synth_sersic(
                stamps,
                num=args.num_images,
                image_size=args.image_size,
                seed=args.seed,
                psf="none",
                noise="none",
                fmt="png",
                num_workers=max(1, min(4, os.cpu_count() or 1)),
            )
        data = root / "ds"
        if not data.exists():
            build_dataset(
                [stamps],
                data,
                options=BuildOptions(image_sizes=(args.image_size,), channels=1),
                show_progress=False,
            )
        out["seconds"]["render_and_build"] = round(time.perf_counter() - t, 1)

        gens = {}
        for name, minutes, steps in (("good", args.gan_minutes, 10**7), ("poor", None, args.poor_steps)):
            t = time.perf_counter()
            run = train(
                TrainConfig(
                    data=str(data),
                    arch=args.gan_arch,
                    image_size=args.image_size,
                    batch_size=args.gan_batch_size,
                    num_train_steps=steps,
                    max_minutes=minutes,
                    save_every=min(steps, 500),
                    evaluate_every=10**7,
                    results_dir=str(root / "runs"),
                    name=name,
                    model={"ngf": args.gan_width, "ndf": args.gan_width},
                    device=args.device,
                    seed=args.seed,
                    num_snapshot_seeds=16,
                ),
                show_progress=False,
            )
            done = max((s for s, _ in list_states(run / "checkpoints")), default=0)
            out[f"{name}_generator"] = {
                "steps": done,
                "seconds": round(time.perf_counter() - t, 1),
                "run": str(run),
            }
            gens[name] = load_generator(run, device=args.device)

        common = dict(
            repeats=args.repeats,
            num_generated=args.num_generated,
            psf=args.psf,
            noise=args.noise,
            steps=args.steps,
            batch_size=args.batch_size,
            val_every=args.val_every,
            patience=args.patience,
            width=args.width,
            num_blocks=args.blocks,
            seed=args.seed,
            max_minutes=args.denoise_minutes,
            device=args.device,
            jobs=args.jobs,
        )
        docs = {}
        for name, alphas in (("good", args.alphas), ("poor", args.poor_alphas)):
            t = time.perf_counter()
            cfg = DenoiseConfig(alphas=parse_alphas(alphas), **common)
            docs[name] = run_denoise(
                data, gens[name], out=root / f"denoise-{name}", config=cfg, show_progress=False
            )
            out["seconds"][f"denoise_{name}"] = round(time.perf_counter() - t, 1)
        out.update(_figures(docs["good"], docs["poor"]))
    out["seconds"]["total"] = round(time.perf_counter() - t_all, 1)
    print(json.dumps(out, indent=1))
    sys.stdout.flush()


def _table(doc: dict) -> dict:
    """{condition: {alpha: [mse mean, mse std]}} with 4 significant digits."""
    return {
        c: {
            f"{r['alpha']:g}": [float(f"{r['mse_mean']:.4g}"), float(f"{r['mse_std']:.2g}")]
            for r in d["rows"]
        }
        for c, d in doc["conditions"].items()
    }


def _figures(good: dict, poor: dict) -> dict:
    """The table, the paper's qualitative checks, and the poor generator's contrast."""
    gain = {}  # best alpha > 0 against real-only, percent lower MSE (positive: generated data help)
    for c, d in good["conditions"].items():
        rows = d["rows"]
        ref = rows[0]["mse_mean"]
        best_mixed = min((r for r in rows if r["alpha"] > 0), key=lambda r: r["mse_mean"], default=None)
        gain[c] = None if best_mixed is None else round(100 * (1 - best_mixed["mse_mean"] / ref), 1)
    none = good["conditions"].get("none")
    findings = {
        "best_alpha_as_trained": none["best_alpha"] if none else None,
        "best_alpha_in_0.6_to_0.8": bool(none and 0.6 <= none["best_alpha"] <= 0.8),
        "generated_only_vs_real_only_pct": {
            c: d.get("compared_vs_reference_pct") for c, d in good["conditions"].items()
        },
        "gain_of_best_mix_over_real_only_pct": gain,
    }
    if "noise-x4" in gain and "none" in gain and gain["noise-x4"] is not None and gain["none"] is not None:
        findings["more_robust_to_noise_shift"] = gain["noise-x4"] > max(gain["none"], 0)
    if "half-res" in gain and "none" in gain and gain["half-res"] is not None and gain["none"] is not None:
        findings["more_robust_to_pixel_shift"] = gain["half-res"] > max(gain["none"], 0)
    contrast = {}
    for c, d in poor["conditions"].items():
        g_rows = {r["alpha"]: r["mse_mean"] for r in good["conditions"][c]["rows"]}
        for r in d["rows"]:
            if r["alpha"] in g_rows:
                contrast[f"{c}@{r['alpha']:g}"] = {
                    "poor_mse": float(f"{r['mse_mean']:.4g}"),
                    "good_mse": float(f"{g_rows[r['alpha']]:.4g}"),
                    "poor_over_good": round(r["mse_mean"] / g_rows[r["alpha"]], 3),
                    "poor_vs_real_only_pct": round(100 * (r["mse_mean"] / g_rows[min(g_rows)] - 1), 1),
                }
    return {
        "table_mse": _table(good),
        "conclusions": {c: d["conclusion"] for c, d in good["conditions"].items()},
        "paper_findings": findings,
        "poor_generator": {"table_mse": _table(poor), "contrast": contrast},
        "cells": len(good["cells"]) + len(poor["cells"]),
    }


if __name__ == "__main__":
    main()
