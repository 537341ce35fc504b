"""Serving load test: `astrogan serve` on loopback under an open-loop async load; latency, errors, pool depth.

    python bench/serve_load.py [--model model.onnx] [--duration 60] [--rate 200] [--image-rate 20]

Two open-loop streams run at fixed rates (latency counts from the scheduled start, so a stalled server
cannot hide behind a slow client): GET / and GET /api/image.png?seed=k with k drawn from a small set of
popular seeds (some requests revalidate with If-None-Match, as browsers do). The pool depth is sampled
once a second. Without --model, a FastGAN (random weights: speed does not depend on training) is
exported to a temporary folder. Prints one JSON line.
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
            "target_rate_image": args.image_rate,
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
