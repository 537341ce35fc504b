"""Leaf helpers: seeds, atomic writes, run directories, errors, logging. Torch-free at import time."""
