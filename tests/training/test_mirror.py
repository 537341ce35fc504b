"""`--mirror`: the reals' symmetries as extra training images (data.views), visited once per pass, resumable."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from astrogan.data.dataset import open_dataset
from astrogan.data.views import num_views, take_views, view
from astrogan.training import loop as loop_mod
from astrogan.training.loop import BatchSampler, train
from astrogan.training.state import load_state
from tests.helpers.datasets import build
from tests.helpers.training import Kill, kill_at, tiny_train_config


def _reference(img: np.ndarray, v: int) -> np.ndarray:
    """numpy's quarter turns and mirror, on (H, W)."""
    out = np.rot90(img, v // 2)
    return np.fliplr(out) if v % 2 else out


def test_the_eight_views_are_the_symmetries_of_the_square() -> None:
    img = np.arange(25, dtype=np.float32).reshape(5, 5)  # no symmetry at all: every view differs
    views = [view(torch.from_numpy(img)[None, None], v)[0, 0].numpy() for v in range(8)]
    for v, got in enumerate(views):
        np.testing.assert_array_equal(got, _reference(img, v))
    assert len({got.tobytes() for got in views}) == 8
    assert (num_views("none"), num_views("x"), num_views("dihedral")) == (1, 2, 8)


def test_a_pass_visits_every_picture_in_every_view_once() -> None:
    images = torch.arange(5 * 9, dtype=torch.uint8).reshape(5, 1, 3, 3)
    sampler = BatchSampler(5, seed=3, views=8)
    idx = torch.cat([sampler.next_indices(4) for _ in range(10)])
    assert sorted(idx.tolist()) == list(range(40))
    batch, pic = take_views(images, idx, 8)
    for i, (b, p) in enumerate(zip(batch, pic, strict=True)):
        assert int(p) == int(idx[i]) % 5
        np.testing.assert_array_equal(b[0].numpy(), _reference(images[p, 0].numpy(), int(idx[i]) // 5))


def test_without_mirror_the_stream_is_the_one_it_always_was() -> None:
    sampler = BatchSampler(7, seed=11)
    expected = torch.randperm(7, generator=torch.Generator().manual_seed(11))
    assert torch.equal(sampler.next_indices(7), expected)
    images = torch.arange(7 * 4, dtype=torch.uint8).reshape(7, 1, 2, 2)
    batch, pic = take_views(images, expected, 1)
    assert torch.equal(batch, images[expected]) and torch.equal(pic, expected)


@pytest.fixture(scope="module")
def marked_dataset(tmp_path_factory: pytest.TempPathFactory):
    """16 px pictures with a bright mark in the top-left corner: every view of one is a different picture."""
    root = tmp_path_factory.mktemp("marked")
    (root / "raw").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        img = rng.integers(0, 40, (16, 16, 3), dtype=np.uint8)
        img[1:4, 1:3] = 250
        Image.fromarray(img).save(root / "raw" / f"m-{i}.png")
    build([root / "raw"], root / "ds", image_sizes=(16,), min_size_px=16)
    return root / "ds"


def test_training_with_dihedral_mirror_shows_d_every_turn_of_the_reals(
    marked_dataset, tmp_path, monkeypatch
) -> None:
    seen: list[torch.Tensor] = []
    original = loop_mod._Stepper._batch

    def spy(self, phase):
        batch = original(self, phase)
        if batch.real is not None:
            seen.append(batch.real.clone())
        return batch

    monkeypatch.setattr(loop_mod._Stepper, "_batch", spy)
    cfg = tiny_train_config(marked_dataset, tmp_path / "runs", num_train_steps=16, mirror="dihedral")
    train(cfg, show_progress=False)
    pictures = (
        torch.from_numpy(open_dataset(marked_dataset).images(16)).permute(0, 3, 1, 2).float() / 127.5 - 1
    )
    found = set()
    for real in torch.cat(seen):
        hits = [v for v in range(8) for p in pictures if torch.allclose(view(p, v), real)]
        assert len(hits) == 1, "every real D sees is exactly one view of one picture"
        found.add(hits[0])
    assert found == set(range(8)), f"views seen: {sorted(found)}"  # 64 draws of 8 x 8 pairs, one pass


def test_a_mirrored_run_resumes_bit_exactly(marked_dataset, tmp_path) -> None:
    def cfg(name):
        return tiny_train_config(
            marked_dataset, tmp_path / "runs", name=name, num_train_steps=6, save_every=3, mirror="dihedral"
        )

    full = train(cfg("full"), show_progress=False)
    with pytest.raises(Kill):
        train(cfg("killed"), callbacks=[kill_at(4)], show_progress=False)
    resumed = train(cfg("killed"), resume=True, show_progress=False)
    a = load_state(full / "checkpoints" / "state-0000006.pt")
    b = load_state(resumed / "checkpoints" / "state-0000006.pt")
    for key in ("G", "D"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    plain = train(dataclasses.replace(cfg("plain"), mirror="none"), show_progress=False)
    c = load_state(plain / "checkpoints" / "state-0000006.pt")
    assert any(not torch.equal(t, c["D"][n]) for n, t in a["D"].items()), "the views changed nothing"
