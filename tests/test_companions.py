"""End to end: air's [[build.rules]] and pyair's [[process]] entries under a real pyair.

Small stand-ins play the real tools: ``compile_css.py`` a stylesheet compiler, ``worker.py`` a
Celery-style worker that loads ``tasks.py``, ``watch_assets.py`` a ``tailwindcss --watch``,
``crash.py`` a process that dies at once, ``chatty.py`` a flood of output.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
from pathlib import Path

from support import APPS, PyairRun, free_port, http_get, pid_alive, stays, wait_until

from supervisor.process import tree_pids

HERE = APPS / "companions"


def make_project(tmp_path: Path) -> Path:
    shutil.copy(APPS / "web_app.py", tmp_path / "app.py")
    for name in ("worker.py", "tasks.py", "watch_assets.py", "compile_css.py", "crash.py"):
        shutil.copy(HERE / name, tmp_path / name)
    shutil.copy(HERE / "chatty.py", tmp_path / "chatty.py")
    (tmp_path / "styles").mkdir()
    (tmp_path / "styles" / "site.scss").write_text("$brand: red;\nh1 { color: $brand; }\n")
    return tmp_path


def config(port: int, *tables: str, build: str = "") -> str:
    return "\n".join(
        [
            "[build]",
            'full_bin = "python app.py"',
            f'ready_url = "http://127.0.0.1:{port}/"',
            'kill_delay = "2s"',
            build,
            "",
            "[env]",
            f'PORT = "{port}"',
            "",
            *tables,
        ]
    )


CSS_RULE = """
[[build.rules]]
name = "css"
cmd = "python compile_css.py"
include_dir = ["styles"]
include_ext = ["scss"]
delay = 50
"""
WORKER = """
[[process]]
name = "worker"
cmd = "python worker.py"
"""
ASSETS = """
[[process]]
name = "assets"
cmd = "python watch_assets.py"
restart = "never"
"""


def app_pid(port: int) -> int:
    body = wait_until(lambda: http_get(port), message="the app to answer")
    return int(body.split("pid=")[1].split()[0])


def read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def lines(path: Path) -> list[str]:
    return read(path).split()


# --------------------------------------------------------------------------- build rules


def test_a_rule_compiles_a_stylesheet_on_save_without_restarting_the_app(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    port = free_port()
    # styles/ is in exclude_dir: the rule's include_dir is watched all the same (as in air)
    text = config(port, CSS_RULE, build='exclude_dir = ["styles", "tmp"]')
    with PyairRun(project, text) as run:
        run.wait_for_log(r"ready in")
        pid = app_pid(port)
        (project / "styles" / "site.scss").write_text("$brand: teal;\nh1 { color: $brand; }\n")
        wait_until(lambda: "color: teal" in read(project / "static" / "site.css"), timeout=15,
                   message="the compiled stylesheet")  # fmt: skip
        run.wait_for_log(r"\[css\] done in \d+ ms")
        assert "build  [css] styles/site.scss changed: $ python compile_css.py" in run.log()
        assert app_pid(port) == pid
        assert stays(lambda: run.count(r"ready in") == 1, seconds=0.5)  # no restart at all
        assert lines(project / "starts.log") == [str(pid)]


def test_a_failing_rule_is_reported_and_the_app_keeps_serving(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    port = free_port()
    broken = CSS_RULE.replace("python compile_css.py", "echo 'styles/site.scss:2: bad' >&2; exit 3")
    with PyairRun(project, config(port, broken)) as run:
        run.wait_for_log(r"ready in")
        pid = app_pid(port)
        (project / "styles" / "site.scss").write_text("h1 { color: ; }\n")
        failed = run.wait_for_log(r"\[css\] failed \(exit 3\) in \d+ ms[^\n]*")
        assert failed.endswith(": styles/site.scss:2: bad")
        assert "[css] styles/site.scss:2: bad" in run.log()  # its output, as it came
        assert app_pid(port) == pid
        assert "styles/site.scss:2: bad" in read(project / "tmp" / "build-errors.log")


def test_a_burst_of_20_matching_files_runs_the_rule_once_or_once_more(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    port = free_port()
    with PyairRun(project, config(port, CSS_RULE.replace("delay = 50", "delay = 300"))) as run:
        run.wait_for_log(r"ready in")
        for i in range(20):
            (project / "styles" / f"part_{i}.scss").write_text(f"$c{i}: {i};\n")
        wait_until(lambda: lines(project / "runs.log"), timeout=15, message="a run")
        assert stays(lambda: len(lines(project / "runs.log")) <= 2, seconds=1.5)
        assert lines(project / "runs.log")[-1] == "21"  # the last run saw every file
        assert run.count(r"ready in") == 1


def test_a_generated_py_file_restarts_the_app(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    port = free_port()
    codegen = """
