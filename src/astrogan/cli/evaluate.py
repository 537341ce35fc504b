"""`astrogan eval`: FID/KID, power spectra, morphology (per band), colours, precision/recall and memorization of a
generator, each beside its real-vs-real floor, as one report; optionally the measured fakes as FITS cubes."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import numpy as np

    from astrogan.science import ScienceSpec


def _default_cache_dir() -> Path:
    env = os.environ.get("ASTROGAN_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "astrogan"
    return base / "metrics"


# `eval`'s flags, grouped by concern (the signature below keeps their --help order).

# What is compared: the generator, the dataset, and how the generated set is drawn.
_RUN = typer.Option(None, "--run", help="Run directory (or its checkpoints/ or generator file).")
_MODEL = typer.Option(None, "--model", help="An exported model.onnx instead of a run.")
_DATA = typer.Option(..., "--data", help="Dataset directory (manifest.json + images.h5).")
_NUM = typer.Option(
    None,
    "--num",
    help="Number of generated images (seeds 0..num-1); default: 5000 with fid (and its weights), else 1000.",
)
_TRUNC = typer.Option(1.0, "--trunc", help="Truncation of the latents (1 = none).")
_BATCH_SIZE = typer.Option(32, "--batch-size", help="Images per generator forward pass.")
_DEVICE = typer.Option("auto", "--device", help="auto, cpu or cuda (for --run).")
_SEED = typer.Option(0, "--seed", help="Seed of the random splits (real halves, held-out set).")

# What is measured, and how.
_METRICS = typer.Option(
    None,
    "--metrics",
    help="Comma-separated metrics: fid, kid, spectrum, morphology, prdc (precision/recall, "
    "density/coverage), memorization, colours (aperture colours of multi-band science data, stretch "
    "undone), conditioning (asked vs measured physical parameters, for models trained with --cond), "
    "composition (is each kind of object as common as in the data: the dataset's classes, or clusters "
    "of the real images). Default: fid,kid,spectrum,morphology,prdc,memorization, plus colours for "
    "multi-band science data.",
)
_BAND = typer.Option(
    None,
    "--band",
    help="Measure spectrum and morphology on this band only (a band name of a science dataset, e.g. r, "
    "or a plane index); default: every band alone plus the combined figure.",
)
_PROTOCOL = typer.Option(
    "astrogan",
    "--protocol",
    help="astrogan, or holzschuh2022: also compute FID/KID, spectrum and morphology as Holzschuh et "
    "al. 2022 did (one band through magma; their 15 frequency partitions; their property set).",
)
_INCEPTION_WEIGHTS = typer.Option(
    None,
    "--inception-weights",
    help="Local pt_inception-2015-12-05-6726825d.pth for FID/KID (or ASTROGAN_INCEPTION_WEIGHTS).",
)
_MORPHOLOGY_ENGINE = typer.Option(
    "fast", "--morphology-engine", help="fast (NumPy) or statmorph (reference, slow, parallel)."
)
_WORKERS = typer.Option(0, "--workers", help="Processes for the statmorph engine (0 = all CPUs).")
_PSF = typer.Option(
    None,
    "--psf",
    metavar="SPEC",
    help="conditioning: the images' PSF at the evaluated size, as `synth sersic --psf` takes it "
    "(moffat:fwhm=2.0,beta=3.0, gaussian:fwhm=1.5; fwhm in pixels): measure with a Sérsic fit convolved "
    "with it; none: the morphology engine's fit. Default: the dataset's, when every image comes from "
    "synth_sersic folders with one PSF (its FWHM rescaled to the evaluated size), else none.",
)
_SERSIC_TRUNCATE = typer.Option(
    None,
    "--sersic-truncate",
    metavar="R",
    help="conditioning with a PSF: the Sérsic profiles' truncation radius in half-light radii (> 1), or "
    "none (untruncated). Default: 4 (synth_sersic's) when every image comes from synth_sersic folders, "
    "else none.",
)
_CACHE_DIR = typer.Option(
    None,
    "--cache-dir",
    help="Where reference statistics are cached (default ~/.cache/astrogan/metrics).",
)

# Composition: the kinds of object whose shares are compared.
_CLUSTERS = typer.Option(
    0,
    "--clusters",
    help="composition on a dataset without labels: number of k-means clusters (0 = automatic: 8, "
    "fewer below 25 real images per cluster).",
)
_CLUSTER_NAMES = typer.Option(
    None,
    "--cluster-names",
    help="composition: a text file naming the report's clusters (or classes), one 'NUMBER: NAME' "
    "line each, e.g. '3: spiral galaxies'.",
)

# Where the report (and the measured fakes) go.
_OUT = typer.Option(None, "--out", help="Report directory (default: RUN/eval or ./eval-report).")
_SAVE_FAKES = typer.Option(
    None,
    "--save-fakes",
    help="Also write the generated images eval measures into this new directory, seedNNNN.fits: "
    "float32 cubes in the data's physical units (science data; header: bands, BUNIT, run, step, seed, "
    "trunc, conditions), or seedNNNN.png for picture datasets.",
)
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing report directory.")


def register(app: typer.Typer) -> None:
    """Add the `eval` command to the root app."""
    app.command("eval")(eval_cmd)


def eval_cmd(
    run: Path = _RUN,
    model: Path = _MODEL,
    data: Path = _DATA,
    num: int = _NUM,
    metrics: str = _METRICS,
    band: str = _BAND,
    save_fakes: Path = _SAVE_FAKES,
    protocol: str = _PROTOCOL,
    inception_weights: Path = _INCEPTION_WEIGHTS,
    out: Path = _OUT,
    morphology_engine: str = _MORPHOLOGY_ENGINE,
    workers: int = _WORKERS,
    trunc: float = _TRUNC,
    batch_size: int = _BATCH_SIZE,
    device: str = _DEVICE,
    cache_dir: Path = _CACHE_DIR,
    psf: str = _PSF,
    sersic_truncate: str = _SERSIC_TRUNCATE,
    clusters: int = _CLUSTERS,
    cluster_names: Path = _CLUSTER_NAMES,
    seed: int = _SEED,
    overwrite: bool = _OVERWRITE,
) -> None:
    """Write metrics.json, PNG plots and report.html comparing generated images with a dataset."""
    from astrogan.metrics import default_num_generated, parse_metric_names
    from astrogan.metrics.compute import evaluate
    from astrogan.utils.log import info

    names = parse_metric_names(metrics)
    inception_weights = _inception_file(names, inception_weights)
    # Without weights FID/KID are skipped (one line): their 5000 images would only make the rest 5x slower.
    measured = names if inception_weights is not None else [n for n in names if n not in ("fid", "kid")]
    num = num if num is not None else default_num_generated(measured)
    _check_options(protocol=protocol, num=num, morphology_engine=morphology_engine, trunc=trunc)
    _check_counts(batch_size=batch_size, seed=seed, workers=workers)
    psf_given, cut_given = _psf_options(psf, sersic_truncate)
    out = _report_dir(run, out, overwrite=overwrite)
    _check_new_dir(save_fakes, overwrite=overwrite)
    _check_dir_place(save_fakes, "--save-fakes")
    _check_dir_place(cache_dir, "--cache-dir")
    category_names = _category_names(names, cluster_names, clusters)
    gen, ds, gmeta = _open_pair(run, model, data, device)
    science, fake_science = _science_pair(gen, ds)
    if metrics is None and science is not None and science.num_bands > 1:
        names.append("colours")  # the default set for multi-band science data
    band_index = _band(band, science, ds.channels)
    real = ds.images(gen.image_size)
    if len(real) < 2:  # said now, not after generating --num images
        from astrogan.utils.errors import UserError

        raise UserError(f"{data} holds {len(real)} image(s); eval compares sets of at least 2 real images")
    _check_num_fits(num, real)
    spec, real_cond, fake_cond = _conditions(gen, ds, num, seed=seed)
    fit_psf, fit_cut, psf_meta = _conditioning_psf(
        ds, gen.image_size, psf_given, cut_given, used="conditioning" in names and spec is not None
    )
    fake_classes, classes_meta = _fake_classes(gen, ds, num, seed=seed)
    writer = (
        None
        if save_fakes is None
        else _fake_writer(
            gen, ds, gmeta, fake_science, like=real, spec=spec, fake_cond=fake_cond, trunc=trunc
        )
    )
    with _fakes_dir(save_fakes, overwrite=overwrite) as fakes_dir:
        if writer is not None:
            writer.out = fakes_dir
        fake = _generate(
            gen,
            num,
            trunc=trunc,
            batch_size=batch_size,
            like=real,
            cond=fake_cond,
            writer=writer,
            labels=fake_classes,
        )
    grid = (
        _grid_set(gen, spec, trunc=trunc, batch_size=batch_size, like=real)
        if "conditioning" in names
        else None
    )
    meta = _report_meta(model or run, data, ds, gmeta, num=num, trunc=trunc, engine=morphology_engine)
    meta.update(_measured_meta(science, band_index, save_fakes))
    meta.update(psf_meta)
    if classes_meta:
        meta["generated_classes"] = classes_meta
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
        science=science,
        fake_science=fake_science if fake_science != science else None,
        band=band_index,
        psf=fit_psf,
        sersic_truncate=fit_cut,
    )
    _print_summary(doc, out)
    if save_fakes is not None:
        info(f"[green]wrote {num} generated images to {save_fakes}")


def _fake_writer(
    gen: Any,
    ds: Any,
    gmeta: dict[str, Any],
    fake_science: ScienceSpec | None,
    *,
    like: np.ndarray,
    spec: Any,
    fake_cond: np.ndarray | None,
    trunc: float,
) -> _FakeWriter:
    """The --save-fakes writer: physical units for float data, and what each image was drawn with."""
    import numpy as np

    floats = like.dtype != np.uint8
    return _FakeWriter(
        fake_science if floats else None,
        floats=floats,
        cards=_cube_facts(gen, gmeta, trunc=trunc),
        cond_spec=spec if fake_cond is not None else None,
        num_classes=_num_classes(gen),
        label_names=ds.label_names or getattr(gen, "label_names", None),
    )


def _measured_meta(
    science: ScienceSpec | None, band_index: int | None, save_fakes: Path | None
) -> dict[str, Any]:
    """The report meta's entries for science data (bands, BUNIT), --band and --save-fakes, when they apply."""
    meta: dict[str, Any] = {}
    if science is not None:
        meta["bands"] = ",".join(science.bands)
        meta["bunit"] = science.bunit
    if band_index is not None:
        meta["band"] = science.bands[band_index] if science is not None else band_index
    if save_fakes is not None:
        meta["saved_fakes"] = str(save_fakes)
    return meta


