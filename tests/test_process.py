"""supervisor.process with real processes: app trees, build steps, the orphan guardian.

The fixture apps live in tests/apps/. Every wait has a deadline; processes are checked by pid
through /proc (a zombie counts as dead: here nothing may be left running).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import anyio
import pytest

from supervisor.config import AppCommand
from supervisor.process import TREE_ENV, AppProcess, Guardian, run_step, tree_pids

pytestmark = pytest.mark.anyio

APPS = Path(__file__).resolve().parent / "apps"
SPAWNER = APPS / "spawner.py"
PY = sys.executable


# --------------------------------------------------------------------------- helpers


def alive(pid: int) -> bool:
    """Running (or stopped), not a zombie and not gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


def living(pids: Iterable[int]) -> set[int]:
    return {pid for pid in pids if alive(pid)}


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(0.01)  # poll


async def read_json(path: Path, timeout: float = 10.0) -> dict[str, int]:
    await wait_for(path.exists, f"{path.name} to be written", timeout)
    data: dict[str, int] = json.loads(path.read_text())
    return data


def spawner(pidfile: Path, *flags: str) -> AppCommand:
    return AppCommand(argv=(PY, str(SPAWNER), str(pidfile), *flags), shell=None)


@pytest.fixture
def token() -> Iterator[str]:
    """A fresh tree token; whatever still carries it at teardown is SIGKILLed."""
    value = f"test-{secrets.token_hex(6)}"
    yield value
    for pid in tree_pids(value):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != TREE_ENV}


# --------------------------------------------------------------------------- the app tree


async def test_stop_kills_grandchildren_and_setsid_grandchildren(
    tmp_path: Path, token: str
) -> None:
    app = await AppProcess.start(spawner(tmp_path / "pids"), cwd=tmp_path, env=env(), token=token)
    pids = await read_json(tmp_path / "pids")
    assert pids["app"] == app.pid
    assert living(pids.values()) == set(pids.values())

    report = await app.stop(interrupt=False, kill_delay_ms=5000)

    assert living(pids.values()) == set()
    assert tree_pids(token) == set()
    assert report.graceful and report.killed == 0 and report.survivors == ()
    assert app.returncode == 0  # the app's own SIGTERM handler


async def test_shell_app_tree_is_stopped(tmp_path: Path, token: str) -> None:
    command = AppCommand(argv=None, shell=f"'{PY}' '{SPAWNER}' '{tmp_path / 'pids'}'; echo never")
    app = await AppProcess.start(command, cwd=tmp_path, env=env(), token=token)
    pids = await read_json(tmp_path / "pids")
    assert pids["app"] != app.pid  # the shell is the direct child

    report = await app.stop(interrupt=True, kill_delay_ms=5000)

    assert living([app.pid, *pids.values()]) == set()
    assert report.duration_ms < 3000


async def test_well_behaved_app_stops_gracefully_well_under_kill_delay(
    tmp_path: Path, token: str
) -> None:
    app = await AppProcess.start(spawner(tmp_path / "pids"), cwd=tmp_path, env=env(), token=token)
    pids = await read_json(tmp_path / "pids")

    report = await app.stop(interrupt=True, kill_delay_ms=5000)

    assert report.graceful
    assert report.killed == 0
    assert report.duration_ms < 1500, report
    assert living(pids.values()) == set()


async def test_app_ignoring_signals_is_killed_after_kill_delay(tmp_path: Path, token: str) -> None:
    command = spawner(tmp_path / "pids", "--stubborn")
    app = await AppProcess.start(command, cwd=tmp_path, env=env(), token=token)
    pids = await read_json(tmp_path / "pids")

    report = await app.stop(interrupt=True, kill_delay_ms=300)

    assert not report.graceful
    assert 300 <= report.duration_ms < 3000, report
    assert report.killed >= 1
    assert app.returncode == -signal.SIGKILL
    assert living(pids.values()) == set()


async def test_stubborn_descendant_is_killed_after_the_app_exits(
    tmp_path: Path, token: str
) -> None:
    command = spawner(tmp_path / "pids", "--stubborn-child")
    app = await AppProcess.start(command, cwd=tmp_path, env=env(), token=token)
    pids = await read_json(tmp_path / "pids")

    report = await app.stop(interrupt=False, kill_delay_ms=300)

    assert app.returncode == 0  # the app itself went at once
    assert not report.graceful
    assert report.killed == 1, report  # only the child that ignored SIGTERM
    assert 300 <= report.duration_ms < 3000, report
    assert living(pids.values()) == set()


async def test_stop_after_app_exited_sweeps_leftovers_and_is_idempotent(
    tmp_path: Path, token: str
) -> None:
    app = await AppProcess.start(
        spawner(tmp_path / "pids", "--exit"), cwd=tmp_path, env=env(), token=token
    )
    with anyio.fail_after(10):
        assert await app.wait() == 0
    pids = await read_json(tmp_path / "pids")
    leftovers = {pids["group"], pids["setsid"], pids["orphan"]}
    assert living(leftovers) == leftovers  # the app left its children behind

    report = await app.stop(interrupt=False, kill_delay_ms=5000)

    assert living(leftovers) == set()
    assert report.graceful
    assert await app.stop(interrupt=False, kill_delay_ms=5000) is report


