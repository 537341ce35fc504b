"""Training config: one source of defaults, the preset < flags merge, and every name checked before any work."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from astrogan.config import TrainConfig, parse_options, resolve_train_config
from astrogan.metrics import METRICS
from astrogan.models import ARCHS
from astrogan.utils.errors import UserError

# Enough to train for one step in a second if a check ever stopped firing early.
FAST = ["--arch", "dcgan", "--image-size", "16", "--batch-size", "4", "--num-train-steps", "1"]
FAST += ["--model", "ngf=8", "--model", "ndf=8", "--device", "cpu"]


def _as_flag(value):
    """A value as the command line spells it: tuples as comma lists, tables as key=value items."""
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, Path):
        return str(value)
    return value


def test_every_train_flag_defaults_to_the_train_config_default() -> None:
    import typer.main

    from astrogan.cli.main import app
    from astrogan.cli.train import ALIASES, NOT_SETTINGS

    defaults = dataclasses.asdict(TrainConfig())
    params = typer.main.get_command(app).commands["train"].params
    checked = set()
    for p in params:
        if p.name in NOT_SETTINGS:
            continue
        for field_name in ALIASES.get(p.name, (p.name,)):
            assert field_name in defaults, f"--{p.name} sets no TrainConfig field"
            assert _as_flag(p.default) == _as_flag(defaults[field_name]), p.name
            checked.add(field_name)
    assert {
        "batch_size",
        "image_size",
        "aug_types",
        "lr_g",
        "lr_d",
        "model",
        "loss",
        "results_dir",
    } <= checked


def test_flags_win_over_the_preset_and_tables_merge_key_by_key() -> None:
    given = {
        "arch": "fastgan",  # the flag's default: the preset's stylegan2 stays
        "image_size": 16,
        "batch_size": 16,
        "model": {"channel_max": 16},
        "loss": {"pl_weight": 0},
        "data": "ds",
    }
    cfg = resolve_train_config("small", given, {"image_size", "model", "loss", "data"})
    assert cfg.arch == "stylegan2" and cfg.image_size == 16 and cfg.data == "ds"
    assert cfg.aug == "ada" and cfg.ada_kimg == 100.0 and cfg.lr_g == 0.0025  # from the preset
    assert cfg.model == {
        "z_dim": 64,
        "w_dim": 64,
        "mapping_layers": 2,
        "channel_base": 2048,
        "channel_max": 16,
    }
    assert cfg.loss == {"pl_weight": 0, "style_mixing": 0.9}


def test_a_preset_file_and_no_preset(tmp_path) -> None:
    preset = tmp_path / "mine.toml"
    preset.write_text('arch = "dcgan"\nbatch_size = 8\n[model]\nngf = 4\n', encoding="utf-8")
    cfg = resolve_train_config(preset, {"batch_size": 16, "seed": 3, "model": {"ndf": 4}}, {"seed"})
    assert (cfg.arch, cfg.batch_size, cfg.seed, cfg.model) == ("dcgan", 8, 3, {"ngf": 4, "ndf": 4})
    # Without a preset (or without `explicit`) every given value is taken as it is.
    assert resolve_train_config(None, {"batch_size": 8}, set()).batch_size == 8
    assert resolve_train_config(preset, {"batch_size": 16}).batch_size == 16
    with pytest.raises(UserError, match="unknown TrainConfig key"):
        resolve_train_config(None, {"batch_sise": 8})


def test_parse_options() -> None:
    assert parse_options(["ngf=32", " dropout = 0.1", "fused=true", "kind=bilinear"], flag="--model") == {
        "ngf": 32,
        "dropout": 0.1,
        "fused": True,
        "kind": "bilinear",
    }
    # a comma starts an option only when key= follows, and never inside double quotes
    assert parse_options(['prior_psf="moffat:fwhm_px=2,beta=3",ngf=8,sizes=[1,2]'], flag="--model") == {
        "prior_psf": "moffat:fwhm_px=2,beta=3",
        "ngf": 8,
        "sizes": [1, 2],
    }
    assert parse_options(["a=1,b=2"], flag="--model") == {"a": 1, "b": 2}
    with pytest.raises(UserError, match=r"--loss 'r1_gamma' must look like key=value \(e.g. --loss ngf=32\)"):
        parse_options(["r1_gamma"], flag="--loss")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"model": {"image_size": 32}}, "--model image_size=... is not an option there: use --image-size"),
        ({"model": {"num_classes": 3}}, "use --num-classes"),
        ({"model": {"channels": 1}}, "the dataset sets the band count"),
        ({"loss": {"batch_size": 8}}, "--loss batch_size=... is not an option there: use --batch-size"),
        ({"arch": "nosuch"}, "unknown architecture 'nosuch': choose one of dcgan, fastgan, stylegan2"),
        ({"metrics": "spectrum,nosuch"}, "unknown metric 'nosuch' in --metrics; choose from fid, kid"),
        ({"aug": "rotate"}, "unknown --aug 'rotate'"),
        ({"aug_types": "color,rotate"}, "unknown --aug-types rotate"),
        ({"mirror": "y"}, "unknown --mirror 'y': choose none, x, dihedral"),
    ],
)
def test_validate_names_and_contradictions(kw, message) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        TrainConfig(**kw).validate(archs=ARCHS, metrics=METRICS)


def test_validate_without_registries_skips_only_the_names() -> None:
    assert TrainConfig(arch="nosuch", metrics="nosuch").validate().arch == "nosuch"
    TrainConfig(arch="stylegan2", metrics="spectrum,fid").validate(archs=ARCHS, metrics=METRICS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "spectrum,nosuch"], "unknown metric 'nosuch'"),
        (["--model", "image_size=32"], "use --image-size"),
        (["--aug", "ada", "--aug-types", "color,rotate"], "unknown --aug-types rotate"),
        (["--loss", "pl_weight"], "--loss 'pl_weight' must look like key=value"),
        (["--mirror", "rotate"], "unknown --mirror 'rotate'"),
        (["--device", "tpu"], "unknown device 'tpu': use auto, cpu, cuda or cuda:N"),
        (["--preset", "cpu", "--resume"], "--preset does not apply to a resumed run"),
        (["--preset", "cpu", "--resume-from", "somewhere"], "--preset does not apply to a resumed run"),
    ],
)
def test_bad_names_fail_before_the_run_dir_exists(args, message, tiny_dataset, tmp_path, capsys) -> None:
    from astrogan.cli.main import main

    runs = tmp_path / "runs"
    code = main(["train", "--data", str(tiny_dataset), *FAST, "--results-dir", str(runs), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not runs.exists()


def test_cli_maps_flags_to_fields(monkeypatch) -> None:
    from typer.testing import CliRunner

    import astrogan.training.loop as loop_mod
    from astrogan.cli.main import app

    seen: list[TrainConfig] = []
    monkeypatch.setattr(
        loop_mod, "train", lambda cfg, resume=False, overrides=None: seen.append(cfg) or Path("run")
    )
    runner = CliRunner()
    args = ["train", "--preset", "small", "--data", "ds", "--image-size", "32", "--lr", "0.001"]
    args += ["--aug-types", "color", "--metrics", "spectrum", "--results-dir", "out", "--model", "z_dim=8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = seen[-1]
    assert (cfg.arch, cfg.image_size, cfg.lr_g, cfg.lr_d) == ("stylegan2", 32, 0.001, 0.001)
    assert cfg.aug_types == ("color",) and cfg.metrics == ("spectrum",) and cfg.results_dir == "out"
    assert cfg.model["z_dim"] == 8 and cfg.model["channel_max"] == 64
    result = runner.invoke(app, ["train", "--preset", "small", "--data", "ds"])
    assert result.exit_code == 0, result.output
    assert (
        seen[-1].lr_g == seen[-1].lr_d == 0.0025 and seen[-1].batch_size == 16
    )  # the preset's, not --lr's None
    result = runner.invoke(app, ["train", "--data", "ds"])
    assert result.exit_code == 0, result.output
    assert seen[-1] == TrainConfig(data="ds")  # no preset: the flags' defaults are TrainConfig's


@pytest.mark.parametrize("name", ["cpu", "small", "paper256", "paper1024"])
def test_every_built_in_preset_resolves_validates_and_builds(name) -> None:
    from astrogan.config import preset_names
    from astrogan.metrics import METRICS
    from astrogan.models import ARCHS, get_arch
    from astrogan.models.io import check_buildable

    assert name in preset_names()
    cfg = resolve_train_config(name, {"data": "ds"}, set()).validate(archs=ARCHS, metrics=METRICS)
    spec = get_arch(cfg.arch)
    mcfg = spec.config_cls.from_dict({"image_size": cfg.image_size, **cfg.model})
    mcfg.validate()
    check_buildable(spec, mcfg, what=name)


def test_the_cpu_preset_writes_small_checkpoints() -> None:
    import torch

    from astrogan.models import get_arch

    cfg = resolve_train_config("cpu", {}, set())
    spec = get_arch(cfg.arch)
    mcfg = spec.config_cls.from_dict({"image_size": cfg.image_size, **cfg.model})
    with torch.device("meta"):
        num = sum(
            p.numel()
            for build in (spec.build_generator, spec.build_discriminator)
            for p in build(mcfg).parameters()
        )
    # G, D, G_ema and two Adam moments each, float32: a few MB (the default FastGAN writes ~550 MB).
    assert 4 * num * 4 < 10 * 2**20  # at most 4 copies of every parameter


def test_options_take_comma_lists_of_key_values_but_keep_json_lists():
    from astrogan.config import parse_options

    assert parse_options(["ngf=8,ndf=16"], flag="--model") == {"ngf": 8, "ndf": 16}
    assert parse_options(["sizes=[1,2], q=0.5", "n=3"], flag="--model") == {"sizes": [1, 2], "q": 0.5, "n": 3}
    assert parse_options(["ngf=8,16"], flag="--model") == {"ngf": "8,16"}  # no key after the comma: one value


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('batch_size = "8"', "batch_size must be an integer, got '8'"),
        ("num_train_steps = 2.5", "num_train_steps must be an integer, got 2.5"),
        ("image_size = true", "image_size must be an integer, got True"),
        ('amp = "yes"', "amp must be true or false, got 'yes'"),
        ('lr_g = "fast"', "lr_g must be a number or none, got 'fast'"),
        ("aug_types = 3", "aug_types must be a list of strings, got 3"),
        ("metrics = 4", "metrics must be a list of strings, got 4"),
        ('cond = ["a", 1]', "cond must be a list of strings, got ('a', 1)"),
        ("[train]\nmodel = 5", "model must be a table, got 5"),
        ("train = 3", "[train] must be a table of settings, got 3"),
    ],
)
def test_a_preset_of_the_wrong_types_is_one_clear_error(toml, message, tmp_path) -> None:
    preset = tmp_path / "mine.toml"
    preset.write_text(toml + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(message)):
        resolve_train_config(preset, {"data": "ds"}, {"data"}).validate(archs=ARCHS, metrics=METRICS)


def test_a_preset_of_the_wrong_type_fails_the_cli_in_one_line(tiny_dataset, tmp_path, capsys) -> None:
    from astrogan.cli.main import main

    preset = tmp_path / "mine.toml"
    preset.write_text('batch_size = "8"\n', encoding="utf-8")
    runs = tmp_path / "runs"
    code = main(["train", "--data", str(tiny_dataset), "--preset", str(preset), "--results-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "error: batch_size must be an integer, got '8'"
    assert not runs.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "nan"], "lr_g must be a number, got nan"),
        (["--lr", "-1"], "--lr must be a positive number, got -1.0 (lr_g)"),
        (["--lr", "0"], "--lr must be a positive number, got 0.0 (lr_g)"),  # was the default
        (["--max-minutes", "nan"], "max_minutes must be a number, got nan"),  # never ran out
        (["--aug", "ada", "--ada-kimg", "nan"], "ada_kimg must be a number, got nan"),
        # before: 10^9 micro-batches, one step that never ended; -1 classes named a config key
        (
            ["--gradient-accumulate-every", "1000000000"],
            "--gradient-accumulate-every must be at most 1024, got 1000000000",
        ),
        (["--num-classes", "-1"], "--num-classes must be 0 (unconditional) or more, got -1"),
    ],
)
def test_a_nan_or_non_positive_rate_fails_before_the_run_dir_exists(
    args, message, tiny_dataset, tmp_path, capsys
) -> None:
    from astrogan.cli.main import main

    runs = tmp_path / "runs"
    code = main(["train", "--data", str(tiny_dataset), *FAST, "--results-dir", str(runs), *args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"error: {message}"
    assert not runs.exists()
