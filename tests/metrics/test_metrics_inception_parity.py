"""Feature parity of astrogan's FID Inception with pytorch-fid's `InceptionV3([3])` (`fid_inception_v3()`).

pytorch-fid needs torchvision, which is not installed here, so this file holds a plain functional copy of
the forward pass that pytorch-fid runs, transcribed from pytorch-fid's `src/pytorch_fid/inception.py`
(`InceptionV3.forward`, `fid_inception_v3`, `FIDInceptionA/C/E_1/E_2`) and torchvision's
`torchvision/models/inception.py` (`Inception3`, `InceptionB/D`, `BasicConv2d`): every layer is an
F.conv2d / F.batch_norm(eps=0.001) / F.relu call on the state-dict tensors, so it shares no code with
astrogan's modules. The weights are random (convolutions and all four BatchNorm tensors), saved with
torch.save and read back by astrogan's `load_inception`, as the real pt_inception-2015-12-05 file would be.

The input path is pytorch-fid's too: its dataset turns an 8-bit image into a float tensor in [0, 1]
(PIL `convert("RGB")` replicates a grey band, torchvision's to_tensor divides by 255), and
`InceptionV3.forward` resizes to 299x299 (bilinear, align_corners=False) and maps to [-1, 1]. astrogan
runs its own public path, `extract_features` (= `images_to_inception_input` + the model's forward).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from astrogan.metrics.inception import extract_features, images_to_inception_input, load_inception

# ---------------------------------------------------------------------------------------------------------
# The reference: pytorch-fid's FID Inception, written out functionally.
# ---------------------------------------------------------------------------------------------------------


def _layer_shapes() -> dict[str, tuple[int, int, int, int]]:
    """conv weight shapes (out, in, kh, kw) of every BasicConv2d, named as in torchvision's Inception3."""
    s: dict[str, tuple[int, int, int, int]] = {}

    def conv(name, cin, cout, kh, kw=None):
        s[name] = (cout, cin, kh, kh if kw is None else kw)

    conv("Conv2d_1a_3x3", 3, 32, 3)
    conv("Conv2d_2a_3x3", 32, 32, 3)
    conv("Conv2d_2b_3x3", 32, 64, 3)
    conv("Conv2d_3b_1x1", 64, 80, 1)
    conv("Conv2d_4a_3x3", 80, 192, 3)
    for name, cin, pool_features in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        conv(f"{name}.branch1x1", cin, 64, 1)
        conv(f"{name}.branch5x5_1", cin, 48, 1)
        conv(f"{name}.branch5x5_2", 48, 64, 5)
        conv(f"{name}.branch3x3dbl_1", cin, 64, 1)
        conv(f"{name}.branch3x3dbl_2", 64, 96, 3)
        conv(f"{name}.branch3x3dbl_3", 96, 96, 3)
        conv(f"{name}.branch_pool", cin, pool_features, 1)
    conv("Mixed_6a.branch3x3", 288, 384, 3)
    conv("Mixed_6a.branch3x3dbl_1", 288, 64, 1)
    conv("Mixed_6a.branch3x3dbl_2", 64, 96, 3)
    conv("Mixed_6a.branch3x3dbl_3", 96, 96, 3)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        conv(f"{name}.branch1x1", 768, 192, 1)
        conv(f"{name}.branch7x7_1", 768, c7, 1)
        conv(f"{name}.branch7x7_2", c7, c7, 1, 7)
        conv(f"{name}.branch7x7_3", c7, 192, 7, 1)
        conv(f"{name}.branch7x7dbl_1", 768, c7, 1)
        conv(f"{name}.branch7x7dbl_2", c7, c7, 7, 1)
        conv(f"{name}.branch7x7dbl_3", c7, c7, 1, 7)
        conv(f"{name}.branch7x7dbl_4", c7, c7, 7, 1)
        conv(f"{name}.branch7x7dbl_5", c7, 192, 1, 7)
        conv(f"{name}.branch_pool", 768, 192, 1)
    conv("Mixed_7a.branch3x3_1", 768, 192, 1)
    conv("Mixed_7a.branch3x3_2", 192, 320, 3)
    conv("Mixed_7a.branch7x7x3_1", 768, 192, 1)
    conv("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7)
    conv("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1)
    conv("Mixed_7a.branch7x7x3_4", 192, 192, 3)
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        conv(f"{name}.branch1x1", cin, 320, 1)
        conv(f"{name}.branch3x3_1", cin, 384, 1)
        conv(f"{name}.branch3x3_2a", 384, 384, 1, 3)
        conv(f"{name}.branch3x3_2b", 384, 384, 3, 1)
        conv(f"{name}.branch3x3dbl_1", cin, 448, 1)
        conv(f"{name}.branch3x3dbl_2", 448, 384, 3)
        conv(f"{name}.branch3x3dbl_3a", 384, 384, 1, 3)
        conv(f"{name}.branch3x3dbl_3b", 384, 384, 3, 1)
        conv(f"{name}.branch_pool", cin, 192, 1)
    return s


def random_fid_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """A state dict in the layout of `fid_inception_v3().state_dict()` with random values.

    Convolutions: He-normal. BatchNorm: running_var log-uniform in [0.01, 2] (so eps=0.001 matters),
    running_mean and bias random, weight = sqrt(running_var) * U(0.8, 1.2) so that activations stay O(1)
    through the 94 layers while every one of the four BN tensors changes the output.
    """
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, shape in _layer_shapes().items():
        fan_in = shape[1] * shape[2] * shape[3]
        cout = shape[0]
        sd[f"{name}.conv.weight"] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        var = torch.exp(torch.empty(cout).uniform_(np.log(0.01), np.log(2.0), generator=g))
        sd[f"{name}.bn.weight"] = var.sqrt() * torch.empty(cout).uniform_(0.8, 1.2, generator=g)
        sd[f"{name}.bn.bias"] = 0.2 * torch.randn(cout, generator=g)
        sd[f"{name}.bn.running_mean"] = 0.2 * torch.randn(cout, generator=g)
        sd[f"{name}.bn.running_var"] = var
        sd[f"{name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    sd["fc.weight"] = 0.01 * torch.randn(1008, 2048, generator=g)  # 1008 classes; unused by the features
    sd["fc.bias"] = torch.zeros(1008)
    return sd


def _basic_conv(sd, name, x, *, stride=1, padding=0, eps=0.001):
    """torchvision BasicConv2d: conv (no bias) -> BatchNorm2d(eps=0.001, eval) -> ReLU."""
    x = F.conv2d(x, sd[f"{name}.conv.weight"], None, stride=stride, padding=padding)
    x = F.batch_norm(
        x,
        sd[f"{name}.bn.running_mean"],
        sd[f"{name}.bn.running_var"],
        sd[f"{name}.bn.weight"],
        sd[f"{name}.bn.bias"],
        training=False,
        momentum=0.0,
        eps=eps,
    )
    return F.relu(x)


def reference_features(
    sd, x, *, count_include_pad=False, mixed_7c_pool="max", eps=0.001, align_corners=False
):
    """pytorch-fid `InceptionV3(output_blocks=[3])(x)[0].flatten(1)` for x `(N,3,H,W)` in [0, 1].

    The keyword arguments are the known ways to get the FID variant wrong (torchvision's own blocks
    count padding in their average pools and average-pool in Mixed_7c; BatchNorm's default eps is 1e-5;
    resizing with align_corners=True); their defaults are pytorch-fid's. Tests change them only to show
    that the comparison would notice.
    """

    def c(name, inp, **kw):
        return _basic_conv(sd, name, inp, eps=eps, **kw)

    def avg_pool(inp):  # FIDInceptionA / FIDInceptionC / FIDInceptionE_1 "Patch"
        return F.avg_pool2d(inp, kernel_size=3, stride=1, padding=1, count_include_pad=count_include_pad)

    def inception_a(n, inp):  # FIDInceptionA.forward
        b1 = c(f"{n}.branch1x1", inp)
        b5 = c(f"{n}.branch5x5_2", c(f"{n}.branch5x5_1", inp), padding=2)
        b3 = c(f"{n}.branch3x3dbl_1", inp)
        b3 = c(f"{n}.branch3x3dbl_2", b3, padding=1)
        b3 = c(f"{n}.branch3x3dbl_3", b3, padding=1)
        bp = c(f"{n}.branch_pool", avg_pool(inp))
        return torch.cat([b1, b5, b3, bp], 1)

    def inception_b(n, inp):  # torchvision InceptionB
        b3 = c(f"{n}.branch3x3", inp, stride=2)
        bd = c(f"{n}.branch3x3dbl_1", inp)
        bd = c(f"{n}.branch3x3dbl_2", bd, padding=1)
        bd = c(f"{n}.branch3x3dbl_3", bd, stride=2)
        return torch.cat([b3, bd, F.max_pool2d(inp, kernel_size=3, stride=2)], 1)

    def inception_c(n, inp):  # FIDInceptionC.forward
        b1 = c(f"{n}.branch1x1", inp)
        b7 = c(f"{n}.branch7x7_1", inp)
        b7 = c(f"{n}.branch7x7_2", b7, padding=(0, 3))
        b7 = c(f"{n}.branch7x7_3", b7, padding=(3, 0))
        bd = c(f"{n}.branch7x7dbl_1", inp)
        bd = c(f"{n}.branch7x7dbl_2", bd, padding=(3, 0))
        bd = c(f"{n}.branch7x7dbl_3", bd, padding=(0, 3))
        bd = c(f"{n}.branch7x7dbl_4", bd, padding=(3, 0))
        bd = c(f"{n}.branch7x7dbl_5", bd, padding=(0, 3))
        bp = c(f"{n}.branch_pool", avg_pool(inp))
        return torch.cat([b1, b7, bd, bp], 1)

    def inception_d(n, inp):  # torchvision InceptionD
        b3 = c(f"{n}.branch3x3_2", c(f"{n}.branch3x3_1", inp), stride=2)
        b7 = c(f"{n}.branch7x7x3_1", inp)
        b7 = c(f"{n}.branch7x7x3_2", b7, padding=(0, 3))
        b7 = c(f"{n}.branch7x7x3_3", b7, padding=(3, 0))
        b7 = c(f"{n}.branch7x7x3_4", b7, stride=2)
        return torch.cat([b3, b7, F.max_pool2d(inp, kernel_size=3, stride=2)], 1)

    def inception_e(n, inp, pool):  # FIDInceptionE_1 (pool="avg") / FIDInceptionE_2 (pool="max")
        b1 = c(f"{n}.branch1x1", inp)
        b3 = c(f"{n}.branch3x3_1", inp)
        b3 = torch.cat(
            [c(f"{n}.branch3x3_2a", b3, padding=(0, 1)), c(f"{n}.branch3x3_2b", b3, padding=(1, 0))], 1
        )
        bd = c(f"{n}.branch3x3dbl_1", inp)
        bd = c(f"{n}.branch3x3dbl_2", bd, padding=1)
        bd = torch.cat(
            [c(f"{n}.branch3x3dbl_3a", bd, padding=(0, 1)), c(f"{n}.branch3x3dbl_3b", bd, padding=(1, 0))], 1
        )
        if pool == "max":
            pooled = F.max_pool2d(inp, kernel_size=3, stride=1, padding=1)
        else:
            pooled = avg_pool(inp)
        return torch.cat([b1, b3, bd, c(f"{n}.branch_pool", pooled)], 1)

    # InceptionV3.forward: resize_input=True, normalize_input=True
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=align_corners)
    x = 2 * x - 1
    # block 0
    x = c("Conv2d_1a_3x3", x, stride=2)
    x = c("Conv2d_2a_3x3", x)
    x = c("Conv2d_2b_3x3", x, padding=1)
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    # block 1
    x = c("Conv2d_3b_1x1", x)
    x = c("Conv2d_4a_3x3", x)
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    assert x.shape[1:] == (192, 35, 35)
    # block 2
    for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = inception_a(n, x)
    x = inception_b("Mixed_6a", x)
    for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = inception_c(n, x)
    assert x.shape[1:] == (768, 17, 17)
    # block 3
    x = inception_d("Mixed_7a", x)
    x = inception_e("Mixed_7b", x, "avg")
    x = inception_e("Mixed_7c", x, mixed_7c_pool)
    assert x.shape[1:] == (2048, 8, 8)
    return F.adaptive_avg_pool2d(x, output_size=(1, 1)).flatten(1)


def pytorch_fid_input(images_u8: np.ndarray) -> torch.Tensor:
    """What pytorch-fid's ImagePathDataset yields: PIL convert("RGB") then torchvision to_tensor."""
    a = images_u8 if images_u8.ndim == 4 else images_u8[..., None]
    if a.shape[-1] == 1:  # PIL "L" -> "RGB" copies the grey value to R, G and B
        a = np.repeat(a, 3, axis=-1)
    return (
        torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)
    )


# ---------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------

RTOL = 1e-4  # of the largest feature in the batch


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory):
    sd = random_fid_state_dict(seed=1234)
    path = tmp_path_factory.mktemp("fidw") / "pt_inception-random.pth"
    torch.save(sd, path)
    model, _ = load_inception(path)
    return sd, model


