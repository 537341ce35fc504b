"""`astrogan serve`: the "this galaxy does not exist" page and API on ONNX Runtime, with a refill worker."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add `serve` to the root app."""

    @app.command("serve")
    def serve(
        model: Path = typer.Option(
            ...,
            "--model",
            help="Exported model.onnx (from `astrogan export`). A science model is shown as colour composites "
            "(rgb=i,r,g or band=r per request) and /api/image.png gives its FITS cube with format=fits.",
        ),
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
            1.0, "--trunc", max=2.0, help="Truncation of the pool's images, in (0, 2]."
        ),
        threads: int = typer.Option(
            0, "--threads", min=0, help="ONNX Runtime threads per process (0: its default)."
        ),
        subject: str | None = typer.Option(
            None,
            "--subject",
            help='What the pictures show, for the title ("galaxy": "This galaxy does not exist"); default: '
            'from the model card (the dataset name or its sources), else "sky".',
        ),
        heavy_workers: int = typer.Option(
            1,
            "--heavy-workers",
            min=1,
            max=64,
            help="Threads per process for /api/interpolate and /api/grid.",
        ),
        heavy_queue: int = typer.Option(
            4,
            "--heavy-queue",
            min=0,
            help="Interpolations/grids waiting per process; more get 503 + Retry-After.",
        ),
        heavy_rate: float = typer.Option(
            30.0,
            "--heavy-rate",
            min=0.001,
            help="Interpolations/grids one client may ask per minute (per process); more get 429 + Retry-After.",
        ),
        header_timeout: float = typer.Option(
            10.0,
            "--header-timeout",
            min=0.1,
            max=600,
            help="Seconds a client has to send a request's headers.",
        ),
        no_refill: bool = typer.Option(
            False,
            "--no-refill",
            help="Do not start the refill worker process (/healthz says degraded, 503, once the pool is empty).",
        ),
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
        from pydantic import ValidationError

        try:
            settings = ServeSettings(
                model_path=model.resolve(),
                pool_dir=pool.resolve() if pool else None,
                pool_size=pool_size,
                low_water=low_water,
                reservoir_size=reservoir,
                when_empty=when_empty,
                trunc=trunc,
                num_threads=threads,
                subject=subject,
                heavy_workers=heavy_workers,
                heavy_queue=heavy_queue,
                heavy_rate_per_min=heavy_rate,
                header_timeout_s=header_timeout,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err.get("loc", ()))
            raise UserError(f"--{field.replace('_', '-')}: {err.get('msg', 'invalid value')}") from None
        run_server(settings, host=host, port=port, workers=workers, refill=not no_refill, log_level=log_level)
