"""Helpers for end-to-end tests: run pyair as a real subprocess on a real project directory.

with PyairRun(project, config_text) as run:
    run.wait_for_log(r"ready in")
    body = run.get("/")
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], T | None], *, timeout: float = 10.0, message: str = "condition"
) -> T:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
        time.sleep(0.01)  # poll


def stays(condition: Callable[[], bool], *, seconds: float) -> bool:
    """True if ``condition`` holds for the whole bounded window (checking for an absence)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.02)  # poll
    return condition()


def http_get(port: int, path: str = "/", timeout: float = 2.0) -> str | None:
    """The body of one GET, None while nothing answers whole (an app being restarted may
    close a response half-way: IncompleteRead)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return str(resp.read().decode())
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return None


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def pyair_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "supervisor", *args]


def inotify_watches(pid: int | str = "self") -> int:
    """inotify watches a process holds, over all its inotify instances."""
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:  # notify closes its fd from its own thread: it may be gone by now
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    total += sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:
            continue
    return total


def run_pyair(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``pyair ARGS`` to completion in ``cwd``, output captured as text, no stdin."""
    return subprocess.run(
        pyair_command(*args),
        cwd=cwd,
        env=pyair_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def pyair_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["NO_COLOR"] = "1"
    env.pop("VIRTUAL_ENV", None)
    env.update(extra or {})
    return env


class PyairRun:
    """A pyair process supervising ``project`` with ``config`` as its .air.toml."""

    def __init__(
        self, project: Path, config: str, *args: str, env: dict[str, str | None] | None = None
    ) -> None:
        self.project = project
        self.env = env or {}  # changes to pyair's environment; None removes a variable
        self.config_path = project / ".air.toml"
        self.config_path.write_text(config)
        self.log_path = project / "pyair.log"
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PyairRun:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is not None:
            sys.stderr.write(f"--- pyair log ---\n{self.log()}\n")

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            pyair_command("-c", str(self.config_path), *self.args),
            cwd=self.project,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
        )
        log.close()

    def environment(self) -> dict[str, str]:
        """pyair's environment: :func:`pyair_env` with ``env``'s changes."""
        env = pyair_env({k: v for k, v in self.env.items() if v is not None})
        for name in [k for k, v in self.env.items() if v is None]:
            env.pop(name, None)
        return env

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log()))

    def wait_for_log(self, pattern: str, *, count: int = 1, timeout: float = 15.0) -> str:
        def found() -> str | None:
            matches = re.findall(pattern, self.log())
            if len(matches) >= count:
                return str(matches[count - 1])
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"pyair exited {self.proc.returncode}:\n{self.log()}")
            return None

        return wait_until(found, timeout=timeout, message=f"log /{pattern}/ x{count}")

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def asset_project(project: Path, files: dict[str, str | bytes]) -> Path:
    """A project of tests/apps/asset_app.py (static files cached for an hour) and ``files``
    under its static/, dated an hour ago: old enough for the proxy to keep their versions."""
    project.mkdir(parents=True, exist_ok=True)
    (project / "app.py").write_text((APPS / "asset_app.py").read_text())
    an_hour_ago = time.time() - 3600
    for name, content in files.items():
        path = project / "static" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        os.utime(path, (an_hour_ago, an_hour_ago))
    return project
