"""`eval --metrics composition` calibration (unlabelled path): false alarms on real halves, power on a colour slice.

Each split halves the images at random: one half is "real", the other the "generated" set.

- null: the generated set is the other half as it is; p < 0.05 (and any under/over statement) should
  happen in about 5% of splits;
- blue: the generated half loses half of its members of the bluest quarter (of all images, by the
  colour (B - R) / (B + R) of the brightest tenth of the pixels above the sky, `--colour bright`, not what
  the features measure; or of the central half box's light, `--colour central`, close to the features'
  flux colours); p < 0.05 should happen in most splits, and a statement should name an under-produced
  category at least half of whose real members are in the bluest quarter ("blue_rate_named").
  The p is the metric's overall one (Holm over the clusters and the feature families' slices).

Features are measured once for all images (morphology, the weight-free vector) and sliced per split, as
`eval` would measure each side. Sources: `--data DIR` (a built dataset, e.g. the 64 px Galaxy Zoo set) or
`--synthetic` (the four-kinds sky of tests/metrics/test_metrics_composition.py). Prints one JSON line.

    astrogan dataset build /work/shared/data/galaxyzoo-examples --out /tmp/gz64 --image-size 64 --dedup
    python bench/composition_calibration.py --data /tmp/gz64 --splits 200 [--colour central]
    python bench/composition_calibration.py --synthetic --splits 200
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_images(args: argparse.Namespace) -> np.ndarray:
    """uint8 `(N, H, W, C)`: the dataset's images at its size, or the tests' synthetic sky."""
    if args.synthetic:
        path = ROOT / "tests" / "metrics" / "test_metrics_composition.py"
        spec = importlib.util.spec_from_file_location("_composition_tests", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.sky(mod.mixed_kinds(args.num_synthetic, seed=1), seed=2)
    from astrogan.data.dataset import open_dataset

    ds = open_dataset(args.data)
    return ds.images(args.image_size or max(ds.image_sizes))


def measure(images: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(weight-free composition features `(N, D)`, their names), morphology measured once."""
    from astrogan.metrics import composition as C
    from astrogan.metrics.morphology import COMPARED_PROPERTIES, measure_morphology

    morph = measure_morphology(images)
    cols = {
        k: np.where(morph.good(), morph.values[k], np.nan) for k in COMPARED_PROPERTIES if k != "orientation"
    }
    return C.weight_free_composition_features(images, cols)


def blueness(images: np.ndarray) -> np.ndarray:
    """(B - R) / (B + R) of the light above the sky (each band's border median) in the brightest tenth of
    the pixels (by R + G + B) `(N,)`: an object colour, measured otherwise than the features' colours."""
    x = images.astype(np.float64)
    n = len(x)
    border = np.concatenate([x[:, :4].reshape(n, -1, 3), x[:, -4:].reshape(n, -1, 3)], axis=1)
    y = (x - np.median(border, axis=1)[:, None, None, :]).reshape(n, -1, 3)
    total = y.sum(axis=2)
    bright = total >= np.quantile(total, 0.9, axis=1, keepdims=True)
    flux = (np.clip(y, 0, None) * bright[..., None]).sum(axis=1)  # (N, 3)
    return (flux[:, 2] - flux[:, 0]) / np.maximum(flux[:, 2] + flux[:, 0], 1e-9)


