"""`train --compile`: inductor on G and D trains, resumes bit-exactly under compile, and keeps eager checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from astrogan.config import TrainConfig
from astrogan.models import get_arch
from astrogan.models.io import load_generator_module, weight_shapes
from astrogan.training import loop as loop_mod
from astrogan.training.loop import train
from astrogan.training.state import load_state
from astrogan.training.stats import read_stats
from tests.helpers.training import Kill, kill_at, tiny_train_config

needs_cxx = pytest.mark.skipif(
    loop_mod._cxx_compiler() is None,
    reason="inductor on a CPU needs a C++ compiler (g++) and none is on PATH",
)
# Enough to train for one step in a second if the compiler check ever stopped firing early.
FAST = ["--arch", "dcgan", "--image-size", "16", "--batch-size", "4", "--num-train-steps", "1"]
FAST += ["--model", "ngf=8", "--model", "ndf=8", "--device", "cpu"]


def _cfg(tiny_dataset, tmp_path, name: str, **kw) -> TrainConfig:
    settings = dict(num_train_steps=4, save_every=2, evaluate_every=2, log_every=1, name=name, compile=True)
    return tiny_train_config(tiny_dataset, tmp_path / "runs", "dcgan", **{**settings, **kw})


def _assert_compiled_in_place(step, ctx) -> None:
    """G and D run compiled, yet are still the architecture's own modules (no `_orig_mod.` wrapper)."""
    for net in (ctx["G"], ctx["D"]):
        assert net._compiled_call_impl is not None, f"{type(net).__name__} is not compiled"
        assert not any(k.startswith("_orig_mod") for k in net.state_dict())
    assert ctx["G_ema"]._compiled_call_impl is None  # snapshots and generator.safetensors stay eager


def _nets(state: dict) -> dict[str, dict[str, torch.Tensor]]:
    return {key: state[key] for key in ("G", "D", "G_ema")}


@pytest.mark.slow  # compiles G and D (tens of seconds on a CPU)
@needs_cxx
def test_compiled_run_trains_resumes_bit_exactly_and_keeps_eager_checkpoints(
    tiny_dataset, tmp_path, monkeypatch
):
    initial: dict[str, torch.Tensor] = {}
    real_build = loop_mod._build_state

    def build_and_remember(*args, **kwargs):
        st = real_build(*args, **kwargs)
        initial.update({k: v.clone() for k, v in st.G.state_dict().items()})
        return st

    monkeypatch.setattr(loop_mod, "_build_state", build_and_remember)
    full = train(
        _cfg(tiny_dataset, tmp_path, "full"), callbacks=[_assert_compiled_in_place], show_progress=False
    )
    a = load_state(full / "checkpoints" / "state-0000004.pt")
    assert any(not torch.equal(initial[k], a["G"][k]) for k in initial), "compiled training left G as it was"
    assert all(torch.isfinite(t).all() for t in a["G"].values() if t.is_floating_point())
    assert json.loads((full / "config.json").read_text())["train"]["compile"] is True

    # Killed after step 3 (last save at 2), resumed under compile: the uninterrupted run's weights, bit for bit.
    killed = _cfg(tiny_dataset, tmp_path, "killed")
    with pytest.raises(Kill):
        train(killed, callbacks=[kill_at(3)], show_progress=False)
    resumed = train(killed, resume=True, callbacks=[_assert_compiled_in_place], show_progress=False)
    b = load_state(resumed / "checkpoints" / "state-0000004.pt")
    for key, tensors in _nets(a).items():
        for name, tensor in tensors.items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after a compiled resume"
    assert [r["loss_d"] for r in read_stats(resumed)] == [r["loss_d"] for r in read_stats(full)]

    # The compiled run's checkpoints are an eager run's: same keys and shapes, strict loads into eager modules.
    eager = train(
        _cfg(tiny_dataset, tmp_path, "eager", num_train_steps=2, compile=False), show_progress=False
    )
    e = load_state(eager / "checkpoints" / "state-0000002.pt")
    for key, tensors in _nets(a).items():
        assert {n: t.shape for n, t in tensors.items()} == {n: t.shape for n, t in e[key].items()}, key
    spec = get_arch("dcgan")
    mcfg = spec.config_cls.from_dict(json.loads((full / "config.json").read_text())["model"])
    spec.build_generator(mcfg).load_state_dict(a["G"], strict=True)
    spec.build_discriminator(mcfg).load_state_dict(a["D"], strict=True)
    shapes = weight_shapes(full / "checkpoints" / "generator.safetensors")
    assert shapes == weight_shapes(eager / "checkpoints" / "generator.safetensors")
    G, meta = load_generator_module(full)
    assert meta["extra"]["step"] == 4 and G(torch.zeros(1, G.z_dim)).shape[-1] == 16

    # ...and the other way: the eager run goes on under --compile (a setting a resumed run may change).
    more = _cfg(tiny_dataset, tmp_path, "eager", num_train_steps=4)
    again = train(more, resume=eager, overrides={"num_train_steps", "compile"}, show_progress=False)
    assert again == eager
    assert json.loads((eager / "config.json").read_text())["train"]["compile"] is True
    assert load_state(eager / "checkpoints" / "state-0000004.pt")["step"] == 4


def test_compile_flag_reaches_train_config(monkeypatch) -> None:
    from typer.testing import CliRunner

    from astrogan.cli.main import app

    seen: list[TrainConfig] = []
    monkeypatch.setattr(
        loop_mod, "train", lambda cfg, resume=False, overrides=None: seen.append(cfg) or Path("run")
    )
    runner = CliRunner()
    for args, expected in ((["--compile"], True), (["--no-compile"], False), ([], False)):
        result = runner.invoke(app, ["train", "--data", "ds", *args])
        assert result.exit_code == 0, result.output
        assert seen[-1].compile is expected, args
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "--compile" in result.output and "--no-compile" in result.output


def test_without_a_cxx_compiler_compile_is_one_line_before_any_work(tiny_dataset, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(loop_mod, "_cxx_compiler", lambda: None)
    monkeypatch.setattr(loop_mod, "_set_up", lambda *a, **k: pytest.fail("work started before the check"))
    runs = tmp_path / "runs"
    code, _, err = cli(["train", "--data", tiny_dataset, *FAST, "--results-dir", runs, "--compile"])
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and "--compile" in lines[-1] and "C++ compiler" in lines[-1]
    assert not runs.exists()


def test_resuming_a_run_that_compiles_checks_for_the_compiler(tiny_dataset, tmp_path, monkeypatch):
    from astrogan.utils.errors import UserError

    run = train(_cfg(tiny_dataset, tmp_path, "eager", num_train_steps=1, compile=False), show_progress=False)
    config = run / "config.json"
    saved = json.loads(config.read_text())
    saved["train"]["compile"] = True  # as a run started with --compile on a machine that had g++
    config.write_text(json.dumps(saved))
    monkeypatch.setattr(loop_mod, "_cxx_compiler", lambda: None)
    with pytest.raises(UserError, match="C\\+\\+ compiler"):
        train(_cfg(tiny_dataset, tmp_path, "eager", num_train_steps=2, compile=False), resume=run)


@pytest.mark.skipif(bool(os.environ.get("CXX")), reason="inductor searches the $CXX it was imported with")
def test_the_compiler_check_looks_on_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert loop_mod._cxx_compiler() is None
    fake = tmp_path / "g++"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert loop_mod._cxx_compiler() == str(fake)
