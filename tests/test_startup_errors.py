"""What cannot start is one line and an exit code: real faults, through the real command line.

Each fault is raised inside pyair's task group (the control socket, the watcher) or just before
it (the proxy's port); the user sees one line on stderr, never a traceback or an
ExceptionGroup, and the app is never started.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, pyair_command, pyair_env

APP = "open('STARTED', 'w').close()\nimport time\ntime.sleep(60)\n"
CONFIG = """
[build]
full_bin = "python app.py"
ready_url = "http://127.0.0.1:{port}/"
[misc]
startup_banner = ""
"""


def project(path: Path, extra: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "app.py").write_text(APP)
    (path / ".air.toml").write_text(CONFIG.format(port=free_port()) + extra)
    return path


def pyair(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pyair_command(*args),
        cwd=cwd,
        env=pyair_env(env),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line pyair said on stderr, after checking that it is all it said."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def long_tmpdir(tmp_path: Path) -> Iterator[Path]:
    """A TMPDIR whose path leaves no room for a Unix socket name (~108 bytes on Linux)."""
    path = tmp_path / ("t" * 100)
    path.mkdir()
    yield path
    assert list(path.iterdir()) == [], "pyair left its private directory behind"


def test_a_control_socket_that_cannot_be_made(tmp_path: Path, long_tmpdir: Path) -> None:
    root = project(tmp_path / "project")
    line = one_line(pyair(root, TMPDIR=str(long_tmpdir)))
    assert line == (
        f"pyair  cannot make the control socket in {long_tmpdir}: AF_UNIX path too long; "
        "point TMPDIR at a short, writable directory"
    )
    assert not (root / "STARTED").exists()


def test_pyair_smoke_with_a_control_socket_that_cannot_be_made(
    tmp_path: Path, long_tmpdir: Path
) -> None:
    root = project(tmp_path / "project")
    line = one_line(pyair(root, "smoke", TMPDIR=str(long_tmpdir)))
    assert line.startswith(f"cannot make the control socket in {long_tmpdir}: ")
    assert not (root / "STARTED").exists()


def test_a_project_directory_the_watcher_cannot_take(tmp_path: Path) -> None:
    # watchfiles takes paths as UTF-8 strings: a directory name that is not UTF-8 fails it
    # (polling goes through watchfiles; the inotify backend takes any name)
    raw = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(raw)
    root = project(Path(os.fsdecode(raw)))
    line = one_line(pyair(root, "--build.poll", "true"))
    assert line.startswith(f"pyair  cannot watch {os.fsencode(tmp_path).decode()}/caf")
    assert not (root / "STARTED").exists()


def test_a_busy_proxy_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proxy = f"[proxy]\nenabled = true\nproxy_port = {port}\napp_port = {free_port()}\n"
        root = project(tmp_path, proxy)
        line = one_line(pyair(root))
    assert line.startswith(f"pyair  the proxy cannot listen on 127.0.0.1:{port}: ")
    assert not (root / "STARTED").exists()
