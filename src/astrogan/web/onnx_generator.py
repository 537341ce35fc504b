"""Torch-free generator on ONNX Runtime: seed -> latent -> image, same interface as the PyTorch sampler."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.conditions import CondSpec
from astrogan.imaging import (
    CLASS_INPUT,
    COND_INPUT,
    IMAGE_OUTPUT,
    LATENT_INPUT,
    META_KEY,
    TRUNC_INPUT,
    trunc_rows,
)
from astrogan.imaging import slerp as slerp  # re-exported: the web's latent walk
from astrogan.imaging import to_uint8 as to_uint8  # re-exported: the one pixel mapping, for callers
from astrogan.science import (
    BandStretch,
    ScienceSpec,
    cube_values,
    display_uint8,
    fits_bytes,
    fits_header_cards,
    generated_cube_cards,
)
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import check_batch_size, labels_for_seeds, latents_for_seeds

# What `cond=` accepts: text "sersic_n=1.2,q=0.4", a mapping, one vector (K,) for every row, or rows (N, K).
CondRequest = str | Mapping[str, float] | Sequence[float] | np.ndarray | None


# What a model.json may ask for: beyond these, a value is a broken or hostile file, refused before any
# buffer is sized by it (a z_dim of 1e9 would make every seed's latent 4 GB).
MAX_META_BYTES = 16 << 20
MAX_Z_DIM = 1 << 16
MAX_IMAGE_SIZE = 8192
MAX_CHANNELS = 64
MAX_CLASSES = 1_000_000
MAX_CONDITIONS = 256
# A band name: what `band=r` and `rgb=i,r,g` name, and a FITS header value (so no commas, spaces or non-ASCII).
BAND_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,39}")
# How a science model's output is shown: (R, G, B) band names ("" = the mean of R and B) or one band's index.
View = tuple[tuple[str, str, str] | None, int | None]


def read_model_meta(path: str | Path) -> dict[str, Any]:
    """`model.json` beside the .onnx file (or `<stem>.json`), else the copy embedded in the ONNX metadata."""
    path = Path(path)
    for cand in (path.with_suffix(".json"), path.parent / "model.json"):
        if cand.is_file():
            return _parse_meta(cand.read_bytes(), cand)
    return {}


def _parse_meta(raw: bytes | str, where: Path | str) -> dict[str, Any]:
    """model.json's object; UserError (one line) for an oversized file, broken JSON or a non-object."""
    if len(raw) > MAX_META_BYTES:
        raise UserError(
            f"{where}: {len(raw):,} bytes is too large for a model.json (at most {MAX_META_BYTES:,})"
        )
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise UserError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise UserError(f"{where} must hold a JSON object, not {type(meta).__name__}")
    return meta


def _static_dim(shape: Sequence[Any], axis: int) -> int | None:
    """The fixed size of `axis` in an ONNX shape, None when it is symbolic ("batch") or absent."""
    if len(shape) <= axis:
        return None
    dim = shape[axis]
    return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None


def _checked_size(
    meta: Mapping[str, Any], key: str, *, graph: int | None, high: int, what: str, where: Path
) -> int:
    """model.json's `key` checked against the graph's own size (`graph`, when fixed) and bounded to 1..high.

    The graph wins where model.json says nothing; a mismatch, a non-integer or an absurd value is a UserError.
    """
    raw = meta.get(key)
    if raw is None or raw == 0:
        if graph is None:
            raise UserError(f"{where}: model.json gives no {key} and the graph's {what} has no fixed size")
        value = graph
    elif isinstance(raw, bool) or not isinstance(raw, int | float) or raw != int(raw):
        raise UserError(f"{where}: model.json's {key} must be a whole number, got {str(raw)[:40]!r}")
    else:
        value = int(raw)
        if graph is not None and value != graph:
            raise UserError(f"{where}: model.json says {key} = {value} but the graph's {what} is {graph}")
    if not 1 <= value <= high:
        raise UserError(f"{where}: {key} = {value} is outside 1..{high}: not a model this server can run")
    return value


