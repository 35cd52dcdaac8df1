"""The proxy under load and faults: a connection flood at a low open-file limit, slowloris,
stalled bodies, and big uploads to an app that does not read.

Each fault is made real (a pyair child whose RLIMIT_NOFILE is set before it starts, real
sockets held open or fed a byte at a time, a 200 MB upload); each test also checks that pyair
keeps serving afterwards.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import io
import json
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest
from support import PyairRun, free_port, pyair_command, pyair_env, wait_until
from test_proxy import Running, config, get, make_project

from supervisor.config import Config, ProxyConfig
from supervisor.console import Console
from supervisor.events import AppReady
from supervisor.proxy import Proxy, browser

MiB = 1024 * 1024


class LimitedRun(PyairRun):
    """pyair started with RLIMIT_NOFILE = (soft, hard), as a shell's ``ulimit -n`` would."""

    def __init__(self, project: Path, text: str, soft: int, hard: int) -> None:
        super().__init__(project, text)
        self.limits = (soft, hard)

    def start(self) -> None:
        log = self.log_path.open("ab")

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.limits)

        self.proc = subprocess.Popen(
            pyair_command("-c", str(self.config_path)),
            cwd=self.project,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=pyair_env(),
            preexec_fn=limit,
        )
        log.close()


def soft_limit(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open-files line")


def test_a_connection_flood_at_256_open_files_never_ends_pyair(tmp_path: Path) -> None:
    make_project(tmp_path)
    app_port, port = free_port(), free_port()
    with LimitedRun(tmp_path, config(app_port, port), 256, 256) as run:
        run.wait_for_log(r"ready in")
        wait_until(lambda: get(port, "/").status == 200, message="the proxy answering")
        flood: list[socket.socket] = []
        try:
            for _ in range(300):  # idle keep-alive connections, as many tabs would hold
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            run.wait_for_log(r"proxy: cannot take new connections \(Too many open files\)")
            assert run.proc is not None and run.proc.poll() is None
            for _ in range(100):  # still flooded: the accept loop must not log again
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            for sock in flood[:150]:  # some tabs close: pyair serves again
                sock.close()
            assert get(port, "/").status == 200
        finally:
            for sock in flood:
                sock.close()
        assert run.count(r"cannot take new connections") == 1, run.log()
        # (the app's own http.server may print a reset spare connection: not pyair's)
        assert run.count(r"ExceptionGroup|File \".*/supervisor/") == 0, run.log()
        assert get(port, "/").status == 200
        assert len((tmp_path / "starts.log").read_text().split()) == 1  # the app never restarted


def test_pyair_raises_its_soft_open_file_limit_at_start(tmp_path: Path) -> None:
    make_project(tmp_path)
    app_port, port = free_port(), free_port()
    with LimitedRun(tmp_path, config(app_port, port), 256, 4096) as run:
        run.wait_for_log(r"ready in")
        assert soft_limit(run.pid) == 4096
        assert get(port, "/").status == 200


# --------------------------------------------------------------------------- in-process timeouts


class _App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _ask(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return sock.recv(65536)


def _closed_after(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, float]:
    """What the proxy sent before closing ``sock``, and how long that took."""
    started = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


@pytest.mark.anyio
async def test_slowloris_idle_and_stalled_bodies_are_cut_off(
    app_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browser, "HEAD_S", 0.5)
    monkeypatch.setattr(browser, "KEEP_ALIVE_S", 1.0)
    monkeypatch.setattr(browser, "BODY_IDLE_S", 0.5)
    settings = ProxyConfig(enabled=True, app_port=app_port, proxy_port=0)
    proxy = Proxy(Config(root=tmp_path, proxy=settings), Console(stream=io.StringIO()))
    async with anyio.create_task_group() as tg:
        port = await tg.start(proxy.serve)
        proxy.on_event(AppReady(pid=1, generation=1, ms=1.0))

        def slowloris() -> tuple[bytes, float]:
            sock = socket.create_connection(("127.0.0.1", port))
            started = time.monotonic()
            try:
                for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ":
                    sock.sendall(bytes([byte]))
                    time.sleep(0.05)  # poll: a byte every 50 ms, the head never ends
            except OSError:  # cut off mid-head: good
                pass
            data, _ = _closed_after(sock)
            sock.close()
            return data, time.monotonic() - started

        def idle() -> float:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                return _closed_after(sock)[1]

        def stalled_body() -> tuple[bytes, float]:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nab")
                return _closed_after(sock)

        head, head_s = await anyio.to_thread.run_sync(slowloris)
        assert head.startswith(b"HTTP/1.1 408") and 0.4 < head_s < 3.0, (head, head_s)
        idle_s = await anyio.to_thread.run_sync(idle)
        assert 0.9 < idle_s < 3.0, idle_s
        body, body_s = await anyio.to_thread.run_sync(stalled_body)
        assert not body.startswith(b"HTTP/1.1 200") and 0.4 < body_s < 3.0, (body, body_s)
        assert (await anyio.to_thread.run_sync(_ask, port)).startswith(b"HTTP/1.1 200")
        tg.cancel_scope.cancel()


# --------------------------------------------------------------------------- uploads


class RssPeak:
    """The peak RSS of a process, sampled on a thread while in the ``with`` block."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):  # poll
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def grew_mib(self) -> float:
        return (self.peak - self.before) / MiB


def upload(port: int, size: int, *, chunked: bool, path: str) -> dict[str, object]:
    """POST ``size`` bytes (1 MiB blocks of one repeated pattern) and return the app's JSON."""
    block = bytes(range(256)) * 4096
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        if chunked:
            conn.request(
                "POST", path, body=(block for _ in range(size // MiB)), encode_chunked=True
            )
        else:
            conn.putrequest("POST", path)
            conn.putheader("Content-Length", str(size))
            conn.endheaders()
            for _ in range(size // MiB):
                conn.send(block)
        return dict(json.loads(conn.getresponse().read()))
    finally:
        conn.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["by-length", "chunked"])
def test_a_200_mb_upload_to_an_app_that_reads_late_keeps_memory_flat(
    tmp_path: Path, chunked: bool
) -> None:
    size = 200 * MiB
    digest = hashlib.sha256()
    block = bytes(range(256)) * 4096
    for _ in range(size // MiB):
        digest.update(block)
    with Running(tmp_path) as up:
        up.wait_up()
        upload(up.port, MiB, chunked=chunked, path="/echo")  # warm up the code paths first
        with RssPeak(up.run.pid) as rss:
            answer = upload(up.port, size, chunked=chunked, path="/echo?stall=1.5")
        assert answer == {"size": size, "sha256": digest.hexdigest()}
        # before, anyio's read-ahead held whatever the app had not read yet: ~all 200 MB
        assert rss.grew_mib < 16, f"RSS grew {rss.grew_mib:.1f} MiB"
        assert get(up.port, "/").status == 200
