"""`astrogan eval`: FID/KID, power spectra, morphology, precision/recall and memorization of a generator,
each beside its real-vs-real floor, as one report."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    import numpy as np


def _default_cache_dir() -> Path:
    env = os.environ.get("ASTROGAN_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "astrogan"
    return base / "metrics"


def register(app: typer.Typer) -> None:
    """Add the `eval` command to the root app."""

    @app.command("eval")
    def eval_cmd(
        run: Path = typer.Option(
            None, "--run", help="Run directory (or its checkpoints/ or generator file)."
        ),
        model: Path = typer.Option(None, "--model", help="An exported model.onnx instead of a run."),
        data: Path = typer.Option(..., "--data", help="Dataset directory (manifest.json + images.h5)."),
        num: int = typer.Option(
            None,
            "--num",
            help="Number of generated images (seeds 0..num-1); default: 5000 with fid, else 1000.",
        ),
        metrics: str = typer.Option(
            "fid,kid,spectrum,morphology,prdc,memorization",
            "--metrics",
            help="Comma-separated metrics: fid, kid, spectrum, morphology, prdc (precision/recall, "
            "density/coverage), memorization, conditioning (asked vs measured physical parameters, for "
            "models trained with --cond), composition (is each kind of object as common as in the data: "
            "the dataset's classes, or clusters of the real images).",
        ),
        protocol: str = typer.Option(
            "astrogan",
            "--protocol",
            help="astrogan, or holzschuh2022: also compute FID/KID, spectrum and morphology as Holzschuh et "
            "al. 2022 did (one band through magma; their 15 frequency partitions; their property set).",
        ),
        inception_weights: Path = typer.Option(
            None,
            "--inception-weights",
            help="Local pt_inception-2015-12-05-6726825d.pth for FID/KID (or ASTROGAN_INCEPTION_WEIGHTS).",
        ),
        out: Path = typer.Option(
            None, "--out", help="Report directory (default: RUN/eval or ./eval-report)."
        ),
        morphology_engine: str = typer.Option(
            "fast", "--morphology-engine", help="fast (NumPy) or statmorph (reference, slow, parallel)."
        ),
        workers: int = typer.Option(
            0, "--workers", help="Processes for the statmorph engine (0 = all CPUs)."
        ),
        trunc: float = typer.Option(1.0, "--trunc", help="Truncation of the latents (1 = none)."),
        batch_size: int = typer.Option(32, "--batch-size", help="Images per generator forward pass."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (for --run)."),
        cache_dir: Path = typer.Option(
            None,
            "--cache-dir",
            help="Where reference statistics are cached (default ~/.cache/astrogan/metrics).",
        ),
        clusters: int = typer.Option(
            0,
            "--clusters",
            help="composition on a dataset without labels: number of k-means clusters (0 = automatic: 8, "
            "fewer below 25 real images per cluster).",
        ),
        cluster_names: Path = typer.Option(
            None,
            "--cluster-names",
            help="composition: a text file naming the report's clusters (or classes), one 'NUMBER: NAME' "
            "line each, e.g. '3: spiral galaxies'.",
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the random splits (real halves, held-out set)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report directory."),
    ) -> None:
        """Write metrics.json, PNG plots and report.html comparing generated images with a dataset."""
        from astrogan.metrics import default_num_generated, parse_metric_names
        from astrogan.metrics.compute import evaluate

        names = parse_metric_names(metrics)
        num = num if num is not None else default_num_generated(names)
        _check_options(protocol=protocol, num=num, morphology_engine=morphology_engine, trunc=trunc)
        out = _report_dir(run, out, overwrite=overwrite)
        inception_weights = _inception_file(names, inception_weights)
        category_names = _category_names(names, cluster_names, clusters)
        gen, ds, gmeta = _open_pair(run, model, data, device)
        real = ds.images(gen.image_size)
        spec, real_cond, fake_cond = _conditions(gen, ds, num, seed=seed)
        fake = _generate(gen, num, trunc=trunc, batch_size=batch_size, like=real, cond=fake_cond)
        grid = (
            _grid_set(gen, spec, trunc=trunc, batch_size=batch_size, like=real)
            if "conditioning" in names
            else None
        )
        meta = _report_meta(model or run, data, ds, gmeta, num=num, trunc=trunc, engine=morphology_engine)
        doc = evaluate(
            real,
            fake,
            out,
            names=names,
            cache_dir=cache_dir or _default_cache_dir(),
            cache_key=ds.content_hash,
            inception_weights=inception_weights,
            morphology_engine=morphology_engine,
            num_workers=workers or None,
            rng_seed=seed,
            protocol=protocol,
            meta=meta,
            overwrite=overwrite,
            cond_spec=spec,
            real_cond=real_cond,
            fake_cond=fake_cond,
            cond_grid=grid,
            real_labels=ds.labels() if "composition" in names else None,
            label_names=ds.label_names,
            category_names=category_names,
            num_clusters=clusters or None,
        )
        _print_summary(doc, out)


def _check_options(*, protocol: str, num: int, morphology_engine: str, trunc: float) -> None:
    """Refuse a bad option value with one line, before anything is opened."""
    from astrogan.metrics.protocols import PROTOCOLS
    from astrogan.utils.errors import UserError

    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if num < 2:
        raise UserError(f"--num must be at least 2, got {num}")
    if morphology_engine not in ("fast", "statmorph"):
        raise UserError(f"--morphology-engine must be fast or statmorph, got {morphology_engine!r}")
    if not 0 < trunc <= 2:
        raise UserError(f"--trunc must be in (0, 2], got {trunc}")


def _category_names(names: list[str], cluster_names: Path | None, clusters: int) -> dict[int, str] | None:
    """The --cluster-names file read and --clusters checked now, before any image is generated."""
    from astrogan.utils.errors import UserError

    if clusters and clusters < 2:
        raise UserError(f"--clusters must be at least 2 (or 0 for automatic), got {clusters}")
    if cluster_names is None:
        return None
    if "composition" not in names:
        raise UserError(
            "--cluster-names names the composition metric's clusters: add composition to --metrics"
        )
    from astrogan.metrics.composition import read_cluster_names

    return read_cluster_names(cluster_names)


def _report_dir(run: Path | None, out: Path | None, *, overwrite: bool) -> Path:
    """--out, or RUN/eval, or ./eval-report; an existing one only with --overwrite."""
    from astrogan.utils.errors import UserError

    if out is None:
        out = (run / "eval") if run is not None and run.is_dir() else Path("eval-report")
    if out.exists() and not overwrite:
        raise UserError(f"report directory {out} exists; pass --overwrite or choose another --out")
    return out


def _inception_file(names: list[str], inception_weights: Path | None) -> Path | None:
    """The Inception weights file FID/KID will read, checked now (not after minutes of generating images)."""
    if any(m in names for m in ("fid", "kid")) and (
        inception_weights or os.environ.get("ASTROGAN_INCEPTION_WEIGHTS")
    ):
        from astrogan.metrics.inception import check_weights_file

        inception_weights, _ = check_weights_file(inception_weights)
    return inception_weights


def _open_pair(
    run: Path | None, model: Path | None, data: Path, device: str
) -> tuple[Any, Any, dict[str, Any]]:
    """The generator, the dataset and what the generator says about itself (step, kimg, run, dataset hash).

    Warns when the generator trained on another dataset; refuses a band count that differs.
    """
    from astrogan.cli.sample import open_generator
    from astrogan.data.dataset import open_dataset
    from astrogan.utils.errors import UserError
    from astrogan.utils.log import warn

    gen = open_generator(run, model, device)
    ds = open_dataset(data)
    gmeta = _generator_meta(gen)
    trained_on = gmeta.get("dataset_hash")
    if trained_on and trained_on != ds.content_hash:
        warn(
            f"{data} is not the dataset this generator trained on (content hash {ds.content_hash[:19]}, "
            f"trained on {trained_on[:19]}): distances compare with another set, memorization means little"
        )
    if ds.channels != gen.channels:
        raise UserError(f"the generator makes {gen.channels}-band images but {data} has {ds.channels} bands")
    return gen, ds, gmeta


def _generator_meta(gen: Any) -> dict[str, Any]:
    """Step, kimg, run and dataset hash of a run's generator (its extra) or an exported model (its model card)."""
    raw_meta = dict(getattr(gen, "meta", None) or {})
    gmeta = {**raw_meta, **(raw_meta.get("extra") or {})}  # a run's step, kimg, dataset hash live in extra
    card = raw_meta.get("model_card") or {}  # an exported model.json says the same in its model card
    for key, value in (
        ("step", (card.get("training") or {}).get("steps")),
        ("kimg", (card.get("training") or {}).get("kimg")),
        ("run", (card.get("training") or {}).get("run")),
        ("dataset_hash", (card.get("dataset") or {}).get("content_hash")),
    ):
        gmeta.setdefault(key, value)
    return gmeta


