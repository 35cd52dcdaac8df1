"""What cannot start is one line and an exit code: real faults, through the real command line.

Each fault is raised inside pyair's task group (the control socket, the watcher) or just before
it (the proxy's port); the user sees one line on stderr, never a traceback or an
ExceptionGroup, and the app is never started. (A TMPDIR too long for a socket is no fault any
more: pyair falls back to a short private directory.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, pyair_command, pyair_env, wait_until

APP = "open('STARTED', 'w').close()\nimport signal\nsignal.pause()  # up until stopped\n"
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
    return run(pyair_command(*args), cwd, **env)


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
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


def test_a_control_socket_that_cannot_be_made(tmp_path: Path) -> None:
    # No place whose socket path fits (a system whose every temporary directory is deep): the
    # limit is lowered inside the pyair process itself, the rest is the real command line.
    root = project(tmp_path / "project")
    code = (
        "import sys; from supervisor import control; control.MAX_SOCKET_PATH = 10; "
        "from supervisor.cli import main; sys.exit(main())"
    )
    assert one_line(run([sys.executable, "-c", code], root)) == (
        f"pyair  cannot make the control socket in {tempfile.gettempdir()}: no place for it has "
        "a path short enough for a socket; point TMPDIR at a short, writable directory"
    )
    assert not (root / "STARTED").exists()


def test_a_tmpdir_too_long_for_a_socket_is_no_error(tmp_path: Path, long_tmpdir: Path) -> None:
    root = project(tmp_path / "project")
    proc = subprocess.Popen(
        pyair_command(),
        cwd=root,
        env=pyair_env({"TMPDIR": str(long_tmpdir)}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: (root / "STARTED").exists(), timeout=20, message="the app started")
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "control" not in stderr  # no notice without -d


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
