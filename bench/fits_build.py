"""Science build speed: N 4-band 64x64 float32 FITS cubes through `build_dataset`, against astropy reading them.

Writes `--num` cubes (BANDS='g,r,i,z', a TAN WCS unless --no-wcs, BUNIT) with astropy into a temp folder, then
in the same run times (a) reading them all with astropy alone (`fits.getdata` in a loop: the floor any FITS build
pays), (b) `build_dataset` in science mode (two passes: the stretch fit on up to 256 of them, then every cube
hashed, read, cut, stretched and written to images.h5 with its header) and (a) again, since a busy machine's
speed drifts. Prints one JSON line; `ratio` is build_s / the mean of the two astropy reads; `images_h5_mb` and
`image_filters` show what the HDF5 filters of float images (astrogan.data.writer.FLOAT_FILTERS) cost in size.

    python bench/fits_build.py --num 2000
    python bench/fits_build.py --num 2000 --no-wcs   # cubes without a celestial WCS (no WCS is read)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ASTROGAN_QUIET", "1")

import numpy as np  # noqa: E402


def write_cubes(folder: Path, num: int, *, size: int = 64, seed: int = 0, wcs: bool = True) -> list[Path]:
    """`num` float32 (4, size, size) cubes: a Gaussian galaxy on noisy sky per band, with header cards (and a
    TAN WCS unless `wcs` is False)."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    paths = []
    for i in range(num):
        cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
        sigma = rng.uniform(2.0, 8.0)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)).astype(np.float32)
        cube = np.stack([blob * (20 + 10 * b) + rng.normal(0, 1, (size, size)) for b in range(4)])
        hdu = fits.PrimaryHDU(cube.astype(np.float32))
        hdu.header["BANDS"] = "g,r,i,z"
        hdu.header["BUNIT"] = "nanomaggy"
        if wcs:
            hdu.header["CTYPE1"], hdu.header["CTYPE2"] = "RA---TAN", "DEC--TAN"
            hdu.header["CRPIX1"], hdu.header["CRPIX2"] = size / 2 + 0.5, size / 2 + 0.5
            hdu.header["CRVAL1"], hdu.header["CRVAL2"] = 150.0 + i * 1e-3, 2.2
            hdu.header["CDELT1"], hdu.header["CDELT2"] = -0.262 / 3600, 0.262 / 3600
        else:
            hdu.header["PIXSCALE"] = 0.262
        path = folder / f"cube_{i:05d}.fits"
        hdu.writeto(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=2000, help="cubes to write and build")
    parser.add_argument("--size", type=int, default=64, help="side of the cubes and of the dataset (px)")
    parser.add_argument("--no-wcs", action="store_true", help="cubes without a WCS (PIXSCALE only)")
    args = parser.parse_args()

    from astropy.io import fits

    from astrogan.data.build import BuildOptions, build_dataset
    from astrogan.data.science_inputs import ScienceOptions
    from astrogan.data.writer import image_filters

    def read_all(paths: list[Path]) -> float:
        t0 = time.perf_counter()
        total = 0.0
        for p in paths:
            total += float(fits.getdata(p)[0, 0, 0])
        return time.perf_counter() - t0

    tmp = Path(tempfile.mkdtemp(prefix="astrogan-fits-bench-"))
    try:
        raw = tmp / "raw"
        raw.mkdir()
        paths = write_cubes(raw, args.num, size=args.size, wcs=not args.no_wcs)
        fits.getdata(paths[0])  # warm the page cache and the imports of both timings alike
        import astropy.visualization  # noqa: F401
        import astropy.wcs  # noqa: F401
        import h5py  # noqa: F401

        read_s = [read_all(paths)]
        t0 = time.perf_counter()
        res = build_dataset(
            [raw],
            tmp / "ds",
            options=BuildOptions(image_sizes=(args.size,), min_size_px=8),
            science=ScienceOptions(cubes=True),
            show_progress=False,
        )
        build_s = time.perf_counter() - t0
        read_s.append(read_all(paths))
        assert res.num_images == args.num, res.skip_reasons()
        h5_mb = (res.path / "images.h5").stat().st_size / 2**20
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mean_read_s = sum(read_s) / len(read_s)
    print(
        json.dumps(
            {
                "bench": "fits_build",
                "images": args.num,
                "size_px": args.size,
                "bands": 4,
                "wcs": not args.no_wcs,
                "astropy_read_s": [round(v, 3) for v in read_s],
                "build_s": round(build_s, 3),
                "astropy_images_per_s": round(args.num / mean_read_s, 1),
                "build_images_per_s": round(args.num / build_s, 1),
                "ratio": round(build_s / mean_read_s, 2),
                "images_h5_mb": round(h5_mb, 1),
                "raw_float32_mb": round(args.num * 4 * args.size**2 * 4 / 2**20, 1),
                "image_filters": image_filters("float32"),
                "machine": {
                    "cpu_count": os.cpu_count(),
                    "loadavg": [round(v, 2) for v in os.getloadavg()],
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