def central_blueness(images: np.ndarray) -> np.ndarray:
    """(B - R) / (B + R) of the light above the sky in the central half box `(N,)` (what the features'
    flux-ratio colours measure, band by adjacent band)."""
    x = images.astype(np.float64)
    n, h, w, _ = x.shape
    border = np.concatenate([x[:, :4].reshape(n, -1, 3), x[:, -4:].reshape(n, -1, 3)], axis=1)
    y = x[:, h // 4 : h - h // 4, w // 4 : w - w // 4] - np.median(border, axis=1)[:, None, None, :]
    flux = np.clip(y, 0, None).sum(axis=(1, 2))
    return (flux[:, 2] - flux[:, 0]) / np.maximum(flux[:, 2] + flux[:, 0], 1e-9)


def run_split(
    images: np.ndarray, feats: np.ndarray, names: list[str], a: np.ndarray, b: np.ndarray, seed: int
):
    """The composition result of real = images[a] vs generated = images[b] (features precomputed)."""
    from astrogan.metrics import composition as C
    from astrogan.metrics.base import Context, StatsCache

    ctx = Context(real=images[a], fake=images[b], cache=StatsCache(None, None), rng_seed=seed)
    ctx._shared["composition_features"] = C.weight_free_space(feats[a], feats[b], names)
    return C.CompositionMetric().compute(ctx)


def blue_share_of_under(d: Any, blue_real: np.ndarray) -> float:
    """Largest share of bluest-quarter reals among the under-produced categories, main clustering and slices
    (0 when none is flagged)."""
    groups = [(d.categories, d.real_assign)] + [
        (s.categories, s.real_assign) for s in getattr(d, "slices", [])
    ]
    best = 0.0
    for cats, assign in groups:
        for c in cats:
            members = np.asarray(assign) == c.id
            if c.verdict == "under" and members.any():
                best = max(best, float(blue_real[members].mean()))
    return best


def _p(d: Any) -> float:
    """The whole comparison's p: Holm over the clusterings where the result has them."""
    p = getattr(d, "p_overall", float("nan"))
    return d.test.p if p != p else p


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, help="a built dataset directory")
    p.add_argument("--image-size", type=int, default=0)
    p.add_argument("--synthetic", action="store_true", help="the tests' four-kinds sky instead of --data")
    p.add_argument("--num-synthetic", type=int, default=800)
    p.add_argument("--splits", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--colour",
        choices=("bright", "central"),
        default="bright",
        help="how 'bluest' is measured: the brightest tenth of the pixels (not what the features measure) or "
        "the central half box's light above the sky (as the features' flux colours are)",
    )
    args = p.parse_args()
    if not args.synthetic and args.data is None:
        p.error("give --data DIR or --synthetic")
    t0 = time.perf_counter()
    images = load_images(args)
    feats, names = measure(images)
    blue_score = blueness(images) if args.colour == "bright" else central_blueness(images)
    blue = blue_score >= np.quantile(blue_score, 0.75)
    t_feat = time.perf_counter() - t0
    null_p, null_any, blue_p, blue_named, blue_stmt = [], [], [], [], []
    for s in range(args.splits):
        rng = np.random.default_rng(args.seed * 100_003 + s)
        perm = rng.permutation(len(images))
        a, b = np.sort(perm[: len(images) // 2]), np.sort(perm[len(images) // 2 :])
        d = run_split(images, feats, names, a, b, s)
        null_p.append(_p(d))
        null_any.append(bool(d.under or d.over or getattr(d, "slices_flagged", [])))
        bb = b[blue[b]]
        drop = rng.choice(bb, size=bb.size // 2, replace=False)
        d = run_split(images, feats, names, a, np.setdiff1d(b, drop), s)
        blue_p.append(_p(d))
        share = blue_share_of_under(d, blue[a])
        blue_named.append(share >= 0.5)  # a flagged category at least half blue (the quarter is 25% overall)
        if s == 0:
            blue_stmt = d.statements
    null_p_a, blue_p_a = np.array(null_p), np.array(blue_p)
    out = {
        "bench": "composition_calibration",
        "source": "synthetic" if args.synthetic else str(args.data),
        "colour": args.colour,
        "num_images": len(images),
        "feature_dims": feats.shape[1],
        "splits": args.splits,
        "null_rate_p05": float(np.mean(null_p_a < 0.05)),
        "null_rate_any_statement": float(np.mean(null_any)),
        "blue_rate_p05": float(np.mean(blue_p_a < 0.05)),
        "blue_median_p": float(np.median(blue_p_a)),
        "blue_p_quartiles": [float(q) for q in np.quantile(blue_p_a, [0.25, 0.75])],
        "blue_rate_named": float(np.mean(blue_named)),
        "blue_statements_split0": blue_stmt,
        "features_s": round(t_feat, 1),
        "total_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
