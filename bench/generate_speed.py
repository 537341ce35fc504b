"""Generation speed: images/s of one generator in PyTorch eager, TorchScript and ONNX Runtime (JSON line).

    python bench/generate_speed.py [--arch fastgan] [--sizes 256,512] [--ngf 64] [--batch-size 8]

Same weights, same latents, same run: ratios between backends are the figures to compare. The physical
limit is given beside them: the model's FLOPs per image against this machine's measured fp32 matmul peak.
The original "this X does not exist" site needed ~1 s per image on 6 cores (~0.17 images/s per core).
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

import numpy as np
import torch

ORIGINAL_SITE_IMAGES_PER_S_PER_CORE = 1.0 / 6.0  # ~1 s per image on a 6-core CPU


def _matmul_peak_gflops(threads: int) -> float:
    torch.set_num_threads(threads)
    a = torch.randn(1024, 1024)
    b = torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        a @ b
        n += 1
    return 2 * 1024**3 * n / (time.perf_counter() - t0) / 1e9


def _rate(fn, z: np.ndarray, *, min_seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        fn(z)
        n += len(z)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return n / elapsed


def bench_size(
    arch: str, size: int, *, ngf: int, batch_size: int, threads: int, min_seconds: float, rounds: int
) -> dict:
    import onnxruntime as ort

    from astrogan.export.onnx import export_onnx
    from astrogan.export.prepare import prepare_generator
    from astrogan.models import ARCHS, flops_per_image
    from astrogan.utils.seeds import latents_for_seeds

    spec = ARCHS[arch]
    names = set(spec.config_cls.__dataclass_fields__)
    kw = {"image_size": size, **({"ngf": ngf} if "ngf" in names else {})}
    cfg = spec.config_cls(**kw)
    torch.manual_seed(0)
    G = spec.build_generator(cfg).eval().requires_grad_(False)
    wrapper = prepare_generator(G)
    z = latents_for_seeds(range(batch_size), wrapper.z_dim)
    out: dict = {"image_size": size, "arch": arch, "ngf": kw.get("ngf"), "batch_size": batch_size}
    try:
        out["gflops_per_image"] = round(float(flops_per_image(G)) / 1e9, 3)
    except Exception:  # the counter is an estimate helper; a missing figure must not stop the bench
        out["gflops_per_image"] = None
    torch.set_num_threads(threads)

    @torch.no_grad()
    def eager(zz):
        return wrapper(torch.from_numpy(zz)).numpy()

    with tempfile.TemporaryDirectory() as tmp:
        with torch.no_grad():
            traced = torch.jit.freeze(torch.jit.trace(wrapper, (torch.from_numpy(z),), check_trace=False))

        @torch.no_grad()
        def script(zz):
            return traced(torch.from_numpy(zz)).numpy()

        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(wrapper, onnx_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])

        def onnxrt(zz):
            return sess.run(["images"], {"z": zz})[0]

        ref = eager(z)
        out["max_abs_diff_vs_eager"] = {
            "torchscript": float(np.abs(script(z) - ref).max()),
            "onnxruntime": float(np.abs(onnxrt(z) - ref).max()),
        }
        backends = (("pytorch_eager", eager), ("torchscript", script), ("onnxruntime", onnxrt))
        for _, fn in backends:  # warm-up (allocations, ORT graph setup, TorchScript profiling runs)
            fn(z)
            fn(z)
        # Interleaved rounds: on a shared machine the load drifts, so each backend sees the same drift;
        # the median round is reported.
        samples: dict[str, list[float]] = {name: [] for name, _ in backends}
        for _ in range(rounds):
            for name, fn in backends:
                samples[name].append(_rate(fn, z, min_seconds=min_seconds / rounds))
        rates = {name: float(np.median(v)) for name, v in samples.items()}
        out["rounds"] = rounds
    out["images_per_s"] = {k: round(v, 2) for k, v in rates.items()}
    out["ms_per_image"] = {k: round(1000 / v, 1) for k, v in rates.items()}
    out["ratio_vs_eager"] = {k: round(v / rates["pytorch_eager"], 2) for k, v in rates.items()}
    out["images_per_s_per_core"] = {k: round(v / threads, 2) for k, v in rates.items()}
    out["speedup_per_core_vs_original_site"] = {
        k: round(v / threads / ORIGINAL_SITE_IMAGES_PER_S_PER_CORE, 1) for k, v in rates.items()
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="fastgan")
    ap.add_argument("--sizes", default="256,512", help="comma-separated image sizes in px")
    ap.add_argument("--ngf", type=int, default=64, help="generator width (64 is the FastGAN paper's)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--min-seconds", type=float, default=3.0, help="timing per backend, all rounds together")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median reported)")
    args = ap.parse_args(argv)
    peak = _matmul_peak_gflops(args.threads)
    results = [
        bench_size(
            args.arch,
            int(s),
            ngf=args.ngf,
            batch_size=args.batch_size,
            threads=args.threads,
            min_seconds=args.min_seconds,
            rounds=args.rounds,
        )
        for s in args.sizes.split(",")
    ]
    peak = max(peak, _matmul_peak_gflops(args.threads))  # best of before/after: the machine is shared
    for r in results:
        if r.get("gflops_per_image"):
            r["flops_bound_images_per_s"] = round(peak / r["gflops_per_image"], 1)
    line = {
        "bench": "generate_speed",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "onnxruntime": __import__("onnxruntime").__version__,
            "matmul_peak_gflops": round(peak, 1),
        },
        "baseline": {"original_site_images_per_s_per_core": round(ORIGINAL_SITE_IMAGES_PER_S_PER_CORE, 3)},
        "results": results,
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
