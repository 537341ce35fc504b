"""`export_generator`: a run or checkpoint -> model.onnx | model.pt + model.json (parity-checked, atomic)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from astrogan.export.onnx import (
    CLASS_INPUT,
    COND_INPUT,
    DEFAULT_OPSET,
    IMAGE_OUTPUT,
    LATENT_INPUT,
    TRUNC_INPUT,
    export_onnx,
    onnx_runner,
)
from astrogan.export.parity import PARITY_BATCH_SIZES, PARITY_NUM_SEEDS, PARITY_TOLERANCE, check_parity
from astrogan.export.prepare import ExportWrapper, prepare_generator
from astrogan.export.torchscript import export_torchscript, torchscript_runner
from astrogan.imaging import TO_UINT8_RULE
from astrogan.science import ScienceSpec
from astrogan.utils.atomic import atomic_dir, write_json
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import class_names

FORMATS = ("onnx", "torchscript")
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
SCHEMA = "astrogan.export"
SCHEMA_VERSION = 1
# stats.jsonl keys that are quality metrics (training losses are not shown on a model card)
_METRIC_PREFIXES = ("fid", "kid", "is_", "precision", "recall", "metric", "swd", "wasserstein")


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and what model.json says."""

    out_dir: Path
    model_path: Path
    meta: dict[str, Any]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _find_run_dir(source: Path) -> Path | None:
    """The run directory a checkpoint belongs to (the folder holding config.json), if any."""
    for cand in (source, source.parent, source.parent.parent):
        if cand.is_dir() and (cand / "config.json").is_file():
            return cand
    return None


def _names_with_counts(value: Any) -> list[str]:
    """Credits/licences as display strings: dicts {name: count} -> "name (N images)", lists as they are."""
    if isinstance(value, dict):
        return [
            f"{k} ({v} image{'s' if v != 1 else ''})" if isinstance(v, int) else f"{k}: {v}"
            for k, v in value.items()
        ]
    if isinstance(value, list | tuple):
        return [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in value]
    return [str(value)] if value else []


def _metrics_from_stats(run_dir: Path | None) -> dict[str, float]:
    """Last known value of each quality metric in stats.jsonl (empty when none were computed)."""
    found: dict[str, float] = {}
    path = run_dir / "stats.jsonl" if run_dir else None
    if path is None or not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        metrics = rec.get("metrics")
        nested: dict[str, Any] = metrics if isinstance(metrics, dict) else {}
        for key, val in [*rec.items(), *nested.items()]:
            if isinstance(val, int | float) and str(key).lower().startswith(_METRIC_PREFIXES):
                found[str(key)] = float(val)
    return found


def model_card(
    meta: dict[str, Any],
    run_dir: Path | None,
    *,
    channels: int | None = None,
    science: ScienceSpec | None = None,
) -> dict[str, Any]:
    """The model card block of model.json: arch, what it outputs, training progress, data with credits, metrics."""
    config = _read_json(run_dir / "config.json") if run_dir else {}
    dataset = config.get("dataset") or {}
    extra = meta.get("extra") or {}
    steps = extra.get("step")
    kimg = extra.get("kimg")
    if run_dir and (steps is None or kimg is None) and (run_dir / "stats.jsonl").is_file():
        lines = (run_dir / "stats.jsonl").read_text(encoding="utf-8").strip().splitlines()
        last = _read_json_line(lines[-1]) if lines else {}
        steps = steps if steps is not None else last.get("step")
        kimg = kimg if kimg is not None else last.get("kimg")
    sources = dataset.get("sources")
    if isinstance(sources, dict):
        sources = _names_with_counts(sources)
    return {
        "arch": meta.get("arch"),
        "config": meta.get("config"),
        "output": output_text(channels if channels is not None else meta.get("channels"), science),
        "training": {
            "steps": steps,
            "kimg": kimg,
            "run": extra.get("run") or (run_dir.name if run_dir else None),
        },
        "dataset": {
            "name": Path(str(dataset["path"])).name if dataset.get("path") else None,
            "content_hash": dataset.get("content_hash") or extra.get("dataset_hash"),
            "num_images": dataset.get("num_images"),
            "sources": sources if isinstance(sources, list) else [],
            "credits": _names_with_counts(dataset.get("credits")),
            "licences": _names_with_counts(dataset.get("licences")),
        },
        "metrics": _metrics_from_stats(run_dir),
    }


