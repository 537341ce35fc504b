"""`astrogan train`: train a GAN on a dataset artifact (flags follow lightweight-gan's names)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add `train` to the root app."""

    @app.command("train")
    def train_cmd(
        ctx: typer.Context,
        data: str = typer.Option("", "--data", help="Dataset directory (from `astrogan dataset build`)."),
        arch: str = typer.Option("fastgan", "--arch", help="Architecture: dcgan, fastgan or stylegan2."),
        image_size: int = typer.Option(
            64, "--image-size", help="Training resolution in pixels (power of 2)."
        ),
        batch_size: int = typer.Option(
            16, "--batch-size", help="Images per micro-batch (split over processes)."
        ),
        gradient_accumulate_every: int = typer.Option(
            1, "--gradient-accumulate-every", help="Micro-batches per optimizer step."
        ),
        num_train_steps: int = typer.Option(
            1000, "--num-train-steps", help="Optimizer steps (D and G) in all."
        ),
        save_every: int = typer.Option(100, "--save-every", help="Steps between full checkpoints."),
        evaluate_every: int = typer.Option(
            50, "--evaluate-every", help="Steps between fixed-seed snapshot grids (and --metrics)."
        ),
        name: str = typer.Option("default", "--name", help="Run name; runs are numbered NNNNN-name."),
        results_dir: Path = typer.Option(Path("results"), "--results-dir", help="Folder holding the runs."),
        amp: bool = typer.Option(False, "--amp", help="Mixed precision (fp16 on CUDA, bf16 on CPU)."),
        aug_prob: float = typer.Option(0.0, "--aug-prob", help="DiffAugment probability per image and op."),
        aug_types: str = typer.Option(
            "color,translation,cutout",
            "--aug-types",
            help="Comma list of DiffAugment ops: color, translation, cutout.",
        ),
        aug: str = typer.Option(
            "diffaugment", "--aug", help="diffaugment (fixed --aug-prob) or ada (adaptive p, starts at --aug-prob)."
        ),
        ada_target: float = typer.Option(0.6, "--ada-target", help="ADA: target of r_t = E[sign(D(real))]."),
        ada_kimg: float = typer.Option(500.0, "--ada-kimg", help="ADA: kimg for p to move from 0 to 1."),
        loss: list[str] = typer.Option(
            [], "--loss", help="Loss option as key=value, e.g. r1_gamma=0.5 or pl_weight=0 (stylegan2)."
        ),
        lr: float = typer.Option(None, "--lr", help="Learning rate of G and D (default: the arch's)."),
        num_classes: int = typer.Option(0, "--num-classes", help="> 0: class-conditional (labelled data)."),
        seed: int = typer.Option(0, "--seed", help="Seed of everything random in the run."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
        metrics: str = typer.Option(
            "", "--metrics", help="Metrics every --evaluate-every steps, e.g. spectrum."
        ),
        model: list[str] = typer.Option([], "--model", help="Architecture knob as key=value, e.g. ngf=32."),
        max_minutes: float = typer.Option(
            None, "--max-minutes", help="Wall-clock budget; stops and saves early."
        ),
        channels_last: bool = typer.Option(
            None, "--channels-last/--no-channels-last", help="NHWC memory format (default: on CUDA only)."
        ),
        preset: Path = typer.Option(
            None,
            "--preset",
            help="A built-in preset (small: StyleGAN2 on a CPU at 64 px; paper256, paper1024: the paper's "
            "GPU configs) or a TOML file; flags given here override it.",
        ),
        resume: bool = typer.Option(False, "--resume", help="Continue the latest run with this --name."),
        resume_from: Path = typer.Option(None, "--resume-from", help="Continue this run directory."),
    ) -> None:
        """Train a GAN; writes config.json, stats.jsonl, tb/, snapshots/ and checkpoints/ into a run dir."""
        from astrogan.config import TrainConfig, _parse_value, from_dict, load_preset
        from astrogan.training.loop import train
        from astrogan.utils.log import info

        given = {
            "data": data,
            "arch": arch,
            "image_size": image_size,
            "batch_size": batch_size,
            "gradient_accumulate_every": gradient_accumulate_every,
            "num_train_steps": num_train_steps,
            "save_every": save_every,
            "evaluate_every": evaluate_every,
            "name": name,
            "results_dir": str(results_dir),
            "amp": amp,
            "aug_prob": aug_prob,
            "aug_types": aug_types,
            "aug": aug,
            "ada_target": ada_target,
            "ada_kimg": ada_kimg,
            "loss": dict(_kv(m, _parse_value, flag="--loss") for m in loss),
            "lr_g": lr,
            "lr_d": lr,
            "num_classes": num_classes,
            "seed": seed,
            "device": device,
            "metrics": metrics,
            "channels_last": channels_last,
            "max_minutes": max_minutes,
            "model": dict(_kv(m, _parse_value, flag="--model") for m in model),
        }
        values = load_preset(preset) if preset else {}
        if preset:
            # Preset values win over defaults; flags typed on the command line win over the preset.
            explicit = {
                p.name
                for p in ctx.command.params
                if ctx.get_parameter_source(p.name).name not in ("DEFAULT", "DEFAULT_MAP")
            }
            alias = {"lr": ("lr_g", "lr_d")}
            for key, val in given.items():
                flag = next((f for f, keys in alias.items() if key in keys), key)
                if key in ("model", "loss") and isinstance(values.get(key), dict):
                    values[key] = {**values[key], **val}  # knobs typed here refine the preset's
                elif flag in explicit or key not in values:
                    values[key] = val
        else:
            values.update(given)
        cfg = from_dict(TrainConfig, values)
        run_dir = train(cfg, resume=resume_from if resume_from else resume)
        info(f"[green]done:[/] run in {run_dir}")
        typer.echo(str(run_dir))


def _kv(item: str, parse, *, flag: str):  # noqa: ANN001, ANN202
    from astrogan.utils.errors import UserError

    if "=" not in item:
        raise UserError(f"{flag} {item!r} must look like key=value (e.g. {flag} ngf=32)")
    key, value = item.split("=", 1)
    return key.strip(), parse(value)
