"""Who is on the other end of the control socket: the attacks made real.

- A socket planted by another user (a real second uid: the listener runs as ``nobody``) in a
  shared directory without the sticky bit: the agent connects, sees who listens, and sends
  nothing; the app keeps serving.
- pyair itself keeps its directory out of such a place, falls back to a short private one when
  ``$TMPDIR`` is too long for a Unix socket, and, SIGKILLed, leaves no directory behind (its
  guardian removes it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import APPS, PyairRun, free_port, http_get, pid_alive, wait_until
from test_hotswap import air_toml, pid_in

from supervisor import childside, control, guardian_main
from supervisor.agent import bootstrap_dir

NOBODY = 65534
# A listener that records what each connection sent: one "connection N" line per connection.
RECORDER = r"""
import socket, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(8)
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.settimeout(5)
    got = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    conn.close()
    print(f"connection {len(got)}", flush=True)
"""
as_root = pytest.mark.skipif(os.getuid() != 0, reason="a second uid needs root to make")
# the recorder is stdlib only; another uid may not be able to run this interpreter (under /root)
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable


@contextmanager
def recorder(path: Path, *, user: int | None = None) -> Iterator[subprocess.Popen[str]]:
    """A listener on ``path`` (as ``user``, when given), until the block ends."""
    proc = subprocess.Popen(
        [SYSTEM_PYTHON if user is not None else sys.executable, "-I", "-c", RECORDER, path],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        user=user,
        group=user,
        extra_groups=[] if user is not None else None,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "listening"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def connections(proc: subprocess.Popen[str], count: int) -> list[int]:
    """The byte counts of the recorder's first ``count`` connections (blocks until then)."""
    assert proc.stdout is not None
    seen = []
    while len(seen) < count:
        line = proc.stdout.readline()
        assert line, "the recorder ended"
        seen.append(int(line.split()[1]))
    return seen


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory anyone may write to, without the sticky bit: others can rename in it. In
    /tmp, where another uid can reach it (pytest's own directories are private)."""
    path = Path(tempfile.mkdtemp(prefix="pyair-test-shared-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- the agent's side


@as_root
def test_the_agent_sends_nothing_to_a_socket_another_user_planted(
    tmp_path: Path, shared: Path
) -> None:
    """The attack of the issue: another user put a listening socket where pyair's was."""
    planted_dir = shared / "pyair-planted"  # as if pyair's own had been renamed away
    planted_dir.mkdir()
    os.chown(planted_dir, NOBODY, NOBODY)
    planted = planted_dir / "control.sock"
    project = tmp_path / "project"
    shutil.copytree(APPS / "hotswap_jinja", project, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYAIR_AGENT_DEBUG")}
    env.update(
        PYTHONPATH=str(bootstrap_dir()),
        PYAIR_CONTROL=str(planted),
        PYAIR_PID=str(os.getpid()),  # the pyair that "started" the app: this test
        PYAIR_PRELOAD="auto",  # the modules report connects on its own, a second after start
        PORT=str(port),
    )
    with recorder(planted, user=NOBODY) as attacker:
        assert os.stat(planted).st_uid == NOBODY
        app = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a session leader, as pyair starts it: it reports modules
        )
        try:
            body = wait_until(lambda: http_get(port), timeout=15, message="the app serving")
            assert "page v1" in body
            # the template agent's connection and the modules report's: both refused unsent
            assert connections(attacker, 2) == [0, 0]
            assert "page v1" in (http_get(port) or "")  # the app never noticed
        finally:
            app.terminate()
            _, stderr = app.communicate(timeout=10)
    refusals = [line for line in stderr.splitlines() if "refused the control socket" in line]
    assert len(refusals) == 2, stderr
    assert f"pid {attacker.pid} (uid {NOBODY}) listens there" in refusals[0]


def test_the_agent_checks_the_listener_pid_not_only_its_uid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same uid, another process: still not the pyair that started the app."""
    path = tmp_path / "control.sock"
    with recorder(path) as listener:
        monkeypatch.setenv(childside.SERVER_PID_ENV, str(os.getpid()))
        with pytest.raises(childside.UntrustedListener, match=f"pid {listener.pid} "):
            childside.connect_control(str(path), timeout=5)
        monkeypatch.delenv(childside.SERVER_PID_ENV)
        with pytest.raises(childside.UntrustedListener, match="pid unknown"):
            childside.connect_control(str(path), timeout=5)
        monkeypatch.setenv(childside.SERVER_PID_ENV, str(listener.pid))
        with childside.connect_control(str(path), timeout=5) as sock:
            sock.sendall(b"hello")
        assert connections(listener, 3) == [0, 0, 5]


# --------------------------------------------------------------------------- the directory


def test_a_private_xdg_runtime_dir_is_used_and_a_shared_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime_dir = tmp_path / "run"
    runtime_dir.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
    lines: list[str] = []
    made = control.private_directory(lines.append)
    try:
        assert Path(made).parent == runtime_dir and lines == []
        info = os.lstat(made)
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.getuid()
    finally:
        os.rmdir(made)

    runtime_dir.chmod(0o755)  # readable by others: not the private place it should be
    made = control.private_directory(lines.append)
    try:
        assert Path(made).parent != runtime_dir
        assert len(lines) == 1 and "is not private" in lines[0], lines
    finally:
        os.rmdir(made)


@as_root
def test_a_directory_writable_by_others_and_not_sticky_is_passed_over(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(shared))
    monkeypatch.setattr(control.tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    lines: list[str] = []
    made = control.private_directory(lines.append)
    try:
        assert not made.startswith(str(shared))
        assert lines == [
            f"control: socket made in /tmp, not {shared} "
            f"({shared} is writable by others and not sticky)"
        ]
    finally:
        os.rmdir(made)
    shared.chmod(0o1777)  # sticky: nobody else may rename what is ours in it
    made = control.private_directory(lines.append)
    try:
        assert Path(made).parent == shared and len(lines) == 1
    finally:
        os.rmdir(made)


def test_the_guardian_removes_only_a_directory_that_is_still_ours(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("x")
    link = tmp_path / "pyair-link"
    link.symlink_to(target)
    assert guardian_main.remove_directory(str(link)) is False  # a link is never followed
    assert (target / "keep").exists() and link.is_symlink()
    assert guardian_main.remove_directory(str(target)) is True
    assert not target.exists()
    assert guardian_main.remove_directory(str(target)) is True  # gone is gone


# --------------------------------------------------------------------------- pyair end to end


@contextmanager
def jinja_app(
    tmp_path: Path, env: dict[str, str | None]
) -> Iterator[tuple[PyairRun, int, int, Path]]:
    """pyair -d supervising hotswap_jinja, serving, its agent connected:
    (run, the app's port, its pid, the project)."""
    project = tmp_path / "project"
    shutil.copytree(APPS / "hotswap_jinja", project, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    with PyairRun(project, air_toml(port, "python app.py"), "-d", env=env) as run:
        run.wait_for_log(r"control: agent connected", timeout=20)
        body = wait_until(lambda: http_get(port), timeout=20, message="the app serving")
        yield run, port, pid_in(body), project


def control_path_of(pid: int) -> str:
    """PYAIR_CONTROL as the process ``pid`` was started with."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    prefix = f"{childside.CONTROL_ENV}=".encode()
    return next(v[len(prefix) :] for v in environ if v.startswith(prefix)).decode()


def swaps(port: int, project: Path, app_pid: int) -> None:
    """A template edit is swapped in the running app: the agent trusted pyair's socket."""
    page = project / "templates" / "page.html"
    page.write_text(page.read_text().replace("page v1", "page v2"))
    body = wait_until(
        lambda: (b := http_get(port)) and "page v2" in b and b, timeout=10, message="v2"
    )
    assert pid_in(body) == app_pid  # swapped, not restarted


@as_root
def test_pyair_keeps_its_socket_out_of_a_shared_non_sticky_tmpdir(
    tmp_path: Path, shared: Path
) -> None:
    env: dict[str, str | None] = {"TMPDIR": str(shared), "XDG_RUNTIME_DIR": None}
    with jinja_app(tmp_path, env) as (run, port, app_pid, project):
        directory = Path(control_path_of(app_pid)).parent
        assert shared not in directory.parents
        info = os.lstat(directory)
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
        assert run.count(r"writable by others and not sticky") == 1
        swaps(port, project, app_pid)


def test_a_tmpdir_too_long_for_a_socket_falls_back_to_a_short_private_one(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    env: dict[str, str | None] = {"TMPDIR": str(deep), "XDG_RUNTIME_DIR": None}
    with jinja_app(tmp_path, env) as (run, port, app_pid, project):
        path = control_path_of(app_pid)
        assert len(os.fsencode(path)) <= control.MAX_SOCKET_PATH
        assert not path.startswith(str(deep))
        assert run.count(r"control: socket made in") == 1  # the one line, and only with -d
        assert run.count(r"too long a path for a Unix socket") == 1
        assert "Traceback" not in run.log()
        swaps(port, project, app_pid)


def test_sigkill_of_pyair_leaves_no_control_directory(tmp_path: Path) -> None:
    with jinja_app(tmp_path, {}) as (run, _port, app_pid, _project):
        directory = Path(control_path_of(app_pid)).parent
        assert re.fullmatch(r"pyair-\w+", directory.name) and directory.is_dir()
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        wait_until(lambda: not directory.exists(), timeout=10, message="the directory removed")
        wait_until(lambda: not pid_alive(app_pid), timeout=10, message="the app tree gone")


@pytest.mark.anyio
async def test_the_agent_is_told_which_pyair_to_trust() -> None:
    server = control.ControlServer(is_member=lambda pid: True, log=lambda line: None)
    with pytest.raises(RuntimeError):
        server.agent_env()  # not started: no path yet
    async with server:
        assert server.agent_env() == {
            childside.CONTROL_ENV: server.path,
            childside.SERVER_PID_ENV: str(os.getpid()),  # who listens on it
        }
