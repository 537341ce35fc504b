"""eval draws a class-conditional generator's classes from the data's class mix (not `seed % num_classes`)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from astrogan.utils.seeds import labels_for_seeds


def _pictures(kinds: np.ndarray, *, seed: int, size: int = 32) -> np.ndarray:
    """uint8 `(N, size, size, 3)`: kind 0 a small red blob, kind 1 a large blue disc, on a noisy sky."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size), dtype=np.float64)
    out = np.empty((len(kinds), size, size, 3), np.uint8)
    for i, k in enumerate(kinds):
        r = np.hypot(*(np.array([yy, xx]) - (size / 2 + rng.uniform(-2, 2, 2))[:, None, None]))
        img = np.exp(-(r**2) / 4.0) if k == 0 else np.exp(-r / rng.uniform(4.0, 6.0))
        colour = (1.0, 0.25, 0.2) if k == 0 else (0.25, 0.4, 1.0)
        pix = 230 * img[..., None] * np.array(colour) + 12 + rng.normal(0, 4, (size, size, 3))
        out[i] = np.clip(pix, 0, 255).astype(np.uint8)
    return out


class _PerfectGenerator:
    """A class-conditional stand-in that is perfect by construction: seed s at class c is a real image of
    class c (picked by the seed), so any composition difference can only come from the classes asked."""

    cond_spec = None
    meta: dict = {}

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.num_classes, self.channels, self.image_size = 2, 3, images.shape[1]

    def generate(self, seeds, *, trunc=1.0, labels=None, batch_size=32, **_):
        classes = labels_for_seeds(seeds, self.num_classes, labels)
        out = []
        for s, c in zip(seeds, classes, strict=True):
            idx = np.flatnonzero(self.labels == c)
            out.append(self.images[idx[np.random.default_rng(s).integers(idx.size)]])
        return np.stack(out)


@pytest.fixture(scope="module")
def labelled_80_20(tmp_path_factory):
    """A 16 px dataset of 200 images, 80% class 0 and 20% class 1 (Galaxy10 layout), and a perfect generator."""
    from astrogan.data.build import BuildOptions, build_dataset
    from astrogan.data.dataset import open_dataset

    tmp = tmp_path_factory.mktemp("classes")
    kinds = np.random.default_rng(0).permutation(np.repeat([0, 1], [160, 40]))
    g10 = tmp / "Galaxy10_DECals.h5"
    with h5py.File(g10, "w") as fh:
        fh["images"] = _pictures(kinds, seed=1)
        fh["ans"] = kinds.astype(np.uint8)
    build_dataset(
        [], tmp / "ds", galaxy10_path=g10, options=BuildOptions(image_sizes=(16,)), show_progress=False
    )
    ds = open_dataset(tmp / "ds")
    return ds, _PerfectGenerator(ds.images(16), ds.labels())


def test_fake_classes_follow_the_real_mix_deterministically(labelled_80_20):
    import astrogan.cli.evaluate as cli_eval

    ds, gen = labelled_80_20
    classes, how = cli_eval._fake_classes(gen, ds, 2000, seed=3)
    assert np.mean(classes == 0) == pytest.approx(0.8, abs=0.03)
    assert how["real_fractions"] == pytest.approx([0.8, 0.2])
    assert how["generated_counts"] == np.bincount(classes, minlength=2).tolist()
    assert how["rule"].startswith("drawn from the real labels' frequencies")
    # Seed s keeps its class whatever --num; another --seed draws anew.
    assert np.array_equal(cli_eval._fake_classes(gen, ds, 50, seed=3)[0], classes[:50])
    assert not np.array_equal(cli_eval._fake_classes(gen, ds, 50, seed=4)[0], classes[:50])

    class Unlabelled:
        def labels(self):
            return None

    # No labels (or labels that do not fit): the shared seed % num_classes rule, said so.
    none, how = cli_eval._fake_classes(gen, Unlabelled(), 10, seed=3)
    assert none is None and how["rule"] == "seed % num_classes (uniform)" and "no class labels" in how["why"]
    assert cli_eval._fake_classes(object(), ds, 10, seed=3) == (None, {})  # unconditional


@pytest.mark.slow  # heavy: eval with composition (a classifier) twice
def test_eval_of_a_perfect_class_conditional_generator_finds_no_difference(
    labelled_80_20, tmp_path, monkeypatch
):
    import astrogan.cli.evaluate as cli_eval
    from astrogan.cli.main import main

    ds, gen = labelled_80_20
    monkeypatch.setattr(cli_eval, "_open_pair", lambda *a: (gen, ds, {}))
    args = ["eval", "--run", str(tmp_path), "--data", str(tmp_path), "--num", "200", "--device", "cpu"]
    args += ["--metrics", "composition", "--cache-dir", str(tmp_path / "c")]
    assert main([*args, "--out", str(tmp_path / "drawn")]) == 0
    doc = json.loads((tmp_path / "drawn" / "metrics.json").read_text())
    drawn = doc["meta"]["generated_classes"]
    assert drawn["generated_counts"][0] / 200 == pytest.approx(0.8, abs=0.07)
    comp = doc["composition"]
    assert comp["mode"] == "labels" and comp["test"]["p"] > 0.05
    assert not any(c["verdict"] for c in comp["categories"])
    # The old rule (seed % 2: half and half) makes the same perfect generator look biased.
    monkeypatch.setattr(cli_eval, "_fake_classes", lambda *a, **k: (None, {}))
    assert main([*args, "--out", str(tmp_path / "uniform")]) == 0
    comp = json.loads((tmp_path / "uniform" / "metrics.json").read_text())["composition"]
    assert comp["test"]["p"] < 1e-3 and comp["categories"][1]["verdict"] == "over"
