"""Sampling: seeded generation, grids, interpolation sheets, averages, progress videos."""
