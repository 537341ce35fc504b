"""Fetch throughput against a local APOD mirror with internet-like latency, and Sérsic render rate.

Prints ONE JSON line: pages/s and images/s of the APOD source at concurrency 1, 4 and 16 (rate limit
off) against a loopback mirror built from ``../shared/data/apod-metadata`` that waits ``--latency``
seconds (default 0.1) before every response (DESIGN.md §6), each compared with a plain
one-request-at-a-time loop (sync httpx, same pages, same parser) run in the same process; then
Sérsic stamps/s at 64 px with 1 and 2 worker processes; and the machine (with its load average:
the clients share the CPUs with whatever else runs, so compare the ratios, measured in one run).

Beside each concurrency: the most requests the mirror answered at once (``server_max_in_flight``:
the concurrency the client reached) and the physical limit, ``concurrency`` round trips at a time of
``latency + service`` seconds each, where the service time per request is the plain loop's own
(its seconds per request less the latency): ``limit_pages_per_s = concurrency / (requests per page *
(latency + service))``, i.e. a speed-up of at most ``concurrency`` over the plain loop, less the
start (catalog, client) and the tail of the last round, which weigh more on a short run (``--days``).

    python bench/fetch_throughput.py [--days 40] [--latency 0.1] [--num-stamps 256] [--skip-sersic]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test mirror lives in tests/helpers

from tests.helpers.apod_mirror import MirrorServer  # noqa: E402

from astrogan.data.sources import SOURCES, HttpConfig  # noqa: E402
from astrogan.data.sources.apod import page_url_for, parse_apod_page  # noqa: E402
from astrogan.data.sources.catalog import read_catalog  # noqa: E402
from astrogan.data.sources.http import user_agent  # noqa: E402


def plain_loop(base_url: str, days: list[date], out: Path) -> tuple[int, int, float]:
    """The baseline: one request at a time, no pool, no catalog: returns (pages, images, seconds)."""
    import httpx

    pages = images = 0
    t0 = time.perf_counter()
    with httpx.Client(headers={"User-Agent": user_agent()}, timeout=30) as client:
        for day in days:
            url = page_url_for(day, base_url)
            r = client.get(url)
            pages += 1
            if r.status_code != 200:
                continue
            page = parse_apod_page(r.text, url)
            if page.image_url:
                img = client.get(page.image_url)
                if img.status_code == 200 and img.headers.get("content-type", "").startswith("image/"):
                    (out / f"{day.isoformat()}.img").write_bytes(img.content)
                    images += 1
    return pages, images, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=40, help="APOD days per run")
    ap.add_argument("--latency", type=float, default=0.1, help="seconds added to every response")
    ap.add_argument("--num-stamps", type=int, default=256, help="Sérsic stamps per timing")
    ap.add_argument("--skip-sersic", action="store_true", help="time the fetches only")
    ap.add_argument("--metadata", type=Path, default=ROOT.parent / "shared" / "data" / "apod-metadata")
    args = ap.parse_args()
    os.environ.setdefault("ASTROGAN_QUIET", "1")

    first = date(2013, 5, 1)
    days = [first + timedelta(i) for i in range(args.days)]
    result: dict = {"bench": "fetch_throughput", "days": args.days, "latency_s": args.latency}
    with MirrorServer(args.metadata, latency_s=args.latency) as srv, tempfile.TemporaryDirectory() as tmp:
        n_pages, n_images, secs = plain_loop(srv.apod_url, days, Path(tmp))
        base = {"pages_per_s": n_pages / secs, "images_per_s": n_images / secs, "seconds": secs}
        result["plain_loop"] = {k: round(v, 3) for k, v in base.items()}
        requests_per_page = len(srv.log) / n_pages
        service_s = max(0.0, secs / len(srv.log) - args.latency)
        result["plain_loop"].update(
            requests_per_page=round(requests_per_page, 3), service_ms_per_request=round(1e3 * service_s, 2)
        )
        for conc in (1, 4, 16):
            out = Path(tmp) / f"c{conc}"
            mark = len(srv.log)
            srv.reset_concurrency()
            source = SOURCES["apod"].build(
                HttpConfig(concurrency=conc, rate_per_s=None),
                start=days[0],
                end=days[-1],
                base_url=srv.apod_url,
            )
            s = source.fetch(out)
            pages = sum(1 for p, _ in srv.log[mark:] if p.startswith("/apod/ap"))
            imgs = sum(r["status"] == "ok" for r in read_catalog(out))
            pps, ips = pages / s.elapsed_s, imgs / s.elapsed_s
            limit = conc / (requests_per_page * (args.latency + service_s))
            result[f"concurrency_{conc}"] = {
                "pages_per_s": round(pps, 3),
                "images_per_s": round(ips, 3),
                "seconds": round(s.elapsed_s, 3),
                "speedup_vs_plain_loop": round(pps / base["pages_per_s"], 2),
                "server_max_in_flight": srv.max_in_flight,
                "limit_pages_per_s": round(limit, 3),
                "fraction_of_limit": round(pps / limit, 3),
            }
        # The physical limit at this latency: one page + one image round trip per day and worker.
        result["ideal_pages_per_s_per_worker"] = round(1 / (2 * args.latency), 3) if args.latency else None
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if args.skip_sersic:
        print(json.dumps(result))
        return

    from astrogan.data.synthetic import render_sersic

    render_sersic(8, image_size=64, num_workers=1)  # warm GalSim caches and imports
    sersic = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        render_sersic(args.num_stamps, image_size=64, seed=0, num_workers=workers)
        dt = time.perf_counter() - t0
        rate = args.num_stamps / dt
        sersic[f"workers_{workers}"] = {"stamps_per_s": round(rate, 1), "seconds": round(dt, 2)}
    sersic["speedup_2_vs_1"] = round(sersic["workers_1"]["seconds"] / sersic["workers_2"]["seconds"], 2)
    sersic["minutes_for_10000_at_2_workers"] = round(10000 / sersic["workers_2"]["stamps_per_s"] / 60, 2)
    result["sersic_64px"] = {"num_stamps": args.num_stamps, **sersic}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
