"""Closed-loop conditioning: ask a conditional generator for Sérsic parameters, measure what comes back.

Renders Sérsic stamps with GalSim (`astrogan synth sersic`, FITS), keeps those drawn the way the research
seed drew its set (1 <= n <= 4, 0.4 <= q <= 1), builds a float32 dataset with a linear stretch (black at
the 0.5th percentile, white at the peak: profiles keep their shape, which an asinh stretch or 8-bit PNGs
would bend and the morphology engine would read as other parameters) and the stamps' true parameters as
conditions (`--labels kept.csv --label-columns ...`), trains conditional architectures (StyleGAN2 from
the `small` preset, DCGAN at `--width`) for the same wall-clock budget on a fixed number of torch
threads (with the auxiliary condition regressor at the loss's default weight unless `--cond-weight`), then:

- asks each generator for `--num-generated` conditions drawn from the data (the joint distribution) and
  on a regular grid over the trained ranges, measures every image with a Sérsic fit convolved with the
  stamps' PSF and truncated as they are (`--psf`, default the synth's; `--psf none`: the engine) and
  reports per parameter the Spearman rank correlation and the median absolute / relative error between
  asked and measured;
- beside it, the floor: the same figures for real stamps (true parameters against what the engine
  measures on them), which a perfect generator would reach;
- extrapolation: asks for n = 5 (training covered n <= 4) and n = 4 with the other parameters at their
  mean, and reports the measured n;
- the stretch check: where the drawn fakes sit, before the sampler's clip to [-1, 1], against the build's
  stretch, which puts every real's 0.5th percentile at black and its peak at white (pixels clipped at black
  or white bias the Sérsic fit).

    python bench/conditioning_sersic.py --minutes 30 --threads 2 --num-images 4096 --num-generated 512
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ASTROGAN_QUIET", "1")

import numpy as np  # noqa: E402

COLUMNS = ("sersic_n", "half_light_radius_px", "q")
KEEP = {"sersic_n": (1.0, 4.0), "q": (0.4, 1.0)}  # the research seed's ranges (Holzschuh et al. 2022)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-images", type=int, default=1024, help="stamps to train on (after the range cut)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per architecture")
    ap.add_argument("--steps", type=int, default=1_000_000, help="at most this many training steps")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all CPUs)")
    ap.add_argument("--width", type=int, default=32, help="DCGAN ngf = ndf")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-generated", type=int, default=512)
    ap.add_argument("--archs", default="stylegan2,dcgan")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default="", help="keep the data and runs in this directory")
    ap.add_argument(
        "--psf",
        default=None,
        help="the stamps' PSF for the closed loop's Sérsic fit (default: the synth's own; none: the engine)",
    )
    ap.add_argument(
        "--cond-weight",
        type=float,
        default=None,
        help="the auxiliary condition regressor's weight (training.cond_aux; 0: off; default: the loss's)",
    )
    ap.add_argument(
        "--mismatch-weight",
        type=float,
        default=None,
        help="weight of D's mismatch term: reals with another image's conditions count as fake (default: the loss's)",
    )
    ap.add_argument(
        "--profile-weight",
        type=float,
        default=None,
        help="StyleGAN2 with the prior: weight on the residual's azimuthal profile (loss profile_weight; "
        "default: train's, 1000 where the image starts as the template, as on this bench's data)",
    )
    ap.add_argument(
        "--black-weight",
        type=float,
        default=None,
        help="StyleGAN2: weight on each fake's 0.5th percentile sitting at black, where the build's stretch puts "
        "every real's (loss black_weight; default: train's)",
    )
    ap.add_argument(
        "--peak-weight",
        type=float,
        default=None,
        help="StyleGAN2: weight on each fake's peak sitting at white, as every real's (loss peak_weight; "
        "default: train's)",
    )
    ap.add_argument(
        "--cond-prior",
        default="",
        help="StyleGAN2's cond_prior: sersic (the synthesis builds on the analytic profile asked for) or none "
        "(default: train's, which is sersic on these columns)",
    )
    ap.add_argument(
        "--prior-template",
        choices=("data", "learned"),
        default="learned",
        help="the prior's template: blurred by a learned Gaussian, uncut (learned, train's default) or drawn "
        "with the stamps' PSF and truncation (data)",
    )
    ap.add_argument(
        "--prior-residual",
        choices=("auto", "on", "off"),
        default="auto",
        help="StyleGAN2's prior_residual: the image starts as the template (gain 2, offset -1) and the "
        "synthesis learns a residual on it (auto: train's default, which is on for this peak-white linear data)",
    )
    ap.add_argument(
        "--prior-lock",
        choices=("auto", "on", "off"),
        default="auto",
        help="StyleGAN2's prior_lock: what the synthesis adds to the template cannot move a Sérsic fit's n, r_e, "
        "q (auto: train's default, on with prior_residual)",
    )
    ap.add_argument(
        "--lr-rampdown",
        type=float,
        default=0.0,
        help="train's --lr-rampdown: learning rates fall to 0 over this last fraction of the steps",
    )
    ap.add_argument(
        "--amp",
        action="store_true",
        help="train's --amp (bf16 autocast on the CPU; 1.4x per stylegan2 step where the CPU has avx512_bf16)",
    )
    ap.add_argument(
        "--headroom",
        type=float,
        default=1.0,
        help="dataset build's --headroom: white at this many times the peak (1: every peak at exactly 1, so a "
        "fake's overshoot of it is clipped when pictures are clamped to [0, 1])",
    )
    ap.add_argument(
        "--cond-bn",
        action="store_true",
        help="DCGAN with conditional BatchNorm (the condition at every resolution)",
    )
    args = ap.parse_args()

    import torch

    from astrogan.config import TrainConfig, load_preset
    from astrogan.data.build import BuildOptions, build_dataset
    from astrogan.data.dataset import open_dataset
    from astrogan.data.synthetic import DEFAULT_PSF, TRUNC_IN_RE, synth_sersic
    from astrogan.metrics.conditioning import closed_loop
    from astrogan.sampling.generator import load_generator
    from astrogan.training.loop import train
    from astrogan.training.state import list_states

    psf = DEFAULT_PSF if args.psf is None else (None if args.psf.lower() == "none" else args.psf)
    fit = {"psf": psf, "truncate": TRUNC_IN_RE if psf else None}  # the synth truncates at 4 r_e
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2)))
    out: dict = {
        "bench": "conditioning_sersic",
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "args": vars(args),
        "archs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        data = root / "ds"
        if not data.exists():
            t0 = time.perf_counter()
            _make_stamps(
                root, num=args.num_images, image_size=args.image_size, seed=args.seed, synth=synth_sersic
            )
            build_dataset(
                [root / "kept"],
                data,
                options=BuildOptions(
                    image_sizes=(args.image_size,),
                    stretch="linear",
                    white_percentile=100.0,
                    headroom=args.headroom,
                ),
                labels=root / "kept.csv",
                label_columns=list(COLUMNS),
                show_progress=False,
            )
            out["data_s"] = round(time.perf_counter() - t0, 1)
        ds = open_dataset(data)
        real = ds.images(args.image_size)
        cond, spec = ds.cond(args.image_size, COLUMNS)
        out["num_real"] = len(real)
        out["cond_spec"] = spec.to_dict()
        rng = np.random.default_rng(args.seed)
        pick = rng.choice(len(real), size=min(args.num_generated, len(real)), replace=False)
        out["measured_with"] = fit
        out["real_floor"] = closed_loop(cond[pick], real[pick], COLUMNS, **fit)
        asked = cond[rng.integers(0, len(cond), args.num_generated)]
        grid = spec.regular_grid(4)
        for arch in [a for a in args.archs.split(",") if a]:
            settings = _arch_settings(arch, args.width, load_preset)
            if args.cond_bn and arch == "dcgan":
                settings["model"] = {**settings["model"], "cond_bn": True}
            if args.cond_prior and arch == "stylegan2":
                settings["model"] = {**settings.get("model", {}), "cond_prior": args.cond_prior}
            if arch == "stylegan2":  # kept/ is not a synth folder, so train cannot pick these up itself
                template = {"prior_psf": fit["psf"] or "", "prior_truncate": TRUNC_IN_RE}
                if args.prior_template == "learned":
                    template = {"prior_psf": ""}
                settings["model"] = {**settings.get("model", {}), **template}
                if args.prior_residual != "auto":
                    settings["model"]["prior_residual"] = args.prior_residual == "on"
                if args.prior_lock != "auto":
                    settings["model"]["prior_lock"] = args.prior_lock == "on"
            if args.cond_weight is not None:
                settings["loss"] = {**settings.get("loss", {}), "cond_weight": args.cond_weight}
            if args.mismatch_weight is not None:
                settings["loss"] = {**settings.get("loss", {}), "mismatch_weight": args.mismatch_weight}
            if args.profile_weight is not None and arch == "stylegan2":
                settings["loss"] = {**settings.get("loss", {}), "profile_weight": args.profile_weight}
            for key in ("black_weight", "peak_weight"):
                if getattr(args, key) is not None and arch == "stylegan2":
                    settings["loss"] = {**settings.get("loss", {}), key: getattr(args, key)}
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
                name=(f"{arch}-w{args.cond_weight}" if args.cond_weight is not None else arch)
                + ("-cbn" if args.cond_bn and arch == "dcgan" else "")
                + (f"-mm{args.mismatch_weight:g}" if args.mismatch_weight is not None else "")
                + (
                    f"-pw{args.profile_weight:g}"
                    if args.profile_weight is not None and arch == "stylegan2"
                    else ""
                )
                + (
                    f"-bw{args.black_weight:g}"
                    if args.black_weight is not None and arch == "stylegan2"
                    else ""
                )
                + (f"-kw{args.peak_weight:g}" if args.peak_weight is not None and arch == "stylegan2" else "")
                + (f"-{args.cond_prior}" if args.cond_prior and arch == "stylegan2" else "")
                + ("-data" if args.prior_template == "data" and arch == "stylegan2" else "")
                + (
                    f"-res{args.prior_residual}"
                    if args.prior_residual != "auto" and arch == "stylegan2"
                    else ""
                )
                + (f"-lock{args.prior_lock}" if args.prior_lock != "auto" and arch == "stylegan2" else "")
                + (f"-rd{args.lr_rampdown:g}" if args.lr_rampdown else "")
                + ("-amp" if args.amp else ""),
                lr_rampdown=args.lr_rampdown,
                amp=args.amp,
                device="cpu",
                seed=args.seed,
                num_snapshot_seeds=16,
                cond=COLUMNS,
                **settings,
            )
            t0 = time.perf_counter()
            run = train(cfg, show_progress=False)
            train_s = time.perf_counter() - t0
            steps_done = max((s for s, _ in list_states(run / "checkpoints")), default=0)
            gen = load_generator(run, device="cpu")
            seeds = list(range(len(asked)))
            fake = _images(gen, seeds, cond=asked)
            grid_seeds = [int(s) for s in np.repeat(np.arange(4), len(grid))]
            grid_asked = np.tile(grid, (4, 1))
            grid_fake = _images(gen, grid_seeds, cond=grid_asked)
            out["archs"][arch] = {
                "train_s": round(train_s, 1),
                "steps": steps_done,
                "kimg": round(steps_done * args.batch_size / 1000, 1),
                "run": str(run) if args.keep else None,
                "drawn_from_data": closed_loop(asked, fake, COLUMNS, **fit),
                "grid": closed_loop(grid_asked, grid_fake, COLUMNS, **fit),
                "extrapolation": _extrapolation(gen, spec, fit),
                "stretch_check": _stretch_check(gen, seeds, asked),
                **_prior_figures(gen),
            }
            print(json.dumps(out), flush=True, file=sys.stderr)
    print(json.dumps(out, indent=1))


def _make_stamps(root: Path, *, num: int, image_size: int, seed: int, synth) -> None:  # noqa: ANN001
    """Render enough stamps that `num` fall in the kept ranges; link them into kept/ with kept.csv."""
    need = int(num / 0.42 * 1.1) + 64  # ~42% of the synth's law falls inside KEEP
    raw = synth(root / "raw", num=need, image_size=image_size, seed=seed, fmt="fits", progress=True)
    with open(raw / "params.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    kept = [r for r in rows if all(lo <= float(r[k]) <= hi for k, (lo, hi) in KEEP.items())][:num]
    (root / "kept").mkdir(exist_ok=True)
    for r in kept:
        name = f"sersic_{int(r['index']):06d}.fits"
        link = root / "kept" / name
        if not link.exists():
            link.symlink_to(raw / name)
    with open(root / "kept.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", *COLUMNS])
        w.writeheader()
        for r in kept:
            w.writerow({"file": f"sersic_{int(r['index']):06d}.fits", **{k: r[k] for k in COLUMNS}})


def _arch_settings(arch: str, width: int, load_preset) -> dict:  # noqa: ANN001
    if arch == "stylegan2":
        preset = load_preset("small")
        keys = ("model", "loss", "aug", "aug_prob", "ada_kimg", "ada_target", "lr_g", "lr_d", "ema_kimg")
        return {k: preset[k] for k in keys if k in preset}
    return {"model": {"ngf": width, "ndf": width}}


def _images(gen, seeds, *, cond, check_cond: bool = True) -> np.ndarray:  # noqa: ANN001
    """Generated images as the dataset stores them: float32 (N, H, W, C) in [0, 1] (no 8-bit rounding)."""
    x = gen.generate_tensor(seeds, cond=cond, check_cond=check_cond, batch_size=64).numpy()
    return ((x + 1) / 2).transpose(0, 2, 3, 1).astype(np.float32)


def _stretch_check(gen, seeds, cond) -> dict:  # noqa: ANN001
    """The fakes' raw output against the build's stretch (black at the 0.5th percentile, white at the peak):
    the share of pixels beyond black and white (the reals: 0 by construction, with 0.5% at black) and the
    quartiles of each fake's 0.5th percentile and peak (the reals: -1 and 1)."""
    import torch

    c = gen.condition(seeds, cond=cond, check_cond=False)
    with torch.no_grad():
        raw = [
            gen.module(z, cc).float() for z, cc in zip(gen.latents(seeds).split(64), c.split(64), strict=True)
        ]
    flat = torch.cat(raw).flatten(1)
    black = torch.quantile(flat, 0.005, dim=1).numpy()
    peak = flat.amax(dim=1).numpy()
    return {
        "below_black": round(float((flat < -1).float().mean()), 5),
        "above_white": round(float((flat > 1).float().mean()), 5),
        "black_level_quartiles": [round(float(v), 4) for v in np.percentile(black, [25, 50, 75])],
        "peak_quartiles": [round(float(v), 4) for v in np.percentile(peak, [25, 50, 75])],
    }


