"""Serving load test: `astrogan serve` on loopback under an open-loop async load; latency, errors, pool depth.

    python bench/serve_load.py [--model model.onnx] [--duration 60] [--rate 200] [--image-rate 20]
    python bench/serve_load.py --mode saturate [--image-size 64 --ngf 16] [--heavy-clients 44] [--duration 30]

`--mode steady` (the default): two open-loop streams run at fixed rates (latency counts from the scheduled
start, so a stalled server cannot hide behind a slow client): GET / and GET /api/image.png?seed=k with k
drawn from a small set of popular seeds (some requests revalidate with If-None-Match, as browsers do). The
pool depth is sampled once a second.

`--mode saturate`: the abuse case. GET / runs open-loop at --rate, first alone (the baseline), then while
--heavy-clients clients (each its own address, through X-Forwarded-For as behind a proxy) ask without pause
for 64-frame interpolations and 64-picture grids of fresh seeds, then alone again after the burst. It reports
`/` p99 in both phases and their ratio, the heavy answers by status (200, 429 rate-limited, 503 busy), and
the resident memory of every server process at the start, its peak, and after the burst, against the
targets (p99 of `/` under 50 ms while saturated, memory back within 20 % of the start, no error on `/`).

Without --model, a FastGAN (random weights: speed does not depend on training) is exported to a temporary
folder. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_model(folder: Path, *, image_size: int, ngf: int) -> Path:
    """Export a random-weight FastGAN with ONNX (no parity run: this is a speed bench, not a release)."""
    import torch

    from astrogan.export.onnx import export_onnx
    from astrogan.export.prepare import prepare_generator
    from astrogan.models import ARCHS

    spec = ARCHS["fastgan"]
    torch.manual_seed(0)
    G = spec.build_generator(spec.config_cls(image_size=image_size, ngf=ngf)).eval()
    wrapper = prepare_generator(G)
    meta = {
        "z_dim": wrapper.z_dim,
        "num_classes": 0,
        "labels": None,
        "image_size": image_size,
        "channels": wrapper.channels,
        "model_card": {"arch": f"fastgan (ngf={ngf}, random weights)"},
    }
    path = folder / "model.onnx"
    export_onnx(wrapper, path, metadata=meta)
    (folder / "model.json").write_text(json.dumps(meta))
    return path


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    arr = np.asarray(values) * 1000
    out = {"count": len(values)}
    for q in (50, 90, 99):
        out[f"p{q}_ms"] = round(float(np.percentile(arr, q)), 2)
    return {**out, "max_ms": round(float(arr.max()), 2), "mean_ms": round(float(arr.mean()), 2)}


class _Conn:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams (httpx costs more CPU than the server)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        reused = self.writer is not None
        try:
            return await self._get(path, headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            # the server closed an idle keep-alive connection: reconnect once, as browsers do
            await self.close()
            return await self._get(path, headers)

    async def _get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{extra}\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        body = await self.reader.readexactly(int(hdrs.get("content-length", 0)))
        if hdrs.get("connection", "").lower() == "close":
            await self.close()
        return status, hdrs, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def _stream(
    host: str,
    port: int,
    *,
    rate: float,
    duration: float,
    make_request,
    results: dict,
    t0: float,
    num_conns: int,
) -> None:
    """Open loop: request i is due at t0 + i/rate whatever happened to earlier ones; latency counts from
    then, so time spent waiting for a free connection is included."""
    queue: asyncio.Queue = asyncio.Queue()

    async def worker() -> None:
        conn = _Conn(host, port)
        while (item := await queue.get()) is not None:
            due, path, headers = item
            try:
                status, hdrs, _ = await conn.get(path, headers)
                source = hdrs.get("x-astrogan-source")
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                status, source = f"error:{type(exc).__name__}", None
                await conn.close()
            results["latency"].append(time.perf_counter() - due)
            results["status"][str(status)] = results["status"].get(str(status), 0) + 1
            if source:
                results["sources"][source] = results["sources"].get(source, 0) + 1
                results.setdefault("by_source", {}).setdefault(source, []).append(results["latency"][-1])
        await conn.close()

    workers = [asyncio.create_task(worker()) for _ in range(num_conns)]
    i = 0
    while (due := t0 + i / rate) - t0 < duration:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        path, headers = make_request(i)
        queue.put_nowait((due, path, headers))
        i += 1
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)


async def _sample_depth(host: str, port: int, *, duration: float, t0: float, out: list) -> None:
    conn = _Conn(host, port)
    while time.perf_counter() - t0 < duration:
        try:
            depth = json.loads((await conn.get("/healthz", {}))[2])["pool_depth"]
        except (OSError, ValueError, KeyError, asyncio.IncompleteReadError):
            depth = None
            await conn.close()
        out.append([round(time.perf_counter() - t0, 1), depth])
        await asyncio.sleep(1.0)
    await conn.close()


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it, from /proc (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def _rss_mb(root_pid: int) -> float:
    """Resident memory of the server: the supervisor and all its processes, MiB."""
    total_kb = 0
    for pid in _descendants(root_pid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb / 1024, 1)


def _cpu_s(root_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each server process, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in _descendants(root_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[str(pid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpu_delta(before: dict[str, float], after: dict[str, float], seconds: float) -> float:
    """Cores the server used on average between two `_cpu_s` readings."""
    used = sum(v - before.get(pid, 0.0) for pid, v in after.items())
    return round(used / seconds, 2)


async def _heavy_client(
    host: str,
    port: int,
    *,
    client_id: int,
    t_end: float,
    frames: int,
    results: dict,
    rng: random.Random,
    refused_pause_s: float,
) -> None:
    """Closed loop, like an abusive script: a 64-frame walk or a 64-picture grid of fresh seeds, again and
    again; after a refusal (429/503) it waits `refused_pause_s`, whatever Retry-After says."""
    conn = _Conn(host, port)
    headers = {"X-Forwarded-For": f"198.51.100.{client_id % 250 + 1}"}  # documentation range: a header only
    i = 0
    while time.perf_counter() < t_end:
        seed = rng.randrange(1 << 31)
        if i % 2 == 0:
            kind, path = "interpolate", f"/api/interpolate?from={seed}&to={seed + 1}&steps={frames}"
        else:
            kind, path = "grid", f"/api/grid?seeds={seed}-{seed + frames - 1}"
        i += 1
        t0 = time.perf_counter()
        try:
            status, _, _ = await conn.get(path, headers)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            status = f"error:{type(exc).__name__}"
            await conn.close()
        res = results.setdefault(kind, {"latency": [], "status": {}})
        res["status"][str(status)] = res["status"].get(str(status), 0) + 1
        if status == 200:
            res["latency"].append(time.perf_counter() - t0)
        else:
            await asyncio.sleep(refused_pause_s)
    await conn.close()


async def _sample_rss(root_pid: int, *, t_end: float, out: list) -> None:
    while time.perf_counter() < t_end:
        out.append(_rss_mb(root_pid))
        await asyncio.sleep(0.5)


async def _page_phase(host: str, port: int, *, duration: float, rate: float, num_conns: int) -> dict:
    page = {"latency": [], "status": {}, "sources": {}}
    await _stream(
        host,
        port,
        rate=rate,
        duration=duration,
        make_request=lambda _: ("/", {}),
        results=page,
        t0=time.perf_counter() + 0.1,
        num_conns=num_conns,
    )
    return page


def _page_summary(res: dict, elapsed: float) -> dict:
    errors = sum(n for s, n in res["status"].items() if not s.isdigit() or int(s) >= 400)
    return {
        **_percentiles(res["latency"]),
        "requests_per_s": round(len(res["latency"]) / elapsed, 1),
        "status": res["status"],
        "errors": errors,
    }


async def _run_saturate(
    host: str,
    port: int,
    *,
    server_pid: int,
    duration: float,
    baseline_s: float,
    cooldown_s: float,
    rate: float,
    heavy_clients: int,
    frames: int,
    num_conns: int,
    refused_pause_s: float,
) -> dict:
    """Baseline `/` alone, then `/` with the heavy endpoints saturated, then the memory after the burst."""
    warm = _Conn(host, port)  # every kind of request once, so that the start is a warmed-up server
    for path in ("/", f"/api/interpolate?from=1&to=2&steps={frames}", f"/api/grid?seeds=0-{frames - 1}"):
        for _ in range(4):  # a few times: several server processes may answer
            await warm.get(path, {"X-Forwarded-For": "203.0.113.1"})
            await warm.close()
    await asyncio.sleep(2.0)
    rss_start = _rss_mb(server_pid)

    t0 = time.perf_counter()
    cpu0 = _cpu_s(server_pid)
    base = await _page_phase(host, port, duration=baseline_s, rate=rate, num_conns=num_conns)
    base_elapsed = time.perf_counter() - t0
    cpu1 = _cpu_s(server_pid)

    rss: list[float] = []
    heavy: dict = {}
    rng = random.Random(1)
    t_start = time.perf_counter()
    t_end = t_start + duration
    jobs = [
        _heavy_client(
            host,
            port,
            client_id=i,
            t_end=t_end,
            frames=frames,
            results=heavy,
            rng=rng,
            refused_pause_s=refused_pause_s,
        )
        for i in range(heavy_clients)
    ]
    await asyncio.sleep(1.0)  # let the heavy clients fill the queues before `/` is measured
    page_s = duration - 1.5
    page_task = _page_phase(host, port, duration=page_s, rate=rate, num_conns=num_conns)
    sat_results = await asyncio.gather(page_task, _sample_rss(server_pid, t_end=t_end, out=rss), *jobs)
    sat = sat_results[0]
    sat_elapsed = time.perf_counter() - t_start  # to the last heavy answer (queued ones end after t_end)
    cpu2 = _cpu_s(server_pid)

    await asyncio.sleep(cooldown_s)  # the burst is over: memory should go back
    rss_after = _rss_mb(server_pid)
    after = await _page_phase(host, port, duration=min(5.0, baseline_s), rate=rate, num_conns=num_conns)

    base_p99 = _percentiles(base["latency"]).get("p99_ms")
    sat_p99 = _percentiles(sat["latency"]).get("p99_ms")
    heavy_summary = {
        kind: {
            "status": res["status"],
            "ok_per_s": round(len(res["latency"]) / sat_elapsed, 2),
            "ok_latency": _percentiles(res["latency"]),
        }
        for kind, res in heavy.items()
    }
    page_errors = sum(_page_summary(r, 1.0)["errors"] for r in (base, sat, after))
    ratio = round(rss_after / rss_start, 3) if rss_start else None
    return {
        "page_baseline": _page_summary(base, base_elapsed),
        "page_saturated": _page_summary(sat, page_s),
        "page_after": _page_summary(after, min(5.0, baseline_s)),
        "page_p99_ratio_saturated_over_baseline": round(sat_p99 / base_p99, 2)
        if base_p99 and sat_p99
        else None,
        "heavy": heavy_summary,
        "server_cores_used": {
            "baseline": _cpu_delta(cpu0, cpu1, base_elapsed),
            "saturated": _cpu_delta(cpu1, cpu2, sat_elapsed),
            "machine_load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "memory_mb": {
            "start": rss_start,
            "peak": max(rss, default=rss_start),
            "after_burst": rss_after,
            "after_over_start": ratio,
            "cooldown_s": cooldown_s,
        },
        "targets": {"page_p99_ms_saturated_max": 50.0, "memory_after_over_start_max": 1.2, "page_errors": 0},
        "pass": {
            "page_p99": sat_p99 is not None and sat_p99 < 50.0,
            "memory": ratio is not None and ratio <= 1.2,
            "page_errors": page_errors == 0,
        },
    }


async def _run_load(
    host: str, port: int, *, duration: float, rate: float, image_rate: float, num_seeds: int, num_conns: int
) -> dict:
    rng = random.Random(0)
    page = {"latency": [], "status": {}, "sources": {}}
    image = {"latency": [], "status": {}, "sources": {}}
    depth: list = []
    etags: dict[int, str] = {}

    def page_req(_: int) -> tuple[str, dict]:
        return "/", {}

    def image_req(_: int) -> tuple[str, dict]:
        seed = rng.randrange(num_seeds)
        headers = {"If-None-Match": etags[seed]} if seed in etags and rng.random() < 0.5 else {}
        return f"/api/image.png?seed={seed}", headers

    probe = _Conn(host, port)
    for seed in range(min(num_seeds, 10)):  # returning browsers hold a few ETags already
        etags[seed] = (await probe.get(f"/api/image.png?seed={seed}", {}))[1].get("etag", "")
    t0 = time.perf_counter() + 0.2
    jobs = [
        _stream(
            host,
            port,
            rate=rate,
            duration=duration,
            make_request=page_req,
            results=page,
            t0=t0,
            num_conns=num_conns,
        ),
        _sample_depth(host, port, duration=duration, t0=t0, out=depth),
    ]
    if image_rate > 0:
        jobs.append(
            _stream(
                host,
                port,
                rate=image_rate,
                duration=duration,
                make_request=image_req,
                results=image,
                t0=t0,
                num_conns=max(4, num_conns // 4),
            )
        )
    await asyncio.gather(*jobs)
    elapsed = time.perf_counter() - t0
    metrics = (await probe.get("/metrics", {}))[2].decode()
    await probe.close()
    pattern = r'astrogan_served_total\{source="(\w+)"\} (\d+)'
    served = {m.group(1): int(m.group(2)) for m in re.finditer(pattern, metrics)}
    generated = re.search(r"astrogan_generated_total (\d+)", metrics)

    def summary(res: dict) -> dict:
        errors = sum(n for s, n in res["status"].items() if not s.isdigit() or int(s) >= 400)
        return {
            **_percentiles(res["latency"]),
            "requests_per_s": round(len(res["latency"]) / elapsed, 1),
            "status": res["status"],
            "errors": errors,
            "sources": res["sources"],
            "latency_by_source": {k: _percentiles(v) for k, v in res.get("by_source", {}).items()},
        }

    return {
        "page": summary(page),
        "image_png": summary(image) if image_rate > 0 else None,
        "pool_depth_over_time": depth,
        "served_total": served,
        "generated_total": int(generated.group(1)) if generated else None,
        "elapsed_s": round(elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="model.onnx to serve (default: a temporary FastGAN export)")
    ap.add_argument("--image-size", type=int, default=256, help="size of the default model")
    ap.add_argument("--ngf", type=int, default=32, help="width of the default model")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--rate", type=float, default=200.0, help="GET / per second")
    ap.add_argument("--image-rate", type=float, default=20.0, help="GET /api/image.png per second")
    ap.add_argument("--num-seeds", type=int, default=50, help="distinct seeds asked of /api/image.png")
    ap.add_argument("--workers", type=int, default=2, help="server processes")
    ap.add_argument("--connections", type=int, default=32, help="keep-alive connections for GET /")
    ap.add_argument("--pool-size", type=int, default=500)
    ap.add_argument("--low-water", type=int, default=100)
    ap.add_argument("--when-empty", default="reuse", choices=["reuse", "generate"])
    ap.add_argument(
        "--mode", default="steady", choices=["steady", "saturate"], help="see the module docstring"
    )
    ap.add_argument(
        "--heavy-clients", type=int, default=44, help="saturate: clients hammering the heavy routes"
    )
    ap.add_argument("--frames", type=int, default=64, help="saturate: frames per walk and pictures per grid")
    ap.add_argument("--baseline", type=float, default=10.0, help="saturate: seconds of `/` alone first")
    ap.add_argument(
        "--cooldown", type=float, default=5.0, help="saturate: seconds after the burst before RSS"
    )
    ap.add_argument(
        "--refused-pause", type=float, default=0.5, help="saturate: a client's pause after a 429/503"
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = args.model or _make_model(tmp_path, image_size=args.image_size, ngf=args.ngf)
        port = _free_port()
        env = {**os.environ, "ASTROGAN_QUIET": "1", "OMP_NUM_THREADS": "1"}
        cmd = [
            sys.executable,
            "-m",
            "astrogan.cli.main",
            "serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--pool",
            str(tmp_path / "pool"),
            "--pool-size",
            str(args.pool_size),
            "--low-water",
            str(args.low_water),
            "--workers",
            str(args.workers),
            "--when-empty",
            args.when_empty,
            "--threads",
            "1",
        ]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            t_start = time.perf_counter()
            while True:  # wait until the server answers and the pool holds at least its low-water mark
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).json()["pool_depth"] >= args.low_water:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)
            fill_s = time.perf_counter() - t_start
            if args.mode == "saturate":
                result = asyncio.run(
                    _run_saturate(
                        "127.0.0.1",
                        port,
                        server_pid=proc.pid,
                        duration=args.duration,
                        baseline_s=args.baseline,
                        cooldown_s=args.cooldown,
                        rate=args.rate,
                        heavy_clients=args.heavy_clients,
                        frames=args.frames,
                        num_conns=args.connections,
                        refused_pause_s=args.refused_pause,
                    )
                )
            else:
                result = asyncio.run(
                    _run_load(
                        "127.0.0.1",
                        port,
                        num_conns=args.connections,
                        duration=args.duration,
                        rate=args.rate,
                        image_rate=args.image_rate,
                        num_seeds=args.num_seeds,
                    )
                )
        finally:
            proc.terminate()
            proc.wait(20)
    line = {
        "bench": "serve_load",
        "mode": args.mode,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "setup": {
            "model": str(args.model) if args.model else f"fastgan {args.image_size}px ngf={args.ngf}",
            "workers": args.workers,
            "pool_size": args.pool_size,
            "low_water": args.low_water,
            "when_empty": args.when_empty,
            "target_rate_page": args.rate,
            "target_rate_image": args.image_rate if args.mode == "steady" else None,
            "heavy_clients": args.heavy_clients if args.mode == "saturate" else None,
            "frames_per_heavy_request": args.frames if args.mode == "saturate" else None,
            "duration_s": args.duration,
            "seconds_to_low_water": round(fill_s, 1),
            "client": "raw asyncio HTTP/1.1 keep-alive, open loop, same machine",
        },
        **result,
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
