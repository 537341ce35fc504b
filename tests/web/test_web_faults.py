"""Faults against real `astrogan serve` processes: a killed supervisor, slow headers, metrics of every worker,
orphaned pool files of a killed writer."""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from astrogan.web.onnx_generator import OnnxGenerator, write_tiny_model
from astrogan.web.pool import Pool
from astrogan.web.settings import ServeSettings
from astrogan.web.worker import fill_to, open_pool, run_worker
from tests.helpers.processes import astrogan_cmd, child_env
from tests.helpers.serve import Server, start_server

pytestmark = pytest.mark.slow  # starts servers and processes


def _children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is `pid`, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended; only its exit status is left


def _port_is_free(port: int) -> bool:
    """Nothing listens on `port` and a new server could bind it (with SO_REUSEADDR, as uvicorn does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def _serve(tmp_path: Path, *flags: str) -> Server:
    model = tmp_path / "model.onnx"
    if not model.exists():
        write_tiny_model(model, image_size=16)
    return start_server(
        model, tmp_path / "pool", "--pool-size", "20", "--low-water", "5", *flags, timeout_s=60
    )


def test_killed_supervisor_takes_its_workers_and_the_port_with_it(tmp_path):
    server = _serve(tmp_path, "--workers", "2")
    proc, port = server.proc, server.port
    try:
        kids = _children(proc.pid)
        assert len(kids) >= 3, (
            kids
        )  # two server processes and the refill worker (+ multiprocessing's tracker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(k) for k in kids) or not _port_is_free(port):
            assert time.monotonic() < deadline, f"still alive: {[k for k in kids if _alive(k)]}"
            time.sleep(0.1)
    finally:
        server.stop()
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("two")
    model = write_tiny_model(tmp_path / "model.onnx", image_size=16)
    settings = ServeSettings(model_path=model, pool_dir=tmp_path / "pool", pool_size=20, low_water=5)
    fill_to(open_pool(settings), OnnxGenerator(model), settings, target=20)
    server = _serve(tmp_path, "--workers", "2", "--no-refill", "--header-timeout", "1")
    yield server.url, server.port
    server.stop()


def test_slow_headers_are_cut_off(two_workers):
    _, port = two_workers
    slow = socket.create_connection(("127.0.0.1", port))
    silent = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET / HT")  # half a request line, and then nothing
    t0 = time.monotonic()
    for sock in (slow, silent):
        sock.settimeout(10)
        assert sock.recv(1024) == b""  # closed by the server
        sock.close()
    assert time.monotonic() - t0 < 5
    with httpx.Client(base_url=two_workers[0]) as client:  # a healthy keep-alive client is not affected
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(0.6)


def test_head_over_the_real_server(two_workers):
    base, _ = two_workers
    head = httpx.head(f"{base}/api/image.png", params={"seed": 4})
    get = httpx.get(f"{base}/api/image.png", params={"seed": 4})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert httpx.head(f"{base}/").status_code == 200


def test_metrics_count_every_worker(two_workers):
    base, _ = two_workers
    text = httpx.get(f"{base}/metrics").text
    pids = set(re.findall(r'astrogan_server_process_up\{pid="(\d+)"\} 1\.0', text))
    assert len(pids) == 2, text  # one scrape, both processes
    for _ in range(30):  # a new connection each time: either process may answer
        assert httpx.get(f"{base}/static/style.css").status_code == 200
    for _ in range(4):  # whichever process answers the scrape reports the total
        text = httpx.get(f"{base}/metrics").text
        m = re.search(r'astrogan_http_requests_total\{route="/static/style.css",status="200"\} (\S+)', text)
        assert m and float(m.group(1)) == 30, text


def _killed_writer(pool_dir: str, model_id: str) -> None:
    pool = Pool(pool_dir, model_id=model_id)

    def pictures():
        yield 1, 1.0, b"written before its row"
        os._exit(9)  # killed between the file and the commit

    pool.add_many(pictures())


def test_refill_start_removes_the_orphans_of_a_killed_writer(tmp_path):
    model = write_tiny_model(tmp_path / "model.onnx")
    settings = ServeSettings(model_path=model, pool_dir=tmp_path / "pool", pool_size=4, low_water=1)
    pool = open_pool(settings)
    kept = pool.add_many([(7, 1.0, b"a real picture")])
    ctx = mp.get_context("spawn")
    writer = ctx.Process(target=_killed_writer, args=(str(tmp_path / "pool"), pool.model_id))
    writer.start()
    writer.join(60)
    assert writer.exitcode == 9
    images = tmp_path / "pool" / "images"
    named = {r[0] for r in pool._conn().execute("SELECT file FROM images")}
    orphans = [p for p in images.iterdir() if p.name not in named]
    assert len(orphans) == 1 and orphans[0].read_bytes() == b"written before its row"
    old = time.time() - 3600
    os.utime(orphans[0], (old, old))
    young = images / "0123abcd.png"  # a live writer's file, not committed yet
    young.write_bytes(b"in flight")
    run_worker(settings, max_seconds=0)  # starts, cleans up, stops
    assert not orphans[0].exists() and young.exists()
    assert {p.name for p in images.iterdir()} == named | {young.name}
    assert pool.claim().id == kept[0]


def _refill_worker(supervisor: int) -> int:
    """The pid of the refill worker among `supervisor`'s children (the one that is not multiprocessing's tracker)."""
    for pid in _children(supervisor):
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
            return pid
    raise AssertionError(f"no refill worker among {_children(supervisor)}")


def test_a_killed_refill_worker_is_started_again_and_refills_the_pool(tmp_path):
    server = _serve(tmp_path)
    try:
        old = _refill_worker(server.proc.pid)
        os.kill(old, signal.SIGKILL)
        with httpx.Client(base_url=server.url) as client:
            for _ in range(20):  # drain the pool: only a new worker can fill it again
                assert client.get("/").status_code == 200
            deadline = time.monotonic() + 60
            while client.get("/healthz").json()["pool_depth"] < 20:
                assert time.monotonic() < deadline, "the pool was not refilled"
                time.sleep(0.2)
        assert _refill_worker(server.proc.pid) != old
    finally:
        server.stop()


def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path):
    model = write_tiny_model(tmp_path / "model.onnx", image_size=16)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = astrogan_cmd("serve", "--model", model, "--port", port, "--workers", "2")
        r = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert f"127.0.0.1:{port}" in r.stderr and "already in use" in r.stderr
    assert not (tmp_path / "pool").exists()  # nothing was started or written


def test_an_ipv6_host_is_written_in_brackets():
    """``http://::1:8000/`` is not a URL a user can paste; ``http://[::1]:8000/`` is."""
    from astrogan.web.server import host_port

    assert host_port("::1", 8000) == "[::1]:8000" and host_port("[::1]", 8000) == "[::1]:8000"
    assert host_port("127.0.0.1", 8000) == "127.0.0.1:8000" and host_port("localhost", 80) == "localhost:80"
