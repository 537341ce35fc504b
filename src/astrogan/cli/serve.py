"""`astrogan serve`: the "these nebulae do not exist" page and API on ONNX Runtime, with a refill worker."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add `serve` to the root app."""

    @app.command("serve")
    def serve(
        model: Path = typer.Option(..., "--model", help="Exported model.onnx (from `astrogan export`)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port to listen on."),
        pool: Path | None = typer.Option(
            None,
            "--pool",
            help="Folder for the pool of pre-generated images (default: pool/ beside the model).",
        ),
        pool_size: int = typer.Option(
            500, "--pool-size", min=1, help="Images the refill worker keeps ready."
        ),
        low_water: int = typer.Option(
            100, "--low-water", min=0, help="The worker refills up to --pool-size when fewer remain."
        ),
        workers: int = typer.Option(1, "--workers", min=1, max=64, help="Server processes sharing the pool."),
        when_empty: str = typer.Option(
            "reuse", "--when-empty", help="When the pool is dry: `reuse` recent images or `generate` inline."
        ),
        reservoir: int = typer.Option(
            64, "--reservoir", min=1, help="Recent images kept for --when-empty reuse."
        ),
        trunc: float = typer.Option(
            1.0, "--trunc", min=0.0, max=2.0, help="Truncation of the pool's images."
        ),
        threads: int = typer.Option(
            0, "--threads", min=0, help="ONNX Runtime threads per process (0: its default)."
        ),
        no_refill: bool = typer.Option(False, "--no-refill", help="Do not start the refill worker process."),
        log_level: str = typer.Option("warning", "--log-level", help="Uvicorn log level."),
    ) -> None:
        """Serve generated pictures: / (the page), /api/image.png, /api/interpolate, /api/grid, /metrics."""
        from astrogan.utils.errors import UserError
        from astrogan.web.server import run_server
        from astrogan.web.settings import ServeSettings

        if when_empty not in ("reuse", "generate"):
            raise UserError(f"--when-empty must be reuse or generate, not {when_empty!r}")
        if not model.is_file():
            raise UserError(f"no model at {model}: export one with `astrogan export --run RUN --format onnx`")
        if low_water >= pool_size:
            raise UserError(f"--low-water ({low_water}) must be below --pool-size ({pool_size})")
        settings = ServeSettings(
            model_path=model.resolve(),
            pool_dir=pool.resolve() if pool else None,
            pool_size=pool_size,
            low_water=low_water,
            reservoir_size=reservoir,
            when_empty=when_empty,
            trunc=trunc,
            num_threads=threads,
        )
        run_server(settings, host=host, port=port, workers=workers, refill=not no_refill, log_level=log_level)