def _check_options(*, protocol: str, num: int, morphology_engine: str, trunc: float) -> None:
    """Refuse a bad option value with one line, before anything is opened."""
    from astrogan.metrics.protocols import PROTOCOLS
    from astrogan.utils.errors import UserError
    from astrogan.utils.seeds import check_trunc

    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if num < 2:
        raise UserError(f"--num must be at least 2, got {num}")
    if morphology_engine not in ("fast", "statmorph"):
        raise UserError(f"--morphology-engine must be fast or statmorph, got {morphology_engine!r}")
    check_trunc(trunc, name="--trunc")


def _check_num_fits(num: int, real: np.ndarray) -> None:
    """Refuse, before generating, a --num whose images cannot be held in this machine's memory: the generated
    set as stored (like `real`, `(N, H, W, C)`) plus the metrics' working memory, about 8 bytes per pixel value
    (measured: 6 for prdc and memorization on 64 px pictures, whose conversions go a chunk at a time)."""
    from astrogan.utils.errors import UserError

    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): nothing to compare with
        return
    per_image = real[0].size * (real.dtype.itemsize + 8)
    if memory > 0 and num * per_image > memory:
        raise UserError(
            f"--num {num} cannot fit in memory: {num} images of {'x'.join(map(str, real.shape[1:]))} need "
            f"{num * per_image / 2**30:.1f} GiB (as generated plus ~8 bytes per value for the metrics) and this "
            f"machine has {memory / 2**30:.1f} GiB; at most {memory // per_image} fit"
        )


