"""ADA's geometric resampling, 2x between sym6 filters (the default) against 1x bilinear, in one run: the time of
one augmentation call (forward and backward, as D's loss runs it) and what each keeps of a sharp source.

Sharpness: a Gaussian source of sigma 1 px (the PSF size of the Sérsic stamps) moved by half a pixel, and one
3 px off centre turned by 30 degrees; the peak kept (1 = no blur) and the largest error against the exact
moved source. Prints one JSON line.

    python bench/ada_resample.py [--threads 2] [--sizes 64,256] [--batch 16] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch


def _gaussian(size: int, cx: float, cy: float, sigma: float = 1.0) -> torch.Tensor:
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size) - c, torch.arange(size) - c, indexing="ij")
    return torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))[None, None]


def sharpness(resample: str) -> dict[str, float]:
    """Peak kept and max error for a half-pixel shift and a 30-degree turn of a sigma = 1 px source."""
    from astrogan.data.ada import apply_geometric

    half = torch.eye(3)
    half[:2, 2] = 0.5
    a = math.radians(30)
    turn = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    out = {}
    for name, m, x, ref in (
        ("half_pixel", half, _gaussian(32, 0, 0), _gaussian(32, 0.5, 0.5)),
        ("turn_30deg", turn, _gaussian(32, 3, 0), _gaussian(32, 3 * math.cos(a), 3 * math.sin(a))),
    ):
        y = apply_geometric(x, m[None], resample=resample)
        out[f"{name}_peak"] = round(float(y.max()), 4)
        out[f"{name}_max_error"] = round(float((y - ref).abs().max()), 4)
    return out


def time_call(resample: str, size: int, batch: int, p: float, repeats: int) -> float:
    """Median ms of ada_augment forward + backward on (batch, 3, size, size) at strength p (all transforms)."""
    from astrogan.data.ada import ada_augment

    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x.requires_grad_(True)
    times = []
    for i in range(repeats + 2):
        torch.manual_seed(i)  # the same draws for both resamplers
        t0 = time.perf_counter()
        ada_augment(x, p, resample=resample).square().mean().backward()
        times.append(time.perf_counter() - t0)
    times = sorted(times[2:])
    return 1000 * times[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result: dict = {"threads": args.threads, "batch": args.batch, "torch": torch.__version__}
    for resample in ("sym6x2", "bilinear"):
        row: dict = {"sharpness": sharpness(resample)}
        for size in (int(s) for s in args.sizes.split(",")):
            for p in (0.2, 1.0):
                row[f"ms_{size}px_p{p:g}"] = round(time_call(resample, size, args.batch, p, args.repeats), 2)
        result[resample] = row
    for key in result["sym6x2"]:
        if key.startswith("ms_"):
            result.setdefault("time_ratio_sym6x2_over_bilinear", {})[key[3:]] = round(
                result["sym6x2"][key] / result["bilinear"][key], 2
            )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
