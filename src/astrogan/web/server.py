"""Run the web app: the refill worker process plus Uvicorn server processes sharing one pool."""

from __future__ import annotations

import asyncio
import errno
import functools
import multiprocessing as mp
import os
import shutil
import socket
import tempfile
import threading
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from astrogan.utils.errors import UserError
from astrogan.utils.log import info
from astrogan.web.lifecycle import SUPERVISOR_ENV
from astrogan.web.onnx_generator import OnnxGenerator
from astrogan.web.settings import ENV_VAR, ServeSettings
from astrogan.web.worker import ORPHAN_GRACE_S, open_pool, worker_main

# Largest request head (request line + headers) accepted; h11 answers 400 beyond it.
MAX_HEADER_BYTES = 16 * 1024
# Idle time allowed between two requests on one keep-alive connection.
KEEP_ALIVE_S = 5
# Time the server processes give in-flight requests when they stop.
GRACEFUL_SHUTDOWN_S = 5


@functools.lru_cache(maxsize=1)
def _header_timeout_s() -> float:
    try:
        return ServeSettings.from_env().header_timeout_s
    except Exception:  # no settings in this process: the default
        return float(ServeSettings.model_fields["header_timeout_s"].default)


class HeaderTimeoutH11Protocol(H11Protocol):
    """Uvicorn's h11 protocol with a deadline on each request head: a client that has not sent its complete
    request line and headers `header_timeout_s` after connecting (or after starting its next request on a
    keep-alive connection) is disconnected, so slow-header connections cannot pile up (slowloris)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = _header_timeout_s()
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_timer()  # part of a request head: the clock runs (started at its first byte)
        else:
            self._cancel_header_timer()  # the head is complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def host_port(host: str, port: int) -> str:
    """``host:port`` as a URL writes it: an IPv6 literal in brackets (``[::1]:8000``)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def check_listen(host: str, port: int) -> None:
    """UserError (one line) unless a server could listen on `host`:`port` now: the name resolves and every
    address it gives can be bound (with SO_REUSEADDR, as Uvicorn binds). Checked before anything starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise UserError(
            f"--host {host}: cannot resolve it ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    for family, kind, proto, _, addr in dict.fromkeys((i[0], i[1], i[2], None, i[4]) for i in infos):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                hint = (
                    ": another server holds it; pick another --port" if exc.errno == errno.EADDRINUSE else ""
                )
                raise UserError(f"cannot listen on {host_port(host, port)}: {exc.strerror}{hint}") from None


def start_worker(settings: ServeSettings) -> mp.process.BaseProcess:
    """Start the refill worker as a separate (spawned) process that ends with this one, and return it."""
    proc = mp.get_context("spawn").Process(
        target=worker_main, args=(settings.to_env(), os.getpid()), name="astrogan-refill", daemon=True
    )
    proc.start()
    return proc


class RefillSupervisor:
    """Keeps the refill worker running: a worker that dies (SIGKILL, OOM killer, crash) is started again.

    A thread checks the worker every `poll_s`; a restart waits `backoff_s`, doubled after each death that
    follows a short life (under `stable_s`), up to `max_backoff_s`. A worker that exits with status 0 was told
    to stop (SIGTERM, Ctrl-C, its parent gone) and is left stopped. `stop` ends the thread, then the worker.
    """

    def __init__(
        self,
        settings: ServeSettings,
        *,
        poll_s: float = 1.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        stable_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self.proc: mp.process.BaseProcess | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="refill-supervisor", daemon=True)

    def start(self) -> RefillSupervisor:
        """Start the first worker, then the thread that watches it."""
        self.proc = start_worker(self.settings)
        self._thread.start()
        return self

    def _loop(self) -> None:
        assert self.proc is not None
        wait_s, born = self.backoff_s, time.monotonic()
        while not self._stop.wait(self.poll_s):
            code = self.proc.exitcode
            if code is None:
                continue
            if code == 0:
                return
            if time.monotonic() - born >= self.stable_s:
                wait_s = self.backoff_s
            info(f"refill worker exited with status {code}; starting another in {wait_s:g} s")
            if self._stop.wait(wait_s):
                return
            self.proc, born = start_worker(self.settings), time.monotonic()
            self.restarts += 1
            wait_s = min(self.max_backoff_s, 2 * wait_s)

    def stop(self, timeout_s: float = 10) -> None:
        """Stop restarting, then stop the worker."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self.proc is not None:
            self.proc.terminate()
            self.proc.join(timeout=timeout_s)


def run_server(
    settings: ServeSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    refill: bool = True,
    log_level: str = "warning",
) -> None:
    """Serve until interrupted; the worker stops with the server.

    Every child (the refill worker, the server processes) ends when this supervisor does, even by SIGKILL; a
    refill worker or server process that dies on its own is started again.
    With several server processes, Prometheus values live in a fresh folder shared by them (multiprocess mode).
    """
    import uvicorn

    check_listen(host, port)  # a port in use is one line, before any process starts or "serving on" is said
    gen = OnnxGenerator(settings.model_path)  # fail early, with one line, on a bad model
    pool = open_pool(settings)
    removed = pool.remove_orphans(grace_s=ORPHAN_GRACE_S)
    info(
        f"model {settings.model_path.name}: {gen.image_size} px, "
        + (f"bands {','.join(gen.science.bands)} (FITS cubes on request); " if gen.science else "")
        + f"{gen.channels} channel(s); "
        f"pool {settings.resolved_pool_dir} holds {pool.depth()} unseen image(s)"
        + (f"; removed {removed} orphaned file(s)" if removed else "")
    )
    pool.close()
    os.environ[ENV_VAR] = settings.to_env()
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    # Fewer glibc heap arenas: memory freed after a burst of big responses can go back to the system.
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    prom_dir = None
    if workers > 1:
        prom_dir = tempfile.mkdtemp(prefix="astrogan-prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    worker = RefillSupervisor(settings).start() if refill else None
    info(f"serving on http://{host_port(host, port)}/ with {workers} process(es)")
    try:
        uvicorn.run(
            "astrogan.web.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
            server_header=False,
            http=HeaderTimeoutH11Protocol,
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
    finally:
        if worker is not None:
            worker.stop()
        if prom_dir is not None:
            shutil.rmtree(prom_dir, ignore_errors=True)
