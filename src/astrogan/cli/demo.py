"""`astrogan demo`: the whole road on bundled data, on a CPU, in minutes."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add `demo` to the root app."""

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(
            Path("astrogan-demo"), "--out", help="Folder for everything the demo writes."
        ),
        num_train_steps: int = typer.Option(
            None, "--num-train-steps", help="Training steps (default: 3750, 60 kimg)."
        ),
        arch: str = typer.Option(
            "dcgan",
            "--arch",
            help="Architecture: dcgan (ngf=ndf=16, the CPU preset's), fastgan (width 8) or stylegan2 (the small "
            "preset).",
        ),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        quick: bool = typer.Option(False, "--quick", help="A tiny run (seconds) to check the installation."),
        seed: int = typer.Option(0, "--seed", help="Seed of everything random in the demo."),
        train_seed: int = typer.Option(
            None,
            "--train-seed",
            help="Seed of training alone (default: --seed): the same data and measurements, another training run.",
        ),
        threads: int = typer.Option(
            None, "--threads", min=1, help="Torch threads on a CPU (default: one per physical core)."
        ),
    ) -> None:
        """Build a dataset from the Hubble XDF + Sérsic galaxies, train a small GAN, write index.html."""
        from astrogan.demo import DemoConfig, run_demo

        kwargs: dict = {"out": str(out), "arch": arch, "device": device, "seed": seed, "threads": threads}
        kwargs["train_seed"] = train_seed
        if quick:
            kwargs.update(
                num_hdf_crops=24,
                num_sersic=24,
                num_train_steps=8,
                num_average=64,
                batch_size=8,
                num_fidelity=48,
            )
        if num_train_steps is not None:
            kwargs["num_train_steps"] = num_train_steps
        page = run_demo(DemoConfig(**kwargs))
        typer.echo(str(page))
