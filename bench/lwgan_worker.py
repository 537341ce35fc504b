"""lightweight-gan's generator and trainer step, timed in its own scratch environment (JSON lines in and out).

Run by bench/lwgan_env.py's Worker with the scratch environment's python; never imported by astrogan. Reads
one JSON request per line on stdin ({"cmd": ..., args}) and writes one JSON line per request on stdout
(everything lightweight-gan itself prints goes to stderr).

Line numbers cite lightweight_gan/lightweight_gan.py and cli.py of lightweight-gan 1.2.1.

Without CUDA. lightweight_gan.py asserts `torch.cuda.is_available()` at import (l. 38), moves its models with
`self.cuda(rank)` (l. 936) and its batches with `.cuda(self.rank)` (l. 1240-1241, 1321), and makes its loss
accumulators on `torch.device(f'cuda:{rank}')` (l. 1201). On a machine without CUDA the worker answers the
assert with True during the import only, makes `Module.cuda` / `Tensor.cuda` return the object unchanged,
and gives the module a `torch` whose `device('cuda:N')` is the CPU. Nothing else is touched: every layer,
loss, augmentation, penalty and optimizer step is lightweight-gan's own code, run as written, on the CPU.
With CUDA nothing is patched.

Its defaults are the command line's (`lightweight_gan --data DIR`, cli.py l. 78-123): image_size 256,
latent_dim 256 (Trainer, l. 972), fmap_max 512, attn_res_layers [32], disc_output_size 1, antialias False
(so Blur is nn.Identity, l. 1120), aug_types ['cutout', 'translation'], Adam lr 2e-4 betas (0.5, 0.9)
(l. 925-926), hinge losses (l. 1234, 1313), a gradient penalty of weight 10 (l. 979) on every 4th step
(l. 1223, 1264-1293), batch_size 10 with gradient_accumulate_every 4, no AMP. The benches set image_size,
batch size, accumulation and aug_prob; the rest stays at those defaults.

The step timed is `Trainer.train()` itself (l. 1199-1383) on a fixed in-memory batch source (its DataLoader
over an image folder is replaced: images in [0, 1] as its ToTensor gives, drawn from a pool), with its
periodic `save` and `evaluate` (image grids written every 100 steps below 20k, l. 1369-1373) made no-ops: the
astrogan side is timed with checkpoints and snapshots off as well.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

_OUT = sys.stdout
sys.stdout = sys.stderr  # lightweight-gan prints; the protocol owns the real stdout

import torch  # noqa: E402
from lwgan_env import FlopCount, top_ops  # noqa: E402  (bench/, beside this file: stdlib-only at import)

STATE: dict[str, Any] = {}


def _stub_torchvision() -> bool:
    """Import torchvision, or stand in a stub for the names lightweight_gan.py imports (l. 23-24).

    They serve its image-folder dataset and grid saving only, which the benches never call; a stub that is
    touched raises. Returns True when the stub is in use."""
    try:
        import torchvision  # noqa: F401

        return False
    except Exception:  # a registry torchvision beside a CPU torch: "operator torchvision::nms does not exist"
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

    class _Stub(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            raise RuntimeError(
                f"torchvision is stubbed in the bench worker: {self.__name__}.{name} is unavailable"
            )

    tv = _Stub("torchvision")
    tv.transforms = _Stub("torchvision.transforms")  # type: ignore[attr-defined]
    tv.utils = _Stub("torchvision.utils")  # type: ignore[attr-defined]
    sys.modules.update(
        {"torchvision": tv, "torchvision.transforms": tv.transforms, "torchvision.utils": tv.utils}
    )
    return True


class _TorchOnCPU(types.ModuleType):
    """`torch` for lightweight_gan.py on a CPU-only machine: `torch.device('cuda:N')` is the CPU (l. 1201)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def device(spec: Any, *args: Any) -> torch.device:
        if str(spec).startswith("cuda"):
            return torch.device("cpu")
        return torch.device(spec, *args)


def _import_lightweight_gan(device: str) -> tuple[Any, dict[str, Any]]:
    stubbed = _stub_torchvision()
    patched = device == "cpu" or not torch.cuda.is_available()
    if patched:
        real = torch.cuda.is_available
        torch.cuda.is_available = lambda: True  # only for the import-time assert (l. 38)
        try:
            import lightweight_gan.lightweight_gan as lw
        finally:
            torch.cuda.is_available = real
        torch.nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
        torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
        lw.torch = _TorchOnCPU("torch")
    else:
        import lightweight_gan.lightweight_gan as lw
    from importlib.metadata import version

    info = {
        "lightweight_gan": version("lightweight-gan"),
        "torchvision_stubbed": stubbed,
        "cuda_calls_redirected_to_cpu": patched,
    }
    return lw, info