def _check_counts(*, batch_size: int, seed: int, workers: int) -> None:
    """Refuse a count out of range with one line (before: range()'s or NumPy's traceback, after generating)."""
    from astrogan.utils.errors import UserError

    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if seed < 0:
        raise UserError(f"--seed must be 0 or more, got {seed}")
    if workers < 0:
        raise UserError(f"--workers must be 0 (all CPUs) or more, got {workers}")


# --psf / --sersic-truncate: a value, "none" (off), or _PICK_UP (not given: the dataset's, when it knows).
_PICK_UP = object()


def _psf_options(psf: str | None, truncate: str | None) -> tuple[Any, Any]:
    """--psf and --sersic-truncate checked now: (spec string, None for none, or _PICK_UP; the same for the
    radius as a float > 1)."""
    from astrogan.data.synthetic import parse_psf
    from astrogan.utils.errors import UserError

    spec: Any = _PICK_UP
    if psf is not None:
        spec = None if parse_psf(psf).kind == "none" else psf.strip()
    cut: Any = _PICK_UP
    if truncate is not None and truncate.strip().lower() == "none":
        cut = None
    elif truncate is not None:
        try:
            cut = float(truncate)
        except ValueError:
            raise UserError(
                f"--sersic-truncate must be a number of half-light radii or none, got {truncate!r}"
            ) from None
        if not cut > 1.0:
            raise UserError(f"--sersic-truncate is in half-light radii and must be > 1, got {truncate}")
    return spec, cut


