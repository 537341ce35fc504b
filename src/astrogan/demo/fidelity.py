"""The demo's fidelity figures: morphology over its real floor for all images and for the Sérsic part alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_PART_FAKES = 16  # fewer fakes called Sérsic than this: no morphology figure for the part


@dataclass(frozen=True)
class PartSplit:
    """Which fakes look like one part of the reals: a classifier fitted on the reals' two parts."""

    fake_in_part: np.ndarray  # bool (M,)
    real_fraction: float  # of the reals in the part
    held_out_accuracy: float  # the classifier's, on the reals (5-fold)


def centre_features(images: np.ndarray) -> np.ndarray:
    """Whether the light sits in one centred source `(N, 3)`: the shares of the above-sky light within H/8 and H/4
    of the centre, and its centroid's distance from the centre over H.

    Luminance `(N, H, W, C)` minus its frame median (the sky), negatives dropped. A Sérsic stamp keeps its light in
    the middle; a field crop, even a dark one with a few faint sources, spreads it over the frame.
    """
    from astrogan.metrics.morphology.measure import luminance

    lum = luminance(images)  # float64 (N, H, W)
    n, h, w = lum.shape
    light = np.clip(lum - np.median(lum.reshape(n, -1), axis=1)[:, None, None], 0.0, None)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    dy, dx = yy - (h - 1) / 2, xx - (w - 1) / 2
    radius = np.hypot(dy, dx)
    total = light.sum(axis=(1, 2)) + 1e-12
    inner = (light * (radius <= h / 8)).sum(axis=(1, 2)) / total
    middle = (light * (radius <= h / 4)).sum(axis=(1, 2)) / total
    offset = np.hypot((light * dy).sum(axis=(1, 2)), (light * dx).sum(axis=(1, 2))) / total / h
    return np.stack([inner, middle, offset], axis=1)


def part_features(images: np.ndarray) -> np.ndarray:
    """Weight-free features `(N, 3C + 3)` that tell the demo's parts apart: frame mean/std and spectrum slope per
    band, and where the light sits (`centre_features`).

    Sérsic stamps are one centred galaxy on a sky of known noise; Hubble crops are busy fields. Without the centre
    features 4.3% of the demo's reals were called the wrong part (held-out; 0.1% with them), and dark generated
    fields with a few off-centre blobs were called Sérsic galaxies.
    """
    from astrogan.metrics.composition import frame_stats, spectrum_slopes

    return np.hstack([frame_stats(images), spectrum_slopes(images), centre_features(images)])


def split_fakes(real: np.ndarray, in_part: np.ndarray, fakes: np.ndarray, *, seed: int = 0) -> PartSplit:
    """Classify fakes `(M, H, W, C)` into the part `in_part` (bool `(N,)` over reals `(N, H, W, C)`) or not."""
    from astrogan.metrics.composition import SoftmaxClassifier, cross_val_predict

    fr, ff = part_features(real), part_features(fakes)
    mu, sd = fr.mean(axis=0), fr.std(axis=0) + 1e-9
    xr, xf = (fr - mu) / sd, (ff - mu) / sd
    y = np.asarray(in_part, bool).astype(np.int64)
    acc = float(np.mean(cross_val_predict(xr, y, 2, rng_seed=seed) == y))
    clf = SoftmaxClassifier(2).fit(xr, y)
    return PartSplit(clf.predict(xf) == 1, float(y.mean()), acc)


NUM_FURTHEST = 3  # properties the page names as furthest from the reals


def morphology_ratio(
    real: np.ndarray, fakes: np.ndarray, out_dir: Path, *, seed: int
) -> tuple[float | None, list[tuple[str, float]]]:
    """Morphology W1 of fakes to reals over the real-vs-real floor (mean of the properties; None if unmeasured),
    and the `NUM_FURTHEST` properties furthest from the reals as (name, ratio), largest first.

    Writes metrics.json, plots and report.html to `out_dir`."""
    from astrogan.metrics.compute import evaluate

    doc = evaluate(real, fakes, out_dir, names=["morphology"], rng_seed=seed, overwrite=True)
    rows = [r for r in doc.get("summary", []) if str(r.get("metric", "")).startswith("morphology")]
    ratio = rows[0].get("ratio") if rows else None
    props = (doc.get("morphology") or {}).get("properties", {})
    per = [(k, float(v["ratio"])) for k, v in props.items() if v.get("ratio") is not None]
    furthest = sorted(per, key=lambda kv: -kv[1])[:NUM_FURTHEST]
    return (float(ratio) if ratio is not None else None), furthest


def _furthest_text(furthest: list[tuple[str, float]]) -> str:
    """The page's aside naming the properties furthest from the reals, e.g. " (furthest: asymmetry 31.0x, ...)";
    empty when none was measured."""
    if not furthest:
        return ""
    return " (furthest: " + ", ".join(f"{name.replace('_', ' ')} {r:.1f}x" for name, r in furthest) + ")"


def fidelity_lines(
    real: np.ndarray, in_part: np.ndarray, fakes: np.ndarray, out_dir: Path, *, part: str, seed: int
) -> list[tuple[str, str]]:
    """The page's fidelity facts: all images, then the part `part` alone (reals in it vs fakes classified into it).

    real `(N, H, W, C)` with `in_part` bool `(N,)`, fakes `(M, H, W, C)`; reports go under `out_dir`."""
    ratio, furthest = morphology_ratio(real, fakes, out_dir, seed=seed)
    lines = [
        (
            "fidelity",
            "morphology could not be measured (see fidelity/report.html)"
            if ratio is None
            else f"morphology distance {ratio:.1f}x the real-vs-real floor over {len(fakes)} fakes (1 = as alike "
            f"as two halves of the real set){_furthest_text(furthest)}; details in fidelity/report.html",
        )
    ]
    split = split_fakes(real, in_part, fakes, seed=seed)
    num = int(split.fake_in_part.sum())
    share = (
        f"{num} of {len(fakes)} fakes ({num / max(len(fakes), 1):.0%}) look like {part} galaxies, against "
        f"{split.real_fraction:.0%} of the reals (a classifier fitted on the reals' two parts, held-out accuracy "
        f"{split.held_out_accuracy:.0%})"
    )
    if num < MIN_PART_FAKES:
        lines.append((f"fidelity ({part} part)", f"{share}: too few to measure"))
        return lines
    key = part.lower().replace("é", "e")
    part_ratio, part_furthest = morphology_ratio(
        real[np.asarray(in_part, bool)], fakes[split.fake_in_part], out_dir / key, seed=seed
    )
    measured = (
        "could not be measured"
        if part_ratio is None
        else f"{part_ratio:.1f}x the real floor{_furthest_text(part_furthest)}"
    )
    lines.append(
        (
            f"fidelity ({part} part)",
            f"morphology distance {measured}, {share}; details in fidelity/{key}/report.html",
        )
    )
    return lines
