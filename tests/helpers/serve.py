"""`astrogan serve` in a real process on a free loopback port, waited for until /healthz says it is ready."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers.processes import astrogan_cmd, child_env, free_port


@dataclass
class Server:
    proc: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout_s: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout_s)


def _healthy(r: httpx.Response) -> bool:
    return r.status_code == 200


def start_server(
    model: Path,
    pool: Path,
    *flags: str,
    port: int | None = None,
    timeout_s: float = 30,
    ready: Callable[[httpx.Response], bool] = _healthy,
) -> Server:
    """Start `astrogan serve --model MODEL --pool POOL FLAGS --port PORT` (quiet, one thread per process).

    Returns once a GET of /healthz satisfies `ready` (by default: answers 200). Fails the test, with the
    server's output, when the process exits first or `timeout_s` passes; the process is stopped then.
    """
    port = free_port() if port is None else port
    cmd = astrogan_cmd("serve", "--model", model, "--pool", pool, *flags, "--port", port)
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    server = Server(proc, port)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                if ready(httpx.get(f"{server.url}/healthz", timeout=1)):
                    return server
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise


@contextmanager
def running_server(
    model: Path, pool: Path, *flags: str, stop_timeout_s: float = 15, **kw
) -> Iterator[Server]:
    """`start_server` as a context: the server is stopped (terminated, then waited for) on the way out."""
    server = start_server(model, pool, *flags, **kw)
    try:
        yield server
    finally:
        server.stop(stop_timeout_s)
