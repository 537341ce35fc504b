"""`dataset review` calibration: precision/recall of each flag on a labelled set, flag rates on clean real pictures.

Labelled set, made from the real pictures in ../shared/data (nasa-esa-press, hubble-showcase and
`--num-galaxyzoo` galaxyzoo-examples picked with `--seed`):

- every clean original (linked, not copied), labelled with the flags a person gave it after looking
  (HAND_LABELS: the two real WFPC2 staircases, a framed picture, a survey cutout with a black band, the
  near-empty stardust.png), `duplicate` when its bytes repeat an earlier file's, and the header flags
  (aspect, small, large: definitions, not guesses);
- one copy per defect generator of tests/data/test_data_review.py (staircase, rotated tile, seam by gain / sky
  offset / noise, bloomed star, clipped core, credit line, scale bar, small object, flattened, empty
  field, strip), labelled with the generator's flag; a flag the copy raises that its original did not
  is a false positive (but for DONT_CARE), a flag both raise is counted once, on the original;
- `--num-dups` recompressed, 90%-resized copies of originals, labelled `duplicate`.

Everything is reviewed in one `review_pictures` run (as `astrogan dataset review` does). Separately the
three folders are reviewed whole (`--clean-run`) for the flag rates on clean real pictures and the speed.
Prints one JSON line.

    python bench/review_calibration.py --num-galaxyzoo 120 --num-dups 30 --clean-run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("ASTROGAN_QUIET", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))  # the defect fixtures live in tests/data

from tests.data.test_data_review import DEFECTS, load_rgb  # noqa: E402

from astrogan.data import review_flags as rf  # noqa: E402
from astrogan.data.review import review_pictures  # noqa: E402

# Looked at, one by one (review.html of the clean run): real defects in the clean pictures.
HAND_LABELS = {
    "hubble-showcase/opo0212a.png": {"blank"},  # WFPC2 staircase mosaic
    "hubble-showcase/opo9942a.png": {"blank"},  # WFPC2 staircase mosaic
    "nasa-esa-press/pia22092.jpg": {"blank"},  # a black frame around the picture
    "galaxyzoo-examples/sloan-0_a-1_0.jpg": {"blank"},  # a zero-filled band along the top edge
    "nasa-esa-press/stardust.png": {"low_info"},  # grey field with a few specks
}
FOLDERS = ("nasa-esa-press", "hubble-showcase", "galaxyzoo-examples")
# Flags a generator may rightly raise besides its own, neither counted right nor wrong: a mosaic's blank
# edge is a seam too (the "along the edge of a blank region"); a x1.25-1.4 gain seam clips cores.
DONT_CARE = {"staircase": {"seam"}, "rotated": {"seam"}, "seam_gain": {"saturated"}}


def pick_sources(num_galaxyzoo: int, seed: int) -> list[str]:
    """Names under SHARED: all press and showcase pictures, a seeded sample of galaxyzoo-examples."""
    names = [f"{d}/{p.name}" for d in FOLDERS[:2] for p in sorted((SHARED / d).iterdir())]
    gz = sorted((SHARED / FOLDERS[2]).iterdir())
    rng = np.random.default_rng(seed)
    names += [f"{FOLDERS[2]}/{gz[i].name}" for i in sorted(rng.choice(len(gz), num_galaxyzoo, replace=False))]
    return names


def make_set(folder: Path, names: list[str], *, num_dups: int, seed: int) -> dict[str, dict]:
    """Write the labelled set under `folder`; returns rel path -> {"labels", "origin", "kind"}."""
    truth: dict[str, dict] = {}
    clean = folder / "clean"
    for name in names:
        link = clean / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(SHARED / name)
        truth[f"clean/{name}"] = {"labels": set(HAND_LABELS.get(name, ())), "origin": None, "kind": "clean"}
    rng = np.random.default_rng(seed)
    for k, name in enumerate(names):
        img = load_rgb(SHARED / name)
        suffix = ".png" if name.endswith(".png") else ".jpg"
        for kind, make in DEFECTS.items():
            out, info = make(img, np.random.default_rng([seed, k, len(kind)]))
            rel = f"defects/{kind}/{Path(name).stem}{suffix}"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(out).save(folder / rel, **({"quality": 92} if suffix == ".jpg" else {}))
            truth[rel] = {
                "labels": set(info["flags"]),
                "origin": f"clean/{name}",
                "kind": kind,
                "dont_care": DONT_CARE.get(kind, set()),
            }
    for i in rng.choice(len(names), num_dups, replace=False):
        name = names[int(i)]
        img = Image.open(SHARED / name).convert("RGB")
        copy = img.resize(
            (max(8, int(img.width * 0.9)), max(8, int(img.height * 0.9))), Image.Resampling.LANCZOS
        )
        rel = f"zz_dups/{Path(name).stem}.jpg"  # after the originals in walk order
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        copy.save(folder / rel, quality=80)
        truth[rel] = {"labels": {"duplicate"}, "origin": f"clean/{name}", "kind": "dup"}
    return truth


def score(pred: dict[str, set[str]], truth: dict[str, dict], shas: dict[str, str]) -> dict:
    """Per flag: TP/FP/FN, precision, recall (see the module docstring for the accounting), and where the
    false positives came from (the generator that made the copy, or `clean`)."""
    first_sha: dict[str, str] = {}
    for path in sorted(p for p in truth if truth[p]["kind"] == "clean"):  # walk order of the originals
        sha = shas.get(path)
        if sha in first_sha:  # ground truth of exact duplicates: the bytes repeat an earlier file's
            truth[path]["labels"].add("duplicate")
        first_sha.setdefault(sha, path)
    counts = {f: Counter() for f in rf.FLAG_NAMES}
    fp_from: dict[str, Counter] = {f: Counter() for f in rf.FLAG_NAMES}
    by_kind: dict[str, Counter] = {}
    for path, t in truth.items():
        got = pred[path]
        labels = set(t["labels"]) | t.get("header", set())
        inherited = pred.get(t["origin"], set()) if t["origin"] else set()
        for f in rf.FLAG_NAMES:
            if f in labels:
                counts[f]["tp" if f in got else "fn"] += 1
            elif f in got and f not in inherited and f not in t.get("dont_care", ()):
                counts[f]["fp"] += 1
                fp_from[f][t["kind"]] += 1
        if t["kind"] != "clean":
            k = by_kind.setdefault(t["kind"], Counter())
            k["n"] += 1
            k["hit"] += bool(t["labels"] & got)
    out = {}
    for f, c in counts.items():
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        out[f] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None,
            "fp_from": dict(fp_from[f].most_common()),
        }
    recall_by_kind = {k: round(c["hit"] / c["n"], 3) for k, c in sorted(by_kind.items())}
    return {"flags": out, "recall_by_generator": recall_by_kind}


def clean_run(work: Path) -> dict:
    """Review the three folders whole: flag rates on clean real pictures, files/s (and galaxyzoo alone)."""
    out = {}
    t0 = time.perf_counter()
    res = review_pictures([SHARED / d for d in FOLDERS], work / "clean-run", show_progress=False)
    wall = time.perf_counter() - t0
    n = res.num_files
    out["num_files"] = n
    out["rate"] = {f: round(res.flag_counts.get(f, 0) / n, 4) for f in rf.FLAG_NAMES}
    out["counts"] = {f: res.flag_counts.get(f, 0) for f in rf.FLAG_NAMES}
    out["excluded_rate"] = round(len(res.excluded) / n, 4)
    dup_sha = sum(1 for r in res.rows if "duplicate" in r["flags"] and r.get("dup_rms") == 0)
    out["duplicates_identical_bytes"] = dup_sha
    per_folder = {}
    for d in FOLDERS:
        rows = [r for r in res.rows if r["root"].endswith(d)]
        per_folder[d] = {
            "files": len(rows),
            "flagged": {f: sum(1 for r in rows if f in r["flags"]) for f in rf.FLAG_NAMES},
            "any_excluded_flag": sum(1 for r in rows if res.exclude_flags & set(r["flags"])),
        }
    out["per_folder"] = per_folder
    out["wall_s"] = round(wall, 1)
    out["files_per_s"] = round(n / wall, 1)
    t0 = time.perf_counter()
    gz = review_pictures([SHARED / FOLDERS[2]], work / "gz-run", show_progress=False)
    out["galaxyzoo_wall_s"] = round(time.perf_counter() - t0, 1)
    out["galaxyzoo_files"] = gz.num_files
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num-galaxyzoo", type=int, default=120, help="galaxyzoo-examples originals in the set")
    ap.add_argument("--num-dups", type=int, default=30, help="near-duplicate copies in the set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clean-run", action="store_true", help="also review the three folders whole")
    ap.add_argument("--keep", type=Path, default=None, help="keep the labelled set and reviews here")
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the real pictures live beside the checkout")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        names = pick_sources(args.num_galaxyzoo, args.seed)
        t0 = time.perf_counter()
        truth = make_set(work / "set", names, num_dups=args.num_dups, seed=args.seed)
        make_s = time.perf_counter() - t0
        # One review per group: the originals with the duplicate copies, then each generator's copies alone
        # (a copy is a near duplicate of its own original; reviewed together, every copy would be flagged).
        t0 = time.perf_counter()
        pred: dict[str, set[str]] = {}
        shas: dict[str, str] = {}
        groups = [[work / "set" / "clean", work / "set" / "zz_dups"]]
        groups += [[work / "set" / "defects" / kind] for kind in DEFECTS]
        for i, group in enumerate(groups):
            res = review_pictures(group, work / f"review-{i}", show_progress=False)
            for r in res.rows:
                rel = str(Path(r["root"], r["path"]).relative_to((work / "set").resolve()))
                pred[rel] = set(r["flags"])
                shas[rel] = r.get("sha256", "")
                w, h = int(r.get("width") or 0), int(r.get("height") or 0)
                if w and h:  # header flags: definitions, not guesses
                    truth[rel]["header"] = {
                        f
                        for f, on in (
                            ("aspect", max(w, h) / min(w, h) >= rf.ASPECT_MAX),
                            ("small", min(w, h) < rf.SMALL_SIDE_PX),
                            ("large", max(w, h) > rf.LARGE_SIDE_PX),
                        )
                        if on
                    }
        review_s = time.perf_counter() - t0
        result = {
            "bench": "review_calibration",
            "machine": {
                "python": platform.python_version(),
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "omp_threads": os.environ.get("OMP_NUM_THREADS"),
            },
            "set": {
                "originals": len(names),
                "files": len(truth),
                "generators": list(DEFECTS),
                "make_s": round(make_s, 1),
                "review_s": round(review_s, 1),
                "files_per_s": round(len(truth) / review_s, 1),
            },
            **score(pred, truth, shas),
        }
        if args.clean_run:
            result["clean"] = clean_run(work)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