[[build.rules]]
name = "client"
cmd = "python -c \\"open('client_gen.py', 'w').write('API = 2')\\""
include_file = ["openapi.yaml"]
delay = 20
"""
    (project / "openapi.yaml").write_text("openapi: 3.1.0\n")
    with PyairRun(project, config(port, codegen, build='include_ext = ["py", "yaml"]')) as run:
        run.wait_for_log(r"ready in")
        pid = app_pid(port)
        (project / "openapi.yaml").write_text("openapi: 3.1.0\ninfo: {}\n")
        run.wait_for_log(r"client_gen\.py changed")  # what the rule wrote, not its input
        wait_until(lambda: len(lines(project / "starts.log")) == 2, message="the restart")
        assert app_pid(port) != pid
        assert "openapi.yaml changed\n" not in run.log().replace("changed: $", "")


# --------------------------------------------------------------------------- processes


def test_a_worker_restarts_on_py_changes_with_the_new_code(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    port = free_port()
    with PyairRun(project, config(port, WORKER)) as run:
        state = project / "worker.state"
        first = wait_until(lambda: read(state).split(), message="the worker").copy()
        assert first[1] == "1"
        run.wait_for_log(r"worker +worker ready pid=\d+ tasks=1")
        run.wait_for_log(r"worker +waiting for tasks\.\.\.")  # an unfinished line, shown
        (project / "tasks.py").write_text('VERSION = "2"\n')
        second = wait_until(
            lambda: (s := read(state).split()) and s[1] == "2" and s, message="the new worker"
        )
        assert second[0] != first[0]
        assert not pid_alive(int(first[0]))
        run.wait_for_log(r"worker +started pid \d+ \(with the app\)")


def test_a_watcher_process_keeps_running_across_app_restarts(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    port = free_port()
    with PyairRun(project, config(port, ASSETS)) as run:
        pid = int(wait_until(lambda: read(project / "assets.pid"), message="the watcher"))
        run.wait_for_log(r"assets +assets: watching")  # its stderr, under its own label
        app = app_pid(port)
        (project / "app.py").write_text((project / "app.py").read_text().replace('"1"', '"2"'))
        wait_until(lambda: app_pid(port) != app, message="the app's restart")
        assert int(read(project / "assets.pid")) == pid and pid_alive(pid)
        assert run.count(r"assets +started pid") == 1


def test_a_crashing_process_is_retried_with_back_off_while_the_app_serves(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    port = free_port()
    crash = '[[process]]\nname = "flaky"\ncmd = "python crash.py"\nrestart = "never"\n'
    with PyairRun(project, config(port, crash, build="rerun_delay = 100")) as run:
        run.wait_for_log(r"flaky +exited with code 3; rerun in 400 ms", timeout=20)
        for delay in (100, 200):
            assert f"flaky  exited with code 3; rerun in {delay} ms" in run.log()
        assert "flaky  crashing" in run.log()
        starts = [float(t) for t in lines(project / "crashes.log")]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # the back-off, measured from outside
        assert http_get(port) is not None and len(lines(project / "starts.log")) == 1


def test_a_chatty_process_neither_blocks_pyair_nor_is_blocked(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    port = free_port()
    chatty = '[[process]]\nname = "chatty"\ncmd = "python chatty.py"\nrestart = "never"\n'
    with PyairRun(project, config(port, chatty)) as run:
        run.wait_for_log(r"ready in")
        run.wait_for_log(r"chatty +\d+ x{60}")
        app = app_pid(port)
        (project / "app.py").write_text((project / "app.py").read_text().replace('"1"', '"2"'))
        wait_until(lambda: app_pid(port) != app, timeout=10, message="the restart, in a flood")
        size = (project / "pyair.log").stat().st_size
        wait_until(lambda: (project / "pyair.log").stat().st_size > size + 100_000,
                   message="the flood going on")  # fmt: skip


def _all_pids(project: Path) -> set[int]:
    pids = {int(read(project / name).split()[0]) for name in ("worker.state", "assets.pid")}
    return pids | {int(read(project / "worker.child")), *map(int, lines(project / "starts.log"))}


def _supervised(project: Path, port: int) -> PyairRun:
    worker = WORKER + '[process.env]\nSPAWN_CHILD = "1"\n'
    return PyairRun(project, config(port, worker, ASSETS, CSS_RULE))


def _wait_for_everything(project: Path, run: PyairRun) -> set[int]:
    run.wait_for_log(r"ready in")
    for name in ("worker.state", "worker.child", "assets.pid"):
        wait_until(lambda name=name: read(project / name), message=name)
    pids = _all_pids(project)
    assert len(pids) == 4 and all(pid_alive(pid) for pid in pids)
    return pids


def test_ctrl_c_leaves_no_process_of_any_of_them(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with _supervised(project, free_port()) as run:
        pids = _wait_for_everything(project, run)
        run.signal(signal.SIGINT)
        assert run.wait() == 0
    assert [pid for pid in pids if pid_alive(pid)] == []


def test_sigkill_of_pyair_leaves_no_process_of_any_of_them(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with _supervised(project, free_port()) as run:
        pids = _wait_for_everything(project, run)
        run.signal(signal.SIGKILL)
        run.wait()
        wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout=5,
                   message="the guardian to kill every tree")  # fmt: skip


def test_each_process_is_its_own_tree_under_the_session(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with _supervised(project, free_port()) as run:
        _wait_for_everything(project, run)
        worker = int(read(project / "worker.state").split()[0])
        environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
        token = next(v for v in environ if v.startswith(b"PYAIR_TREE=")).decode()[11:]
        session, _, own = token.rpartition("/")
        assert own == "proc-worker-1"
        assert worker in tree_pids(token) and worker in tree_pids(session)
        assert os.getsid(worker) == worker  # leads its own session: stopped as one group
        assert b"PYTHONUNBUFFERED=1" in environ
        assert not any(v.startswith(b"PYAIR_CONTROL=") for v in environ)  # no template agent
