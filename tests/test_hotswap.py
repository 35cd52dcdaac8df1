"""Template hot-swap end to end: real apps supervised by a real ``pyair`` subprocess.

Each test copies one ``tests/apps/hotswap_*`` app into tmp_path, writes an .air.toml, starts
pyair (``-d``, so the log says when the in-app agent connects), edits files the way an editor
does and GETs the app. A swap must serve the new HTML from the same pid; children without an
agent (node, ``python -S`` under a shell) fall back to a restart with a one-line notice, or
keep running with ``on_no_agent = "ignore"``.

The soak test (``make soak``) swaps 1,000 times in a row and checks every swap, the app's fds
and threads and pyair's memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import APPS, PyairRun, free_port, http_get, stays, wait_until

NODE = shutil.which("node") or ("/usr/bin/node" if os.access("/usr/bin/node", os.X_OK) else None)
SWAPPED = r"swapped {name} in [\d.]+ ms \(pid (\d+), no restart\)"
NO_AGENT_RESTART = r"templates/page\.html changed; not swapped \(no agent\): restarting"
NO_AGENT_IGNORED = r"templates/page\.html changed; not swapped \(no agent\), ignored"


def air_toml(port: int, full_bin: str, extra: str = "", env: str = "") -> str:
    return f"""
[build]
full_bin = "{full_bin}"
ready_url = "http://127.0.0.1:{port}/"
kill_delay = "2s"
{extra}
[env]
PORT = "{port}"
{env}
"""


def pid_in(body: str) -> int:
    found = re.search(r"pid=(\d+)", body)
    assert found is not None, body
    return int(found[1])


@dataclass
class Supervised:
    """One app under a real pyair: its project copy, its port and pyair's log."""

    run: PyairRun
    dir: Path
    port: int

    def get(self, path: str = "/") -> str | None:
        return http_get(self.port, path)

    def serving(self, needle: str, path: str = "/", timeout: float = 10.0) -> str:
        """The first body of ``path`` that contains ``needle`` (fails after ``timeout``)."""

        def body() -> str | None:
            text = self.get(path)
            return text if text is not None and needle in text else None

        return wait_until(body, timeout=timeout, message=f"{needle!r} served at {path}")

    def edit(self, rel: str, old: str, new: str) -> Path:
        """Replace ``old`` with ``new`` in a project file (truncate + write, as editors do)."""
        path = self.dir / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))
        return path

    def starts(self) -> list[int]:
        path = self.dir / "starts.log"
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []


