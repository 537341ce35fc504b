"""`astrogan generate|interpolate|average|progress-video`: pictures from a trained run or an exported model."""

from __future__ import annotations

from pathlib import Path

import typer

RUN_HELP = "Run directory (or its checkpoints/ or generator.safetensors)."
RGB_HELP = (
    "Multi-band runs: the bands shown as red, green, blue, e.g. i,r,g (default: the run's recorded mapping; "
    "recorded in each PNG's metadata)."
)
BAND_HELP = "Show this band alone, in grey (a band name of a multi-band run, or a channel number 0, 1, 2)."


def open_generator(run: Path | None, model: Path | None, device: str):  # noqa: ANN201
    """The generator behind `--run RUN` (PyTorch) or `--model model.onnx` (ONNX Runtime): exactly one."""
    from astrogan.utils.errors import UserError

    if (run is None) == (model is None):
        raise UserError("give exactly one of --run RUN or --model model.onnx")
    if model is not None:
        if model.suffix != ".onnx":
            raise UserError(
                f"--model wants an exported .onnx file, got {model}; use --run for a run directory"
            )
    elif run is not None and not run.exists():
        raise UserError(f"run {run} does not exist")
    from astrogan import load_generator  # the one opener of every kind (ONNX Runtime for .onnx, else PyTorch)

    return load_generator(model if model is not None else run, device=device)


