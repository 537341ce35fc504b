"""Dropout race: the demo's DCGAN trained with torch's nn.Dropout and with astrogan's ByteDropout, in one run.

    python bench/dropout_speed.py              # 4 alternating runs of 400 steps each (about a minute on 2 cores)
    python bench/dropout_speed.py --quick      # every code path in seconds

The baseline is the same training loop with `nn.Dropout` put back in the DCGAN discriminator (what astrogan
used before), on the same data, seed, threads and process; the runs alternate (A B A B ...) so that a change
in the machine's load falls on both sides. Prints one JSON line: per side the wall time of each run and the
median images/s the loop logged, the speed-up, the dropout layers alone (forward + backward at the demo's
shapes), and the load average before and after (figures taken on a busy machine are not comparable).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ASTROGAN_QUIET", "1")


def _dataset(root: Path, num: int, size: int) -> Path:
    """The demo's two kinds of pictures, `num` of each, built like the demo builds them."""
    from astrogan.data.build import BuildOptions, build_dataset
    from astrogan.demo.raw import make_hdf_crops, make_sersic_pngs

    make_hdf_crops(root / "raw" / "hubble-xdf", num=num, seed=0)
    make_sersic_pngs(root / "raw" / "sersic", num=num, image_size=size, seed=0)
    opts = BuildOptions(image_sizes=(size,), crop="center", channels=3, seed=0, min_size_px=32)
    build_dataset(
        [root / "raw" / "hubble-xdf", root / "raw" / "sersic"], root / "ds", options=opts, overwrite=True
    )
    return root / "ds"


def _train(ds: Path, root: Path, name: str, steps: int, size: int) -> dict:
    """One demo-configured DCGAN run of `steps` steps: wall seconds and the loop's median images/s."""
    from astrogan.config import TrainConfig
    from astrogan.training.loop import train
    from astrogan.training.stats import read_stats

    cfg = TrainConfig(
        data=str(ds),
        arch="dcgan",
        image_size=size,
        batch_size=16,
        num_train_steps=steps,
        save_every=steps,
        evaluate_every=10 * steps,  # no snapshots: the race is the training step
        log_every=max(1, steps // 20),
        name=name,
        results_dir=str(root / "runs"),
        aug_prob=0.3,
        seed=0,
        device="cpu",
        model={"ngf": 16, "ndf": 16},
    )
    t = time.perf_counter()
    run_dir = train(cfg)
    wall = time.perf_counter() - t
    rates = [r["images_per_s"] for r in read_stats(run_dir) if "images_per_s" in r]
    return {"wall_s": round(wall, 2), "images_per_s": round(statistics.median(rates), 1)}


def _layers(size: int, reps: int) -> dict:
    """Forward + backward of the two dropout layers at the demo's D shapes (batch 16, width 16), ms per call."""
    import torch
    from torch import nn

    from astrogan.models.layers import ByteDropout

    shapes = [(16, 16, size // 2, size // 2), (16, 32, size // 4, size // 4)]
    out = {}
    for name, layer in [("nn.Dropout", nn.Dropout(0.25)), ("ByteDropout", ByteDropout(0.25))]:
        xs = [torch.randn(s, requires_grad=True) for s in shapes]
        for _ in range(3):
            for x in xs:
                layer(x).sum().backward()
        t = time.perf_counter()
        for _ in range(reps):
            for x in xs:
                layer(x).sum().backward()
        out[name] = round((time.perf_counter() - t) / reps * 1e3, 3)
    out["speedup"] = round(out["nn.Dropout"] / out["ByteDropout"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400, help="training steps per run")
    ap.add_argument("--rounds", type=int, default=2, help="A/B pairs (each side runs this many times)")
    ap.add_argument("--images", type=int, default=128, help="pictures of each kind in the dataset")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the code paths, not the speed")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.rounds, args.images, args.image_size = 8, 1, 8, 32

    import torch
    from torch import nn

    import astrogan.models.dcgan as dcgan
    from astrogan.models.layers import ByteDropout

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    sides: dict[str, list[dict]] = {"nn.Dropout": [], "ByteDropout": []}
    with tempfile.TemporaryDirectory(prefix="astrogan-dropout-") as tmp:
        root = Path(tmp)
        ds = _dataset(root, args.images, args.image_size)
        for r in range(args.rounds):
            for name, cls in [("nn.Dropout", nn.Dropout), ("ByteDropout", ByteDropout)]:
                dcgan.ByteDropout = cls  # the discriminator reads the name when it is built
                try:
                    sides[name].append(_train(ds, root, f"{name}-{r}", args.steps, args.image_size))
                finally:
                    dcgan.ByteDropout = ByteDropout
    layers = _layers(args.image_size, 20 if args.quick else 200)
    med = {k: round(statistics.median(x["images_per_s"] for x in v), 1) for k, v in sides.items()}
    wall = {k: statistics.median(x["wall_s"] for x in v) for k, v in sides.items()}
    print(
        json.dumps(
            {
                "bench": "dropout_speed",
                "machine": {
                    "cpus": os.cpu_count(),
                    "threads": args.threads,
                    "python": platform.python_version(),
                },
                "torch": torch.__version__,
                "setup": {
                    "arch": "dcgan",
                    "width": 16,
                    "batch": 16,
                    "image_size": args.image_size,
                    "steps_per_run": args.steps,
                    "dataset_images": 2 * args.images,
                },
                "runs": sides,
                "images_per_s": med,
                "speedup_images_per_s": round(med["ByteDropout"] / med["nn.Dropout"], 3),
                "speedup_wall": round(wall["nn.Dropout"] / wall["ByteDropout"], 3),
                "dropout_layers_ms": layers,
                "loadavg_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