@contextmanager
def supervised(
    tmp_path: Path,
    app: str,
    full_bin: str,
    *,
    agent: bool = True,
    extra: str = "",
    env: str = "",
) -> Iterator[Supervised]:
    """pyair supervising a copy of ``tests/apps/<app>``, ready (and its agent connected)."""
    project = tmp_path / "project"
    shutil.copytree(APPS / app, project, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    with PyairRun(project, air_toml(port, full_bin, extra, env), "-d") as run:
        run.wait_for_log(r"ready in \d+ ms", timeout=20)
        if agent:
            run.wait_for_log(r"control: agent connected")
        yield Supervised(run, project, port)


# --- (a) plain Jinja2 on http.server ----------------------------------------------------------


def test_jinja_template_edit_swaps_with_the_same_pid(tmp_path: Path) -> None:
    with supervised(tmp_path, "hotswap_jinja", "python app.py") as app:
        before = app.serving("page v1")
        pid = pid_in(before)

        app.edit("templates/page.html", "page v1", "page v2")
        after = app.serving("page v2")  # the module-level PAGE object, updated in place
        assert pid_in(after) == pid
        assert int(app.run.wait_for_log(SWAPPED.format(name=r"page\.html"))) == pid

        # a base template edit reaches every child: the kept PAGE and a fresh get_template
        app.edit("templates/base.html", "footer v1", "footer v2")
        child = app.serving("footer v2", "/child")
        assert "child v1" in child and pid_in(child) == pid
        page = app.serving("footer v2")
        assert "page v2" in page and pid_in(page) == pid
        app.run.wait_for_log(SWAPPED.format(name=r"base\.html"))
        assert app.starts() == [pid]
        assert app.run.count(r"changed") == 0  # no "... changed" restart line at all


def test_jinja_syntax_error_keeps_the_old_html_and_the_fix_swaps(tmp_path: Path) -> None:
    with supervised(tmp_path, "hotswap_jinja", "python app.py") as app:
        pid = pid_in(app.serving("page v1"))
        page = app.edit("templates/page.html", "<p>page v1</p>", "<p>page v2 {% if %}</p>")

        where = r"pyair  " + re.escape(f"{page.relative_to(app.dir)}:2: ")  # root-relative
        app.run.wait_for_log(where + r"Expected an expression.*the previous template keeps serving")
        log = app.run.log()
        assert re.search(r">\s+2 \| \{% block content %\}<p>page v2 \{% if %\}</p>", log), log
        body = app.get()
        assert body is not None and "page v1" in body and pid_in(body) == pid

        app.edit("templates/page.html", "{% if %}", "fixed")
        assert pid_in(app.serving("page v2 fixed")) == pid
        app.run.wait_for_log(SWAPPED.format(name=r"page\.html"))
        assert app.starts() == [pid]


def test_jinja_py_edit_still_restarts(tmp_path: Path) -> None:
    with supervised(tmp_path, "hotswap_jinja", "python app.py") as app:
        pid = pid_in(app.serving("page v1"))
        app.edit("app.py", "PAGE = env", "PAGE: jinja2.Template = env")
        wait_until(lambda: len(app.starts()) == 2, message="a new app process")
        new_pid = pid_in(app.serving("page v1"))
        assert new_pid != pid and app.starts() == [pid, new_pid]
        app.run.wait_for_log(r"watch\s+app\.py changed")
        app.run.wait_for_log(r"control: agent connected", count=2)  # the new app swaps too
        app.edit("templates/page.html", "page v1", "page v2")
        assert pid_in(app.serving("page v2")) == new_pid


# --- (b) Flask, (c) Django, (d) a custom engine ------------------------------------------------


def test_flask_app_run_without_reloader_swaps(tmp_path: Path) -> None:
    with supervised(tmp_path, "hotswap_flask", "python app.py") as app:
        pid = pid_in(app.serving("flask page v1"))
        app.edit("templates/page.html", "flask page v1", "flask page v2")
        assert pid_in(app.serving("flask page v2")) == pid
        app.edit("templates/base.html", "flask footer v1", "flask footer v2")
        body = app.serving("flask footer v2")
        assert "flask page v2" in body and pid_in(body) == pid
        app.run.wait_for_log(SWAPPED.format(name=r"\S+\.html"), count=2)


def test_an_app_forked_by_the_zygote_swaps_templates_too(tmp_path: Path) -> None:
    """The zygote starts the agent in the child it forks, as site would in a cold start."""
    with supervised(tmp_path, "hotswap_flask", "python app.py") as app:
        app.run.wait_for_log(r"preload: zygote \d+ \(pid \d+\) is warm", timeout=30)
        app.edit("app.py", "import os\n", "import os  # edited: a restart\n")
        warm = int(app.run.wait_for_log(r"pid (\d+) ready in \d+ ms \(warm", timeout=30))
        app.run.wait_for_log(rf"control: agent connected \(pid {warm}")
        app.edit("templates/page.html", "flask page v1", "flask page v2")
        assert pid_in(app.serving("flask page v2")) == warm
        assert int(app.run.wait_for_log(SWAPPED.format(name=r"page\.html"))) == warm


def test_django_runserver_noreload_swaps(tmp_path: Path) -> None:
    full_bin = "python manage.py runserver --noreload 127.0.0.1:$PORT"
    with supervised(tmp_path, "hotswap_django", full_bin) as app:
        pid = pid_in(app.serving("django page v1"))
        page = app.edit("templates/page.html", "django page v1", "django page v2")
        assert pid_in(app.serving("django page v2")) == pid
        app.edit("templates/base.html", "django footer v1", "django footer v2")
        body = app.serving("django footer v2")
        assert "django page v2" in body and pid_in(body) == pid

        app.edit("templates/page.html", "{% endblock %}", "{% if %}{% endblock %}")
        rel = page.relative_to(app.dir)
        app.run.wait_for_log(re.escape(f"  {rel}:2: ") + r".*the previous template keeps serving")
        body = app.get()
        assert body is not None and "django page v2" in body and pid_in(body) == pid
        app.run.wait_for_log(SWAPPED.format(name=r"\S+\.html"), count=2)


def test_custom_engine_registered_by_the_app_swaps(tmp_path: Path) -> None:
    extra = '[templates]\ninclude_ext = ["html", "tpl"]'
    with supervised(tmp_path, "agent_custom", "python app.py", extra=extra) as app:
        pid = pid_in(app.serving("custom page v1"))
        app.edit("templates/page.tpl", "custom page v1", "custom page v2")
        assert pid_in(app.serving("custom page v2")) == pid
        app.run.wait_for_log(SWAPPED.format(name=r"page\.tpl"))

        page = app.edit("templates/page.tpl", "pid=$pid", "pid=$pid $ 5")
        app.run.wait_for_log(re.escape(f"  {page.relative_to(app.dir)}:2: invalid placeholder"))
        body = app.get()
        assert body is not None and "custom page v2" in body and pid_in(body) == pid


# --- (e) children without an agent: a restart, announced in one line ---------------------------


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_node_child_falls_back_to_a_restart(tmp_path: Path) -> None:
    with supervised(tmp_path, "hotswap_node", f"{NODE} server.js", agent=False) as app:
        pid = pid_in(app.serving("node page v1"))
        app.edit("templates/page.html", "node page v1", "node page v2")
        assert pid_in(app.serving("node page v2")) != pid
        app.run.wait_for_log(NO_AGENT_RESTART)
        notices = [line for line in app.run.log().splitlines() if "not swapped" in line]
        assert len(notices) == 1, notices
        assert app.run.count(r"agent connected") == 0


def test_shell_child_falls_back_to_a_restart(tmp_path: Path) -> None:
    full_bin = "sh -c 'exec python -S serve.py'"  # quotes: pyair runs it through /bin/sh
    with supervised(tmp_path, "hotswap_nosite", full_bin, agent=False) as app:
        pid = pid_in(app.serving("shell page v1"))
        app.edit("templates/page.html", "shell page v1", "shell page v2")
        new_pid = pid_in(app.serving("shell page v2"))
        assert new_pid != pid and app.starts() == [pid, new_pid]
        app.run.wait_for_log(NO_AGENT_RESTART)
        notices = [line for line in app.run.log().splitlines() if "not swapped" in line]
        assert len(notices) == 1, notices


# --- (f) the app's own sitecustomize, (g) on_no_agent = "ignore" -------------------------------


def test_apps_own_sitecustomize_still_runs_under_pyair(tmp_path: Path) -> None:
    usersite = APPS / "hotswap_usersite"
    env = f'PYTHONPATH = "{usersite}"'
    with supervised(tmp_path, "hotswap_jinja", "python app.py", env=env) as app:
        body = app.serving("page v1")
        pid = pid_in(body)
        assert f"site=ran-{pid}-agent-armed" in body  # ran, in the app, after the agent
        app.edit("templates/page.html", "page v1", "page v2")
        after = app.serving("page v2")
        assert pid_in(after) == pid and f"site=ran-{pid}-" in after


def test_on_no_agent_ignore_does_not_restart(tmp_path: Path) -> None:
    full_bin = "sh -c 'exec python -S serve.py'"
    extra = '[templates]\non_no_agent = "ignore"'
    with supervised(tmp_path, "hotswap_nosite", full_bin, agent=False, extra=extra) as app:
        pid = pid_in(app.serving("shell page v1"))
        app.edit("templates/page.html", "shell page v1", "shell page v2")
        app.run.wait_for_log(NO_AGENT_IGNORED)
        assert stays(lambda: app.starts() == [pid], seconds=0.5)
        body = app.get()
        assert body is not None and "shell page v1" in body and pid_in(body) == pid
        assert app.run.count(r"restarting|ready in") == 1  # the first start only


# --- soak: 1,000 swaps in a row ----------------------------------------------------------------


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_soak_1000_swaps_in_a_row(tmp_path: Path) -> None:
    warmup, swaps = 50, 1000
    with supervised(tmp_path, "hotswap_jinja", "python app.py") as app:
        pid = pid_in(app.serving("page v1"))
        page = app.dir / "templates" / "page.html"
        pattern = SWAPPED.format(name=r"page\.html")

        head = '{% extends "base.html" %}{% block content %}'

        def swap(i: int) -> float:
            started = time.perf_counter()
            page.write_text(f"{head}<p>r{i}</p>{{% endblock %}}")
            app.serving(f"<p>r{i}</p>")
            return (time.perf_counter() - started) * 1000

        for i in range(warmup):
            swap(i)
        app.run.wait_for_log(pattern, count=warmup)
        fds, threads, rss = _fds(pid), _threads(pid), _rss_kb(app.run.pid)
        pyair_fds = _fds(app.run.pid)
        started = time.monotonic()
        times = [swap(warmup + i) for i in range(swaps)]
        elapsed = time.monotonic() - started
        app.run.wait_for_log(pattern, count=warmup + swaps)
        # the last request's handler thread (and its socket) may still be finishing
        with contextlib.suppress(AssertionError):
            wait_until(lambda: _threads(pid) <= threads and _fds(pid) <= fds, timeout=2)
        fds_after, threads_after, rss_after = _fds(pid), _threads(pid), _rss_kb(app.run.pid)
        pyair_fds_after = _fds(app.run.pid)

        swapped = app.run.count(pattern)
        times.sort()
        sys.stderr.write(
            f"\nsoak: {swaps} swaps in {elapsed:.1f} s, {swapped - warmup} acked; "
            f"save->served median {times[len(times) // 2]:.1f} ms, "
            f"p95 {times[int(len(times) * 0.95)]:.1f} ms, max {times[-1]:.1f} ms; "
            f"app fds {fds} -> {fds_after}, threads {threads} -> {threads_after}; "
            f"pyair fds {pyair_fds} -> {pyair_fds_after}, "
            f"pyair VmRSS {rss} -> {rss_after} kB ({(rss_after - rss) / 1024:+.2f} MB)\n"
        )
        assert swapped == warmup + swaps, "every edit is one acked swap"
        assert app.starts() == [pid] and app.run.count(r"not swapped|keeps serving") == 0
        assert fds_after <= fds + 2, (fds, fds_after)
        assert threads_after <= threads + 1, (threads, threads_after)
        assert pyair_fds_after <= pyair_fds + 2, (pyair_fds, pyair_fds_after)
        assert rss_after - rss < 5 * 1024, (rss, rss_after)