async def test_tree_pids_finds_setsid_grandchild(tmp_path: Path, token: str) -> None:
    app_token = f"{token}/app-1"
    app = await AppProcess.start(
        spawner(tmp_path / "pids"), cwd=tmp_path, env=env(), token=app_token
    )
    pids = await read_json(tmp_path / "pids")
    try:
        found = tree_pids(app_token)
        assert set(pids.values()) <= found
        assert {pids["setsid"], pids["orphan"]} <= found  # other sessions, orphan's parent gone
        assert set(pids.values()) <= tree_pids(token)  # nested tokens belong to the parent's
        assert tree_pids(f"{token}/app-") == set()  # but a mere prefix is not enough
        assert os.getpid() not in found
    finally:
        await app.stop(interrupt=False, kill_delay_ms=2000)
    assert tree_pids(app_token) == set()


async def test_app_inherits_stdout(
    tmp_path: Path, token: str, capfd: pytest.CaptureFixture[str]
) -> None:
    command = AppCommand(argv=(PY, "-c", "print('hello from the app')"), shell=None)
    app = await AppProcess.start(command, cwd=tmp_path, env=env(), token=token)
    with anyio.fail_after(10):
        assert await app.wait() == 0
    assert "hello from the app" in capfd.readouterr().out


# --------------------------------------------------------------------------- build steps


async def test_run_step_captures_and_streams_output(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    lines: list[str] = []

    def on_output(line: str) -> None:
        lines.append(line)
        if line == "first":
            flag.touch()  # the step only goes on once this line was seen: it is streamed

    command = (
        f"echo first; echo err >&2; while [ ! -e '{flag}' ]; do sleep 0.01; done; echo last"  # poll
    )
    with anyio.fail_after(10):
        result = await run_step(command, cwd=tmp_path, env=env(), on_output=on_output)

    assert lines == ["first", "err", "last"]
    assert result.output == "first\nerr\nlast\n"
    assert result.ok and result.returncode == 0
    assert result.command == command
    assert result.duration_ms > 0


async def test_run_step_nonzero_exit_is_not_ok(tmp_path: Path) -> None:
    with anyio.fail_after(10):
        result = await run_step(
            'pwd; echo "$FOO"; exit 3', cwd=tmp_path, env={**env(), "FOO": "bar"}
        )
    assert not result.ok
    assert result.returncode == 3
    assert result.output == f"{tmp_path}\nbar\n"


async def test_run_step_cannot_start_is_a_failed_step(tmp_path: Path) -> None:
    result = await run_step("true", cwd=tmp_path / "missing", env=env())
    assert not result.ok and result.returncode == 127
    assert "cannot run" in result.output


async def test_cancelled_step_leaves_no_process(tmp_path: Path) -> None:
    command = (
        'sleep 1000 & echo "pid $!"; '
        'setsid sleep 1000 & echo "pid $!"; '
        '(setsid sleep 1000 & echo "pid $!"); '  # an orphan: its subshell is gone
        "wait"
    )
    pids: list[int] = []
    with anyio.fail_after(10), anyio.CancelScope() as scope:

        def on_output(line: str) -> None:
            pids.append(int(line.split()[1]))
            if len(pids) == 3:
                scope.cancel()

        await run_step(command, cwd=tmp_path, env=env(), on_output=on_output)
    assert scope.cancelled_caught
    assert len(pids) == 3
    assert living(pids) == set()  # already gone when run_step re-raised


async def test_run_step_returns_when_background_process_holds_the_pipe(tmp_path: Path) -> None:
    started = time.monotonic()
    with anyio.fail_after(10):
        result = await run_step('sleep 1000 & echo "pid $!"', cwd=tmp_path, env=env())
    pid = int(result.output.split()[1])
    try:
        assert result.ok
        assert time.monotonic() - started < 3
    finally:
        os.kill(pid, signal.SIGKILL)


async def test_step_token_nests_under_the_callers_token(tmp_path: Path, token: str) -> None:
    with anyio.fail_after(10):
        result = await run_step(f'echo "${TREE_ENV}"', cwd=tmp_path, env={**env(), TREE_ENV: token})
    assert result.output.startswith(f"{token}/step-")


# --------------------------------------------------------------------------- the guardian


async def test_guardian_kills_tree_when_host_is_sigkilled(tmp_path: Path, token: str) -> None:
    pidfile, infofile = tmp_path / "pids", tmp_path / "info"
    host = subprocess.Popen(
        [PY, str(APPS / "guardian_host.py"), token, str(pidfile), str(infofile)], env=env()
    )
    try:
        info = await read_json(infofile)
        pids = await read_json(pidfile)
        tree = set(pids.values())
        assert living(tree) == tree
        assert info["guardian"] not in tree_pids(token)

        host.kill()
        host.wait()
        killed_at = time.monotonic()
        await wait_for(lambda: not living(tree), "the app tree to die", timeout=2.0)
        assert time.monotonic() - killed_at < 2.0
        await wait_for(lambda: not alive(info["guardian"]), "the guardian to exit", timeout=5.0)
    finally:
        host.kill()
        host.wait()


async def test_guardian_close_spares_tree_unless_asked(tmp_path: Path, token: str) -> None:
    command = AppCommand(argv=("sleep", "1000"), shell=None)
    app = await AppProcess.start(command, cwd=tmp_path, env=env(), token=token)

    guardian = Guardian.start(token)
    assert guardian.pid not in tree_pids(token)
    guardian.close()
    assert guardian.returncode == 0
    assert alive(app.pid)

    sweeper = Guardian.start(token)
    sweeper.close(kill_tree=True)
    assert sweeper.returncode == 0
    with anyio.fail_after(5):
        assert await app.wait() == -signal.SIGKILL
