"""The `astrogan` console script: a thin Typer layer over the Python API."""
