"""Generation speed: astrogan's FastGAN (eager, TorchScript, ONNX Runtime, torch.compile) against lightweight-gan.

    python bench/generate_speed.py                 # 256 and 512 px, batch 1 and 8, all cores (minutes)
    python bench/generate_speed.py --quick         # 64 px, batch 1 and 2, short timings (< 1 min)

Prints one JSON line. The baseline is lightweight-gan 1.2.1 (`pip install lightweight-gan`), measured in the
same run: bench/lwgan_env.py installs it into a scratch virtual environment of its own (never a dependency of
astrogan) that shares this process's torch, and bench/lwgan_worker.py runs its default generator (the
command line's: latent 256, fmap_max 512, attention at 32 px, no antialias; the EMA copy that
`lightweight_gan --generate` samples from, through its own `generate_`) on the same threads. Its import
refuses to run without CUDA; the worker redirects its `.cuda()` calls to the CPU and changes nothing else.

Both generators are built at the same image size; astrogan's FastGAN at ngf=64 (the FastGAN paper's width)
has at least as many parameters as lightweight-gan's default generator (29.2 M against 24.0 M at 512 px), so
it is in the same quality class or above; both parameter and FLOP counts are in the JSON. Timing rounds are
interleaved over all backends (on a shared machine each sees the same drift; the median is reported), and
the physical limit is beside every figure: FLOPs per image (torch's formulas) against this machine's measured
fp32 matmul peak on the same threads.

torch.compile (inductor) is tried on the generator when a C++ compiler is present: its compile time is
reported apart, with whether its output is bit-identical to eager. The seed script's own path ("this X
does not exist": PyTorch eager, ~1 s per image on 6 cores) is a note, not the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lwgan_env import (  # noqa: E402
    FlopCount,
    LwganUnavailable,
    best_peak,
    has_cxx_compiler,
    loadavg,
    machine,
    matmul_peak,
    start_worker,
)

SEED_SCRIPT_NOTE = (
    "seed script (PyTorch eager, 'this X does not exist'): ~1 s per image on 6 cores (~0.17 img/s/core)"
)
QUICK = {"sizes": "64", "batch_sizes": "1,2", "min_seconds": 0.4, "rounds": 1}


def _rate(fn: Any, z: np.ndarray, trunc: np.ndarray, *, min_seconds: float, sync: Any) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        fn(z, trunc)
        sync()
        n += len(z)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return n / elapsed


def _host(images: Any) -> np.ndarray:
    """A backend's output as numpy (CUDA backends leave theirs on the device)."""
    return images.cpu().numpy() if torch.is_tensor(images) else images


