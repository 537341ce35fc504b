"""Fidelity race: train every architecture for the same CPU budget, measure how close each gets to the sky.

Renders Sérsic stamps with GalSim (the demo's PNG rendering) and builds a dataset, or takes a built
one (`--data DS`, e.g. real galaxies), trains every architecture in `astrogan.models.ARCHS` on the CPU
for the same budget (wall-clock minutes on a fixed number of torch threads, so the architectures get
the same compute; `--steps` caps the steps too), generates images and prints one JSON object:
per-property morphology Wasserstein distances divided by the real-vs-real floor (1 = as close as two
halves of the real set), their mean, the spectrum distance over its floor, the memorization fraction,
PRDC, and the steps and kimg each architecture reached within the budget. DCGAN and FastGAN train at
`--width` (ngf = ndf); StyleGAN2 trains with the `small` preset (its model, loss and ADA settings).

    python bench/quality_sersic.py --minutes 30 --threads 2 --num-images 4096 --num-generated 512
    python bench/quality_sersic.py --data ds-gz64 --minutes 30 --threads 2 --num-generated 512
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

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-images", type=int, default=512, help="Sérsic stamps to train on")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument(
        "--minutes", type=float, default=10.0, help="training budget per architecture (wall clock)"
    )
    ap.add_argument("--steps", type=int, default=1_000_000, help="at most this many training steps")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all CPUs)")
    ap.add_argument(
        "--width", type=int, default=16, help="ngf = ndf of every architecture (CPU-sized models)"
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-generated", type=int, default=256)
    ap.add_argument("--archs", default="", help="comma-separated subset of architectures (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="", help="a built dataset to race on instead of fresh Sérsic stamps")
    ap.add_argument("--keep", default="", help="keep the runs in this directory (default: a temp dir)")
    args = ap.parse_args()

    import torch

    from astrogan.config import TrainConfig, load_preset
    from astrogan.data.build import BuildOptions, build_dataset
    from astrogan.data.dataset import open_dataset
    from astrogan.demo.raw import make_sersic_pngs
    from astrogan.metrics.compute import run_metrics
    from astrogan.models import ARCHS
    from astrogan.sampling.generator import load_generator
    from astrogan.training.loop import train
    from astrogan.training.state import list_states

    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2)))
    archs = [a for a in args.archs.split(",") if a] or sorted(ARCHS)
    out: dict = {
        "bench": "quality_sersic",
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "args": vars(args),
        "archs": {},
    }

    def arch_settings(arch: str) -> dict:
        """Per-architecture knobs: StyleGAN2 from the `small` preset, the others at --width."""
        if arch != "stylegan2":
            return {"model": {"ngf": args.width, "ndf": args.width}}
        preset = load_preset("small")
        keys = ("model", "loss", "aug", "aug_prob", "ada_kimg", "ada_target", "lr_g", "lr_d", "ema_kimg")
        return {k: preset[k] for k in keys if k in preset}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        data = Path(args.data) if args.data else root / "ds"
        if not args.data:
            make_sersic_pngs(root / "png", num=args.num_images, image_size=args.image_size, seed=args.seed)
            build_dataset(
                [root / "png"],
                data,
                options=BuildOptions(image_sizes=(args.image_size,)),
                show_progress=False,
            )
        real = open_dataset(data).images(args.image_size)
        out["num_real"] = len(real)
        names = ["spectrum", "morphology", "prdc", "memorization"]
        for arch in archs:
            cfg = TrainConfig(
                data=str(data),
                arch=arch,
                image_size=args.image_size,
                batch_size=args.batch_size,
                num_train_steps=args.steps,
                max_minutes=args.minutes,
                save_every=min(args.steps, 500),
                evaluate_every=args.steps,
                results_dir=str(root / "runs"),
                name=arch,
                device="cpu",
                seed=args.seed,
                num_snapshot_seeds=16,
                **arch_settings(arch),
            )
            t0 = time.perf_counter()
            run = train(cfg, show_progress=False)
            train_s = time.perf_counter() - t0
            # The loop saves its state when the budget stops it: the last state's step is the count.
            steps_done = max((s for s, _ in list_states(run / "checkpoints")), default=0)
            gen = load_generator(run, device="cpu")
            fake = gen.generate(list(range(args.num_generated)), batch_size=32)
            out["archs"][arch] = {
                "train_s": round(train_s, 1),  # includes set-up and the final save
                # Other work on the machine steals the budget: the load at the end says how quiet it was.
                "loadavg_end": _loadavg(),
                "steps": steps_done,
                "kimg": round(steps_done * args.batch_size / 1000, 1),
                "run": str(run) if args.keep else None,
                **_figures(run_metrics(names, real, fake, rng_seed=args.seed)),
            }
        if args.data:  # real data has no second draw of the same law: its floors are the halves
            print(json.dumps(out, indent=1))
            return
        print(json.dumps(out), file=sys.stderr, flush=True)  # the race so far, should the baselines fail
        # Baselines in the same run: a perfect generator (fresh stamps of the same law, new noise) must
        # score ~1 on every ratio and ~5% memorised; a copier of the training set ~1 memorised.
        make_sersic_pngs(
            root / "png2", num=args.num_generated, image_size=args.image_size, seed=args.seed + 1000
        )
        build_dataset(
            [root / "png2"],
            root / "ds2",
            options=BuildOptions(image_sizes=(args.image_size,)),
            show_progress=False,
        )
        fresh = open_dataset(root / "ds2").images(args.image_size)
        out["baselines"] = {
            "perfect_generator": _figures(run_metrics(names, real, fresh, rng_seed=args.seed)),
            "copier": _figures(
                run_metrics(["memorization"], real, real[: args.num_generated], rng_seed=args.seed)
            ),
        }
    print(json.dumps(out, indent=1))


def _loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages (None off Linux)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def _figures(res) -> dict:  # noqa: ANN001
    """The bench's figures from a `run_metrics` result: per-property W1 / floor, spectrum, memorization."""
    out: dict = {}
    if "morphology" in res.details:
        comp = res.details["morphology"]["comparisons"]
        ratio = {k: c.ratio for k, c in comp.items() if np.isfinite(c.ratio)}
        out["w1_over_floor"] = {k: round(v, 3) for k, v in ratio.items()}
        out["w1_over_floor_mean"] = round(float(np.mean(list(ratio.values()))), 3)
        out["dropped_fake"] = {k: c.dropped_fake for k, c in comp.items() if c.dropped_fake}
        out["morph_bad_fraction_fake"] = res.scalars["morph_bad_fraction_fake"]
    if "spectrum" in res.details:
        out["spectrum_w1_over_floor"] = round(
            res.scalars["spectrum_w1_mean"] / res.scalars["spectrum_floor_w1_mean"], 3
        )
    for k in (
        "memorization_fraction",
        "memorization_fraction_pixels_low",
        "memorization_fraction_pixels_high",
    ):
        if k in res.scalars:
            out[k] = round(res.scalars[k], 4)
    for k in ("prdc_precision", "prdc_recall", "prdc_density", "prdc_coverage"):
        if k in res.scalars:
            out[k] = round(res.scalars[k], 3)
    return out


if __name__ == "__main__":
    main()