def _conditioning_psf(
    ds: Any, image_size: int, psf: Any, cut: Any, *, used: bool
) -> tuple[str | None, float | None, dict[str, Any]]:
    """(PSF spec, truncation radius, report meta) the conditioning metric measures with: the flags, and
    where one was not given the dataset's `synth_sersic` PSF at `image_size` and their truncation
    (`data.synth_psf`; one console line says so); None, None when neither is known. used: conditioning
    runs (else the flags are ignored with a warning)."""
    from astrogan.utils.errors import UserError
    from astrogan.utils.log import console, warn

    if not used:
        if psf is not _PICK_UP or cut is not _PICK_UP:
            warn("--psf and --sersic-truncate are for the conditioning metric of a --cond model: ignored")
        return None, None, {}
    found, why = None, ""
    if psf is _PICK_UP or cut is _PICK_UP:
        from astrogan.data.synth_psf import synth_psf

        found, why = synth_psf(ds, image_size)
    said = []  # what was picked up from the dataset, for the console line and the report
    if psf is _PICK_UP:
        psf = found.psf if found is not None else None
        if found is not None:
            said.append(found.how)
    if cut is _PICK_UP:
        cut = found.truncate if found is not None and psf is not None else None
        if cut is not None and not said:
            said.append(f"profiles truncated at {cut:g} r_e (synth_sersic)")
    elif cut is not None and psf is None:
        raise UserError(
            "--sersic-truncate applies to the Sérsic fit convolved with a PSF: give the images' --psf"
            + (f" ({why})" if why else "")
        )
    meta: dict[str, Any] = {"conditioning_psf": psf, "conditioning_sersic_truncate": cut}
    if said:
        meta["conditioning_picked_up"] = "from the dataset's synth_sersic folders: " + "; ".join(said)
        if os.environ.get("ASTROGAN_QUIET") != "1":  # one unwrapped line: a test or a log can grep it
            console.print(
                f"conditioning: {'; '.join(said)}, from the dataset's synth.json (--psf / --sersic-truncate to "
                "change)",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
    return psf, cut, meta


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
    _check_dir_place(out, "--out")
    if out.exists() and not overwrite:
        raise UserError(f"report directory {out} exists; pass --overwrite or choose another --out")
    return out


def _check_dir_place(path: Path | None, flag: str) -> None:
    """`path` is, or can become, a directory: neither it nor its nearest existing parent is a file (checked before
    generating; else the report or the cache failed after all the work with "[Errno 17] File exists")."""
    from astrogan.utils.errors import UserError

    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a directory")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is a file, not a directory")


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