def _read_json_line(line: str) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except ValueError:
        return {}
    return rec if isinstance(rec, dict) else {}


def output_text(channels: Any, science: ScienceSpec | None) -> str:
    """One line for the model card: the bands and their units (science models), or the picture's channels."""
    if science is None:
        kind = {1: "grey", 3: "RGB"}.get(channels, "")
        return f"{channels}-channel {kind + ' ' if kind else ''}pictures, values in [-1, 1] -> uint8 ({TO_UINT8_RULE})"
    unit = science.bunit or "the data's (unrecorded) units"
    scale = f", {science.pixel_scale_arcsec:g} arcsec/px" if science.pixel_scale_arcsec is not None else ""
    parts = [
        f"{science.num_bands} band{'s' if science.num_bands != 1 else ''} ({', '.join(science.bands)}){scale}",
        f"FITS output is float32 in {unit} (the dataset's {science.stretch.kind} stretch undone)",
    ]
    if science.num_bands > 1:
        r, g, b = science.display_or_default().rgb
        shown = f"R = {r}, G = {g or f'the mean of {r} and {b}'}, B = {b}"
        parts.append(f"pictures are Lupton et al. (2004) colour composites, {shown}")
    return "; ".join(parts)


def science_spec(meta: dict[str, Any], run_dir: Path | None, *, channels: int) -> ScienceSpec | None:
    """The run's science spec (config.json `dataset.science`, else generator.json `extra.science`), checked.

    None for picture runs. A spec that does not parse, or names another number of bands than the generator
    draws channels, is a UserError: model.json must never describe output the graph does not make.
    """
    config = _read_json(run_dir / "config.json") if run_dir else {}
    dataset = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    raw = dataset.get("science") or extra.get("science")
    if not raw:
        return None
    try:
        spec = ScienceSpec.from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"the run's science spec (bands, stretch) is malformed: {exc}") from None
    assert spec is not None
    if spec.num_bands != channels:
        raise UserError(
            f"the run's science spec names {spec.num_bands} band(s) ({', '.join(spec.bands)}) but the generator "
            f"draws {channels} channel(s)"
        )
    return spec


def _stretch(run_dir: Path | None) -> Any:
    """The stretch to undo, from the run's config or the dataset manifest (None for plain pictures)."""
    if run_dir is None:
        return None
    dataset = _read_json(run_dir / "config.json").get("dataset") or {}
    if dataset.get("stretch"):
        return dataset["stretch"]
    manifest = _read_json(Path(str(dataset.get("path", ""))) / "manifest.json") if dataset.get("path") else {}
    value = manifest.get("stretch")
    if value is None and isinstance(manifest.get("params"), dict):
        value = manifest["params"].get("stretch") if manifest.get("dtype") == "float32" else None
    return value


def format_name(fmt: str) -> str:
    """`fmt` as FORMATS spell it (case and surrounding spaces ignored: "ONNX" is onnx); UserError if unknown."""
    name = str(fmt).strip().lower()
    if name not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    return name


