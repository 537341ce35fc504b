"""FID Inception-v3 (Szegedy et al. 2016; Heusel et al. 2017) in plain torch, weights from a local file.

This is the "pt_inception-2015-12-05" variant that pytorch-fid, torch-fidelity and clean-fid use to
match the original TensorFlow FID: Inception-v3 with 1008 classes whose Mixed_5*/6*/7b blocks average-
pool without counting padding and whose Mixed_7c block max-pools its pool branch. Features are the
2048-d global average pool after Mixed_7c.

Input mapping (documented choice, applied identically to real and generated images):
- images are `(N,H,W,C)` uint8 (or float already in [0, 1]), scaled to [0, 1];
- 1 band is replicated to 3 channels; 3 bands are used as RGB; 2 bands get their mean as the third
  channel; more than 3 bands use the first three bands (astrogan stores multi-band science data
  ordered by wavelength, so these are the three bluest bands);
- then, as pytorch-fid: bilinear resize to 299x299 (align_corners=False) and scaling to [-1, 1].

The weights are never downloaded: pass a local copy of `pt_inception-2015-12-05-6726825d.pth` (the
`fid_weights` release of github.com/mseitzer/pytorch-fid) with `--inception-weights PATH` or the
environment variable ASTROGAN_INCEPTION_WEIGHTS. Its sha256 is computed and reported.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from astrogan.imaging import sha256_file
from astrogan.utils.errors import UserError

WEIGHTS_ENV = "ASTROGAN_INCEPTION_WEIGHTS"
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_HINT = (
    "FID/KID skipped: no Inception weights file; download "
    f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_NAME} "
    f"once and pass --inception-weights PATH (or set {WEIGHTS_ENV})"
)
FEATURE_DIM = 2048


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3) + ReLU."""

    def __init__(self, cin: int, cout: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = m(bd)
        return torch.cat([b1, b7, bd, self.branch_pool(_avg(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for m in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = m(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int, *, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool  # FID variant: Mixed_7c max-pools, Mixed_7b average-pools
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg(x)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 (FID variant): `forward(x (N,3,H,W) float in [0,1]) -> (N, 2048)` pool features."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)  # unused for features; kept so the state dict matches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def resolve_weights_path(path: str | os.PathLike[str] | None) -> Path | None:
    """The weights path from the argument or ASTROGAN_INCEPTION_WEIGHTS; None when neither is set."""
    value = path if path is not None else os.environ.get(WEIGHTS_ENV) or None
    if value is None:
        return None
    p = Path(value).expanduser()
    if not p.is_file():
        raise UserError(f"Inception weights file {p} does not exist; {WEIGHTS_HINT.split('; ', 1)[1]}")
    return p


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
_PICKLE_PROTO = b"\x80"  # torch.save's legacy format (and any pickle of protocol 2+) starts with PROTO


def _not_tensors(p: Path) -> UserError:
    return UserError(
        f"Inception weights {p} is not a state dict of tensors (astrogan loads weights safely and never "
        f"unpickles objects); pass the {WEIGHTS_NAME} file"
    )


def _read_state_dict(p: Path) -> dict[str, torch.Tensor]:
    """Read `p` on the CPU without unpickling objects and check it holds the FID Inception's tensors.

    Every failure is a UserError with one line that names the file. torch's own messages are never
    quoted: they are several lines long and advise `weights_only=False`, which would run code from the
    file.
    """
    with open(p, "rb") as fh:
        head = fh.read(16)
    # safetensors: an 8-byte header length, then the JSON header
    torch_magic = head.startswith((_ZIP_MAGIC, _PICKLE_PROTO))
    is_safetensors = p.suffix == ".safetensors" or (not torch_magic and head[8:9] == b"{")
    try:
        if is_safetensors:
            from safetensors.torch import load_file

            state = load_file(str(p), device="cpu")
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # one line for the user; torch's own text is never quoted
        if not (torch_magic or is_safetensors):  # text (an HTML error page), garbage, an empty file
            raise UserError(
                f"cannot read Inception weights {p}: not a PyTorch or safetensors file (it starts with "
                f"{head[:12]!r}); pass the {WEIGHTS_NAME} file"
            ) from None
        if isinstance(exc, pickle.UnpicklingError) and torch_magic:
            # torch's layout, and the weights-only unpickler refused what the pickle holds: objects
            # (a whole nn.Module, a training checkpoint, ...), which astrogan never unpickles
            raise _not_tensors(p) from None
        kind = "safetensors" if is_safetensors else "PyTorch"
        raise UserError(
            f"cannot read Inception weights {p}: not a readable {kind} weights file (corrupt or truncated? "
            f"{type(exc).__name__}); pass the {WEIGHTS_NAME} file"
        ) from None
    if not isinstance(state, dict):
        raise _not_tensors(p)
    with torch.device("meta"):  # shapes only: no memory, no random initialisation
        expected = {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}
    needed = {k for k in expected if not k.endswith("num_batches_tracked")}
    keys = {k for k in state if isinstance(k, str)}
    missing = sorted(needed - keys)
    unexpected = sorted(str(k) for k in set(state) - set(expected) if not str(k).startswith("AuxLogits."))
    if missing or unexpected:
        found = [f"{len(missing)} missing keys, e.g. {missing[:2]}"] if missing else []
        found += [f"{len(unexpected)} unexpected keys, e.g. {unexpected[:2]}"] if unexpected else []
        raise UserError(
            f"{p} is not the FID Inception-v3 state dict ({'; '.join(found)}); use {WEIGHTS_NAME}"
        )
    if not all(isinstance(state[k], torch.Tensor) for k in expected if k in state):
        raise _not_tensors(p)
    for k in sorted(needed):
        if tuple(state[k].shape) != expected[k]:
            raise UserError(
                f"{p}: weight {k} has shape {tuple(state[k].shape)}, expected {expected[k]}; this is not the "
                f"FID Inception-v3 (pytorch-fid's 1008-class network); use {WEIGHTS_NAME}"
            )
        if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all()):
            raise UserError(
                f"{p}: weight {k} holds NaN or infinite values; use an intact copy of {WEIGHTS_NAME}"
            )
    return {k: v for k, v in state.items() if k in expected}


def check_weights_file(path: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """Check an Inception weights file before any work that needs it; returns (absolute path, sha256).

    `path` None means ASTROGAN_INCEPTION_WEIGHTS. Raises UserError (one line) when neither is set, the
    file does not exist, or it does not hold the FID Inception-v3's weights (see `load_inception`).
    Costs one read of the ~95 MB file plus its sha256 (well under a second or two on a CPU).
    """
    p = resolve_weights_path(path)
    if p is None:
        raise UserError(f"no Inception weights file; {WEIGHTS_HINT.split('; ', 1)[1]}")
    p = p.resolve()
    _read_state_dict(p)
    return p, sha256_file(p)


def load_inception(path: str | os.PathLike[str], *, device: str = "cpu") -> tuple[FIDInceptionV3, str]:
    """Build the FID Inception and load a local state dict (.pth via weights_only, or .safetensors).

    Returns (model in eval mode, sha256 of the file). Raises UserError with one line when the file is
    missing, is not a PyTorch/safetensors file (text, garbage, truncated), holds pickled objects instead
    of tensors (a whole nn.Module: refused, never unpickled), or holds another network's tensors (wrong
    keys or shapes) or non-finite values.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"Inception weights file {p} does not exist; {WEIGHTS_HINT.split('; ', 1)[1]}")
    state = _read_state_dict(p)
    digest = sha256_file(p)
    model = FIDInceptionV3()
    model.load_state_dict(state, strict=False)
    return model.eval().to(device), digest


def images_to_inception_input(images: np.ndarray) -> torch.Tensor:
    """`(N,H,W[,C])` uint8 or float in [0,1] -> float32 `(N,3,H,W)` in [0,1] (see the module docstring)."""
    arr = np.asarray(images)
    x = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else np.clip(arr.astype(np.float32), 0, 1)
    if x.ndim == 3:
        x = x[..., None]
    c = x.shape[-1]
    if c == 1:
        x = np.repeat(x, 3, axis=-1)
    elif c == 2:
        x = np.concatenate([x, x.mean(axis=-1, keepdims=True)], axis=-1)
    elif c > 3:
        x = x[..., :3]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@torch.no_grad()
def extract_features(
    model: nn.Module, images: np.ndarray, *, batch_size: int = 32, device: str = "cpu"
) -> np.ndarray:
    """Run `model` over images `(N,H,W[,C])` in batches -> float64 features `(N, D)`."""
    out = []
    for s in range(0, len(images), batch_size):
        x = images_to_inception_input(images[s : s + batch_size]).to(device)
        out.append(model(x).double().cpu().numpy())
    return np.concatenate(out, axis=0) if out else np.zeros((0, FEATURE_DIM))
