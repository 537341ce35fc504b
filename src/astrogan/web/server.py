"""Run the web app: the refill worker process plus Uvicorn server processes sharing one pool."""

from __future__ import annotations

import multiprocessing as mp
import os

from astrogan.utils.log import info
from astrogan.web.onnx_generator import OnnxGenerator
from astrogan.web.settings import ENV_VAR, ServeSettings
from astrogan.web.worker import open_pool, worker_main


def start_worker(settings: ServeSettings) -> mp.process.BaseProcess:
    """Start the refill worker as a separate (spawned) process and return it."""
    proc = mp.get_context("spawn").Process(
        target=worker_main, args=(settings.to_env(),), name="astrogan-refill", daemon=True
    )
    proc.start()
    return proc


def run_server(
    settings: ServeSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    refill: bool = True,
    log_level: str = "warning",
) -> None:
    """Serve until interrupted; the worker stops with the server."""
    import uvicorn

    gen = OnnxGenerator(settings.model_path)  # fail early, with one line, on a bad model
    pool = open_pool(settings)
    info(
        f"model {settings.model_path.name}: {gen.image_size} px, {gen.channels} channel(s); "
        f"pool {settings.resolved_pool_dir} holds {pool.depth()} unseen image(s)"
    )
    pool.close()
    os.environ[ENV_VAR] = settings.to_env()
    worker = start_worker(settings) if refill else None
    info(f"serving on http://{host}:{port}/ with {workers} process(es)")
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
        )
    finally:
        if worker is not None:
            worker.terminate()
            worker.join(timeout=10)
