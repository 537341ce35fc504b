"""Multi-band race: every architecture trained for the same CPU budget on g,r,i,z bulge+disc galaxies.

The pipeline is the commands a person would type, called as functions:

1. `astrogan synth galaxies --bands g,r,i,z --size 64 --num N` (`data.synth_galaxies.synth_galaxies`, one
   worker per core): FITS cubes in nanomaggies; timed (galaxies/s).
2. `astrogan dataset build --science DIR --image-size 64` (`data.build.build_dataset` with `ScienceOptions(cubes=
   True)`): float32 (N, 64, 64, 4), one dataset-wide asinh stretch per band; timed (images/s).
3. Every architecture in `astrogan.models.ARCHS` trains on it for the same wall-clock `--minutes` on the same
   `--threads` torch threads (DCGAN and FastGAN at `--width`, StyleGAN2 from the `small` preset, as
   bench/quality_sersic.py). No architecture is class-conditional here: a science build stores no labels, so
   DCGAN's class-conditional mode (`num_classes`) has nothing to learn from and every network is unconditional.
4. Each EMA generator draws `--num-generated` float fakes (seeds 0..n-1, never through uint8: the model's
   [-1, 1] mapped to the dataset's [0, 1], as `astrogan eval` feeds science data to the metrics) and is measured
   against the reals with the spectrum, morphology and colours metrics, per band, over their real-vs-real
   floors (the protocol of quality_sersic: the reals are the training set, no held-out split; 1 = as close as
   two halves of the reals). A composite grid PNG per architecture (Lupton g,r,i -> B,G,R) goes to `--keep`.
5. Baseline in the same run: a perfect generator, `--num-generated` fresh galaxies of the same law (another
   seed) built through the same build with the reals' stretch, scored like the fakes (ratios ~1).

Prints one JSON line: the machine (load at start and end), settings, synth and build rates, and per
architecture the steps and kimg reached, per-band spectrum and morphology ratios to their floors, per-colour
W1 / floor / ratio, the red-fraction check, and a summary ranking by mean per-band morphology ratio.
Progress goes to stderr.

    python bench/multiband_race.py --num 4096 --minutes 20 --threads 8 --num-generated 1024 --keep race64
    python bench/multiband_race.py --quick   # every step, tiny: 128 galaxies at 32 px, 0.3 min per arch
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("ASTROGAN_QUIET", "1")

import numpy as np  # noqa: E402

METRICS = ("spectrum", "morphology", "colours")
GRID_N = 64  # tiles per grid PNG (8 x 8)
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[multiband_race {time.perf_counter() - T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=4096, help="galaxies to synthesize and train on")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--bands", default="g,r,i,z")
    ap.add_argument(
        "--minutes", type=float, default=10.0, help="training budget per architecture (wall clock)"
    )
    ap.add_argument("--steps", type=int, default=1_000_000, help="at most this many training steps")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all CPUs)")
    ap.add_argument("--workers", type=int, default=0, help="synth worker processes (default: one per CPU)")
    ap.add_argument("--width", type=int, default=16, help="ngf = ndf of DCGAN and FastGAN (CPU-sized models)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-generated", type=int, default=1024)
    ap.add_argument("--archs", default="", help="comma-separated subset of architectures (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--keep", default="", help="keep data, runs, grids and race.json here (default: a temp dir)"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="check the script: 128 galaxies at 32 px, 0.3 min per architecture, 64 fakes, tiny models",
    )
    args = ap.parse_args()
    if args.quick:
        args.num, args.image_size, args.minutes, args.num_generated = 128, 32, 0.3, 64
        args.batch_size = 8

    import torch

    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 2))
    from astrogan.models import ARCHS

    archs = [a for a in args.archs.split(",") if a] or sorted(ARCHS)
    out: dict[str, Any] = {
        "bench": "multiband_race",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "loadavg_start": _loadavg(),
            "matmul_peak_gflops": round(_matmul_peak_gflops(), 1),
        },
        "settings": vars(args),
        "protocol": "reals = the training set (no held-out split, as quality_sersic); fakes = EMA generator, seeds "
        "0..num_generated-1, float; ratio = W1(real, fake) / W1(real half, real half), 1 = as close as the reals",
        "conditioning": "none: a science build stores no class labels, so every architecture trains "
        "unconditionally (DCGAN's class-conditional mode needs labels)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        _race(args, archs, root, out)
        out["machine"]["loadavg_end"] = _loadavg()
        line = json.dumps(out)
        if args.keep:
            (root / "race.json").write_text(line + "\n")
    print(line, flush=True)


def _race(args: argparse.Namespace, archs: list[str], root: Path, out: dict[str, Any]) -> None:
    from astrogan.data.dataset import open_dataset
    from astrogan.data.synth_galaxies import make_setup

    # 1. Synthesize (the reals, then the perfect generator's fresh draw of the same law).
    setup = make_setup(args.bands, image_size=args.image_size, seed=args.seed)
    out["synth"] = _synth(root / "synth", args.num, setup, args.workers)
    fresh_setup = make_setup(args.bands, image_size=args.image_size, seed=args.seed + 1000)
    _synth(root / "synth-fresh", args.num_generated, fresh_setup, args.workers)

    # 2. Build the science dataset; the fresh galaxies through the same build with the reals' stretch.
    out["build"] = _build(root / "synth", root / "ds", args.image_size)
    ds = open_dataset(root / "ds")
    spec = ds.science
    if spec is None:
        raise SystemExit("the science build wrote no science spec: nothing to undo the stretch with")
    out["bands"] = list(spec.bands)
    out["stretch"] = spec.stretch.to_dict()
    _build(root / "synth-fresh", root / "ds-fresh", args.image_size, stretch=spec.stretch)
    real = ds.images(args.image_size)
    fresh = open_dataset(root / "ds-fresh").images(args.image_size)
    out["num_real"] = len(real)
    log(f"reals {real.shape} {real.dtype}, {real.nbytes / 2**20:.0f} MiB; fresh {fresh.shape}")
    cache = root / "stats-cache"  # the reals' statistics (per band too), computed once for every comparison
    measure = dict(spec=spec, cache=cache, cache_key=ds.content_hash, seed=args.seed)

    # 5 (first: cheap, and it says what a ratio of 1 looks like). The perfect generator.
    grids = root / "grids"
    grids.mkdir(exist_ok=True)
    _save_grid(grids / "real.png", _to_model(real[:GRID_N]), spec, args.image_size)
    _save_grid(grids / "perfect_generator.png", _to_model(fresh[:GRID_N]), spec, args.image_size)
    log("measuring the perfect generator (fresh galaxies of the same law)")
    out["baseline_perfect_generator"] = _measure(real, fresh, **measure)

    # 3-4. Train, generate, measure.
    out["archs"] = {}
    for arch in archs:
        out["archs"][arch] = _one_arch(arch, args, root, ds, real, measure)
        print(json.dumps({arch: out["archs"][arch]}), file=sys.stderr, flush=True)  # the race so far
    out["grids"] = str(grids) if args.keep else None
    out["summary"] = _summary(out)


def _synth(folder: Path, num: int, setup: Any, workers: int) -> dict[str, Any]:
    from astrogan.data.synth_galaxies import synth_galaxies

    nproc = workers or (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    log(
        f"synth galaxies: {num} x {','.join(setup.bands)} at {setup.image_size} px, {nproc} workers -> {folder}"
    )
    t0 = time.perf_counter()
    synth_galaxies(folder, num=num, setup=setup, num_workers=nproc, overwrite=True)
    dt = time.perf_counter() - t0
    log(f"synth galaxies: {dt:.1f} s ({num / dt:.1f} galaxies/s)")
    return {"num": num, "workers": nproc, "seconds": round(dt, 2), "galaxies_per_s": round(num / dt, 2)}


def _build(src: Path, dst: Path, size: int, *, stretch: Any = None) -> dict[str, Any]:
    """`astrogan dataset build --science SRC --out DST --image-size SIZE` [--stretch-black/--stretch-white]."""
    from astrogan.data.build import BuildOptions, build_dataset
    from astrogan.data.science_inputs import ScienceOptions

    sci = ScienceOptions(cubes=True)
    if stretch is not None:  # the reals' stretch, so that the fresh set is on the same scale
        sci = ScienceOptions(
            cubes=True,
            stretch=stretch.kind,
            stretch_a=stretch.a,
            stretch_black=stretch.black,
            stretch_white=stretch.white,
        )
    log(f"dataset build --science {src.name} -> {dst.name}")
    t0 = time.perf_counter()
    res = build_dataset(
        [src],
        dst,
        options=BuildOptions(image_sizes=(size,)),
        overwrite=True,
        show_progress=False,
        science=sci,
    )
    dt = time.perf_counter() - t0
    log(f"dataset build: {res.num_images} images in {dt:.1f} s ({res.num_images / dt:.1f} images/s)")
    return {
        "num_images": res.num_images,
        "seconds": round(dt, 2),
        "images_per_s": round(res.num_images / dt, 1),
    }


def _arch_settings(arch: str, args: argparse.Namespace) -> dict[str, Any]:
    """Per-architecture knobs: StyleGAN2 from the `small` preset, the others at --width; tiny models in --quick."""
    from astrogan.config import load_preset
    from astrogan.models import ARCHS

    settings: dict[str, Any] = {"model": {"ngf": args.width, "ndf": args.width}}
    if arch == "stylegan2":
        preset = load_preset("small")
        keys = ("model", "loss", "aug", "aug_prob", "ada_kimg", "ada_target", "lr_g", "lr_d", "ema_kimg")
        settings = {k: preset[k] for k in keys if k in preset}
    if args.quick:
        settings["model"] = dict(ARCHS[arch].tiny)
    return settings


def _one_arch(
    arch: str, args: argparse.Namespace, root: Path, ds: Any, real: np.ndarray, measure: dict[str, Any]
) -> dict[str, Any]:
    import torch

    from astrogan.config import TrainConfig
    from astrogan.sampling.generator import load_generator
    from astrogan.training.loop import train
    from astrogan.training.state import list_states
    from astrogan.utils.errors import UserError

    settings = _arch_settings(arch, args)
    cfg = TrainConfig(
        data=str(root / "ds"),
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
        **settings,
    )
    log(
        f"{arch}: training {args.minutes:g} min on {torch.get_num_threads()} threads, model {settings['model']}"
    )
    t0 = time.perf_counter()
    try:
        run = train(cfg, show_progress=False)
    except UserError as exc:  # e.g. an architecture that cannot train without labels: say so, race on
        log(f"{arch}: skipped ({exc})")
        return {"skipped": str(exc)}
    train_s = time.perf_counter() - t0
    steps = max((s for s, _ in list_states(run / "checkpoints")), default=0)
    kimg = steps * args.batch_size / 1000
    res: dict[str, Any] = {
        "steps": steps,
        "kimg": round(kimg, 2),
        "train_minutes": round(train_s / 60, 2),  # includes set-up, the snapshot and the final save
        "loadavg_end": _loadavg(),  # other work on the machine steals the budget: how quiet it was
        "run": str(run) if args.keep else None,
    }
    res.update(_compute_figures(arch, cfg, ds.channels, kimg, train_s))

    gen = load_generator(run, device="cpu")
    log(f"{arch}: {steps} steps ({kimg:.1f} kimg) in {train_s / 60:.1f} min; generating {args.num_generated}")
    t0 = time.perf_counter()
    fake = np.concatenate(
        [
            _to_data(
                gen.generate_tensor(list(range(s, min(s + 256, args.num_generated))), batch_size=64).numpy()
            )
            for s in range(0, args.num_generated, 256)
        ]
    )
    res["generate_s"] = round(time.perf_counter() - t0, 2)
    _save_grid(root / "grids" / f"{arch}.png", _to_model(fake[:GRID_N]), measure["spec"], args.image_size)
    log(f"{arch}: measuring {', '.join(METRICS)}")
    res.update(_measure(real, fake, **measure))
    return res


def _measure(
    real: np.ndarray, fake: np.ndarray, *, spec: Any, cache: Path, cache_key: str, seed: int
) -> dict[str, Any]:
    """Per-band spectrum and morphology ratios to their floors, per-colour W1 / floor / ratio, the red fraction."""
    from astrogan.metrics.bands import band_key
    from astrogan.metrics.compute import run_metrics

    t0 = time.perf_counter()
    res = run_metrics(
        list(METRICS), real, fake, cache_dir=cache, cache_key=cache_key, rng_seed=seed, science=spec
    )
    s = res.scalars
    out: dict[str, Any] = {"metrics_s": round(time.perf_counter() - t0, 1)}
    if res.skipped:
        out["skipped_metrics"] = dict(res.skipped)
    bands: dict[str, Any] = {}
    for b in spec.bands:
        k = band_key(b)
        bands[b] = {
            "spectrum_ratio": _r(
                _ratio(s.get(f"spectrum_{k}_w1_mean"), s.get(f"spectrum_{k}_floor_w1_mean"))
            ),
            "morph_ratio": _r(s.get(f"morph_{k}_ratio_mean")),
        }
    out["bands"] = bands
    morph = [v["morph_ratio"] for v in bands.values() if v["morph_ratio"] is not None]
    spectrum = [v["spectrum_ratio"] for v in bands.values() if v["spectrum_ratio"] is not None]
    out["morph_ratio_band_mean"] = _r(float(np.mean(morph))) if morph else None
    out["spectrum_ratio_band_mean"] = _r(float(np.mean(spectrum))) if spectrum else None
    out["morph_bad_fraction_fake"] = _r(s.get("morph_bad_fraction_fake"))
    colours: dict[str, Any] = {}
    for key in s:
        m = re.fullmatch(r"colour_(.+)_w1", key)
        if m:
            name = m.group(1)
            w1, floor = s[key], s.get(f"colour_{name}_floor")
            colours[name] = {
                "w1": _r(w1),
                "floor": _r(floor),
                "floor_sd": _r(s.get(f"colour_{name}_floor_sd")),  # one W1's chance spread at these sizes
                "ratio": _r(_ratio(w1, floor)),
                "median_real": _r(s.get(f"colour_{name}_median_real")),
                "median_fake": _r(s.get(f"colour_{name}_median_fake")),
            }
    out["colours"] = colours
    ratios = [c["ratio"] for c in colours.values() if c["ratio"] is not None]
    out["colour_ratio_mean"] = _r(float(np.mean(ratios))) if ratios else None
    if "colours" in res.details:
        red = res.details["colours"]["red"]
        out["red_fraction"] = {
            "colour": red["colour"],  # a galaxy is red when this colour is above the reals' median
            "real": _r(red["real"]),
            "fake": _r(red["fake"]),
            "diff": _r(red["diff"]),
            "floor": _r(red["floor"]),  # the same difference between halves of the reals
            "diff_over_floor": _r(_ratio(red["diff"], red["floor"])),
        }
        out["colours_excluded_fake"] = int(s.get("colours_excluded_fake", 0))
    return out


def _compute_figures(arch: str, cfg: Any, channels: int, kimg: float, train_s: float) -> dict[str, Any]:
    """Model size and the compute the budget bought: train GFLOP per image (4 G + 9 D forwards, as
    bench/train_throughput.py counts them) x images / s, beside the machine's fp32 matmul peak."""
    import torch

    from astrogan.config import from_dict
    from astrogan.models import ARCHS, count_parameters, flops_per_image

    try:
        spec = ARCHS[arch]
        mcfg = from_dict(spec.config_cls, {"image_size": cfg.image_size, "channels": channels, **cfg.model})
        G, D = spec.build_generator(mcfg), spec.build_discriminator(mcfg)
        g_flops = flops_per_image(G)
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            D.eval()(torch.zeros(2, channels, cfg.image_size, cfg.image_size))
        d_flops = counter.get_total_flops() // 2
    except Exception as exc:  # noqa: BLE001  (a figure beside the race; never the reason it fails)
        return {"flops_error": f"{type(exc).__name__}: {exc}"}
    train_gflop = (4 * g_flops + 9 * d_flops) / 1e9
    achieved = kimg * 1000 * train_gflop / max(train_s, 1e-9)
    return {
        "g_params_m": round(count_parameters(G) / 1e6, 3),
        "d_params_m": round(count_parameters(D) / 1e6, 3),
        "train_gflop_per_image": round(train_gflop, 4),
        "achieved_gflops": round(achieved, 2),
    }