def _astrogan_backends(
    wrapper: torch.nn.Module, *, device: str, threads: int, tmp: Path, compile_: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """name -> fn(z, trunc) -> images (numpy; a device tensor on CUDA), and what building them cost / found."""
    import onnxruntime as ort

    from astrogan.export.onnx import export_onnx
    from astrogan.export.prepare import dummy_inputs

    info: dict[str, Any] = {}
    backends: dict[str, Any] = {}
    dev = torch.device(device)

    # ONNX first, from the CPU copy (the exporter traces on the CPU), then everything else on the device.
    t0 = time.perf_counter()
    onnx_path = tmp / f"g{id(wrapper)}.onnx"
    export_onnx(wrapper.cpu(), onnx_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if dev.type == "cuda":
        providers = (
            ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in ort.get_available_providers() else []
        )
        if not providers:
            info["onnxruntime"] = "skipped: this onnxruntime has no CUDAExecutionProvider"
    sess = None
    if providers:
        sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
        info["onnx_build_s"] = round(time.perf_counter() - t0, 2)

    model = wrapper.to(dev)

    # On CUDA the timed call starts from latents already on the device and leaves the images there
    # (synchronised), as lightweight-gan's generate_ is timed: a copy to the host in astrogan's timing only
    # made 512 px at batch 32 look 3x slower than lightweight-gan on an H200 (0.34x; 1.56x at batch 8).
    # On the CPU both copies are free (from_numpy shares memory) and the output is returned as numpy.
    staged: dict[str, Any] = {}

    def tensors(z: np.ndarray, trunc: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if staged.get("z") is not z or staged.get("trunc") is not trunc:  # a new batch: stage it once
            staged.update(z=z, trunc=trunc, t=(torch.from_numpy(z).to(dev), torch.from_numpy(trunc).to(dev)))
        return staged["t"]

    def result(images: torch.Tensor) -> Any:
        return images if dev.type == "cuda" else images.cpu().numpy()

    if dev.type == "cuda":
        info["cuda_timing"] = "latents staged on the device once per batch; images left there, synchronised"

    @torch.no_grad()
    def eager(z: np.ndarray, trunc: np.ndarray) -> Any:
        return result(model(*tensors(z, trunc)))

    backends["pytorch_eager"] = eager

    t0 = time.perf_counter()
    with torch.no_grad():
        example = tuple(t.to(dev) for t in dummy_inputs(wrapper, batch=2))
        traced = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
    info["torchscript_build_s"] = round(time.perf_counter() - t0, 2)

    @torch.no_grad()
    def script(z: np.ndarray, trunc: np.ndarray) -> Any:
        return result(traced(*tensors(z, trunc)))

    backends["torchscript"] = script

    if sess is not None:

        def onnxrt(z: np.ndarray, trunc: np.ndarray) -> np.ndarray:
            return sess.run(["images"], {"z": z, "trunc": trunc})[0]

        backends["onnxruntime"] = onnxrt

    if compile_:
        compiled = torch.compile(model)

        @torch.no_grad()
        def comp(z: np.ndarray, trunc: np.ndarray) -> Any:
            return result(compiled(*tensors(z, trunc)))

        backends["torch_compile"] = comp
    return backends, info


def bench_size(
    size: int,
    *,
    arch: str,
    ngf: int,
    batch_sizes: list[int],
    threads: int,
    device: str,
    min_seconds: float,
    rounds: int,
    worker: Any,
    compile_: bool,
    tmp: Path,
) -> dict[str, Any]:
    from astrogan.export.prepare import prepare_generator
    from astrogan.models import ARCHS
    from astrogan.utils.seeds import latents_for_seeds

    spec = ARCHS[arch]
    names = set(spec.config_cls.__dataclass_fields__)
    kw = {"image_size": size, **({"ngf": ngf} if "ngf" in names else {})}
    torch.manual_seed(0)
    G = spec.build_generator(spec.config_cls(**kw)).eval().requires_grad_(False)
    wrapper = prepare_generator(G)
    with torch.no_grad(), FlopCount() as fc:
        wrapper(torch.zeros(2, wrapper.z_dim), torch.ones(2))
    out: dict[str, Any] = {
        "image_size": size,
        "astrogan": {
            "arch": arch,
            **{k: v for k, v in kw.items() if k != "image_size"},
            "g_params": sum(p.numel() for p in G.parameters()),
            "gflops_per_image": round(fc.total / 2 / 1e9, 3),
        },
    }
    lw: dict[str, Any] | None = None
    if worker is not None:
        try:
            lw = worker.call("gen_build", image_size=size)
            out["lightweight_gan"] = {
                k: lw[k] for k in ("g_params", "gflops_per_image", "latent_dim", "config")
            }
            out["params_ratio_astrogan_over_lightweight_gan"] = round(
                out["astrogan"]["g_params"] / lw["g_params"], 3
            )
            out["flops_ratio_astrogan_over_lightweight_gan"] = round(
                out["astrogan"]["gflops_per_image"] / lw["gflops_per_image"], 3
            )
        except LwganUnavailable as exc:
            out["lightweight_gan"] = {"error": str(exc)}
            lw = None

    backends, info = _astrogan_backends(wrapper, device=device, threads=threads, tmp=tmp, compile_=compile_)
    out["build"] = info

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    per_batch = []
    for batch in batch_sizes:
        z = latents_for_seeds(range(batch), wrapper.z_dim)
        trunc = np.ones(batch, dtype=np.float32)
        row: dict[str, Any] = {"batch_size": batch, "loadavg_before": loadavg()}
        ref = _host(backends["pytorch_eager"](z, trunc))
        diffs, extra = {}, {}
        for name, fn in list(backends.items()):
            t0 = time.perf_counter()
            # Warm-up: allocations, ORT graph setup, TorchScript profiling, compiling.
            got = _host(fn(z, trunc))
            if name == "torch_compile":
                extra["torch_compile_first_call_s"] = round(time.perf_counter() - t0, 2)
            fn(z, trunc)
            if name != "pytorch_eager":
                diffs[name] = float(np.abs(got - ref).max())
        row["max_abs_diff_vs_eager"] = diffs
        row["max_abs_eager_output"] = float(np.abs(ref).max())  # the scale the differences compare with
        if "torch_compile" in diffs:
            extra["torch_compile_bit_identical"] = bool(diffs["torch_compile"] == 0.0)
        row.update(extra)
        if lw is not None:
            worker.call("gen_time", batch_size=batch, seconds=0.0, warmup=2)
        samples: dict[str, list[float]] = {
            name: [] for name in [*backends, *(["lightweight_gan"] if lw else [])]
        }
        for _ in range(rounds):  # interleaved rounds: every backend sees the same drift
            for name, fn in backends.items():
                samples[name].append(_rate(fn, z, trunc, min_seconds=min_seconds / rounds, sync=sync))
            if lw is not None:
                samples["lightweight_gan"].append(
                    worker.call("gen_time", batch_size=batch, seconds=min_seconds / rounds)["images_per_s"]
                )
        rates = {k: float(np.median(v)) for k, v in samples.items()}
        row["images_per_s"] = {k: round(v, 3) for k, v in rates.items()}
        row["ms_per_image"] = {k: round(1000 / v, 1) for k, v in rates.items()}
        row["images_per_s_per_thread"] = {k: round(v / threads, 3) for k, v in rates.items()}
        if lw is not None:
            base = rates["lightweight_gan"]
            row["ratio_vs_lightweight_gan"] = {k: round(v / base, 2) for k, v in rates.items()}
            best = max((k for k in rates if k != "lightweight_gan"), key=rates.__getitem__)
            row["best_astrogan_backend"] = best
            row["best_ratio_vs_lightweight_gan"] = round(rates[best] / base, 2)
        row["ratio_vs_eager"] = {k: round(v / rates["pytorch_eager"], 2) for k, v in rates.items()}
        row["loadavg_after"] = loadavg()
        row["_rates"] = rates
        per_batch.append(row)
    out["batches"] = per_batch
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="fastgan")
    ap.add_argument("--sizes", default="256,512", help="comma-separated image sizes in px (powers of 2)")
    ap.add_argument("--ngf", type=int, default=64, help="generator width (64: the FastGAN paper's)")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (gpu_check.sh)")
    ap.add_argument("--min-seconds", type=float, default=6.0, help="timing per backend and batch, all rounds")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median reported)")
    ap.add_argument("--no-lwgan", action="store_true", help="skip the lightweight-gan baseline")
    ap.add_argument(
        "--lwgan-venv", default=None, help="scratch environment (default ~/.cache/astrogan-bench/…)"
    )
    ap.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time torch.compile (inductor); default on, off with --quick",
    )
    ap.add_argument("--quick", action="store_true", help="tiny check that the script works (< 1 min)")
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            if getattr(args, k) == ap.get_default(k):
                setattr(args, k, v)
    compile_ = (not args.quick) if args.compile is None else args.compile
    compile_note = None
    if compile_ and args.device == "cpu" and has_cxx_compiler() is None:
        compile_, compile_note = False, "skipped: inductor on CPU needs a C++ compiler and none was found"

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load0 = loadavg()
    peaks = matmul_peak(args.threads, device=args.device, quick=args.quick)
    worker, lw_note = None, None
    if not args.no_lwgan:
        try:
            worker = start_worker(threads=args.threads, device=args.device, venv_dir=args.lwgan_venv)
        except LwganUnavailable as exc:
            lw_note = str(exc)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i, s in enumerate(args.sizes.split(",")):
                if i:  # the peak again between sizes: on a shared machine the best of several is the figure
                    peaks = best_peak(peaks, matmul_peak(args.threads, device=args.device, quick=args.quick))
                results.append(
                    bench_size(
                        int(s),
                        arch=args.arch,
                        ngf=args.ngf,
                        batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
                        threads=args.threads,
                        device=args.device,
                        min_seconds=args.min_seconds,
                        rounds=args.rounds,
                        worker=worker,
                        compile_=compile_,
                        tmp=Path(tmp),
                    )
                )
    finally:
        if worker is not None:
            lw_hello = worker.hello
            worker.close()
    peaks = best_peak(peaks, matmul_peak(args.threads, device=args.device, quick=args.quick))
    peak = peaks["gflops"]
    for r in results:
        gf = {"lightweight_gan": (r.get("lightweight_gan") or {}).get("gflops_per_image")}
        gf_a = r["astrogan"]["gflops_per_image"]
        r["flops_bound_images_per_s"] = {"astrogan": round(peak / gf_a, 2)}
        if gf["lightweight_gan"]:
            r["flops_bound_images_per_s"]["lightweight_gan"] = round(peak / gf["lightweight_gan"], 2)
        for row in r["batches"]:
            rates = row.pop("_rates")
            row["fraction_of_matmul_peak"] = {
                k: round(v * (gf["lightweight_gan"] if k == "lightweight_gan" else gf_a) / peak, 3)
                for k, v in rates.items()
                if k != "lightweight_gan" or gf["lightweight_gan"]
            }
    aim = {}
    for r in results:
        for row in r["batches"]:
            if "best_ratio_vs_lightweight_gan" in row:
                aim[f"{r['image_size']}px_batch{row['batch_size']}"] = row["best_ratio_vs_lightweight_gan"]
    line = {
        "bench": "generate_speed",
        "machine": machine(
            args.threads,
            onnxruntime=__import__("onnxruntime").__version__,
            matmul_peak_gflops=peaks,
            loadavg_at_start=load0,
            device=args.device,
        ),
        "settings": {
            "sizes": args.sizes,
            "batch_sizes": args.batch_sizes,
            "min_seconds": args.min_seconds,
            "rounds": args.rounds,
            "quick": args.quick,
            "torch_compile": compile_ if compile_note is None else compile_note,
        },
        "baseline": (
            {"name": "lightweight-gan", **lw_hello}
            if worker is not None
            else {"name": "lightweight-gan", "error": lw_note or "skipped (--no-lwgan)"}
        ),
        "aim": {
            "target": ">= 2x lightweight-gan's images/s at 512 px, generator of at least its parameter count",
            "best_ratio_by_size_and_batch": aim,
            "met_at_512px": (
                all(v >= 2 for k, v in aim.items() if k.startswith("512px"))
                if any("512px" in k for k in aim)
                else None
            ),
        },
        "note": SEED_SCRIPT_NOTE,
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