def _prior_figures(gen) -> dict:  # noqa: ANN001
    """A Sérsic-prior model's PSF (or learned blur, px), truncation and direct template gain."""
    syn = getattr(gen.module, "synthesis", None)
    if syn is None or getattr(syn, "prior", None) is None:
        return {"cond_prior": getattr(gen.module.config, "cond_prior", None)}
    return {
        "cond_prior": gen.module.config.cond_prior,
        "prior_psf": gen.module.config.prior_psf or None,
        "prior_truncate": gen.module.config.prior_truncate or None,
        "prior_lock": gen.module.config.prior_lock,
        "prior_blur_px": None if syn.prior.sigma_px() is None else round(syn.prior.sigma_px(), 3),
        "prior_gain": syn.prior_gain.tolist(),
    }


def _quartiles(x: np.ndarray) -> list[float] | None:
    return [float(v) for v in np.percentile(x, [25, 75])] if len(x) else None


def _extrapolation(gen, spec, fit: dict) -> dict:  # noqa: ANN001
    """Measured n when asking n = 4 (edge of training) and n = 5 (outside), other parameters at the mean."""
    from astrogan.metrics.conditioning import measure_conditions

    out = {}
    seeds = list(range(64))
    for n in (4.0, 5.0):
        asked = spec.values({"sersic_n": n}, check=False)
        imgs = _images(gen, seeds, cond=asked, check_cond=False)
        measured = measure_conditions(imgs, ["sersic_n"], **fit)[:, 0]
        ok = np.isfinite(measured)
        out[f"n={n:g}"] = {
            "median_measured_n": float(np.median(measured[ok])) if ok.any() else None,
            "quartiles": _quartiles(measured[ok]),
            "num_measured": int(ok.sum()),
        }
    return out


if __name__ == "__main__":
    main()
