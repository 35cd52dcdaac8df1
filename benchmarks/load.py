"""The proxy under load: memory during a big upload to a slow app, latency under slowloris.

    python -m benchmarks.load --upload-mb 1024 --slowloris 100 --requests 400

1. Memory. pyair proxies a 1 GiB upload (by Content-Length, then chunked) to an app that reads
   it at about 64 MB/s (64 KiB, then a 1 ms nap). pyair's RSS is sampled every 20 ms; the
   table shows its growth over the idle baseline. Target: grows < 10 MB.
2. Slowloris. N connections each send a request head one byte every 0.5 s and never finish
   it (cut off after the proxy's 10 s head timeout, they reconnect at once). Meanwhile
   sequential ``GET /`` on fresh connections measure p50/p90 latency, against the same with
   no slowloris, through pyair and straight to the app (Python's threaded ``http.server``,
   which gives each connection a thread) side by side. Target: p50 through pyair < 2× idle.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

from .common import Series, bench_env, free_port, pyair_argv, stop

TARGET_RSS_MB = 10.0
TARGET_SLOWLORIS_RATIO = 2.0
MiB = 1024 * 1024

APP = """\
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.answer(b"ok")

    def do_POST(self):  # a slow reader: 64 KiB, then a 1 ms nap
        size = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while (length := int(self.rfile.readline().split(b";")[0], 16)):
                left = length
                while left:
                    left -= len(self.rfile.read(min(left, 65536)))
                    time.sleep(0.001)
                self.rfile.readline()
                size += length
            self.rfile.readline()
        else:
            left = int(self.headers["Content-Length"])
            while left:
                chunk = self.rfile.read(min(left, 65536))
                left -= len(chunk)
                size += len(chunk)
                time.sleep(0.001)
        self.answer(str(size).encode())

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

CONFIG = """
[build]
full_bin = "python app.py"
[proxy]
enabled = true
app_port = {app_port}
proxy_port = {port}
"""