def _summary(out: dict[str, Any]) -> str:
    """One line: architectures ranked by mean per-band morphology ratio (lower is closer; 1 = the floor)."""
    scored = [
        (v["morph_ratio_band_mean"], a, v)
        for a, v in out["archs"].items()
        if isinstance(v, dict) and v.get("morph_ratio_band_mean") is not None
    ]
    scored.sort(key=lambda t: t[0])
    parts = [
        f"{a} {m:.2f} (spectrum {_fmt(v.get('spectrum_ratio_band_mean'))}, colours {_fmt(v.get('colour_ratio_mean'))}, "
        f"{v['kimg']:g} kimg)"
        for m, a, v in scored
    ]
    base = out.get("baseline_perfect_generator", {})
    skipped = [a for a, v in out["archs"].items() if "skipped" in v]
    return (
        "mean per-band morphology W1/floor, best first: "
        + (" < ".join(parts) or "none measured")
        + f"; perfect generator {_fmt(base.get('morph_ratio_band_mean'))}"
        + (f"; skipped {', '.join(skipped)}" if skipped else "")
    )


def _to_data(batch: np.ndarray) -> np.ndarray:
    """Model output (n, C, H, W) in [-1, 1] -> float32 (n, H, W, C) in [0, 1], as the dataset stores (eval's way)."""
    from astrogan.imaging import model_to_unit

    return np.clip(model_to_unit(batch.astype(np.float32)), 0.0, 1.0).transpose(0, 2, 3, 1)


def _to_model(images: np.ndarray) -> np.ndarray:
    """Dataset (n, H, W, C) in [0, 1] -> model values (n, C, H, W) in [-1, 1]."""
    return (np.asarray(images, dtype=np.float32) * 2.0 - 1.0).transpose(0, 3, 1, 2)


def _save_grid(path: Path, model_images: np.ndarray, spec: Any, size: int) -> None:
    """A Lupton composite grid of the spec's RGB bands (how snapshots of a science run look)."""
    from PIL import Image

    from astrogan.imaging import make_grid
    from astrogan.science import display_uint8

    sheet = make_grid(display_uint8(model_images, spec), scale=2 if size <= 32 else 1)
    Image.fromarray(sheet).save(path)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
        return None
    return a / b


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else round(float(v), nd)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages (None off Linux)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def _matmul_peak_gflops() -> float:
    """This machine's fp32 matmul rate on the torch threads set (the physical limit beside achieved_gflops)."""
    import torch

    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    reps = 5
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


if __name__ == "__main__":
    main()
