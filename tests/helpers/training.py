"""Settings for training runs of seconds on the CPU."""

from __future__ import annotations

from os import PathLike

from astrogan.config import TrainConfig
from astrogan.models import ARCHS


def tiny_train_config(
    data: str | PathLike[str], results_dir: str | PathLike[str], arch: str = "dcgan", **settings
) -> TrainConfig:
    """A TrainConfig for a tiny CPU run on `data` into `results_dir`; `settings` override any field.

    The architecture's `tiny` widths, 16 px, batch 4, 2 steps (saved and evaluated at step 2), a grid of 4
    snapshot seeds. The `model` dict is copied, so a config never shares it with a registry or a caller.
    """
    base = dict(
        data=str(data),
        arch=arch,
        image_size=16,
        batch_size=4,
        num_train_steps=2,
        save_every=2,
        evaluate_every=2,
        results_dir=str(results_dir),
        num_snapshot_seeds=4,
        model=ARCHS[arch].tiny,
        device="cpu",
    )
    config = {**base, **settings}
    config["model"] = dict(config["model"])
    return TrainConfig(**config)


class Kill(Exception):
    """Raised by `kill_at`'s callback: the run dies there, as a killed process would (no save)."""


def kill_at(step_to_die: int):
    """A training step callback that raises `Kill` at `step_to_die`."""

    def cb(step, ctx):
        if step == step_to_die:
            raise Kill()

    return cb
