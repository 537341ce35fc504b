"""`astrogan export`: a trained generator -> ONNX or TorchScript + model.json, checked for parity."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add `export` to the root app."""

    @app.command("export")
    def export(
        run: Path | None = typer.Option(
            None, "--run", help="Run directory (uses RUN/checkpoints/generator.*)."
        ),
        checkpoint: Path | None = typer.Option(
            None, "--checkpoint", help="generator.safetensors/.json or a checkpoints dir."
        ),
        fmt: str = typer.Option("onnx", "--format", help="onnx (for `astrogan serve`) or torchscript."),
        out: Path | None = typer.Option(None, "--out", help="Output folder (default: RUN/export-<format>)."),
        opset: int = typer.Option(17, "--opset", min=13, max=21, help="ONNX opset version."),
        tolerance: float = typer.Option(
            1e-4, "--tolerance", min=0.0, help="Largest |exported - PyTorch| allowed (fp32, [-1, 1])."
        ),
        num_seeds: int = typer.Option(
            64, "--num-seeds", min=64, max=4096, help="Seeds drawn by both models in the parity check."
        ),
        overwrite: bool = typer.Option(
            False,
            "--overwrite",
            help="Replace an earlier export (a folder with model.json), never other files.",
        ),
    ) -> None:
        """Export the EMA generator (inference mode, dynamic batch) and check it draws what PyTorch draws."""
        from astrogan.export import FORMATS, export_generator
        from astrogan.utils.errors import UserError
        from astrogan.utils.log import info

        if (run is None) == (checkpoint is None):
            raise UserError("give exactly one of --run RUN or --checkpoint PATH")
        name = fmt.strip().lower()  # any case ("ONNX"), as generate --format
        if name not in FORMATS:
            raise UserError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        fmt = name
        source = run if run is not None else checkpoint
        info(f"exporting {source} as {fmt} ...")
        result = export_generator(
            source,
            fmt=fmt,
            out_dir=out,
            opset=opset,
            tolerance=tolerance,
            num_seeds=num_seeds,
            overwrite=overwrite,
        )
        parity = result.meta["parity"]
        typer.echo(
            f"parity: max |{fmt} - pytorch| = {parity['max_abs_diff']:.3g} over {parity['num_seeds']} "
            f"seeds at batch sizes {parity['batch_sizes']} (tolerance {parity['tolerance']:g})"
        )
        if result.meta.get("science"):  # a science model: say what its output is, in bands and units
            typer.echo(f"output: {result.meta['model_card']['output']}")
        typer.echo(f"wrote {result.model_path} and {result.out_dir / 'model.json'}")
