"""Dataset artifacts built with the real builder, for the tests that need one."""

from __future__ import annotations

import dataclasses

from astrogan.data.build import BuildOptions, BuildResult, build_dataset

_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(BuildOptions))


def build(inputs, out, **kw) -> BuildResult:
    """`build_dataset(inputs, out)` without progress bars.

    Keywords that name a `BuildOptions` field (image_sizes, min_size_px, crop, ...) make its options; the
    rest (overwrite, labels, science, review, ...) go to `build_dataset` itself.
    """
    options = {k: kw.pop(k) for k in list(kw) if k in _OPTION_NAMES}
    return build_dataset(inputs, out, options=BuildOptions(**options), show_progress=False, **kw)
