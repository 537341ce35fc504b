"""Training curves from stats.jsonl as a PNG: losses, discriminator accuracy, throughput."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from astrogan.utils.atomic import atomic_path


def plot_training_curves(stats: list[dict[str, Any]], out: Path, *, title: str = "") -> Path:
    """Three panels (losses; D accuracy on real and fake; images/s) against step; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ticks = [r for r in stats if "loss_d" in r]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    steps = [r["step"] for r in ticks]
    for key, label in (("loss_d", "D loss"), ("loss_g", "G loss"), ("loss_recon", "D reconstruction")):
        if any(key in r for r in ticks):
            axes[0].plot(steps, [r.get(key) for r in ticks], label=label)
    axes[0].set_xlabel("step")
    axes[0].set_title("losses")
    axes[0].legend()
    for key, label in (("acc_real", "real judged real"), ("acc_fake", "fake judged fake")):
        if any(key in r for r in ticks):
            axes[1].plot(steps, [r.get(key) for r in ticks], label=label)
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_xlabel("step")
    axes[1].set_title("discriminator accuracy")
    axes[1].legend()
    axes[2].plot(steps, [r.get("images_per_s") for r in ticks], color="tab:green")
    axes[2].set_xlabel("step")
    axes[2].set_title("training images / s")
    for r in stats:
        if r.get("event") == "nan_rollback":
            for ax in axes:
                ax.axvline(r["step"], color="red", alpha=0.4, linestyle="--")
    if title:
        fig.suptitle(title)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
