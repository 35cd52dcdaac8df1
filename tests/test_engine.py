"""End to end: pyair as a real subprocess supervising real apps in a real project directory.

Tests that edit files run on both watcher backends (the ``watch`` fixture): inotify, the
default here, and watchfiles polling (``[build] poll = true``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from support import (
    APPS,
    PyairRun,
    free_port,
    http_get,
    inotify_watches,
    pid_alive,
    run_pyair,
    stays,
    wait_until,
)


@pytest.fixture(params=["inotify", "poll"])
def watch(request: pytest.FixtureRequest) -> str:
    """``[build]`` lines that pick the watcher backend under test."""
    return "" if request.param == "inotify" else "poll = true\npoll_interval = 500"


def make_project(tmp_path: Path, app: str = "web_app.py") -> Path:
    shutil.copy(APPS / app, tmp_path / "app.py")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "page.html").write_text("<p>hi</p>\n")
    return tmp_path


def config(port: int, extra_build: str = "", top: str = "") -> str:
    return f"""
{top}
[build]
full_bin = "python app.py"
ready_url = "http://127.0.0.1:{port}/"
kill_delay = "2s"
{extra_build}

[env]
PORT = "{port}"
"""


def starts(project: Path) -> list[str]:
    path = project / "starts.log"
    return path.read_text().split() if path.exists() else []


def edit_version(project: Path, version: str) -> None:
    app = project / "app.py"
    app.write_text(re.sub(r'VERSION = "[^"]*"', f'VERSION = "{version}"', app.read_text()))


def served(port: int, needle: str) -> str | None:
    body = http_get(port)
    return body if body and needle in body else None


def test_py_edit_restarts_with_new_pid_and_new_code(tmp_path: Path, watch: str) -> None:
    project = make_project(tmp_path)
    port = free_port()
    with PyairRun(project, config(port, watch)) as run:
        first = wait_until(lambda: served(port, "version=1"), message="first app")
        edit_version(project, "2")
        second = wait_until(lambda: served(port, "version=2"), message="new code served")
        assert first.split("pid=")[1] != second.split("pid=")[1]
        run.wait_for_log(r"app\.py changed")
        assert len(starts(project)) == 2


def test_failed_build_keeps_old_app_serving(tmp_path: Path, watch: str) -> None:
    project = make_project(tmp_path)
    (project / "check.py").write_text(
        "import pathlib, sys\n"
        "if pathlib.Path('BROKEN').exists():\n"
        "    print('syntax error in app.py line 3'); sys.exit(1)\n"
    )
    port = free_port()
    with PyairRun(project, config(port, f'cmd = "python check.py"\n{watch}')) as run:
        first = wait_until(lambda: served(port, "version=1"), message="first app")
        (project / "BROKEN").write_text("x")
        edit_version(project, "2")
        run.wait_for_log(r"build failed")
        assert http_get(port) == first, "the old app must keep serving"
        log = (project / "tmp" / "build-errors.log").read_text()
        assert "syntax error in app.py line 3" in log
        (project / "BROKEN").unlink()
        edit_version(project, "3")
        wait_until(lambda: served(port, "version=3"), message="fixed build serves")


def test_burst_of_500_files_gives_one_restart(tmp_path: Path, watch: str) -> None:
    project = make_project(tmp_path)
    pkg = project / "pkg"
    pkg.mkdir()
    port = free_port()
    with PyairRun(project, config(port, watch)) as run:
        wait_until(lambda: served(port, "version=1"), message="first app")
        run.wait_for_log(r"watching")
        for i in range(500):  # like a git checkout
            (pkg / f"mod_{i}.py").write_text(f"X = {i}\n")
        wait_until(lambda: len(starts(project)) == 2, message="one restart")
        assert stays(lambda: len(starts(project)) == 2, seconds=1.5), starts(project)
        assert run.count(r"changed") == 1


def test_editor_atomic_save_gives_one_restart(tmp_path: Path, watch: str) -> None:
    project = make_project(tmp_path)
    port = free_port()
    with PyairRun(project, config(port, watch)) as run:
        wait_until(lambda: served(port, "version=1"), message="first app")
        run.wait_for_log(r"watching")
        # vim: probe file 4913, a backup~, write a temp file, rename it over the target
        probe = project / "4913"
        probe.write_text("")
        probe.unlink()
        shutil.copy(project / "app.py", project / "app.py~")
        text = (project / "app.py").read_text().replace('VERSION = "1"', 'VERSION = "2"')
        tmp = project / ".app.py.swp.tmp"
        tmp.write_text(text)
        os.replace(tmp, project / "app.py")
        (project / "app.py~").unlink()
        wait_until(lambda: served(port, "version=2"), message="saved code served")
        assert stays(lambda: len(starts(project)) == 2, seconds=1.5), starts(project)


def test_recreated_package_directory_is_watched_again(tmp_path: Path, watch: str) -> None:
    """``rm -r pkg && mkdir pkg && echo x=1 > pkg/mod.py``, then an edit: both restart."""
    project = make_project(tmp_path)
    (project / "pkg").mkdir()
    (project / "pkg" / "mod.py").write_text("x = 0\n")
    port = free_port()
    with PyairRun(project, config(port, watch)) as run:
        wait_until(lambda: served(port, "version=1"), message="first app")
        run.wait_for_log(r"watching")
        subprocess.run(
            ["sh", "-c", "rm -r pkg && mkdir pkg && echo x=1 > pkg/mod.py"], cwd=project, check=True
        )
        wait_until(lambda: len(starts(project)) >= 2, message="a restart for the new pkg/")
        # on a loaded machine the rm and the new file may be two batches: let them settle
        settled = len(starts(project))
        while not stays(lambda n=settled: len(starts(project)) == n, seconds=0.5):
            settled = len(starts(project))
        seen = run.count(r"pkg/mod\.py changed")
        (project / "pkg" / "mod.py").write_text("x = 2\n")
        wait_until(
            lambda: len(starts(project)) == settled + 1, message="a restart for the edit in it"
        )
        assert run.count(r"pkg/mod\.py changed") == seen + 1


def test_renamed_project_root_is_said_and_watched_again(tmp_path: Path, watch: str) -> None:
    (tmp_path / "site").mkdir()
    project = make_project(tmp_path / "site")
    away = tmp_path / "site-away"
    port = free_port()
    run = PyairRun(project, config(port, watch))
    with run:
        wait_until(lambda: served(port, "version=1"), message="first app")
        run.wait_for_log(r"watching")
        project.rename(away)
        run.log_path = away / run.log_path.name  # the log file moved with the project
        run.wait_for_log(r"the project root .* was moved away")
        away.rename(project)
        run.log_path = project / run.log_path.name
        run.wait_for_log(r"the project root .* is back: watching it again")
        edit_version(project, "2")
        wait_until(lambda: served(port, "version=2"), message="an edit after it came back")
        assert http_get(port) is not None  # still serving


def test_crash_on_start_is_not_restarted_in_a_loop(tmp_path: Path, watch: str) -> None:
    (tmp_path / "app.py").write_text(
        "import pathlib\nwith open('starts.log', 'a') as f: f.write('x\\n')\nraise SystemExit(3)\n"
    )
    with PyairRun(tmp_path, f'[build]\nfull_bin = "python app.py"\n{watch}\n') as run:
        run.wait_for_log(r"exited with code 3; waiting for a change")
        assert stays(lambda: len(starts(tmp_path)) == 1, seconds=1.5)
        (tmp_path / "app.py").write_text((tmp_path / "app.py").read_text() + "# edit\n")
        wait_until(lambda: len(starts(tmp_path)) == 2, message="restart after a change")


def test_rerun_restarts_an_exited_app_with_backoff(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "with open('starts.log', 'a') as f: f.write('x\\n')\nraise SystemExit(1)\n"
    )
    cfg = '[build]\nfull_bin = "python app.py"\nrerun = true\nrerun_delay = 100\n'
    with PyairRun(tmp_path, cfg) as run:
        run.wait_for_log(r"rerun in 100 ms")
        run.wait_for_log(r"rerun in 200 ms")
        run.wait_for_log(r"rerun in 400 ms")
        assert len(starts(tmp_path)) >= 3


def _tree_pids(project: Path) -> list[int]:
    path = project / "tree.pids"
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL"])
def test_no_app_process_survives_pyair(tmp_path: Path, how: str) -> None:
    project = make_project(tmp_path, "tree_app.py")
    port = free_port()
    run = PyairRun(project, config(port))
    with run:
        wait_until(lambda: len(_tree_pids(project)) == 4, message="the app tree")
        wait_until(lambda: http_get(port), message="app serving")
        pids = _tree_pids(project)
        assert all(pid_alive(p) for p in pids)
        run.signal(getattr(signal, how))
        code = run.wait()
        if how != "SIGKILL":
            assert code == 0, run.log()
        wait_until(
            lambda: not any(pid_alive(p) for p in pids),
            timeout=2.0 if how == "SIGKILL" else 5.0,
            message=f"app tree gone after {how}",
        )


def test_restart_kills_the_whole_old_tree(tmp_path: Path, watch: str) -> None:
    project = make_project(tmp_path, "tree_app.py")
    port = free_port()
    with PyairRun(project, config(port, watch)):
        wait_until(lambda: len(_tree_pids(project)) == 4, message="the app tree")
        old = _tree_pids(project)
        (project / "app.py").write_text((project / "app.py").read_text() + "\n# edit\n")
        wait_until(lambda: len(_tree_pids(project)) == 8, message="the new tree")
        assert not any(pid_alive(p) for p in old)


def test_app_ignoring_signals_is_killed_after_kill_delay(tmp_path: Path, watch: str) -> None:
    project = make_project(tmp_path, "tree_app.py")
    port = free_port()
    cfg = f"""