CLASS_STREAM = 0x636C6173  # the class draws' own NumPy stream ("clas"), apart from the latents' seed streams


def _fake_classes(gen: Any, ds: Any, num: int, *, seed: int) -> tuple[Any, dict[str, Any]]:
    """(class per generated image `(num,)` or None, how they were drawn, for metrics.json) for a
    class-conditional generator; (None, {}) for others.

    Seed s gets the real labels' empirical quantile at its own uniform draw (stream [CLASS_STREAM, --seed, s]):
    the generated set has the data's class mix, so that composition compares the generator with the data
    and not our sampling with it, and seed s keeps its class whatever --num. Without usable labels eval
    falls back to `seed % num_classes`, the rule `generate`, the web server and exported models share
    (a seed's picture is the same everywhere)."""
    import numpy as np

    from astrogan.utils.log import warn

    k = _num_classes(gen)
    if k == 0:
        return None, {}
    uniform = {"rule": "seed % num_classes (uniform)", "num_classes": k}
    labels = ds.labels()
    if labels is None or not len(labels):
        return None, {**uniform, "why": "the dataset has no class labels"}
    if labels.min() < 0 or labels.max() >= k:
        warn(
            f"the dataset's class labels run {labels.min()}..{labels.max()} but the generator takes {k} classes: "
            "generated images get class seed % num_classes"
        )
        return None, {**uniform, "why": f"the dataset's labels do not fit the generator's {k} classes"}
    ordered = np.sort(labels)
    u = np.array([np.random.default_rng([CLASS_STREAM, seed, s]).random() for s in range(num)])
    classes = ordered[np.minimum((u * len(ordered)).astype(np.int64), len(ordered) - 1)]
    return classes, {
        "rule": "drawn from the real labels' frequencies: class of seed s = the real labels' empirical "
        f"quantile at a uniform draw of the stream [{CLASS_STREAM}, seed, s]",
        "seed": seed,
        "num_classes": k,
        "real_fractions": (np.bincount(labels, minlength=k) / len(labels)).tolist(),
        "generated_counts": np.bincount(classes, minlength=k).tolist(),
    }


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
        _batch(
            gen,
            seeds_all[s : s + batch_size],
            trunc=trunc,
            cond=asked[s : s + batch_size],
            batch_size=batch_size,
            floats=like.dtype != np.uint8,
        )
        for s in range(0, len(asked), batch_size)
    ]
    images = np.concatenate([_as_data(c) for c in chunks])
    return images, asked


