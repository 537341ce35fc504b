"""Exporters filter only the known export noise; any other warning (a torch deprecation) reaches the user."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from astrogan.export.known_warnings import known_export_warnings_filtered
from astrogan.export.onnx import export_onnx
from astrogan.export.prepare import dummy_inputs, prepare_generator
from astrogan.export.torchscript import export_torchscript, torchscript_runner
from astrogan.models import ARCHS

pytest.importorskip("onnx")

NEW_DEPRECATION = "`torch.onnx.some_option` is deprecated and will be removed in 3.0"
FEATURE = "The feature will be removed. Please remove usage of this function"  # torch.onnx internals


def _wrapper():
    """A tiny conditional DCGAN: tracing it raises TracerWarnings (its label-range check)."""
    spec = ARCHS["dcgan"]
    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    kw = {k: v for k, v in {"z_dim": 8, "ngf": 8, "embed_dim": 4}.items() if k in names}
    cfg = spec.config_cls(image_size=max(16, spec.min_image_size), num_classes=3, **kw)
    torch.manual_seed(0)
    return prepare_generator(spec.build_generator(cfg).eval())


def _torch_deprecation(message: str = NEW_DEPRECATION) -> None:
    """A DeprecationWarning as torch itself raises one (attributed to a torch module)."""
    warnings.warn_explicit(message, DeprecationWarning, "torch/onnx/utils.py", 1, module="torch.onnx.utils")


def _messages(record, category) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, category)]


def test_the_model_does_raise_the_known_noise_without_the_filter(tmp_path):
    """So that the tests below prove something: unfiltered, this export warns (tracer, legacy exporter)."""
    wrapper = _wrapper()
    with warnings.catch_warnings(record=True) as record, torch.no_grad():
        warnings.simplefilter("always")
        torch.onnx.export(wrapper, dummy_inputs(wrapper), str(tmp_path / "m.onnx"), dynamo=False)
    assert _messages(record, torch.jit.TracerWarning)
    assert any("legacy TorchScript-based ONNX export" in m for m in _messages(record, DeprecationWarning))


def test_onnx_export_lets_other_warnings_through(tmp_path, monkeypatch):
    real_export = torch.onnx.export

    def export_that_warns(*args, **kw):
        _torch_deprecation()
        warnings.warn("the model's own remark", UserWarning, stacklevel=2)
        return real_export(*args, **kw)

    monkeypatch.setattr(torch.onnx, "export", export_that_warns)
    with pytest.warns(Warning) as record:  # every warning, checked one by one below
        warnings.simplefilter("always")  # nothing hidden by the "once per location" registries
        export_onnx(_wrapper(), tmp_path / "m.onnx")
    assert _messages(record, DeprecationWarning) == [NEW_DEPRECATION]  # the legacy-exporter one is filtered
    assert _messages(record, UserWarning) == ["the model's own remark"]
    assert not _messages(record, torch.jit.TracerWarning)


def test_torchscript_export_and_load_let_other_warnings_through(tmp_path, monkeypatch):
    real_save, real_load = torch.jit.save, torch.jit.load

    def save_that_warns(*args, **kw):
        _torch_deprecation("`torch.jit.save(_extra_files=...)` is deprecated")
        return real_save(*args, **kw)

    def load_that_warns(*args, **kw):
        _torch_deprecation("`torch.jit.load(map_location=str)` is deprecated")
        return real_load(*args, **kw)

    monkeypatch.setattr(torch.jit, "save", save_that_warns)
    monkeypatch.setattr(torch.jit, "load", load_that_warns)
    wrapper = _wrapper()
    with pytest.warns(DeprecationWarning) as record:
        warnings.simplefilter("always")
        export_torchscript(wrapper, tmp_path / "m.pt")
        run = torchscript_runner(tmp_path / "m.pt")
    assert _messages(record, DeprecationWarning) == [
        "`torch.jit.save(_extra_files=...)` is deprecated",
        "`torch.jit.load(map_location=str)` is deprecated",
    ]  # torch.jit's own "`torch.jit.script` is deprecated" etc. are filtered
    assert not _messages(record, torch.jit.TracerWarning)
    z, c, trunc = dummy_inputs(wrapper)
    assert run(z.numpy(), c.numpy(), trunc.numpy()).shape == (
        2,
        wrapper.channels,
        wrapper.image_size,
        wrapper.image_size,
    )


def test_filter_is_narrow():
    """Known messages are dropped; the same category with another message, or from elsewhere, is not."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with known_export_warnings_filtered():
            warnings.warn("`torch.jit.script` is deprecated. Please switch", DeprecationWarning, stacklevel=1)
            warnings.warn("Converting a tensor to a Python boolean", torch.jit.TracerWarning, stacklevel=1)
            warnings.warn("`torch.jit.freeze` is deprecated. Please use", DeprecationWarning, stacklevel=1)
            _torch_deprecation(FEATURE)
            warnings.warn(FEATURE, DeprecationWarning, stacklevel=1)  # the same words, not from torch.onnx
            _torch_deprecation()
            warnings.warn("`torch.jit.script` is deprecated", UserWarning, stacklevel=1)
    assert [(w.category, str(w.message)) for w in record] == [
        (DeprecationWarning, FEATURE),
        (DeprecationWarning, NEW_DEPRECATION),
        (UserWarning, "`torch.jit.script` is deprecated"),
    ]
