"""Built-in training presets (TOML): `astrogan train --preset NAME`."""