class OnnxGenerator:
    """An exported generator run by ONNX Runtime.

    Inputs: `z` float32 `(N, z_dim)`, for class-conditional models `c` int64 `(N,)`, for models on physical
    conditions `cond` float32 `(N, K)` in physical units (described by `cond_spec`, from model.json), and
    `trunc` float32 `(N,)` (one truncation factor per sample, applied inside the network: z scaled for
    z-GANs, w pulled to its average for mapping networks); output `images` float32 `(N, C, H, W)` in
    [-1, 1]. Seeds become latents through `latents_for_seeds`, so seed N draws the same picture here as in
    PyTorch. Older exports have no `trunc` input (they were all z-GANs): for them truncation scales z
    before the network.
    """

    def __init__(self, path: str | Path, *, num_threads: int = 0) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"no ONNX model at {self.path}: export one with `astrogan export --format onnx`")
        opts = ort.SessionOptions()
        if num_threads > 0:
            opts.intra_op_num_threads = num_threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Serving: memory goes back after each run instead of staying in an arena sized by the biggest
        # request ever seen, and idle threads sleep instead of spinning on a shared CPU.
        opts.enable_cpu_mem_arena = False
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise UserError(f"cannot load {self.path} as an ONNX model: {str(exc).splitlines()[0]}") from None
        meta = read_model_meta(self.path)
        if not meta:
            embedded = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
            meta = _parse_meta(embedded, f"{self.path} (embedded model.json)") if embedded else {}
        self.meta: dict[str, Any] = meta
        inputs = {i.name: i for i in self.session.get_inputs()}
        if LATENT_INPUT not in inputs:
            raise UserError(f"{self.path} has no latent input {LATENT_INPUT!r}: not an astrogan export")
        self.has_class_input = CLASS_INPUT in inputs
        self.has_trunc_input = TRUNC_INPUT in inputs  # False for exports older than in-network truncation
        self.has_cond_input = COND_INPUT in inputs
        unknown = sorted(set(inputs) - {LATENT_INPUT, CLASS_INPUT, COND_INPUT, TRUNC_INPUT})
        if unknown:
            raise UserError(
                f"{self.path} takes inputs {unknown} this server does not know: not an astrogan export"
            )
        # Sizes from model.json are checked against the graph's own shapes before anything is sized by them.
        z_shape = inputs[LATENT_INPUT].shape
        self.z_dim = _checked_size(
            meta,
            "z_dim",
            graph=_static_dim(z_shape, 1),
            high=MAX_Z_DIM,
            what=f"input {LATENT_INPUT!r} width",
            where=self.path,
        )
        if self.has_class_input:
            self.num_classes = _checked_size(
                meta, "num_classes", graph=None, high=MAX_CLASSES, what="class count", where=self.path
            )
        else:
            self.num_classes = 0
        labels = meta.get("labels")
        self.label_names: list[str] | None = (
            [str(x) for x in labels] if isinstance(labels, list) and len(labels) == self.num_classes else None
        )
        self.cond_spec = self._read_cond_spec(meta, inputs.get(COND_INPUT))
        output = self.session.get_outputs()[0]
        out_shape = output.shape
        self.channels = _checked_size(
            meta,
            "channels",
            graph=_static_dim(out_shape, 1),
            high=MAX_CHANNELS,
            what="output's channels",
            where=self.path,
        )
        self.image_size = _checked_size(
            meta,
            "image_size",
            graph=_static_dim(out_shape, 2),
            high=MAX_IMAGE_SIZE,
            what="output's height",
            where=self.path,
        )
        width = _static_dim(out_shape, 3)
        if width is not None and width != self.image_size:
            raise UserError(
                f"{self.path}: the graph draws {self.image_size}x{width} px pictures, not square ones"
            )
        self.output_name = output.name
        self.science = self._read_science(meta)
        self.display_spec = display_spec(self.science, self.channels)

    def _read_cond_spec(self, meta: dict[str, Any], cond_input: Any) -> CondSpec | None:
        """The physical conditions the graph's `cond` input takes, from model.json (None without that input)."""
        if cond_input is None:
            return None
        if not meta.get("cond"):
            raise UserError(f"{self.path} takes a cond input but model.json gives no cond spec")
        try:
            spec = CondSpec.from_dict(meta["cond"])
        except (TypeError, ValueError) as exc:
            raise UserError(f"{self.path}: model.json's cond spec is malformed: {exc}") from None
        if not 1 <= spec.dim <= MAX_CONDITIONS:
            raise UserError(f"{self.path}: {spec.dim} conditions is outside 1..{MAX_CONDITIONS}")
        width = _static_dim(cond_input.shape, 1)
        if width is not None and width != spec.dim:
            raise UserError(f"{self.path} takes {width} conditions but model.json describes {spec.dim}")
        return spec

    def _read_science(self, meta: dict[str, Any]) -> ScienceSpec | None:
        """model.json's `science` spec (bands, the stretch to undo, units), checked; None for picture models.

        Checked against the graph's channels, and written once into a FITS header here, so that a spec no cube
        could carry fails at start-up with one line rather than as a 500 on the first FITS request.
        """
        raw = meta.get("science")
        if not raw:
            return None
        try:
            spec = ScienceSpec.from_dict(raw)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{self.path}: model.json's science spec is malformed: {exc}") from None
        assert spec is not None
        if spec.num_bands != self.channels:
            raise UserError(
                f"{self.path}: model.json's science spec names {spec.num_bands} band(s) but the graph draws "
                f"{self.channels} channel(s)"
            )
        bad = [b for b in spec.bands if not BAND_NAME_RE.fullmatch(b)]
        if bad:
            raise UserError(
                f"{self.path}: band name {bad[0][:40]!r} in model.json: use letters, digits and _.+- only"
            )
        try:
            fits_bytes(np.zeros((spec.num_bands, 1, 1), np.float32), fits_header_cards(spec))
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(
                f"{self.path}: model.json's science spec cannot go into a FITS header: {exc}"
            ) from None
        return spec

    # -- how output is shown -----------------------------------------------------------------------------------

    def check_view(self, *, rgb: str | Sequence[str] | None = None, band: str | int | None = None) -> View:
        """A requested view, checked against the bands and normalised: `(rgb, band index)`.

        `rgb`: three band names shown as (R, G, B), text `"i,r,g"` or a sequence (G may be "": the mean of R
        and B); the model's own mapping comes back as None. `band`: a band name or index, shown alone in grey
        (a picture model's channel index, as `generate --band N`). UserError (one line) for anything else.
        """
        if rgb is None and band is None:
            return None, None
        if rgb is not None and band is not None:
            raise UserError("rgb and band: give one (a colour mapping, or one band in grey), not both")
        spec = self.display_spec
        names = list(spec.bands) if spec is not None else [str(i) for i in range(self.channels)]
        if band is not None:
            text = str(band).strip()
            if text in names:
                return None, names.index(text)
            if text.isdigit() and int(text) < len(names):
                return None, int(text)
            what = "a band of this model" if spec is not None else "a channel of this model, by index"
            raise UserError(f"band: {text[:40]!r} is not {what} ({', '.join(names)})")
        if spec is None:
            raise UserError(
                f"rgb: this model draws {self.channels}-channel pictures, not named bands; leave it out "
                "(band=N shows one channel)"
            )
        if spec.num_bands == 1:
            raise UserError(f"rgb: this model has one band ({names[0]}): there are no colours to map")
        parts = [p.strip() for p in (rgb.split(",") if isinstance(rgb, str) else list(rgb or ()))]
        if len(parts) != 3 or not parts[0] or not parts[2] or any(p and p not in names for p in parts):
            example = ",".join(spec.display_or_default().rgb)
            raise UserError(
                f"rgb: give three of the bands {','.join(names)} as R,G,B (G may be empty: the mean of R and B), "
                f"e.g. rgb={example}; got {','.join(parts)[:60]!r}"
            )
        chosen = (parts[0], parts[1], parts[2])
        return (None if chosen == spec.display_or_default().rgb else chosen), None

    def pictures(self, images: np.ndarray, *, view: View = (None, None)) -> np.ndarray:
        """Model output `(N, C, H, W)` in [-1, 1] -> uint8 pictures as shown, `(N, H, W, 3)` or grey `(N, H, W, 1)`.

        Science models: the Lupton composite of the spec's (R, G, B) bands (or `view`'s), or one band in grey
        (`science.display_uint8`). 1- and 3-channel picture models: `to_uint8` (or one channel in grey). `view`
        comes from `check_view`.
        """
        rgb, band = view
        spec = self.display_spec
        if spec is not None and rgb is not None:
            spec = spec.with_rgb(rgb)
        return display_uint8(images, spec, band=band)

    def fits(
        self,
        seed: int,
        *,
        trunc: float = 1.0,
        label: int | None = None,
        cond: np.ndarray | None = None,
        cards: Mapping[str, Any] | None = None,
    ) -> bytes:
        """The FITS file for one seed: a float32 cube `(B, H, W)` in the data's units (the stretch undone).

        A picture model (no science spec) gives its values mapped to [0, 1], BUNIT 'display', PHYSICAL = F, as
        `astrogan generate --format fits` writes them. Rows in FITS order (the one flip, in
        `science.fits_bytes`); the header has the bands, BUNIT, pixel scale, the run, step and architecture
        (model.json) and what drew this cube: SEED, TRUNC, CLASS, conditions (CONDn = value, CNAMEn = its name),
        plus `cards`. `label`: the class (conditional models; None = the default per seed); `cond`: float32
        `(K,)` physical conditions (None = the training mean).
        """
        spec = self.science
        labels = None
        if self.has_class_input:
            labels = self.default_labels([seed]) if label is None else np.asarray([label], dtype=np.int64)
        rows = None
        if self.has_cond_input:  # the cube's header names the conditions, the mean ones too
            rows = self.cond_rows(None if cond is None else np.asarray(cond, dtype=np.float32), 1)
        images = self.generate_float(self.latents([seed]), labels=labels, cond=rows, trunc=trunc)
        card_raw, train_raw = self.meta.get("model_card"), None
        card: dict[str, Any] = card_raw if isinstance(card_raw, dict) else {}
        train_raw = card.get("training")
        train: dict[str, Any] = train_raw if isinstance(train_raw, dict) else {}
        step = train.get("steps")
        named = None
        if rows is not None and self.cond_spec is not None:
            cs = self.cond_spec
            named = {name: (float(rows[0, i]), cs.units[i]) for i, name in enumerate(cs.names)}
        cls = None if labels is None else int(labels[0])
        header = generated_cube_cards(
            spec,
            channels=self.channels,
            seed=seed,
            trunc=trunc,
            run=train.get("run"),
            step=int(step) if isinstance(step, int | float) and not isinstance(step, bool) else None,
            arch=card.get("arch") or self.meta.get("arch"),
            label=cls,
            label_name=None if cls is None or not self.label_names else self.label_names[cls],
            cond=named,
        )
        if cards:
            header += fits_header_cards(None, **cards)
        return fits_bytes(cube_values(images, spec)[0], header)

    def generate_float(
        self,
        latents: np.ndarray,
        *,
        labels: Sequence[int] | np.ndarray | None = None,
        cond: CondRequest = None,
        trunc: float | Sequence[float] | np.ndarray = 1.0,
        check_cond: bool = True,
        batch_size: int = 32,
    ) -> np.ndarray:
        """Run the network on latents `(N, z_dim)` -> float32 `(N, C, H, W)` in [-1, 1].

        `trunc`: one truncation for all latents or one per latent `(N,)`, fed to the network's `trunc` input.
        `cond` (models on physical conditions): see `cond_rows`; None is the training mean for every latent.
        """
        z = np.ascontiguousarray(latents, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"latents must have shape (N, {self.z_dim}), got {z.shape}")
        t = trunc_rows(trunc, len(z))
        if not self.has_trunc_input:  # an older z-GAN export: truncation is z scaled towards 0
            z = np.ascontiguousarray(z * t[:, None])
        c = self._labels(labels, len(z)) if self.has_class_input else None
        conds = self.cond_rows(cond, len(z), check=check_cond) if self.has_cond_input else None
        if cond is not None and conds is None:
            raise UserError("this model takes no physical conditions: drop --cond")
        outs = []
        step = check_batch_size(batch_size)  # 0 or -3 was quietly 1
        for i in range(0, len(z), step):
            feeds = {LATENT_INPUT: z[i : i + step]}
            if self.has_trunc_input:
                feeds[TRUNC_INPUT] = t[i : i + step]
            if c is not None:
                feeds[CLASS_INPUT] = c[i : i + step]
            if conds is not None:
                feeds[COND_INPUT] = conds[i : i + step]
            outs.append(self.session.run([self.output_name], feeds)[0])
        if not outs:
            return np.zeros((0, self.channels, self.image_size, self.image_size), dtype=np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def generate_latents(
        self,
        latents: np.ndarray,
        *,
        labels: Sequence[int] | np.ndarray | None = None,
        cond: CondRequest = None,
        trunc: float | Sequence[float] | np.ndarray = 1.0,
        check_cond: bool = True,
        batch_size: int = 32,
        view: View = (None, None),
    ) -> np.ndarray:
        """Latents `(N, z_dim)` -> uint8 pictures, truncated by `trunc` (a number or `(N,)`).

        `(N, H, W, C)` for picture models; for science models what `pictures` shows (a colour composite
        `(N, H, W, 3)`, or one band `(N, H, W, 1)` with `view`). Batch by batch, so the float32 output (4x the
        bytes) never exists for all N at once.
        """
        z = np.asarray(latents)
        n = len(z)
        t = trunc_rows(trunc, n)
        c = None if labels is None else np.asarray(labels).reshape(-1)
        conds = None
        if cond is not None and self.has_cond_input:
            conds = self.cond_rows(cond, n, check=check_cond)
        step = check_batch_size(batch_size)  # 0 or -3 was quietly 1
        out: np.ndarray | None = None
        for i in range(0, n, step):
            part = self.pictures(
                self.generate_float(
                    z[i : i + step],
                    labels=None if c is None else (c if c.size == 1 else c[i : i + step]),
                    cond=cond if conds is None else conds[i : i + step],
                    trunc=t[i : i + step],
                    check_cond=check_cond,
                    batch_size=step,
                ),
                view=view,
            )
            if out is None:
                out = np.empty((n, *part.shape[1:]), dtype=np.uint8)
            out[i : i + len(part)] = part
        if out is None:
            empty = self.generate_float(z, labels=labels, cond=cond, trunc=t, check_cond=check_cond)
            return self.pictures(empty, view=view)
        return out

    def latents(self, seeds: Sequence[int]) -> np.ndarray:
        """Seeds -> raw latents z `(N, z_dim)`; truncation is applied by the network (pass `trunc=` on)."""
        return latents_for_seeds(list(seeds), self.z_dim)

    def default_labels(self, seeds: Sequence[int]) -> np.ndarray | None:
        """Class per seed when none is asked for: `seed % num_classes` (None for unconditional models)."""
        values = labels_for_seeds(seeds, self.num_classes if self.has_class_input else 0)
        return None if values is None else np.asarray(values, dtype=np.int64)

    def generate(
        self,
        seeds: Sequence[int],
        *,
        trunc: float = 1.0,
        labels: Sequence[int] | np.ndarray | int | None = None,
        cond: CondRequest = None,
        check_cond: bool = True,
        batch_size: int = 32,
        view: View = (None, None),
    ) -> np.ndarray:
        """Seeds -> uint8 pictures `(N, H, W, C)`; the same seed gives the same image in any batch.

        `trunc`: truncation (1 = none), applied inside the network like `G(z, c, trunc=trunc)` in PyTorch.
        `labels`: one class per seed, one class for all, or None (`seed % num_classes` when conditional).
        `cond`: physical conditions (see `cond_rows`; None is the training mean), checked against the
        trained range unless `check_cond` is False; the same rule as the PyTorch sampler.
        Science models give colour composites `(N, H, W, 3)` (see `pictures`; `view` from `check_view`); their
        fluxes come from `generate_float` + `science.model_to_flux`, or `fits` per seed.
        """
        seeds = list(seeds)
        given = labels.tolist() if isinstance(labels, np.ndarray) else labels
        labels = labels_for_seeds(seeds, self.num_classes if self.has_class_input else 0, given)
        return self.generate_latents(
            self.latents(seeds),
            labels=labels,
            cond=cond,
            trunc=trunc,
            check_cond=check_cond,
            batch_size=batch_size,
            view=view,
        )

    def cond_rows(self, cond: CondRequest, n: int, *, check: bool = True) -> np.ndarray:
        """Conditions for `n` images, float32 `(n, K)`: None (the training mean), text `"sersic_n=1.2,q=0.4"`
        or a mapping (the rest at the mean), one vector `(K,)` for all, or rows `(n, K)`; with `check`,
        a value outside the trained range is a UserError naming the range.
        """
        spec = self.cond_spec
        if spec is None:
            raise UserError("this model takes no physical conditions: drop --cond")
        return spec.rows(cond, n, check=check)

    def _labels(self, labels: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
        if labels is None:
            raise ValueError("this model is conditional: pass one class label per latent")
        c = np.asarray(labels, dtype=np.int64).reshape(-1)
        if c.size == 1 and n != 1:
            c = np.full(n, int(c[0]), dtype=np.int64)
        if c.shape != (n,):
            raise ValueError(f"need {n} labels, got {c.size}")
        if (c < 0).any() or (c >= self.num_classes).any():
            raise UserError(f"class labels must lie in 0..{self.num_classes - 1}")
        return c


def display_spec(science: ScienceSpec | None, channels: int) -> ScienceSpec | None:
    """The spec pictures are drawn with: the science spec; for many channels without one (an export from before
    model.json had `science`), bands "0".."C-1" taken as they are, as `generate` does; None for 1- and 3-channel
    pictures."""
    if science is not None or channels in (1, 3):
        return science
    return ScienceSpec(
        bands=tuple(str(i) for i in range(channels)),
        stretch=BandStretch(kind="linear", a=1.0, black=(0.0,) * channels, white=(1.0,) * channels),
    )


def write_tiny_model(
    path: str | Path,
    *,
    z_dim: int = 8,
    image_size: int = 16,
    channels: int = 3,
    num_classes: int = 0,
    seed: int = 0,
    trunc_input: bool = True,
    cond: CondSpec | None = None,
    science: ScienceSpec | None = None,
) -> Path:
    """Write a tiny analytic ONNX generator (tanh of a linear map of `z * trunc`, plus a class embedding,
    plus a linear map of the normalised conditions) + model.json.

    For tests and demos of the serving stack without a trained network; needs the `onnx` package.
    `trunc_input=False` writes an export from before in-network truncation (inputs `z` [+ `c`] only), to
    check that such models still serve, truncated by scaling z. `cond` writes a model on physical
    conditions: input `cond` float32 `(N, K)` in the spec's units (normalised inside the graph, like a real
    export), and `"cond": cond.to_dict()` in model.json. `science` (as many bands as `channels`) writes a
    science model: `"science": science.to_dict()` in model.json, as `astrogan export` writes for a science run.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = Path(path)
    rng = np.random.default_rng(seed)
    n_out = channels * image_size * image_size
    weight = (rng.standard_normal((z_dim, n_out)) / np.sqrt(z_dim)).astype(np.float32)
    inits = [
        numpy_helper.from_array(weight, "W"),
        numpy_helper.from_array(np.asarray([-1, channels, image_size, image_size], np.int64), "shape"),
    ]
    inputs = [helper.make_tensor_value_info(LATENT_INPUT, TensorProto.FLOAT, ["batch", z_dim])]
    if trunc_input:  # truncation inside the graph, per row: z * trunc[:, None]
        inits.append(numpy_helper.from_array(np.asarray([1], np.int64), "trunc_axes"))
        inputs.append(helper.make_tensor_value_info(TRUNC_INPUT, TensorProto.FLOAT, ["batch"]))
        nodes = [
            helper.make_node("Unsqueeze", [TRUNC_INPUT, "trunc_axes"], ["trunc_col"]),
            helper.make_node("Mul", [LATENT_INPUT, "trunc_col"], ["zt"]),
            helper.make_node("MatMul", ["zt", "W"], ["h"]),
        ]
    else:
        nodes = [helper.make_node("MatMul", [LATENT_INPUT, "W"], ["h"])]
    pre = "h"
    if num_classes > 0:
        emb = rng.standard_normal((num_classes, n_out)).astype(np.float32)
        inits.append(numpy_helper.from_array(emb, "E"))
        inputs.append(helper.make_tensor_value_info(CLASS_INPUT, TensorProto.INT64, ["batch"]))
        nodes += [
            helper.make_node("Gather", ["E", CLASS_INPUT], ["e"], axis=0),
            helper.make_node("Add", ["h", "e"], ["he"]),
        ]
        pre = "he"
    if cond is not None:  # (cond - mean) / std, times V (K, n_out), added before the tanh
        proj = rng.standard_normal((cond.dim, n_out)).astype(np.float32)
        inits += [
            numpy_helper.from_array(np.asarray(cond.mean, np.float32), "cond_mean"),
            numpy_helper.from_array(np.asarray(cond.std, np.float32), "cond_std"),
            numpy_helper.from_array(proj, "V"),
        ]
        inputs.append(helper.make_tensor_value_info(COND_INPUT, TensorProto.FLOAT, ["batch", cond.dim]))
        nodes += [
            helper.make_node("Sub", [COND_INPUT, "cond_mean"], ["cond_c"]),
            helper.make_node("Div", ["cond_c", "cond_std"], ["cond_n"]),
            helper.make_node("MatMul", ["cond_n", "V"], ["hc"]),
            helper.make_node("Add", [pre, "hc"], ["hcc"]),
        ]
        pre = "hcc"
    nodes += [
        helper.make_node("Tanh", [pre], ["t"]),
        helper.make_node("Reshape", ["t", "shape"], [IMAGE_OUTPUT]),
    ]
    out = helper.make_tensor_value_info(
        IMAGE_OUTPUT, TensorProto.FLOAT, ["batch", channels, image_size, image_size]
    )
    graph = helper.make_graph(nodes, "tiny_generator", inputs, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    labels = [f"class{i}" for i in range(num_classes)] if num_classes else None
    meta = {
        "schema_version": 1,
        "format": "onnx",
        "file": path.name,
        "inputs": {
            "latent": LATENT_INPUT,
            "class": CLASS_INPUT if num_classes else None,
            **({"truncation": TRUNC_INPUT} if trunc_input else {}),
            **({"cond": COND_INPUT} if cond is not None else {}),
        },
        "output": IMAGE_OUTPUT,
        "z_dim": z_dim,
        "num_classes": num_classes,
        "labels": labels,
        **({"cond": cond.to_dict()} if cond is not None else {}),
        **({"science": science.to_dict()} if science is not None else {}),
        "image_size": image_size,
        "channels": channels,
        "value_range": [-1.0, 1.0],
        "layout": "NCHW",
        "stretch": None,
        "parity": None,
        "model_card": {
            "arch": "tiny-analytic",
            "training": {"steps": 0, "kimg": 0.0},
            "dataset": {"name": "none", "sources": [], "credits": [], "licences": []},
            "metrics": {},
        },
    }
    with open(path.with_suffix(".json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2)
    return path