def _batch(
    gen: Any,
    seeds: list[int],
    *,
    trunc: float,
    cond: np.ndarray | None,
    batch_size: int,
    floats: bool,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """One batch of generated images: uint8 pictures `(n, H, W, C)`, or for float (science) data the model's
    own float output `(n, C, H, W)` in [-1, 1] (never through uint8: 256 levels would quantise the fluxes).
    `labels` `(n,)`: the class of each image (class-conditional models; None: `seed % num_classes`)."""
    extra: dict[str, Any] = {} if cond is None else {"cond": cond, "check_cond": False}
    if labels is not None:
        extra["labels"] = [int(v) for v in labels]
    if not floats:
        return gen.generate(seeds, trunc=trunc, batch_size=batch_size, **extra)
    if hasattr(gen, "generate_tensor"):  # the PyTorch generator
        return gen.generate_tensor(seeds, trunc=trunc, batch_size=batch_size, **extra).numpy()
    # An exported model (ONNX Runtime): the same latents and class labels as its `generate` feeds it.
    extra.setdefault("labels", gen.default_labels(seeds))
    return gen.generate_float(gen.latents(seeds), trunc=trunc, batch_size=batch_size, **extra)


def _as_data(batch: np.ndarray) -> np.ndarray:
    """A `_batch` result as the metrics compare it: uint8 pictures as they are; model output `(n, C, H, W)` in
    [-1, 1] -> float32 `(n, H, W, C)` in [0, 1], the scale float datasets store."""
    import numpy as np

    from astrogan.imaging import model_to_unit

    if batch.dtype == np.uint8:
        return batch
    return np.clip(model_to_unit(np.asarray(batch, dtype=np.float32)), 0.0, 1.0).transpose(0, 2, 3, 1)


def _generate(
    gen: Any,
    num: int,
    *,
    trunc: float,
    batch_size: int,
    like: np.ndarray,
    cond: np.ndarray | None = None,
    writer: _FakeWriter | None = None,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Images of seeds 0..num-1, `(num, H, W, C)`: uint8, or float32 in [0, 1] when `like` (the real set) is.

    `cond` (num, K): the physical conditions of each image (models trained with --cond); `labels` (num,): the
    class of each image (see `_fake_classes`). `writer` also writes every image to disk (--save-fakes) as it
    is made.
    """
    import numpy as np

    from astrogan.utils.log import info, progress

    floats = like.dtype != np.uint8
    chunks = []
    with progress() as bar:
        task = bar.add_task("generating", total=num, info="")
        for s in range(0, num, batch_size):
            seeds = list(range(s, min(num, s + batch_size)))
            rows = None if cond is None else cond[s : s + len(seeds)]
            classes = None if labels is None else labels[s : s + len(seeds)]
            t0 = time.perf_counter()
            batch = _batch(
                gen, seeds, trunc=trunc, cond=rows, batch_size=batch_size, floats=floats, labels=classes
            )
            chunks.append(_as_data(batch))
            if s == 0 and num > len(seeds):  # the expected time, before the bulk of the work
                rate = len(seeds) / max(time.perf_counter() - t0, 1e-6)
                info(
                    f"generating {num} images: about {_duration(num / rate)} at {rate:.0f} img/s (--num to change)"
                )
            if writer is not None:
                writer.write(seeds, batch, rows, classes)
            bar.advance(task, len(seeds))
    return np.concatenate(chunks)


def _check_new_dir(path: Path | None, *, overwrite: bool) -> None:
    """--save-fakes names a new directory (or one --overwrite may replace), checked before any work."""
    from astrogan.utils.errors import UserError

    if path is not None and path.exists() and not overwrite:
        raise UserError(f"--save-fakes directory {path} exists; pass --overwrite or choose another directory")


@contextlib.contextmanager
def _fakes_dir(path: Path | None, *, overwrite: bool) -> Iterator[Path | None]:
    """The --save-fakes directory, built under a temp name and renamed into place when every image is in it."""
    if path is None:
        yield None
        return
    from astrogan.utils.atomic import atomic_dir

    with atomic_dir(path, overwrite=overwrite) as tmp:
        yield tmp


def _science_pair(gen: Any, ds: Any) -> tuple[ScienceSpec | None, ScienceSpec | None]:
    """(the data's science spec, the generator's): what undoes the reals' stretch and what undoes the fakes'.

    A generator that records none is taken to share the data's (it trained on it); differing band names warn.
    """
    from astrogan.science import ScienceSpec
    from astrogan.utils.log import warn

    data = ds.science
    own = getattr(gen, "science", None)
    if not isinstance(own, ScienceSpec):
        meta = getattr(gen, "meta", None) or {}
        try:
            own = ScienceSpec.from_dict(meta.get("science") or (meta.get("extra") or {}).get("science"))
        except (KeyError, TypeError, ValueError):
            own = None
    if own is not None and own.num_bands != gen.channels:
        own = None
    if data is not None and own is not None and own.bands != data.bands:
        warn(
            f"the generator's bands ({', '.join(own.bands)}) are not the data's ({', '.join(data.bands)}): "
            "each plane is compared with the data's plane in the same place"
        )
    return data, own or data


def _band(band: str | None, science: ScienceSpec | None, channels: int) -> int | None:
    """--band as a plane index (a UserError naming the bands for an unknown one)."""
    from astrogan.metrics.bands import resolve_band

    return resolve_band(band, science, channels)


def _num_classes(gen: Any) -> int:
    """Classes the generator draws by default (`seed % num_classes`); 0 for unconditional or --cond models."""
    if getattr(gen, "cond_spec", None) is not None or not getattr(gen, "has_class_input", True):
        return 0
    return int(getattr(gen, "num_classes", 0) or 0)


def _cube_facts(gen: Any, gmeta: dict[str, Any], *, trunc: float) -> dict[str, Any]:
    """What every saved fake shares (keywords of `science.generated_cube_cards`): run, step, arch, truncation."""
    return {
        "run": None if gmeta.get("run") is None else str(gmeta["run"]),
        "step": None if gmeta.get("step") is None else int(gmeta["step"]),
        "arch": (getattr(gen, "meta", None) or {}).get("arch"),
        "trunc": float(trunc),
    }


class _FakeWriter:
    """Writes each image eval measures into the --save-fakes directory, as it is generated.

    Float (science) data: `seedNNNN.fits`, float32 `(B, H, W)` cubes in the data's physical units
    (`science.cube_values`: the stretch undone; `science.write_fits`: the one flip to FITS order; the header
    is `science.generated_cube_cards`, as `generate --format fits` and the web write it); float data without a
    science spec (a per-image stretch, nothing to undo) keep the model's values mapped to [0, 1], BUNIT
    'display'. Picture datasets: `seedNNNN.png`, the very pictures measured.
    """

    def __init__(
        self,
        spec: ScienceSpec | None,
        *,
        floats: bool,
        cards: dict[str, Any],
        cond_spec: Any = None,
        num_classes: int = 0,
        label_names: Sequence[str] | None = None,
    ) -> None:
        self.spec, self.floats, self.facts, self.cond_spec = spec, floats, cards, cond_spec
        self.num_classes, self.label_names = num_classes, label_names
        self.out: Path | None = None

    def _drawn_with(self, seed: int, cond: np.ndarray | None, label: int | None = None) -> dict[str, Any]:
        """The seed, class and conditions image `seed` was drawn with (keywords of `generated_cube_cards`);
        `label`: its class when eval chose it (else `seed % num_classes`)."""
        from astrogan.utils.seeds import labels_for_seeds

        out: dict[str, Any] = {**self.facts, "seed": int(seed)}
        if cond is not None and self.cond_spec is not None:
            out["cond"] = {
                name: (float(value), unit)
                for name, unit, value in zip(self.cond_spec.names, self.cond_spec.units, cond, strict=True)
            }
        given = None if label is None else [int(label)]
        labels = labels_for_seeds([seed], self.num_classes, given) if self.cond_spec is None else None
        if labels:
            out["label"] = int(labels[0])
            if self.label_names and labels[0] < len(self.label_names):
                out["label_name"] = str(self.label_names[labels[0]])
        return out

    def write(
        self, seeds: list[int], batch: np.ndarray, cond: np.ndarray | None, labels: np.ndarray | None = None
    ) -> None:
        """One `_batch` result: model output `(n, C, H, W)` in [-1, 1] (float data) or uint8 pictures;
        `labels` `(n,)`: the classes eval drew them at (None: `seed % num_classes`)."""
        from astrogan.science import cube_values, generated_cube_cards, write_fits

        assert self.out is not None
        if not self.floats:
            from astrogan.sampling.post import save_png

            for j, seed in enumerate(seeds):
                drawn = self._drawn_with(seed, None, None if labels is None else labels[j])
                text = {k: str(v) for k, v in drawn.items() if v is not None and k != "cond"}
                save_png(batch[j], self.out / f"seed{seed:04d}.png", text=text)
            return
        values = cube_values(batch, self.spec)
        for j, seed in enumerate(seeds):
            drawn = self._drawn_with(
                seed, None if cond is None else cond[j], None if labels is None else labels[j]
            )
            cards = generated_cube_cards(self.spec, channels=int(batch.shape[1]), **drawn)
            write_fits(self.out / f"seed{seed:04d}.fits", values[j], cards)


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
