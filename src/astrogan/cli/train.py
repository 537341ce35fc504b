"""`astrogan train`: train a GAN on a dataset artifact (flags follow lightweight-gan's names)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from astrogan.config import TrainConfig, parse_options, resolve_train_config

# Flags that set several TrainConfig fields at once; every other TrainConfig flag is named after its field.
ALIASES: dict[str, tuple[str, ...]] = {"lr": ("lr_g", "lr_d")}
# Flags of the command that are not settings of the run.
NOT_SETTINGS = ("preset", "resume", "resume_from")

_DEFAULTS = TrainConfig()


def _default(name: str) -> Any:
    """TrainConfig's default for field `name`, as its flag takes it (tuples as comma lists, tables as key=value)."""
    value = getattr(_DEFAULTS, name)
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    return value


# Options built here, not in the signature, so that `train_cmd` stays under the function size limit.
_AUG = typer.Option(
    _default("aug"), "--aug", help="diffaugment (fixed --aug-prob) or ada (adaptive p, starts at --aug-prob)."
)
_MIRROR = typer.Option(
    _default("mirror"),
    "--mirror",
    help="The reals' symmetries as extra images: none, x (mirrors) or dihedral (quarter turns and mirrors, "
    "8 views: for sky pictures with no up or left).",
)
_LR_RAMPDOWN = typer.Option(
    _default("lr_rampdown"),
    "--lr-rampdown",
    help="Learning rates fall to 0 (half cosine) over this last fraction of the steps (0: off).",
)


