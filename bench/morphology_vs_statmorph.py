"""Agreement and speed of the fast morphology engine against statmorph, on Sérsic stamps and real galaxies.

Prints one JSON object: per-property Spearman rank correlations and median absolute differences
(fast - statmorph) on galaxies both engines measured (flag < 2), the recovery of the true Sérsic
index and half-light radius on the stamps, per-galaxy CPU times of both engines (the fast one
measuring the whole batch, statmorph one galaxy per call in worker processes), and the speed ratio.
Both engines get the same sky-subtracted image and the same segmentation.

    python bench/morphology_vs_statmorph.py --num-sersic 300 --num-real 300 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from astrogan.metrics.morphology import (  # noqa: E402
    PROPERTIES,
    background_and_segmentation,
    luminance,
    measure_batch,
    sersic_profile,
)
from astrogan.metrics.morphology.statmorph import measure_one_statmorph  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxyzoo-examples"
COMPARED = tuple(p for p in PROPERTIES if not p.startswith(("xc_", "yc_")))


def sersic_stamps(
    num: int, *, size: int, seed: int, psf_sigma_px: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sérsic galaxies (3x oversampled, optional Gaussian PSF, Gaussian noise): images, true n, true r_eff."""
    rng = np.random.default_rng(seed)
    s = 3
    sub = (np.arange(size * s) + 0.5) / s - 0.5
    yy, xx = np.meshgrid(sub, sub, indexing="ij")
    imgs, ns, res = [], [], []
    for _ in range(num):
        n = rng.uniform(0.5, 5.0)
        r_eff = float(np.exp(rng.uniform(np.log(2.5), np.log(10.0))))
        q, th = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
        cx, cy = (size - 1) / 2 + rng.uniform(-1.5, 1.5, 2)
        dx, dy = xx - cx, yy - cy
        xp, yp = dx * np.cos(th) + dy * np.sin(th), -dx * np.sin(th) + dy * np.cos(th)
        img = sersic_profile(np.hypot(xp, yp / q), n=n, r_eff=r_eff)
        if psf_sigma_px > 0:
            img = ndi.gaussian_filter(img, psf_sigma_px * s)
        img = img.reshape(size, s, size, s).mean(axis=(1, 3))
        img = img / img.max() * rng.uniform(20, 200) + rng.normal(0, 1.0, img.shape)
        imgs.append(img)
        ns.append(n)
        res.append(r_eff)
    return np.stack(imgs), np.array(ns), np.array(res)


def real_galaxies(num: int, *, size: int) -> np.ndarray:
    """Galaxy Zoo cutouts (RGB JPEG), resized to `size` px, as luminance float64."""
    from PIL import Image

    files = sorted(DATA.glob("*.jpg"))
    if len(files) < num:
        raise SystemExit(f"need {num} galaxies in {DATA}, found {len(files)}")
    idx = np.random.default_rng(0).choice(len(files), num, replace=False)
    out = []
    for i in sorted(idx):
        with Image.open(files[i]) as im:
            out.append(np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)))
    return luminance(np.stack(out))


def _statmorph_job(args):
    img, seg, sigma = args
    t = time.process_time()
    rec, flag = measure_one_statmorph(img, seg, sigma)
    return rec, flag, time.process_time() - t


