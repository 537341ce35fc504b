"""Training: losses, EMA, resumable state, stats, the arch-agnostic loop, distributed helpers."""