def register(app: typer.Typer) -> None:
    """Add `train` to the root app."""

    @app.command("train")
    def train_cmd(
        ctx: typer.Context,
        data: str = typer.Option(
            _default("data"), "--data", help="Dataset directory (from `astrogan dataset build`)."
        ),
        arch: str = typer.Option(
            _default("arch"), "--arch", help="Architecture: dcgan, fastgan or stylegan2."
        ),
        image_size: int = typer.Option(
            _default("image_size"), "--image-size", help="Training resolution in pixels (power of 2)."
        ),
        batch_size: int = typer.Option(
            _default("batch_size"), "--batch-size", help="Images per micro-batch (split over processes)."
        ),
        gradient_accumulate_every: int = typer.Option(
            _default("gradient_accumulate_every"),
            "--gradient-accumulate-every",
            help="Micro-batches per optimizer step.",
        ),
        num_train_steps: int = typer.Option(
            _default("num_train_steps"), "--num-train-steps", help="Optimizer steps (D and G) in all."
        ),
        save_every: int = typer.Option(
            _default("save_every"), "--save-every", help="Steps between full checkpoints."
        ),
        evaluate_every: int = typer.Option(
            _default("evaluate_every"),
            "--evaluate-every",
            help="Steps between fixed-seed snapshot grids (and --metrics).",
        ),
        name: str = typer.Option(_default("name"), "--name", help="Run name; runs are numbered NNNNN-name."),
        results_dir: Path = typer.Option(
            Path(_default("results_dir")), "--results-dir", help="Folder holding the runs."
        ),
        amp: bool = typer.Option(
            _default("amp"), "--amp", help="Mixed precision (fp16 on CUDA, bf16 on CPU)."
        ),
        aug_prob: float = typer.Option(
            _default("aug_prob"), "--aug-prob", help="DiffAugment probability per image and op."
        ),
        aug_types: str = typer.Option(
            _default("aug_types"),
            "--aug-types",
            help="Comma list of DiffAugment ops: color, translation, cutout.",
        ),
        aug: str = _AUG,
        mirror: str = _MIRROR,
        ada_target: float = typer.Option(
            _default("ada_target"), "--ada-target", help="ADA: target of r_t = E\\[sign(D(real))]."
        ),
        ada_kimg: float = typer.Option(
            _default("ada_kimg"), "--ada-kimg", help="ADA: kimg for p to move from 0 to 1."
        ),
        lr_rampdown: float = _LR_RAMPDOWN,
        loss: list[str] = typer.Option(
            _default("loss"),
            "--loss",
            help="Loss option as key=value: r1_gamma=0.5, pl_weight=0 (stylegan2); cond_weight, mismatch_weight, "
            "profile_weight (--cond); black_weight, peak_weight (FITS builds: fakes obey the build's stretch).",
        ),
        lr: float = typer.Option(
            _default("lr_g"), "--lr", help="Learning rate of G and D (default: the arch's)."
        ),
        num_classes: int = typer.Option(
            _default("num_classes"), "--num-classes", help="> 0: class-conditional (labelled data)."
        ),
        cond: str = typer.Option(
            _default("cond"),
            "--cond",
            help="Physical conditions to generate from: comma list of the dataset's condition columns, "
            "e.g. sersic_n,half_light_radius_px,q (stylegan2, dcgan).",
        ),
        seed: int = typer.Option(_default("seed"), "--seed", help="Seed of everything random in the run."),
        device: str = typer.Option(_default("device"), "--device", help="auto, cpu, cuda or cuda:N."),
        metrics: str = typer.Option(
            _default("metrics"), "--metrics", help="Metrics every --evaluate-every steps, e.g. spectrum."
        ),
        model: list[str] = typer.Option(
            _default("model"), "--model", help="Architecture knob as key=value, e.g. ngf=32."
        ),
        max_minutes: float = typer.Option(
            _default("max_minutes"), "--max-minutes", help="Wall-clock budget; stops and saves early."
        ),
        channels_last: bool = typer.Option(
            _default("channels_last"),
            "--channels-last/--no-channels-last",
            help="NHWC memory format (default: on CUDA, and on the CPU for stylegan2, 1.17x there).",
        ),
        compile: bool = typer.Option(
            _default("compile"),
            "--compile/--no-compile",
            help="torch.compile (inductor) G and D: minutes of compiling first (needs a C++ compiler on a "
            "CPU), then ~1.2x faster steps of the default FastGAN on a CPU: pays after a few hundred steps. "
            "Not bit-identical to eager; may change on resume.",
        ),
        preset: Path = typer.Option(
            None,
            "--preset",
            help="A built-in preset (cpu: a small DCGAN that learns 64 px galaxies on a laptop CPU, 4 MB "
            "checkpoints; small: StyleGAN2 on a CPU at 64 px; paper256, paper1024: the paper's "
            "GPU configs) or a TOML file; flags given here override it.",
        ),
        resume: bool = typer.Option(False, "--resume", help="Continue the latest run with this --name."),
        resume_from: Path = typer.Option(None, "--resume-from", help="Continue this run directory."),
    ) -> None:
        """Train a GAN; writes config.json, stats.jsonl, tb/, snapshots/ and checkpoints/ into a run dir."""
        from astrogan.training.loop import train
        from astrogan.utils.log import info

        _refuse_preset_on_resume(preset, resume or resume_from is not None)
        given, explicit = _settings_from_context(ctx)
        cfg = resolve_train_config(preset, given, explicit)
        run_dir = train(cfg, resume=resume_from if resume_from else resume, overrides=explicit)
        info(f"[green]done:[/] run in {run_dir}")
        typer.echo(str(run_dir))


def _refuse_preset_on_resume(preset: Path | None, resuming: bool) -> None:
    """A resumed run continues with its own config.json: a preset's values would be silently dropped."""
    if preset is not None and resuming:
        from astrogan.utils.errors import UserError

        raise UserError(
            "--preset does not apply to a resumed run (it continues with its saved config.json): drop "
            "--preset, and give any setting to change as a flag"
        )


def _settings_from_context(ctx: typer.Context) -> tuple[dict[str, Any], set[str]]:
    """The command line as TrainConfig fields: every setting's value, and the fields the user typed."""
    given: dict[str, Any] = {}
    explicit: set[str] = set()
    for flag, value in ctx.params.items():
        if flag in NOT_SETTINGS:
            continue
        if flag in ("model", "loss"):
            value = parse_options(value, flag=f"--{flag}")
        elif flag == "results_dir":
            value = str(value)
        fields = ALIASES.get(flag, (flag,))
        given.update(dict.fromkeys(fields, value))
        if ctx.get_parameter_source(flag).name not in ("DEFAULT", "DEFAULT_MAP"):
            explicit.update(fields)
    return given, explicit
