"""Shared pieces of the benchmarks: projects in temp dirs, fast HTTP polling, percentiles."""

from __future__ import annotations

import http.client
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

APP = """\
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "0"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"version={VERSION}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(port: int, path: str = "/") -> str | None:
    """One GET, None if the app is not answering (refused, reset, mid-restart)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def poll_until(port: int, needle: str, timeout: float = 20.0, path: str = "/") -> float:
    """perf_counter() at the first response (to ``path``) that contains ``needle``."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        body = fetch(port, path)
        if body is not None and needle in body:
            return time.perf_counter()
        time.sleep(0.0005)
    raise TimeoutError(f"port {port} never served {needle!r}")


def write_version(app: Path, version: str) -> float:
    """Save a new VERSION into app.py the way an editor does (truncate + write); returns t0."""
    text = re.sub(r'VERSION = "[^"]*"', f'VERSION = "{version}"', app.read_text())
    t0 = time.perf_counter()
    with open(app, "w") as out:
        out.write(text)
    return t0


def pyair_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "supervisor", *args]


def bench_env(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PORT"] = str(port)
    env["PYTHONPATH"] = str(REPO)
    env["NO_COLOR"] = "1"
    env.pop("VIRTUAL_ENV", None)
    return env


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL) if proc.pid else None
            proc.kill()
            proc.wait()


@dataclass
class Series:
    name: str
    samples: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")


def table(title: str, rows: Sequence[Series], baseline: Series | None = None) -> str:
    lines = [title, f"{'tool':<34} {'n':>4} {'median ms':>10} {'p90 ms':>8} {'vs floor':>9}"]
    for row in rows:
        ratio = f"{row.median / baseline.median:>8.2f}x" if baseline and baseline.samples else "-"
        lines.append(
            f"{row.name:<34} {len(row.samples):>4} {row.median:>10.1f} {row.pct(90):>8.1f} "
            f"{ratio:>9}"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, {cpu}, "
        f"Python {platform.python_version()}"
    )


def timed(label: str, fn: Callable[[], None]) -> None:
    start = time.perf_counter()
    fn()
    print(f"  ({label}: {time.perf_counter() - start:.1f} s)", file=sys.stderr)


Argv = Callable[[Path, int], list[str]]


class Supervised:
    """A supervisor (or a plain app) serving its own copy of a project, logging to a file.

    tool = Supervised("pyair", base, argv, write_project, ready="version=0")
    ms = tool.round(lambda d, n: (write_version(d / "app.py", str(n)), f"version={n}"))
    """

    def __init__(
        self,
        name: str,
        base: Path,
        argv: Argv,
        write_project: Callable[[Path], None],
        *,
        ready: str,
        path: str = "/",
    ) -> None:
        self.name = name
        self.path = path  # the page polled
        self.dir = base / re.sub(r"\W+", "_", name).strip("_")
        self.dir.mkdir(parents=True)
        write_project(self.dir)
        self.port = free_port()
        self.n = 0
        self.log_path = base / f"{self.dir.name}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv(self.dir, self.port),
            cwd=self.dir,
            env=bench_env(self.port),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        poll_until(self.port, ready, timeout=30, path=path)

    def round(self, edit: Callable[[Path, int], tuple[float, str]]) -> float:
        """``edit(dir, n)`` saves version ``n`` and returns (t0, what the app then serves)."""
        self.n += 1
        t0, needle = edit(self.dir, self.n)
        return (poll_until(self.port, needle, path=self.path) - t0) * 1000

    def text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no /{pattern}/ in its log")
            time.sleep(0.05)  # poll

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.text()))

    def close(self) -> None:
        stop(self.proc)
        if not self.log.closed:
            self.log.close()


def save_version(project: Path, n: int) -> tuple[float, str]:
    """The edit of a ``.py`` round: a new VERSION in app.py."""
    return write_version(project / "app.py", str(n)), f"version={n}"


def cold_start(base: Path, app: str, ready: str = "version=0") -> float:
    """A cold ``python app.py`` (the floor): spawn → first response with ``ready``, in ms."""
    work = base / "cold"
    work.mkdir(exist_ok=True)
    (work / "app.py").write_text(app)
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=work,
        env=bench_env(port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return (poll_until(port, ready) - t0) * 1000
    finally:
        proc.kill()
        proc.wait()


def watchfiles_cli(watched: str = ".") -> Argv:
    """The peer: watchfiles' own CLI restarting ``python app.py`` on changes under ``watched``."""

    def argv(project: Path, port: int) -> list[str]:
        exe = Path(sys.executable).parent / "watchfiles"
        return [str(exe), f"{sys.executable} app.py", str(project / watched)]

    return argv