def _images(size_px: int, bands: int, num: int, seed: int) -> np.ndarray:
    """Smooth-ish 8-bit pictures (a blob on noise), `(N, H, W)` for one band, `(N, H, W, 3)` for three."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size_px, :size_px] / size_px
    out = []
    for _ in range(num):
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        chans = [
            np.clip(blob * rng.uniform(0.5, 1) + 0.15 * rng.random(blob.shape), 0, 1) for _ in range(bands)
        ]
        out.append(np.stack(chans, axis=-1))
    a = np.round(np.stack(out) * 255).astype(np.uint8)
    return a[..., 0] if bands == 1 else a


def _rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).abs().max() / ref.abs().max())


def test_reference_layout_is_what_astrogan_loads(fid_weights):
    sd, model = fid_weights
    ours = model.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in sd.items()}
    # the file was really loaded (BatchNorm buffers included), not left at astrogan's initial values
    for k in (
        "Mixed_7c.branch_pool.bn.running_var",
        "Conv2d_1a_3x3.bn.running_mean",
        "Mixed_6e.branch1x1.bn.bias",
    ):
        assert torch.equal(ours[k], sd[k])


@pytest.mark.parametrize(("size_px", "bands", "num"), [(16, 1, 2), (32, 3, 1), (64, 1, 1), (64, 3, 1)])
def test_features_match_pytorch_fid(fid_weights, size_px, bands, num):
    sd, model = fid_weights
    images = _images(size_px, bands, num, seed=size_px + bands)
    x = pytorch_fid_input(images)
    # astrogan's input mapping hands the model what pytorch-fid's dataset does: no resize, no scaling yet
    assert torch.equal(images_to_inception_input(images), x)
    with torch.no_grad():
        ref = reference_features(sd, x)
    ours = torch.from_numpy(extract_features(model, images, batch_size=num))
    assert ours.shape == ref.shape == (num, 2048)
    assert ours.dtype == torch.float64 and torch.isfinite(ref).all()
    # features are informative: most are non-zero and they differ between images and pixel sizes
    assert (ref > 0).float().mean() > 0.5
    assert _rel_err(ours.float(), ref) <= RTOL


@pytest.mark.slow  # heavy: Inception features, several ways
def test_comparison_notices_the_usual_fid_inception_mistakes(fid_weights):
    """The tolerance above is far below what each known deviation from pytorch-fid changes."""
    sd, _ = fid_weights
    x = pytorch_fid_input(_images(16, 1, 1, seed=7))
    with torch.no_grad():
        ref = reference_features(sd, x)
        for wrong in (
            {"count_include_pad": True},
            {"mixed_7c_pool": "avg"},
            {"eps": 1e-5},
            {"align_corners": True},
        ):
            err = _rel_err(reference_features(sd, x, **wrong), ref)
            assert err > 100 * RTOL, (wrong, err)