def _trainer(
    lw: Any, *, image_size: int, batch_size: int, grad_accum: int, aug_prob: float, seed: int
) -> Any:
    """A Trainer with the command line's defaults (cli.py l. 126-155) but size, batch, accumulation, aug p."""
    torch.manual_seed(seed)
    tmp = Path(tempfile.mkdtemp(prefix="lwgan-bench-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    tr = lw.Trainer(
        name="bench",
        base_dir=str(tmp),
        image_size=image_size,
        batch_size=batch_size,
        gradient_accumulate_every=grad_accum,
        fmap_max=512,
        attn_res_layers=[32],
        disc_output_size=1,
        antialias=False,
        aug_prob=aug_prob,
        aug_types=["cutout", "translation"],
        lr=2e-4,
        amp=False,
        use_aim=False,
    )
    tr.init_GAN()
    tr.real_save = tr.save
    tr.save = lambda *a, **k: None  # periodic checkpoints and image grids: off, as on the astrogan side
    tr.evaluate = lambda *a, **k: None
    return tr


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _dev() -> torch.device:
    return torch.device(STATE["device"] if torch.cuda.is_available() else "cpu")


# ---- commands -----------------------------------------------------------------------------------------------


def cmd_hello(a: dict[str, Any]) -> dict[str, Any]:
    return {
        **STATE["info"],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }


def cmd_gen_build(a: dict[str, Any]) -> dict[str, Any]:
    """The generator `lightweight_gan --generate` samples from: Trainer.init_GAN's GE (EMA copy), eval()."""
    lw = STATE["lw"]
    tr = _trainer(
        lw, image_size=a["image_size"], batch_size=8, grad_accum=1, aug_prob=0.0, seed=a.get("seed", 0)
    )
    G = tr.GAN.GE.eval()
    with torch.no_grad(), FlopCount() as counter:
        G(torch.zeros(2, tr.GAN.latent_dim, device=_dev()))
    STATE["gen"] = tr
    return {
        "image_size": a["image_size"],
        "latent_dim": tr.GAN.latent_dim,
        "g_params": _params(G),
        "gflops_per_image": round(counter.total / 2 / 1e9, 3),
        "config": {"fmap_max": 512, "attn_res_layers": [32], "antialias": False, "latent_dim": 256},
    }


def cmd_gen_time(a: dict[str, Any]) -> dict[str, Any]:
    """images/s of Trainer.generate_ (l. 1558-1560: evaluate_in_chunks + clamp) on one batch, >= `seconds`."""
    tr = STATE["gen"]
    tr.batch_size = a["batch_size"]  # evaluate_in_chunks' chunk: the whole batch in one forward
    g = torch.Generator().manual_seed(a.get("seed", 0))
    z = torch.randn(a["batch_size"], tr.GAN.latent_dim, generator=g).to(_dev())
    n, t0 = 0, time.perf_counter()
    with torch.no_grad():  # generate() and generate_ run under @torch.no_grad() (l. 1450, 1557)
        for _ in range(a.get("warmup", 0)):
            tr.generate_(tr.GAN.GE, z)
        _sync()
        t0 = time.perf_counter()
        while True:
            tr.generate_(tr.GAN.GE, z)
            n += len(z)
            _sync()
            elapsed = time.perf_counter() - t0
            if elapsed >= a["seconds"]:
                break
    return {"images_per_s": n / elapsed, "images": n, "seconds": elapsed}


class _Pool:
    """Batches of real images as lightweight-gan's loader gives them: float in [0, 1], (B, 3, H, W), fresh."""

    def __init__(self, size: int, batch: int, num: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
        imgs = []
        for _ in range(num):  # smooth blobs, like the astrogan side's synthetic dataset
            cy, cx = (torch.rand(2, generator=g) * 0.4 + 0.3) * size
            s = size * 0.1
            blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
            imgs.append(blob.expand(3, size, size))
        self.images = torch.stack(imgs).to(_dev())
        self.batch, self.g = batch, g

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> torch.Tensor:
        idx = torch.randint(0, len(self.images), (self.batch,), generator=self.g)
        return self.images[idx.to(self.images.device)]


def cmd_train_build(a: dict[str, Any]) -> dict[str, Any]:
    lw = STATE["lw"]
    tr = _trainer(
        lw,
        image_size=a["image_size"],
        batch_size=a["batch_size"],
        grad_accum=a["grad_accum"],
        aug_prob=a["aug_prob"],
        seed=a.get("seed", 0),
    )
    tr.loader = _Pool(a["image_size"], a["batch_size"], a.get("num_images", 64), a.get("seed", 0))
    STATE["train"] = tr
    return {
        "image_size": a["image_size"],
        "batch_size": a["batch_size"],
        "gradient_accumulate_every": a["grad_accum"],
        "images_per_step": a["batch_size"] * a["grad_accum"],
        "aug_prob": a["aug_prob"],
        "aug_types": tr.aug_types,
        "g_params": _params(tr.GAN.G),
        "d_params": _params(tr.GAN.D),
    }


def _steps(tr: Any, n: int) -> None:
    for _ in range(n):
        tr.train()


def cmd_train_time(a: dict[str, Any]) -> dict[str, Any]:
    """images/s over `steps` calls of Trainer.train() (a multiple of 4 samples its penalty's cadence)."""
    tr = STATE["train"]
    start = tr.steps
    _sync()
    t0 = time.perf_counter()
    _steps(tr, a["steps"])
    _sync()
    elapsed = time.perf_counter() - t0
    images = a["steps"] * tr.batch_size * tr.gradient_accumulate_every
    return {
        "images_per_s": images / elapsed,
        "steps": a["steps"],
        "first_step": start,
        "penalty_steps": sum(1 for s in range(start, start + a["steps"]) if s % 4 == 0),
        "seconds": elapsed,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "d_loss": tr.d_loss,
        "g_loss": tr.g_loss,
    }


def cmd_train_flops(a: dict[str, Any]) -> dict[str, Any]:
    """Training FLOPs per image (convs and matrix products, backward and the penalty's double backward
    included), counted (lwgan_env.FlopCount) over `steps` real steps."""
    tr = STATE["train"]
    start = tr.steps
    with FlopCount() as counter:
        _steps(tr, a["steps"])
    images = a["steps"] * tr.batch_size * tr.gradient_accumulate_every
    return {
        "train_gflop_per_image": round(counter.total / images / 1e9, 3),
        "steps_counted": a["steps"],
        "penalty_steps": sum(1 for s in range(start, start + a["steps"]) if s % 4 == 0),
    }


def cmd_train_profile(a: dict[str, Any]) -> dict[str, Any]:
    """torch.profiler over one Trainer.train() call: the top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    tr = STATE["train"]
    if a.get("skip_penalty", True) and tr.steps % 4 == 0:
        _steps(tr, 1)  # profile a plain step (3 in 4 are); the penalty step is in the flop count and timing
    step = tr.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _steps(tr, 1)
    return {"step": step, "penalty": step % 4 == 0, "top_ops": top_ops(prof, a.get("top", 12))}


def cmd_state_size(a: dict[str, Any]) -> dict[str, Any]:
    """Bytes of one checkpoint as Trainer.save writes it (l. 1632-1641: GAN state_dict, G/D scalers)."""
    tr = STATE["train"]
    tr.real_save(0)
    path = Path(tr.model_name(0))
    size = path.stat().st_size
    path.unlink()
    return {"checkpoint_bytes": size, "file": path.name}


COMMANDS = {
    "hello": cmd_hello,
    "gen_build": cmd_gen_build,
    "gen_time": cmd_gen_time,
    "train_build": cmd_train_build,
    "train_time": cmd_train_time,
    "train_flops": cmd_train_flops,
    "train_profile": cmd_train_profile,
    "state_size": cmd_state_size,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    STATE["device"] = args.device
    STATE["lw"], STATE["info"] = _import_lightweight_gan(args.device)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req.get("cmd") == "exit":
            _OUT.write(json.dumps({"ok": True}) + "\n")
            _OUT.flush()
            return 0
        try:
            with contextlib.redirect_stdout(sys.stderr):
                reply = COMMANDS[req["cmd"]](req)
        except Exception as exc:  # answer with the reason; the bench decides what to do
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        _OUT.write(json.dumps(reply) + "\n")
        _OUT.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