[build]
full_bin = "python app.py"
send_interrupt = true
kill_delay = 400
{watch}
[env]
PORT = "{port}"
IGNORE_SIGNALS = "1"
"""
    with PyairRun(project, cfg) as run:
        wait_until(lambda: len(_tree_pids(project)) == 4, message="the app tree")
        old = _tree_pids(project)
        (project / "app.py").write_text((project / "app.py").read_text() + "\n# edit\n")
        run.wait_for_log(r"did not stop within 400 ms: killed")
        wait_until(lambda: len(_tree_pids(project)) == 8, message="the new tree")
        assert not any(pid_alive(p) for p in old)


def test_args_env_files_and_overrides_reach_the_app(tmp_path: Path, watch: str) -> None:
    project = make_project(tmp_path)
    port = free_port()
    (project / ".env").write_text("GREETING=from-dotenv\n")
    cfg = config(port, watch, top='env_files = [".env"]').replace(
        'kill_delay = "2s"', "delay = 5000"
    )
    with PyairRun(project, cfg, "--build.delay", "20", "--", "--flag", "x") as run:
        body = wait_until(lambda: served(port, "version=1"), message="first app")
        assert "env=from-dotenv" in body
        assert "args=--flag x" in body
        edit_version(project, "2")  # delay 20 ms from the flag, not 5 s from the file
        wait_until(lambda: served(port, "version=2"), timeout=4, message="flag wins")
        assert run.count("changed") == 1


def test_excluded_directory_with_50000_files_adds_no_watches(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    modules = project / "node_modules"
    for d in range(500):
        sub = modules / f"pkg{d}"
        sub.mkdir(parents=True)
        for f in range(100):
            os.close(os.open(sub / f"f{f}.js", os.O_CREAT | os.O_WRONLY))
    port = free_port()
    with PyairRun(project, config(port)) as run:
        run.wait_for_log(r"watching")
        wait_until(lambda: served(port, "version=1"), message="first app")
        watches = inotify_watches(run.pid)
        # the project root and templates/: a handful, not 501 directories of node_modules
        assert 1 <= watches <= 5, watches


BAD_CONFIGS = [
    ("[build\ncmd = 'x'\n", r"bad\.toml:1:\d+: TOML syntax error"),
    (
        "[build]\ndealy = 5\n",
        r"bad\.toml:2:1: unknown key 'dealy' in \[build\]; did you mean 'delay'\?",
    ),
    ("[build]\ndelay = [1]\n", r"bad\.toml:2:1: build\.delay: .*; write milliseconds"),
    ('[build]\nkill_delay = "-2s"\n', r"bad\.toml:2:1: build\.kill_delay: .*negative"),
    ('root = "missing"\n', r"bad\.toml:1:1: root directory 'missing' does not exist"),
    ('[build]\nsend_interrupt = "yes please"\n', r"bad\.toml:2:1: build\.send_interrupt"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_bad_config_is_one_line_and_exit_2_with_nothing_started(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "app.py").write_text("open('STARTED', 'w').close()\n")
    (tmp_path / "bad.toml").write_text(text)
    result = run_pyair("-c", "bad.toml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "STARTED").exists()


def test_unknown_flag_suggests_the_key(tmp_path: Path) -> None:
    result = run_pyair("--build.dealy", "5", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "unknown option --build.dealy; did you mean --build.delay?"