def register(app: typer.Typer) -> None:
    """Add the sampling commands to the root app."""

    @app.command("generate")
    def generate_cmd(
        run: Path = typer.Option(None, "--run", help=RUN_HELP),
        model: Path = typer.Option(None, "--model", help="An exported model.onnx (needs no torch)."),
        seeds: str = typer.Option("0-63", "--seeds", help="Seeds, e.g. 0-63 or 1,5,9; one image each."),
        trunc: float = typer.Option(
            1.0,
            "--trunc",
            help="Truncation: 1 = none, 0.7 = tamer images (z towards 0, or w towards its average for StyleGAN2).",
        ),
        class_: int = typer.Option(None, "--class", help="Class index for a conditional model."),
        cond: str = typer.Option(
            None,
            "--cond",
            help="Physical conditions for a model trained with --cond, e.g. sersic_n=1.2,half_light_radius_px=6,q=0.4 "
            "(the rest at the training mean; must lie in the trained range).",
        ),
        cond_grid: str = typer.Option(
            None,
            "--cond-grid",
            help="Vary one or two conditions, name=start:stop:count each, e.g. sersic_n=1:4:5,q=0.4:1:4: one "
            "axis gives one row per seed; two axes one sheet for one seed. Writes cond_grid.png (+ labelled, + .json).",
        ),
        extrapolate: bool = typer.Option(
            False, "--extrapolate", help="Allow conditions outside the trained range (results may be poor)."
        ),
        out: Path = typer.Option(Path("generated"), "--out", help="Output folder."),
        format_: str = typer.Option(
            "png",
            "--format",
            help="png: pictures (seedNNNN.png); fits: float32 cubes (seedNNNN.fits) in the data's physical units "
            "(the stretch undone; plain-picture runs: [0, 1], BUNIT 'display'), band names, units, run, step, "
            "seed, truncation and conditioning in the header.",
        ),
        rgb: str = typer.Option(None, "--rgb", help=RGB_HELP),
        band: str = typer.Option(None, "--band", help=BAND_HELP),
        grid: bool = typer.Option(False, "--grid", help="Also write all images as one grid.png."),
        batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per forward pass."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    ) -> None:
        """Write one PNG (or FITS cube) per seed, seedNNNN.png/.fits; seed N always gives the same image."""
        from astrogan.utils.errors import UserError
        from astrogan.utils.seeds import parse_seeds

        _check_trunc(trunc)
        fmt = format_.strip().lower()
        if fmt not in ("png", "fits"):
            raise UserError(f"--format must be png or fits, got {format_!r}")
        if fmt == "fits" and (rgb or band) and not grid:
            raise UserError(
                "--rgb/--band choose how pictures are drawn; FITS cubes hold every band: drop them"
            )
        seed_list = _each_once(parse_seeds(seeds))
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file: give a folder (one seedNNNN.{fmt} per seed goes in it)")
        gen = open_generator(run, model, device)
        view = _view(gen, rgb, band)
        spec = getattr(gen, "cond_spec", None)
        if (cond or cond_grid) and spec is None:
            raise UserError("this model takes no physical conditions: drop --cond/--cond-grid")
        if cond_grid and fmt == "fits":
            raise UserError("--cond-grid writes picture sheets: drop --format fits (or --cond-grid)")
        _check_class(gen, class_)  # every request is checked before --out is made: a mistake leaves nothing
        if cond_grid:
            _write_cond_grid(
                gen, spec, seed_list, cond_grid, cond, trunc=trunc, check=not extrapolate, out=out, view=view
            )
            return
        rows = spec.rows(cond, 1, check=not extrapolate)[0] if spec is not None else None
        out.mkdir(parents=True, exist_ok=True)
        if fmt == "fits":
            _write_fits(gen, seed_list, trunc=trunc, labels=class_, cond=rows, batch_size=batch_size, out=out)
            if not grid:
                return
        _write_seeds(
            gen,
            seed_list,
            trunc=trunc,
            labels=class_,
            cond=rows,
            batch_size=batch_size,
            out=out,
            grid=grid,
            view=view,
            each=fmt == "png",
        )

    _register_walks(app)


def _register_walks(app: typer.Typer) -> None:
    """interpolate, average and progress-video."""

    @app.command("interpolate")
    def interpolate_cmd(
        run: Path = typer.Option(..., "--run", help=RUN_HELP),
        rows: int = typer.Option(8, "--rows", help="Number of start/end pairs (columns of the sheet)."),
        steps: int = typer.Option(8, "--steps", help="Images from start to end, both included."),
        seed: int = typer.Option(0, "--seed", help="First seed; pairs use seed..seed+2*rows-1."),
        trunc: float = typer.Option(
            1.0, "--trunc", help="Truncation (1 = none; in w for StyleGAN2, in z otherwise)."
        ),
        out: Path = typer.Option(None, "--out", help="Output PNG (default RUN/interpolation.png)."),
        rgb: str = typer.Option(None, "--rgb", help=RGB_HELP),
        band: str = typer.Option(None, "--band", help=BAND_HELP),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    ) -> None:
        """Slerp in z from start images (top row) to end images (bottom row), the APOD project's sheet."""
        from astrogan.sampling.generator import load_generator
        from astrogan.sampling.interpolate import interpolation_sheet
        from astrogan.sampling.post import DISPLAY_KEY, save_png
        from astrogan.utils.errors import UserError
        from astrogan.utils.log import info

        if not (1 <= rows <= 64 and 2 <= steps <= 64):
            raise UserError("--rows must be in 1..64 and --steps in 2..64")
        _check_trunc(trunc)
        _check_first_seed(seed, 2 * rows)
        _check_out_file(out, ".png")
        gen = load_generator(run, device=device).with_view(rgb=rgb, band=band)
        target = out or _run_root(run) / "interpolation.png"
        sheet = interpolation_sheet(gen, rows=rows, steps=steps, seed=seed, trunc=trunc)
        save_png(sheet, target, text={DISPLAY_KEY: gen.view.describe()})
        info(f"[green]wrote {target}")

    @app.command("average")
    def average_cmd(
        run: Path = typer.Option(..., "--run", help=RUN_HELP),
        num: int = typer.Option(1000, "--num", help="How many generated images to average."),
        seed: int = typer.Option(0, "--seed", help="First seed."),
        out: Path = typer.Option(None, "--out", help="Output PNG (default RUN/average-NUM.png)."),
        rgb: str = typer.Option(None, "--rgb", help=RGB_HELP),
        band: str = typer.Option(None, "--band", help=BAND_HELP),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    ) -> None:
        """The average of NUM generated images (of their fluxes, for science runs): where the light goes."""
        from astrogan.sampling.average import average_image
        from astrogan.sampling.generator import load_generator
        from astrogan.sampling.post import DISPLAY_KEY, save_png
        from astrogan.utils.errors import UserError
        from astrogan.utils.log import info, progress

        if not 1 <= num <= 1_000_000:
            raise UserError(f"--num must be in 1..1000000, got {num}")
        _check_first_seed(seed, num)
        _check_out_file(out, ".png")
        gen = load_generator(run, device=device).with_view(rgb=rgb, band=band)
        with progress() as bar:
            task = bar.add_task("averaging", total=num, info="")
            mean = average_image(gen, num=num, seed=seed, on_batch=lambda n: bar.advance(task, n))
        target = out or _run_root(run) / f"average-{num}.png"
        save_png(mean, target, text={DISPLAY_KEY: gen.view.describe()})
        info(f"[green]wrote {target}")

    @app.command("progress-video")
    def progress_video_cmd(
        run: Path = typer.Option(..., "--run", help="Run directory."),
        out: Path = typer.Option(None, "--out", help="Output GIF (default RUN/progress.gif)."),
        frame_ms: int = typer.Option(
            250,
            "--frame-ms",
            min=10,
            help="Milliseconds per snapshot frame (GIF keeps 10 ms steps; at least 10).",
        ),
        rgb: str = typer.Option(None, "--rgb", help=RGB_HELP + " Redraws a science run's snapshots."),
        band: str = typer.Option(None, "--band", help=BAND_HELP),
    ) -> None:
        """Animate the run's fixed-seed snapshot grids (snapshots/step-*.png) into a GIF."""
        from astrogan.sampling.video import progress_gif
        from astrogan.utils.log import info

        _check_out_file(out, ".gif")
        target = out or Path(run) / "progress.gif"
        progress_gif(Path(run), target, frame_ms=frame_ms, rgb=rgb, band=band)
        info(f"[green]wrote {target}")


def _run_root(path: Path) -> Path:
    """The run directory for a path that may point inside it."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    return p.parent if p.name == "checkpoints" else p


def _view(gen, rgb: str | None, band: str | None):  # noqa: ANN001, ANN202
    """How this generator's pictures are drawn (`post.make_view`): its science spec, --rgb or --band on top."""
    from astrogan.sampling.post import make_view, science_of

    return make_view(science_of(gen), int(gen.channels), rgb=rgb, band=band)


def _each_once(seeds: list[int]) -> list[int]:
    """`seeds` with repeats dropped (first place kept), with a note naming them: seed N is one file, seedNNNN."""
    from collections import Counter

    from astrogan.utils.log import info

    repeated = [s for s, k in Counter(seeds).items() if k > 1]
    if not repeated:
        return seeds
    shown = ", ".join(map(str, repeated[:5])) + (", ..." if len(repeated) > 5 else "")
    info(f"[yellow]note: seed(s) {shown} listed more than once; each seed is drawn once")
    return list(dict.fromkeys(seeds))


def _check_out_file(out: Path | None, suffix: str) -> None:
    """UserError when --out names a folder, or a file whose suffix is not `suffix` (the format written)."""
    from astrogan.utils.errors import UserError

    if out is None:
        return
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: give a file name ending in {suffix}")
    if out.suffix.lower() != suffix:
        raise UserError(
            f"--out {out}: this command writes {suffix[1:].upper()}, so the name must end in {suffix}"
        )


def _check_trunc(trunc: float) -> None:
    """UserError unless --trunc is in (0, 2] (NaN too: it would draw every pixel black), as the API's `trunc=`."""
    from astrogan.utils.seeds import check_trunc

    check_trunc(trunc, name="--trunc")


def _check_first_seed(seed: int, count: int) -> None:
    """UserError unless the seeds seed..seed+count-1 all lie in 0..MAX_SEED, as --seeds must."""
    from astrogan.utils.errors import UserError
    from astrogan.utils.seeds import MAX_SEED

    if not 0 <= seed <= MAX_SEED - count + 1:
        raise UserError(
            f"--seed must be in 0..{MAX_SEED - count + 1} (this draws seeds --seed..--seed+{count - 1}, "
            f"and seeds are 0..{MAX_SEED}), got {seed}"
        )


def _check_class(gen, class_: int | None) -> None:  # noqa: ANN001
    """UserError unless `--class` fits the model: none for an unconditional or condition model, else 0..N-1."""
    from astrogan.utils.errors import UserError
    from astrogan.utils.seeds import labels_for_seeds

    if class_ is None:
        return
    spec = getattr(gen, "cond_spec", None)
    if spec is not None:
        raise UserError(
            f"this model is conditioned on {', '.join(spec.names)}, not classes: use --cond instead of --class"
        )
    labels_for_seeds([0], int(getattr(gen, "num_classes", 0) or 0), class_)


def _pictures(gen, view, seeds, *, trunc, labels=None, cond=None, batch_size: int = 32):  # noqa: ANN001, ANN202
    """uint8 (N, H, W, 3|1) pictures of `seeds` drawn through `view`, from a PyTorch or an ONNX generator."""
    if hasattr(gen, "generate_tensor"):
        extra = {} if cond is None else {"cond": cond, "check_cond": False}  # checked by the caller
        imgs = gen.generate_tensor(seeds, trunc=trunc, labels=labels, batch_size=batch_size, **extra)
        return view.pictures(imgs)
    from astrogan.utils.seeds import labels_for_seeds

    given = labels_for_seeds(seeds, gen.num_classes if gen.has_class_input else 0, labels)
    floats = gen.generate_float(
        gen.latents(seeds), labels=given, cond=cond, trunc=trunc, check_cond=False, batch_size=batch_size
    )
    return view.pictures(floats)


def _write_fits(gen, seeds, *, trunc, labels, cond, batch_size: int, out: Path) -> None:  # noqa: ANN001
    """One FITS cube per seed (`sampling.fits_out.generate_fits`), with a progress bar."""
    from astrogan.sampling.fits_out import generate_fits
    from astrogan.utils.log import info, progress

    with progress() as bar:
        task = bar.add_task("writing FITS", total=len(seeds), info="")
        paths = generate_fits(
            gen,
            seeds,
            out,
            trunc=trunc,
            labels=labels,
            cond=cond,
            check_cond=False,  # checked by the caller
            batch_size=batch_size,
            on_batch=lambda n: bar.advance(task, n),
        )
    info(f"[green]wrote {len(paths)} FITS cubes to {out}")


def _write_seeds(  # noqa: ANN001
    gen, seeds, *, trunc, labels, cond, batch_size: int, out: Path, grid: bool, view, each: bool = True
) -> None:
    """One PNG per seed (when `each`) and grid.png (when `grid`), with a progress bar; `cond` (K,) or None.

    Each PNG records how it was drawn (`view.describe()`) in its metadata.
    """
    import numpy as np

    from astrogan.imaging import make_grid
    from astrogan.sampling.post import DISPLAY_KEY, save_png
    from astrogan.utils.log import info, progress

    images = []
    text = {DISPLAY_KEY: view.describe()}
    with progress() as bar:
        task = bar.add_task("generating", total=len(seeds), info="")
        for i in range(0, len(seeds), batch_size):
            chunk = seeds[i : i + batch_size]
            imgs = _pictures(gen, view, chunk, trunc=trunc, labels=labels, cond=cond, batch_size=batch_size)
            if each:
                for s, img in zip(chunk, imgs, strict=True):
                    save_png(img, out / f"seed{s:04d}.png", text=text)
            if grid:
                images.extend(imgs)
            bar.advance(task, len(chunk))
    if grid:
        save_png(make_grid(np.stack(images)), out / "grid.png", text=text)
    if each:
        info(f"[green]wrote {len(seeds)} images to {out}")


def _write_cond_grid(  # noqa: ANN001
    gen, spec, seeds, grid_text: str, base, *, trunc: float, check: bool, out: Path, view
) -> None:
    """cond_grid.png (pixel sheet), cond_grid_labelled.png (axes labelled) and cond_grid.json (every cell)."""
    from astrogan.imaging import make_grid
    from astrogan.sampling.grids import save_cond_sheet
    from astrogan.sampling.post import DISPLAY_KEY, save_png
    from astrogan.utils.atomic import write_json
    from astrogan.utils.log import info

    flat_seeds, flat_conds, axes, conds = spec.grid_requests(seeds, grid_text, base=base, check=check)
    out.mkdir(parents=True, exist_ok=True)
    images = _pictures(gen, view, flat_seeds, trunc=trunc, cond=flat_conds, batch_size=32)
    cols = conds.shape[1]
    save_png(make_grid(images, ncols=cols), out / "cond_grid.png", text={DISPLAY_KEY: view.describe()})
    save_cond_sheet(
        out / "cond_grid_labelled.png",
        images,
        axes,
        seeds=flat_seeds,
        units=dict(zip(spec.names, spec.units, strict=True)),
    )
    write_json(
        out / "cond_grid.json",
        {
            "axes": [{"name": n, "values": [float(v) for v in vals]} for n, vals in axes],
            "names": list(spec.names),
            "rows": conds.shape[0],
            "cols": cols,
            "cells": [
                {"seed": s, "cond": [float(v) for v in c]}
                for s, c in zip(flat_seeds, flat_conds, strict=True)
            ],
            "trunc": trunc,
            "display": view.describe(),
        },
    )
    info(f"[green]wrote a {conds.shape[0]}x{cols} condition sheet to {out / 'cond_grid_labelled.png'}")
