"""What StyleGAN2's Sérsic-prior lock (`--model prior_lock`) costs, in one run: one template render against the
template with its lock basis, and a G forward and backward of the `small` preset's generator with the lock off
and on, on Sérsic stamps as `synth_sersic` draws them (Moffat PSF, cut at 4 r_e). Prints one JSON line.

    python bench/prior_lock_cost.py [--threads 2] [--size 64] [--batch 16] [--repeats 10]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from collections.abc import Callable

import torch


def _ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN's first-call set-up)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from astrogan.conditions import CondSpec
    from astrogan.models import ARCHS

    spec = CondSpec(
        names=("sersic_n", "half_light_radius_px", "q"),
        units=("", "px", ""),
        low=(1.0, 2.5, 0.4),
        high=(4.0, 7.2, 1.0),
        mean=(2.2, 4.0, 0.7),
        std=(0.86, 1.06, 0.17),
    )
    torch.manual_seed(0)
    c = torch.stack(
        [torch.empty(args.batch).uniform_(lo, hi) for lo, hi in zip(spec.low, spec.high, strict=True)], dim=1
    )
    out: dict[str, object] = {
        "bench": "prior_lock_cost",
        "machine": platform.platform(),
        "threads": args.threads,
    }
    out.update(size=args.size, batch=args.batch)
    a = ARCHS["stylegan2"]
    # the `small` preset's StyleGAN2 (bench/conditioning_sersic.py trains it)
    small = {"z_dim": 64, "w_dim": 64, "mapping_layers": 2, "channel_base": 2048, "channel_max": 64}
    for locked in (False, True):
        cfg = a.config_cls(
            image_size=args.size,
            channels=1,
            **small,
            cond=spec.to_dict(),
            cond_prior="sersic",
            prior_psf="moffat:fwhm_px=2,beta=3",
            prior_truncate=4.0,
            prior_residual=True,
            prior_lock=locked,
        )
        G = a.build_generator(cfg).train()
        z = torch.randn(args.batch, cfg.z_dim)
        params = G.prior_params(z, c)
        draw = G.synthesis.prior.render_locked if locked else G.synthesis.prior.render
        out["render_locked_ms" if locked else "render_ms"] = round(
            _ms(functools.partial(draw, params), args.repeats), 1
        )

        def step(G=G, z=z) -> None:  # noqa: ANN001
            G.zero_grad(set_to_none=True)
            G(z, c).square().mean().backward()

        out[f"g_forward_backward_ms_{'locked' if locked else 'free'}"] = round(_ms(step, args.repeats), 1)
    out["g_step_cost_ratio"] = round(
        out["g_forward_backward_ms_locked"] / out["g_forward_backward_ms_free"], 3
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