def _conditions(gen: Any, ds: Any, num: int, *, seed: int) -> tuple[Any, Any, Any]:
    """(spec, real conditions (N, K), conditions to generate at (num, K)) for a model trained with --cond.

    The generated set is asked for conditions drawn from the data (its joint distribution), so every
    metric compares like with like and the conditioning metric can check what came back. All None for
    other models, or (with a warning) when the dataset carries none of the model's conditions.
    """
    import numpy as np

    from astrogan.utils.log import warn

    spec = getattr(gen, "cond_spec", None)
    if spec is None:
        return None, None, None
    if ds.cond_spec is None or not set(spec.names) <= set(ds.cond_spec.names):
        warn(
            f"the generator takes conditions {', '.join(spec.names)} but the dataset does not carry them: "
            "every image is made at the training mean and the conditioning metric is skipped"
        )
        return None, None, None
    real_cond, data_spec = ds.cond(gen.image_size, spec.names)
    fake_cond = real_cond[np.random.default_rng(seed).integers(0, len(real_cond), num)]
    return data_spec, real_cond, fake_cond


GRID_SEED = 1_000_000  # the grid set's seeds start here, apart from the drawn set's 0..num-1
GRID_IMAGES = 256  # at least this many grid images: every combination, repeated over seeds


def _grid_set(gen: Any, spec: Any, *, trunc: float, batch_size: int, like: np.ndarray) -> Any:
    """(images, asked) on a regular grid over the trained ranges: 4 values per condition (3 from 4 on),
    every combination, enough seeds to reach GRID_IMAGES images; None without conditions."""
    import numpy as np

    if spec is None:
        return None
    points = spec.regular_grid(4 if spec.dim <= 3 else 3)
    reps = max(1, -(-GRID_IMAGES // len(points)))
    asked = np.tile(points, (reps, 1))
    seeds_all = list(range(GRID_SEED, GRID_SEED + len(asked)))
    chunks = [
        gen.generate(
            seeds_all[s : s + batch_size],
            trunc=trunc,
            cond=asked[s : s + batch_size],
            check_cond=False,
            batch_size=batch_size,
        )
        for s in range(0, len(asked), batch_size)
    ]
    images = np.concatenate(chunks)
    if like.dtype != np.uint8:
        from astrogan.imaging import uint8_to_unit

        images = uint8_to_unit(images, np.float32)
    return images, asked


def _generate(
    gen: Any, num: int, *, trunc: float, batch_size: int, like: np.ndarray, cond: np.ndarray | None = None
) -> np.ndarray:
    """Images of seeds 0..num-1, `(num, H, W, C)`: uint8, or float32 in [0, 1] when `like` (the real set) is.

    `cond` (num, K): the physical conditions of each image (models trained with --cond).
    """
    import numpy as np

    from astrogan.imaging import uint8_to_unit
    from astrogan.utils.log import info, progress

    chunks = []
    with progress() as bar:
        task = bar.add_task("generating", total=num, info="")
        for s in range(0, num, batch_size):
            seeds = list(range(s, min(num, s + batch_size)))
            extra = {} if cond is None else {"cond": cond[s : s + len(seeds)], "check_cond": False}
            t0 = time.perf_counter()
            chunks.append(gen.generate(seeds, trunc=trunc, batch_size=batch_size, **extra))
            if s == 0 and num > len(seeds):  # the expected time, before the bulk of the work
                rate = len(seeds) / max(time.perf_counter() - t0, 1e-6)
                info(
                    f"generating {num} images: about {_duration(num / rate)} at {rate:.0f} img/s (--num to change)"
                )
            bar.advance(task, len(seeds))
    fake = np.concatenate(chunks)
    if like.dtype != np.uint8:  # float science data live in [0, 1]: compare like with like
        fake = uint8_to_unit(fake, np.float32)
    return fake


def _duration(seconds: float) -> str:
    """'45 s', '3.5 min' or '1.2 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _report_meta(
    generator: Path, data: Path, ds: Any, gmeta: dict[str, Any], *, num: int, trunc: float, engine: str
) -> dict[str, Any]:
    """The report's `meta`: what was compared with what, and where the generator stood in its training."""
    trained_on = gmeta.get("dataset_hash")
    return {
        "generator": str(generator),
        "dataset": str(data),
        "dataset_content_hash": ds.content_hash,
        "num_generated": num,
        "trunc": trunc,
        "morphology_engine": engine,
        "run": gmeta.get("run"),
        "step": gmeta.get("step"),
        "kimg": gmeta.get("kimg"),
        "trained_on_this_dataset": None if not trained_on else trained_on == ds.content_hash,
    }


def _print_summary(doc: dict[str, Any], out: Path) -> None:
    """One console line per leading figure, with its ratio to the real-vs-real floor."""
    from astrogan.utils.log import info

    for r in doc["summary"]:
        ratio = "" if r["ratio"] is None else f" ({r['ratio']:.3g}x the floor {r['floor']:.4g})"
        info(f"{r['metric']}: {'n/a' if r['value'] is None else format(r['value'], '.4g')}{ratio}")
    info(f"[green]wrote {out / 'report.html'}")