def run_set(lum: np.ndarray, *, workers: int) -> dict:
    img, _, sigma, seg = background_and_segmentation(lum)
    n = len(img)
    # The fast engine measures the whole batch (its Sérsic fits run for all galaxies at once): best
    # of 3 runs, so that a moment of contention on the machine does not count.
    fast_times = []
    for _ in range(3):
        t0 = time.process_time()
        fast, fast_flag = measure_batch(img, seg)
        fast_times.append(time.process_time() - t0)
    fast_cpu = min(fast_times) / n
    fast_cpu_median = float(np.median(fast_times)) / n
    jobs = [(img[i], seg[i], float(sigma[i])) for i in range(n)]
    t0 = time.perf_counter()
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            sm = list(pool.map(_statmorph_job, jobs, chunksize=4))
    else:
        sm = [_statmorph_job(j) for j in jobs]
    sm_wall = time.perf_counter() - t0
    sm_cpu = float(np.mean([s[2] for s in sm]))
    ok = (np.array(fast_flag) < 2) & (np.array([s[1] for s in sm]) < 2)
    props = {}
    for k in COMPARED:
        a = np.array([r[k] for r in fast])
        b = np.array([s[0][k] for s in sm])
        m = ok & np.isfinite(a) & np.isfinite(b)
        if k == "orientation":  # an angle modulo pi: compare the wrapped difference
            d = np.angle(np.exp(2j * (a[m] - b[m]))) / 2
            rho = float(spearmanr(np.cos(2 * a[m]), np.cos(2 * b[m]))[0]) if m.sum() > 2 else float("nan")
        else:
            d = a[m] - b[m]
            rho = float(spearmanr(a[m], b[m])[0]) if m.sum() > 2 else float("nan")
        props[k] = {
            "spearman": round(rho, 4),
            "median_abs_diff": float(np.median(np.abs(d))) if d.size else None,
            "median_statmorph": float(np.median(b[m])) if m.any() else None,
            "num": int(m.sum()),
        }
    return {
        "num": n,
        "num_both_good": int(ok.sum()),
        "num_fast_bad": int((np.array(fast_flag) >= 2).sum()),
        "num_statmorph_bad": int(sum(s[1] >= 2 for s in sm)),
        "properties": props,
        "fast_cpu_s_per_galaxy": fast_cpu,
        "fast_cpu_s_per_galaxy_median_of_3": fast_cpu_median,
        "statmorph_cpu_s_per_galaxy": sm_cpu,
        "statmorph_wall_s_total": sm_wall,
        "speed_ratio_cpu": sm_cpu / fast_cpu,
        "speed_ratio_cpu_median": sm_cpu / fast_cpu_median,
        "_fast": fast,
        "_sm": [s[0] for s in sm],
        "_ok": ok,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-sersic", type=int, default=300)
    ap.add_argument("--num-real", type=int, default=300)
    ap.add_argument("--sersic-size", type=int, default=64)
    ap.add_argument("--real-size", type=int, default=96)
    ap.add_argument("--psf-sigma", type=float, default=0.0, help="Gaussian PSF of the stamps, px (0: none)")
    ap.add_argument("--workers", type=int, default=2, help="processes for statmorph")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dump", type=Path, default=None, help="also save per-galaxy values (.npz) here")
    args = ap.parse_args()
    dump: dict[str, np.ndarray] = {}

    out: dict = {
        "bench": "morphology_vs_statmorph",
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    if args.num_sersic:
        lum, n_true, r_true = sersic_stamps(
            args.num_sersic, size=args.sersic_size, seed=args.seed, psf_sigma_px=args.psf_sigma
        )
        res = run_set(lum, workers=args.workers)
        fast, sm, ok = res.pop("_fast"), res.pop("_sm"), res.pop("_ok")
        truth = {}
        for eng, recs in (("fast", fast), ("statmorph", sm)):
            n_m = np.array([r["sersic_n"] for r in recs])
            r_m = np.array([r["sersic_rhalf"] for r in recs])
            m = ok & np.isfinite(n_m) & np.isfinite(r_m)
            truth[eng] = {
                "spearman_n_vs_true": round(float(spearmanr(n_m[m], n_true[m])[0]), 4),
                "spearman_rhalf_vs_true": round(float(spearmanr(r_m[m], r_true[m])[0]), 4),
                "median_rel_err_rhalf": float(np.median(np.abs(r_m[m] / r_true[m] - 1))),
                "median_abs_err_n": float(np.median(np.abs(n_m[m] - n_true[m]))),
            }
        res["truth_recovery"] = truth
        for k in PROPERTIES:
            dump[f"sersic_fast_{k}"] = np.array([r[k] for r in fast])
            dump[f"sersic_statmorph_{k}"] = np.array([r[k] for r in sm])
        dump["sersic_ok"], dump["sersic_true_n"], dump["sersic_true_rhalf"] = ok, n_true, r_true
        out["sersic"] = res
    if args.num_real:
        res = run_set(real_galaxies(args.num_real, size=args.real_size), workers=args.workers)
        fast, sm, ok = res.pop("_fast"), res.pop("_sm"), res.pop("_ok")
        for k in PROPERTIES:
            dump[f"real_fast_{k}"] = np.array([r[k] for r in fast])
            dump[f"real_statmorph_{k}"] = np.array([r[k] for r in sm])
        dump["real_ok"] = ok
        out["real_galaxyzoo"] = res
    if args.dump is not None:
        np.savez(args.dump, **dump)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
