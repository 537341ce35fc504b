"""`astrogan inspect features`: look inside a trained generator, its feature maps layer by layer."""

from __future__ import annotations

from pathlib import Path

import typer

MAX_SEEDS = 16  # a figure holds one block of tiles per seed in every layer: more is unreadable

inspect_app = typer.Typer(
    help="Look inside a trained generator.",
    no_args_is_help=True,
    add_completion=False,
)


@inspect_app.command("features")
def features_cmd(
    run: Path = typer.Option(
        ..., "--run", help="Run directory (or its checkpoints/ or generator.safetensors)."
    ),
    seeds: str = typer.Option(
        None, "--seeds", "--seed", help=f"Seed or a few (e.g. 7 or 7,8; at most {MAX_SEEDS}); default 0."
    ),
    layers: str = typer.Option(
        "all",
        "--layers",
        help="all, or a comma list of layer names or indices (0 = the first, 4x4 layer; -1 = output). "
        "A layer is the last block output at each resolution, found by hooks, plus the output.",
    ),
    max_channels: int = typer.Option(
        16, "--max-channels", help="Channels shown per layer, most active (mean |activation|) first."
    ),
    columns: int = typer.Option(8, "--columns", help="Tiles per row within a layer."),
    tile_px: int = typer.Option(48, "--tile-px", help="Side of one channel's tile in pixels."),
    cmap: str = typer.Option(
        "magma", "--cmap", help="matplotlib colour map; perceptual ones: magma, viridis, inferno, cividis."
    ),
    class_: int = typer.Option(
        None, "--class", help="Class index for a class-conditional model (default seed % classes)."
    ),
    cond: str = typer.Option(
        None,
        "--cond",
        help="Physical conditions for a model trained with --cond, e.g. sersic_n=1.2,q=0.4 (the rest at the "
        "training mean).",
    ),
    extrapolate: bool = typer.Option(
        False, "--extrapolate", help="Allow conditions outside the trained range."
    ),
    trunc: float = typer.Option(
        1.0, "--trunc", help="Truncation: 1 = none (in w for StyleGAN2, z otherwise)."
    ),
    sweep: str = typer.Option(
        None,
        "--sweep",
        help="Two seeds A,B: animate the figure along a slerp in z from A to B (writes a GIF; not with --seeds).",
    ),
    frames: int = typer.Option(16, "--frames", help="Frames of a --sweep, both ends included."),
    frame_ms: int = typer.Option(100, "--frame-ms", help="Milliseconds per frame of a --sweep."),
    bounce: bool = typer.Option(
        True, "--bounce/--no-bounce", help="Play a --sweep forth and back so the loop has no jump."
    ),
    out: Path = typer.Option(..., "--out", help="Output: a .png figure, or a .gif for --sweep."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """The generator's activations for one seed (or a few), layer by layer: per layer a tile per channel,
    most active first, each channel normalised to its 1st-99th percentile, in a perceptual colour map."""
    from astrogan.utils.errors import UserError
    from astrogan.utils.seeds import check_trunc, parse_seeds

    if not 1 <= max_channels <= 1024:
        raise UserError(f"--max-channels must be in 1..1024, got {max_channels}")
    if not (1 <= columns <= 256 and 4 <= tile_px <= 512):
        raise UserError(f"--columns must be in 1..256 and --tile-px in 4..512, got {columns} and {tile_px}")
    check_trunc(trunc, name="--trunc")
    ends: list[int] = []
    seed_list: list[int] = []
    if sweep is not None and seeds is not None:
        raise UserError("give --seeds for a figure or --sweep A,B for an animation, not both")
    want = ".gif" if sweep is not None else ".png"
    if out.suffix.lower() != want:
        what = "a --sweep is an animation" if sweep is not None else "a feature figure is a picture"
        raise UserError(f"{what}: --out must end in {want}, got {out.name}")
    if sweep is not None:
        ends = parse_seeds(sweep)
        if len(ends) != 2:
            raise UserError(f"--sweep wants two seeds A,B, got {sweep!r}")
        if not 2 <= frames <= 500:
            raise UserError(f"--frames must be in 2..500, got {frames}")
        if not 20 <= frame_ms <= 10_000:
            raise UserError(f"--frame-ms must be in 20..10000, got {frame_ms}")
    else:
        seed_list = parse_seeds(seeds if seeds is not None else "0", max_count=MAX_SEEDS)
    if not run.exists():
        raise UserError(f"run {run} does not exist")

    from astrogan.sampling.features import feature_figure, feature_sweep, features_for, write_gif
    from astrogan.sampling.generator import load_generator
    from astrogan.sampling.post import save_png
    from astrogan.utils.log import info, progress

    gen = load_generator(run, device=device)
    draw = {"max_channels": max_channels, "cmap": cmap, "tile_px": tile_px, "columns": columns}
    cond_kw = {"labels": class_, "cond": cond, "check_cond": not extrapolate, "trunc": trunc}
    if sweep is not None:
        with progress() as bar:
            task = bar.add_task("sweeping", total=2 * frames, info="")
            images = feature_sweep(
                gen,
                ends[0],
                ends[1],
                num_frames=frames,
                layers=layers,
                on_frames=lambda n: bar.advance(task, n),
                **cond_kw,
                **draw,
            )
        write_gif(images, out, frame_ms=frame_ms, bounce=bounce)
        info(f"[green]wrote {out} ({len(images)} frames, seed {ends[0]} → {ends[1]})")
        return
    feats = features_for(gen, seed_list, layers=layers, **cond_kw)
    which = f"seed {seed_list[0]}" if len(seed_list) == 1 else "seeds " + ", ".join(map(str, seed_list))
    if len(seed_list) > 1:
        which += " (one block per seed, in this order)"
    save_png(feature_figure(feats, title=which, **draw), out)
    info(f"[green]wrote {out} ({len(feats)} layers)")


def register(app: typer.Typer) -> None:
    """Add the `inspect` group to the root app."""
    app.add_typer(inspect_app, name="inspect")
