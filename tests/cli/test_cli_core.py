"""The CLI of the core road: commands run, and user mistakes give one clear line and exit status 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.processes import astrogan_cmd


@pytest.mark.slow  # heavy: trains, then the whole road from the CLI
def test_train_generate_and_friends(tiny_dataset, tmp_path, cli):
    code, out, _ = cli(
        [
            "train",
            "--data",
            str(tiny_dataset),
            "--arch",
            "dcgan",
            "--image-size",
            "16",
            "--batch-size",
            "4",
            "--num-train-steps",
            "2",
            "--save-every",
            "1",
            "--evaluate-every",
            "1",
            "--results-dir",
            str(tmp_path / "runs"),
            "--model",
            "ngf=8",
            "--model",
            "ndf=8",
            "--device",
            "cpu",
            "--mirror",
            "x",
        ],
    )
    assert code == 0
    run = Path(out.strip().splitlines()[-1])
    assert (run / "checkpoints" / "generator.safetensors").is_file()
    assert json.loads((run / "config.json").read_text())["train"]["mirror"] == "x"
    code, _, _ = cli(
        [
            "generate",
            "--run",
            str(run),
            "--seeds",
            "0-5",
            "--out",
            str(tmp_path / "g"),
            "--grid",
            "--device",
            "cpu",
        ],
    )
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [
        "grid.png",
        *[f"seed{i:04d}.png" for i in range(6)],
    ]
    assert cli(["interpolate", "--run", str(run), "--rows", "2", "--steps", "3", "--device", "cpu"])[0] == 0
    assert (run / "interpolation.png").is_file()
    assert cli(["average", "--run", str(run), "--num", "20", "--device", "cpu"])[0] == 0
    assert (run / "average-20.png").is_file()
    assert cli(["progress-video", "--run", str(run)])[0] == 0
    assert (run / "progress.gif").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "/nonexistent/ds", "--arch", "dcgan", "--image-size", "16"], "no dataset"),
        (["train", "--data", "{ds}", "--arch", "fastgan", "--image-size", "48"], "48"),
        (["train", "--data", "{ds}", "--arch", "nosuch"], "unknown architecture"),
        (["train", "--data", "{ds}", "--aug-types", "rotate"], "aug-types"),
        (["generate", "--run", "{corrupt}", "--seeds", "0-3"], "corrupt"),
        (["generate", "--run", "/nonexistent/run"], "does not exist"),
        (["generate", "--run", "{ds}", "--seeds", "5-1"], "backwards"),
    ],
)
def test_user_errors_are_one_line_with_status_2(args, message, tiny_dataset, tmp_path, cli):
    corrupt = tmp_path / "run" / "checkpoints"
    corrupt.mkdir(parents=True)
    (corrupt / "generator.json").write_text(
        '{"format": "astrogan.generator", "format_version": 1, "arch": "dcgan", "config": {"image_size": 16}}'
    )
    (corrupt / "generator.safetensors").write_bytes(b"\x00garbage" * 10)
    args = [a.format(ds=tiny_dataset, corrupt=tmp_path / "run") for a in args]
    code, _, err = cli(args + ["--results-dir", str(tmp_path)] if args[0] == "train" else args)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in err


@pytest.mark.slow
def test_console_script_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run(
        astrogan_cmd("train", "--data", tmp_path / "x"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr


@pytest.mark.slow  # starts a process
def test_help_lists_the_road():
    proc = subprocess.run(astrogan_cmd("--help"), capture_output=True, text=True, timeout=120)
    for command in ("dataset", "train", "generate", "interpolate", "average", "progress-video", "demo"):
        assert command in proc.stdout


@pytest.mark.slow  # starts a process
def test_python_dash_m_astrogan_is_the_same_command(tmp_path):
    """`python -m astrogan` (where the console script is not on PATH): same version, same one-line errors."""
    import sys

    from astrogan import __version__

    version = subprocess.run([sys.executable, "-m", "astrogan", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == __version__, version.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "astrogan", "train", "--data", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
