"""`astrogan inspect features`: hooks find one layer per resolution in every architecture; tiles, figure, sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from astrogan.conditions import CondSpec
from astrogan.models import ARCHS
from astrogan.models.io import save_generator
from astrogan.sampling.features import (
    LABEL_PX,
    OUTPUT_LAYER,
    LayerFeatures,
    channel_stats,
    feature_figure,
    feature_sweep,
    features_for,
    features_for_latents,
    layer_panels,
    select_layers,
    sweep_latents,
    write_gif,
)
from astrogan.sampling.generator import load_generator
from astrogan.utils.errors import UserError

# What the rule (last feature map per resolution, side branches skipped, then the output) finds at 16 px.
EXPECTED_16 = {
    "dcgan": ["fc_norm", "blocks.2", OUTPUT_LAYER],
    "fastgan": ["init", "ups.8", "sle.16", OUTPUT_LAYER],
    "stylegan2": ["synthesis.blocks.0", "synthesis.blocks.1", "synthesis.blocks.2", OUTPUT_LAYER],
}
SPEC = CondSpec(
    names=("sersic_n", "q"), units=("", ""), low=(0.5, 0.2), high=(6.0, 1.0), mean=(2.0, 0.6), std=(1.2, 0.2)
)


def _run(tmp_path, arch: str, *, size: int = 16, seed: int = 0, **cfg_kw):
    """A run dir with a freshly initialised tiny generator (saved and loaded the real way)."""
    spec = ARCHS[arch]
    cfg = spec.config_cls(**{"image_size": size, **spec.tiny, **cfg_kw})
    torch.manual_seed(seed)
    G = spec.build_generator(cfg).eval()
    run = tmp_path / f"{arch}-{size}-{seed}"
    save_generator(G, arch=arch, config=cfg, out_dir=run / "checkpoints")
    return run


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_architecture_has_one_tile_per_layer_from_4x4_to_the_output(tmp_path, arch, size):
    gen = load_generator(_run(tmp_path, arch, size=size), device="cpu")
    feats = features_for(gen, 7)
    names = [f.name for f in feats]
    if size == 16:
        assert names == EXPECTED_16[arch]
    res = [f.resolution for f in feats]
    assert res[0] == (4, 4) and res[-1] == (size, size)
    features = feats[:-1]
    assert [r[0] for r in res[:-1]] == sorted({r[0] for r in res[:-1]})  # one layer per resolution, growing
    assert {r[0] for r in res[:-1]} >= {2**k for k in range(2, int(np.log2(size)))}  # no stage missed
    assert all(f.channels != gen.channels for f in features)  # no to-RGB branch
    assert feats[-1].name == OUTPUT_LAYER and feats[-1].channels == gen.channels
    assert all(f.array.dtype == np.float32 and f.array.shape[0] == 1 for f in feats)
    # The output layer is the image generate() draws.
    image = gen.generate_tensor([7]).numpy()
    np.testing.assert_allclose(np.clip(feats[-1].array, -1, 1), image, atol=1e-6)

    panels = layer_panels(feats, max_channels=6, columns=4, tile_px=12)
    assert [label for label, _ in panels] == [
        f"{f.name} · {f.channels} ch · {h}x{w}" for f in feats for h, w in [f.resolution]
    ]
    for f, (_, panel) in zip(feats, panels, strict=True):
        shown = min(f.channels, 6)
        ncols, nrows = min(4, shown), -(-shown // 4)
        assert panel.shape == (nrows * 14 + 2, ncols * 14 + 2, 3)
    # The figure: each panel under its label strip, left-aligned, in layer order.
    fig = feature_figure(feats, max_channels=6, columns=4, tile_px=12, title="t")
    y = LABEL_PX
    for _, panel in panels:
        y += LABEL_PX
        assert np.array_equal(fig[y : y + panel.shape[0], : panel.shape[1]], panel)
        y += panel.shape[0]
    assert fig.shape[0] == y and fig.dtype == np.uint8


@pytest.mark.parametrize("arch", ["dcgan", "stylegan2"])
def test_conditional_models_take_their_defaults_or_a_given_condition(tmp_path, arch):
    classes = load_generator(_run(tmp_path, arch, num_classes=3), device="cpu")
    default = features_for(classes, 7)  # seed 7 -> class 1
    np.testing.assert_array_equal(default[-1].array, features_for(classes, 7, labels=1)[-1].array)
    assert not np.array_equal(default[-1].array, features_for(classes, 7, labels=2)[-1].array)
    with pytest.raises(UserError, match="class labels"):
        features_for(classes, 7, labels=5)
    phys = load_generator(_run(tmp_path, arch, cond=SPEC.to_dict()), device="cpu")
    centre = features_for(phys, 7)  # the training mean
    np.testing.assert_allclose(centre[-1].array, features_for(phys, 7, cond="sersic_n=2,q=0.6")[-1].array)
    assert not np.allclose(centre[-1].array, features_for(phys, 7, cond="sersic_n=5")[-1].array)
    with pytest.raises(UserError, match="sersic_n"):
        features_for(phys, 7, cond="sersic_n=60")


def test_a_seed_has_the_same_features_alone_or_beside_others(tmp_path):
    gen = load_generator(_run(tmp_path, "fastgan"), device="cpu")
    both = features_for(gen, [7, 8], layers="0,-1")
    assert [f.name for f in both] == ["init", OUTPUT_LAYER]
    for i, seed in enumerate((7, 8)):
        alone = features_for(gen, seed, layers="init,output")
        for a, b in zip(alone, both, strict=True):
            np.testing.assert_allclose(a.array[0], b.array[i], atol=1e-5)


def test_layers_are_chosen_by_name_or_index_and_unknown_ones_named_in_one_line():
    names = ["fc_norm", "blocks.2", "output"]
    assert select_layers(names, "all") == names and select_layers(names, None) == names
    assert select_layers(names, "output, 0") == ["fc_norm", "output"]  # network order
    assert select_layers(names, ["blocks.2", -1, 1]) == ["blocks.2", "output"]
    with pytest.raises(UserError) as exc:
        select_layers(names, "fc_norm,nope,7")
    msg = str(exc.value)
    assert "\n" not in msg and "nope, 7" in msg and "0 fc_norm, 1 blocks.2, 2 output" in msg


def test_channels_most_active_first_each_normalised_to_its_own_range():
    import matplotlib

    ramp = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    hot = ramp * 10
    hot[0, 0] = 1e6  # one hot pixel in 256 must not set the range (1st-99th percentile)
    arr = np.stack([ramp * 3, ramp * 0 + 0.25, hot, ramp - 5])[
        None
    ]  # (1, 4, 16, 16): |mean| 1.5, .25, big, 4.5
    layer = LayerFeatures("x", arr)
    stats = channel_stats([layer], max_channels=3)["x"]
    assert stats.order.tolist() == [2, 3, 0]  # by mean |activation|; channel 1 (smallest) left out
    assert stats.high[2] < 20 and stats.low[0] == pytest.approx(3 * np.percentile(ramp, 1))
    ((_, panel),) = layer_panels([layer], max_channels=3, columns=3, tile_px=16, cmap="viridis")
    lut = np.rint(matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    assert panel.shape == (20, 3 * 18 + 2, 3)
    tiles = [panel[2:18, 2 + 18 * k : 18 + 18 * k] for k in range(3)]
    # channel 3 (ramp - 5) and channel 0 (ramp * 3): the map's ends at their own ends, whatever the offset
    for tile in tiles[1:]:
        assert np.array_equal(tile[0, 0], lut[0]) and np.array_equal(tile[-1, -1], lut[255])
        assert np.array_equal(tile[8, 0], lut[round((128 / 255 - 0.01) / 0.98 * 255)])
    # the hot pixel saturates; the rest of its ramp still spans the map
    assert np.array_equal(tiles[0][0, 0], lut[255])
    assert np.array_equal(
        tiles[0][8, 0], lut[round((1280 / 255 - stats.low[2]) / (stats.high[2] - stats.low[2]) * 255)]
    )
    flat = layer_panels([LayerFeatures("y", np.full((1, 1, 4, 4), 2.0, np.float32))], tile_px=4)[0][1]
    assert (flat[2:6, 2:6] == lut_magma_low()).all()  # a dead channel is flat, not noise
    with pytest.raises(UserError, match="magma, viridis"):
        layer_panels([layer], cmap="no-such-map")


def lut_magma_low() -> np.ndarray:
    import matplotlib

    return np.rint(np.asarray(matplotlib.colormaps["magma"](0.0)[:3]) * 255).astype(np.uint8)


def test_sweep_walks_the_slerp_with_one_ranking_and_one_range_for_all_frames(tmp_path):
    gen = load_generator(_run(tmp_path, "stylegan2"), device="cpu")
    z = sweep_latents(gen, 3, 4, num_frames=5)
    ends = gen.latents([3, 4]).numpy()
    np.testing.assert_allclose(z[[0, -1]], ends, atol=1e-6)
    assert np.linalg.norm(z[2]) > np.linalg.norm((ends[0] + ends[1]) / 2)  # on the great circle, not a chord
    seen = []
    frames = feature_sweep(
        gen, 3, 4, num_frames=5, layers="1,output", tile_px=8, batch_size=2, on_frames=seen.append
    )
    assert sum(seen) == 10 and len(frames) == 5
    assert len({f.shape for f in frames}) == 1 and not np.array_equal(frames[0], frames[-1])
    every = features_for_latents(gen, z, layers="1,output")
    stats = channel_stats(every)  # over all frames at once
    for k in (0, 3):
        one = [LayerFeatures(f.name, f.array[k : k + 1]) for f in every]
        title = f"seed 3 → 4 · t = {k / 4:.2f}"
        expected = feature_figure(one, stats, tile_px=8, title=title)
        assert np.array_equal(frames[k][: expected.shape[0], : expected.shape[1]], expected)
    with pytest.raises(UserError, match="2 frames"):
        sweep_latents(gen, 3, 4, num_frames=1)


def test_gif_bounces_and_is_written_atomically(tmp_path):
    frames = [np.full((6, 8, 3), v, np.uint8) for v in (0, 100, 200)]
    out = write_gif(frames, tmp_path / "s.gif", frame_ms=50)
    with Image.open(out) as im:
        assert im.n_frames == 4 and im.size == (8, 6)  # 0 1 2 1, then it loops
        im.seek(3)
        assert np.asarray(im.convert("RGB"))[0, 0, 0] == 100
    with Image.open(write_gif(frames, tmp_path / "t.gif", bounce=False)) as im:
        assert im.n_frames == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.gif", "t.gif"]  # no temp files left


# ---------------------------------------------------------------------------------------------------------
# CLI


def _cli(args, capsys):
    from astrogan.cli import main as cli_main
    from astrogan.cli.inspect import register

    if not any(g.name == "inspect" for g in cli_main.app.registered_groups):
        register(cli_main.app)  # until cli/main.py lists "inspect" in _COMMAND_MODULES
    code = cli_main.main(["inspect", "features", *args])
    captured = capsys.readouterr()
    return code, captured.err


def test_cli_writes_the_figure_and_the_sweep(tmp_path, capsys):
    run = _run(tmp_path, "dcgan", num_classes=3)
    fig = tmp_path / "fig.png"
    code, err = _cli(["--run", str(run), "--seed", "7", "--tile-px", "16", "--out", str(fig)], capsys)
    assert code == 0, err
    gen = load_generator(run, device="cpu")
    expected = feature_figure(features_for(gen, 7), tile_px=16, title="seed 7")
    assert np.array_equal(np.asarray(Image.open(fig).convert("RGB")), expected)

    code, err = _cli(
        ["--run", str(run), "--seeds", "7,8", "--layers", "0,output", "--class", "2", "--out", str(fig)],
        capsys,
    )
    assert code == 0, err
    feats = features_for(gen, [7, 8], layers="0,output", labels=2)
    expected = feature_figure(feats, title="seeds 7, 8 (one block per seed, in this order)")
    assert np.array_equal(np.asarray(Image.open(fig).convert("RGB")), expected)

    gif = tmp_path / "sweep.gif"
    code, err = _cli(["--run", str(run), "--sweep", "1,2", "--frames", "3", "--out", str(gif)], capsys)
    assert code == 0, err
    with Image.open(gif) as im:
        assert im.n_frames == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "blocks.2,nope,9"], "unknown layers nope, 9: choose names or indices from 0 fc_norm"),
        (["--seeds", "1,2", "--sweep", "1,2"], "not both"),
        (["--sweep", "1,2,3", "--out", "x.gif"], "two seeds"),
        (["--sweep", "1,2"], "must end in .gif"),
        (["--out", "x.gif"], "must end in .png"),
        (["--max-channels", "0"], "--max-channels"),
        (["--cmap", "nope"], "unknown colour map"),
        (["--class", "9"], "class labels must be in 0..2"),
        (["--cond", "q=0.5"], "takes no physical conditions"),
        (["--seeds", "0-99"], "too many seeds"),
    ],
)
def test_cli_mistakes_are_one_line(tmp_path, capsys, args, message):
    run = _run(tmp_path, "dcgan", num_classes=3)
    base = ["--run", str(run), "--out", str(tmp_path / "f.png")]
    code, err = _cli([*base, *args], capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "f.png").exists()
    code, err = _cli(["--run", str(tmp_path / "missing"), "--out", str(tmp_path / "f.png")], capsys)
    assert code == 2 and "does not exist" in err
