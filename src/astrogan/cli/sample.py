"""`astrogan generate|interpolate|average|progress-video`: pictures from a trained run or an exported model."""

from __future__ import annotations

from pathlib import Path

import typer

RUN_HELP = "Run directory (or its checkpoints/ or generator.safetensors)."


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
        from astrogan.web.onnx_generator import OnnxGenerator

        return OnnxGenerator(model)
    if not run.exists():
        raise UserError(f"run {run} does not exist")
    from astrogan.sampling.generator import load_generator

    return load_generator(run, device=device)


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
        grid: bool = typer.Option(False, "--grid", help="Also write all images as one grid.png."),
        batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    ) -> None:
        """Write one PNG per seed (seedNNNN.png); seed N always gives the same image."""
        from astrogan.utils.errors import UserError
        from astrogan.utils.seeds import parse_seeds

        if not 0 < trunc <= 2:
            raise UserError(f"--trunc must be in (0, 2], got {trunc}")
        seed_list = parse_seeds(seeds)
        gen = open_generator(run, model, device)
        spec = getattr(gen, "cond_spec", None)
        if (cond or cond_grid) and spec is None:
            raise UserError("this model takes no physical conditions: drop --cond/--cond-grid")
        out.mkdir(parents=True, exist_ok=True)
        if cond_grid:
            _write_cond_grid(
                gen, spec, seed_list, cond_grid, cond, trunc=trunc, check=not extrapolate, out=out
            )
            return
        rows = spec.rows(cond, 1, check=not extrapolate)[0] if spec is not None else None
        _write_seeds(
            gen, seed_list, trunc=trunc, labels=class_, cond=rows, batch_size=batch_size, out=out, grid=grid
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
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    ) -> None:
        """Slerp in z from start images (top row) to end images (bottom row), the APOD project's sheet."""
        from astrogan.sampling.generator import load_generator
        from astrogan.sampling.interpolate import interpolation_sheet
        from astrogan.sampling.post import save_png
        from astrogan.utils.errors import UserError
        from astrogan.utils.log import info

        if not (1 <= rows <= 64 and 2 <= steps <= 64):
            raise UserError("--rows must be in 1..64 and --steps in 2..64")
        gen = load_generator(run, device=device)
        target = out or _run_root(run) / "interpolation.png"
        save_png(interpolation_sheet(gen, rows=rows, steps=steps, seed=seed, trunc=trunc), target)
        info(f"[green]wrote {target}")

    @app.command("average")
    def average_cmd(
        run: Path = typer.Option(..., "--run", help=RUN_HELP),
        num: int = typer.Option(1000, "--num", help="How many generated images to average."),
        seed: int = typer.Option(0, "--seed", help="First seed."),
        out: Path = typer.Option(None, "--out", help="Output PNG (default RUN/average-NUM.png)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    ) -> None:
        """The average of NUM generated images: where the model puts its light on average."""
        from astrogan.sampling.average import average_image
        from astrogan.sampling.generator import load_generator
        from astrogan.sampling.post import save_png
        from astrogan.utils.errors import UserError
        from astrogan.utils.log import info, progress

        if not 1 <= num <= 1_000_000:
            raise UserError(f"--num must be in 1..1000000, got {num}")
        gen = load_generator(run, device=device)
        with progress() as bar:
            task = bar.add_task("averaging", total=num, info="")
            mean = average_image(gen, num=num, seed=seed, on_batch=lambda n: bar.advance(task, n))
        target = out or _run_root(run) / f"average-{num}.png"
        save_png(mean, target)
        info(f"[green]wrote {target}")

    @app.command("progress-video")
    def progress_video_cmd(
        run: Path = typer.Option(..., "--run", help="Run directory."),
        out: Path = typer.Option(None, "--out", help="Output GIF (default RUN/progress.gif)."),
        frame_ms: int = typer.Option(250, "--frame-ms", help="Milliseconds per snapshot frame."),
    ) -> None:
        """Animate the run's fixed-seed snapshot grids (snapshots/step-*.png) into a GIF."""
        from astrogan.sampling.video import progress_gif
        from astrogan.utils.log import info

        target = out or Path(run) / "progress.gif"
        progress_gif(Path(run), target, frame_ms=frame_ms)
        info(f"[green]wrote {target}")


def _run_root(path: Path) -> Path:
    """The run directory for a path that may point inside it."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    return p.parent if p.name == "checkpoints" else p


def _write_seeds(gen, seeds, *, trunc, labels, cond, batch_size: int, out: Path, grid: bool) -> None:  # noqa: ANN001
    """One PNG per seed (and grid.png), with a progress bar; `cond` (K,) for every seed or None."""
    import numpy as np

    from astrogan.imaging import make_grid
    from astrogan.sampling.post import save_png
    from astrogan.utils.log import info, progress

    images = []
    extra = {} if cond is None else {"cond": cond, "check_cond": False}  # checked by the caller
    with progress() as bar:
        task = bar.add_task("generating", total=len(seeds), info="")
        for i in range(0, len(seeds), batch_size):
            chunk = seeds[i : i + batch_size]
            imgs = gen.generate(chunk, trunc=trunc, labels=labels, batch_size=batch_size, **extra)
            for s, img in zip(chunk, imgs, strict=True):
                save_png(img, out / f"seed{s:04d}.png")
            if grid:
                images.extend(imgs)
            bar.advance(task, len(chunk))
    if grid:
        save_png(make_grid(np.stack(images)), out / "grid.png")
    info(f"[green]wrote {len(seeds)} images to {out}")


def _write_cond_grid(gen, spec, seeds, grid_text: str, base, *, trunc: float, check: bool, out: Path) -> None:  # noqa: ANN001
    """cond_grid.png (pixel sheet), cond_grid_labelled.png (axes labelled) and cond_grid.json (every cell)."""
    from astrogan.imaging import make_grid
    from astrogan.sampling.grids import save_cond_sheet
    from astrogan.sampling.post import save_png
    from astrogan.utils.atomic import write_json
    from astrogan.utils.log import info

    flat_seeds, flat_conds, axes, conds = spec.grid_requests(seeds, grid_text, base=base, check=check)
    images = gen.generate(flat_seeds, trunc=trunc, cond=flat_conds, check_cond=False, batch_size=32)
    cols = conds.shape[1]
    save_png(make_grid(images, ncols=cols), out / "cond_grid.png")
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
        },
    )
    info(f"[green]wrote a {conds.shape[0]}x{cols} condition sheet to {out / 'cond_grid_labelled.png'}")