def export_module(
    G: nn.Module,
    out_dir: str | Path,
    *,
    fmt: str = "onnx",
    opset: int = DEFAULT_OPSET,
    meta: dict[str, Any] | None = None,
    run_dir: Path | None = None,
    tolerance: float = PARITY_TOLERANCE,
    num_seeds: int = PARITY_NUM_SEEDS,
    overwrite: bool = False,
    source: dict[str, Any] | None = None,
) -> ExportResult:
    """Export a generator module into `out_dir` (built aside and renamed: nothing is left on failure).

    Parity against PyTorch (num_seeds seeds, batch sizes 1 and 16, max |diff| <= tolerance) is checked
    before the directory appears; over tolerance a ParityError (one line) is raised.
    """
    fmt = format_name(fmt)
    if num_seeds < 64:
        raise UserError(f"parity needs at least 64 seeds, got {num_seeds}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(
            f"{out_dir} is a file: give a folder for the export (model.* and model.json go in it)"
        )
    if out_dir.exists() and not overwrite:
        raise UserError(f"{out_dir} already exists: pass --overwrite or choose another --out")
    if overwrite and out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "model.json").is_file():
        raise UserError(  # --overwrite swaps the whole folder: never one of the user's other files
            f"{out_dir} holds no model.json: --overwrite replaces only an earlier export; choose another --out"
        )
    meta = dict(meta or {})
    wrapper: ExportWrapper = prepare_generator(G)
    names = (meta.get("extra") or {}).get("label_names") or meta.get("label_names")
    labels = class_names(names, wrapper.num_classes) if wrapper.conditional else None  # as FITS name them
    science = science_spec(meta, run_dir, channels=wrapper.channels)
    info = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "format": fmt,
        "file": MODEL_FILES[fmt],
        "inputs": {
            "latent": LATENT_INPUT,
            "class": CLASS_INPUT if wrapper.conditional else None,
            "cond": COND_INPUT if wrapper.cond_spec is not None else None,
            "truncation": TRUNC_INPUT,
        },
        "output": IMAGE_OUTPUT,
        "layout": "NCHW",
        "dynamic_axes": {"batch": 0},
        "z_dim": wrapper.z_dim,
        "latent": (
            "z = latents_for_seeds(seeds, z_dim) (NumPy PCG64 per seed); truncation is the `trunc` input "
            "float32 (N,), applied inside the network (z scaled for z-GANs, w pulled to its average for "
            "mapping networks)"
        ),
        "num_classes": wrapper.num_classes,
        "labels": labels,
        "default_class": "seed % num_classes" if wrapper.conditional else None,
        # Physical conditions: `cond` float32 (N, K) in these units, normalised inside the graph; requests
        # should stay within [low, high] (the trained range); the default is the training mean.
        "cond": wrapper.cond_spec.to_dict() if wrapper.cond_spec is not None else None,
        "image_size": wrapper.image_size,
        "channels": wrapper.channels,
        "value_range": [-1.0, 1.0],
        "to_uint8": TO_UINT8_RULE,
        # Science runs: flux = model_to_flux(images, ScienceSpec.from_dict(science)) (astrogan.science);
        # `stretch` is then that same stretch, so the one field older readers know is the one undone.
        "stretch": science.stretch.to_dict() if science is not None else _stretch(run_dir),
        "science": science.to_dict() if science is not None else None,
        "opset": opset if fmt == "onnx" else None,
    }
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        model_path = tmp / MODEL_FILES[fmt]
        if fmt == "onnx":
            export_onnx(wrapper, model_path, opset=opset, metadata=info)
            run = onnx_runner(model_path)
        else:
            info["method"] = export_torchscript(wrapper, model_path)
            run = torchscript_runner(model_path)
        parity = check_parity(
            wrapper.G,
            run,
            num_seeds=num_seeds,
            batch_sizes=PARITY_BATCH_SIZES,
            tolerance=tolerance,
            what=f"the {fmt} export",
        )
        info["parity"] = parity
        info["model_card"] = model_card(meta, run_dir, channels=wrapper.channels, science=science)
        info["source"] = source or {}
        info["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json(tmp / "model.json", info)
    return ExportResult(out_dir, out_dir / MODEL_FILES[fmt], info)


def export_generator(
    path: str | Path,
    *,
    fmt: str = "onnx",
    out_dir: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: float = PARITY_TOLERANCE,
    num_seeds: int = PARITY_NUM_SEEDS,
    overwrite: bool = False,
) -> ExportResult:
    """Export the EMA generator of a run dir, checkpoints dir or generator.safetensors/.json.

    Default output: `RUN/export-<fmt>/` (or `export-<fmt>/` beside a checkpoint outside a run).
    """
    from astrogan.models.io import load_generator_module

    fmt = format_name(fmt)  # before loading anything; and the default folder is export-onnx for "ONNX" too
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: point --run at a run dir or --checkpoint at a generator")
    G, meta = load_generator_module(path, device="cpu")
    run_dir = _find_run_dir(path if path.is_dir() else path.parent)
    if out_dir is None:
        base = run_dir or (path if path.is_dir() else path.parent)
        out_dir = base / f"export-{fmt}"
    source = {"path": str(path.resolve()), "weights_sha256": meta.get("weights_sha256")}
    return export_module(
        G,
        out_dir,
        fmt=fmt,
        opset=opset,
        meta=meta,
        run_dir=run_dir,
        tolerance=tolerance,
        num_seeds=num_seeds,
        overwrite=overwrite,
        source=source,
    )