class Pyair:
    """pyair with its proxy in front of the slow app, in a temporary project."""

    def __init__(self, base: Path) -> None:
        self.app_port, self.port = free_port(), free_port()
        (base / "app.py").write_text(APP)
        (base / ".air.toml").write_text(CONFIG.format(app_port=self.app_port, port=self.port))
        self.log = open(base / "pyair.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            pyair_argv("-c", str(base / ".air.toml")),
            cwd=base,
            env=bench_env(self.app_port),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while get_ms(self.port) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("pyair's proxy never answered")
            time.sleep(0.05)  # poll

    def close(self) -> None:
        stop(self.proc)
        self.log.close()


def get_ms(port: int) -> float | None:
    """One GET / on a new connection, in ms; None if it failed."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            return None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000


# --------------------------------------------------------------------------- memory


def upload(port: int, size: int, *, chunked: bool) -> int:
    block = b"x" * MiB
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        if chunked:
            conn.request("POST", "/", body=(block for _ in range(size // MiB)), encode_chunked=True)
        else:
            conn.putrequest("POST", "/")
            conn.putheader("Content-Length", str(size))
            conn.endheaders()
            for _ in range(size // MiB):
                conn.send(block)
        return int(conn.getresponse().read())
    finally:
        conn.close()


def memory(pyair: Pyair, size_mb: int) -> None:
    process = psutil.Process(pyair.proc.pid)
    upload(pyair.port, MiB, chunked=False)  # warm the code paths up
    print(f"pyair's RSS while proxying a {size_mb} MiB upload to an app reading ~64 MB/s")
    print(f"{'upload':<20} {'seconds':>8} {'baseline MB':>12} {'peak MB':>8} {'grew MB':>8}")
    worst = 0.0
    for chunked in (False, True):
        baseline = peak = process.memory_info().rss
        stop_event = threading.Event()

        def sample(stop_event: threading.Event = stop_event) -> None:
            nonlocal peak
            while not stop_event.wait(0.02):
                peak = max(peak, process.memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        try:
            received = upload(pyair.port, size_mb * MiB, chunked=chunked)
        finally:
            stop_event.set()
            sampler.join()
        seconds = time.perf_counter() - started
        assert received == size_mb * MiB, received
        grew = (peak - baseline) / 1e6
        worst = max(worst, grew)
        label = "chunked" if chunked else "Content-Length"
        print(
            f"{label:<20} {seconds:>8.1f} {baseline / 1e6:>12.1f} {peak / 1e6:>8.1f} {grew:>8.1f}"
        )
    verdict = "ok" if worst < TARGET_RSS_MB else "MISSED"
    print(f"RSS growth: {worst:.1f} MB at most (target < {TARGET_RSS_MB:.0f} MB: {verdict})")


# --------------------------------------------------------------------------- slowloris


class Slowloris:
    """``count`` connections dribbling a request head that never ends, reconnecting when cut."""

    HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.stop = threading.Event()
        self.cut = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Slowloris:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _connect(self) -> tuple[socket.socket, int] | None:
        try:
            return socket.create_connection(("127.0.0.1", self.port), timeout=5), 0
        except OSError:
            return None

    def _run(self) -> None:
        sockets = [s for s in (self._connect() for _ in range(self.count)) if s]
        while not self.stop.wait(0.5):
            for index, (sock, sent) in enumerate(sockets):
                try:
                    sock.send(self.HEAD[sent % len(self.HEAD) : sent % len(self.HEAD) + 1])
                    sockets[index] = (sock, sent + 1)
                except OSError:  # cut off by the head timeout: come back at once
                    sock.close()
                    self.cut += 1
                    fresh = self._connect()
                    if fresh:
                        sockets[index] = fresh
        for sock, _ in sockets:
            sock.close()


def latencies(port: int, requests: int) -> Series:
    series = Series(str(port))
    for _ in range(requests):
        ms = get_ms(port)
        if ms is not None:
            series.samples.append(ms)
    return series


def slowloris(pyair: Pyair, count: int, requests: int) -> None:
    targets = {"through pyair's proxy": pyair.port, "straight to the app": pyair.app_port}
    rows: dict[str, tuple[Series, Series, int]] = {}
    for name, port in targets.items():
        latencies(port, 20)  # warm up
        idle = latencies(port, requests)
        with Slowloris(port, count) as attack:
            time.sleep(1.0)  # all connected and dribbling
            busy = latencies(port, requests)
            cut = attack.cut
        rows[name] = (idle, busy, cut)
    print(f"GET / latency (new connection each) with {count} slowloris connections open")
    print(
        f"{'path':<24} {'idle p50':>9} {'idle p90':>9} {'busy p50':>9} {'busy p90':>9} "
        f"{'ok':>5} {'x idle':>7}"
    )
    for name, (idle, busy, _cut) in rows.items():
        ratio = busy.pct(50) / idle.pct(50)
        print(
            f"{name:<24} {idle.pct(50):>9.2f} {idle.pct(90):>9.2f} {busy.pct(50):>9.2f} "
            f"{busy.pct(90):>9.2f} {len(busy.samples):>5} {ratio:>6.2f}x"
        )
    idle, busy, _ = rows["through pyair's proxy"]
    ratio = busy.pct(50) / idle.pct(50)
    verdict = "ok" if ratio < TARGET_SLOWLORIS_RATIO and len(busy.samples) == requests else "MISSED"
    print(
        f"pyair p50 under slowloris: {ratio:.2f}x idle, {len(busy.samples)}/{requests} answered "
        f"(target < {TARGET_SLOWLORIS_RATIO:.0f}x: {verdict})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load")
    parser.add_argument("--upload-mb", type=int, default=1024)
    parser.add_argument("--slowloris", type=int, default=100)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pyair-bench-load-") as tmp:
        pyair = Pyair(Path(tmp))
        try:
            memory(pyair, args.upload_mb)
            print()
            slowloris(pyair, args.slowloris, args.requests)
        finally:
            pyair.close()


if __name__ == "__main__":
    main()
