"""The agent end to end, without the engine: real apps in real subprocesses, a real
ControlServer, real HTTP. Each app is copied to tmp_path, started with PYTHONPATH=bootstrap dir
and PYAIR_CONTROL=server.path; the test edits a template, calls server.swap() and GETs the page.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import psutil
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisor import control, protocol
from supervisor.agent import bootstrap_dir
from supervisor.control import ControlServer

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parent.parent
APPS = REPO / "tests" / "apps"
BOOTSTRAP = str(bootstrap_dir())


class Log(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


def in_my_tree(pid: int) -> bool:
    """What the engine's is_member does: the pid descends from us."""
    try:
        return any(p.pid == os.getpid() for p in psutil.Process(pid).parents())
    except psutil.Error:
        return False


@pytest.fixture
async def server() -> AsyncIterator[ControlServer]:
    async with ControlServer(is_member=in_my_tree, log=Log()) as srv:
        yield srv


@dataclass
class App:
    proc: anyio.abc.Process
    dir: Path
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def template(self, name: str) -> Path:
        return self.dir / "templates" / name

    def edit(self, name: str, old: str, new: str) -> str:
        path = self.template(name)
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new))
        return str(path)

    async def get(self, path: str = "/") -> str:
        def fetch() -> str:
            url = f"http://127.0.0.1:{self.port}{path}"
            with urllib.request.urlopen(url, timeout=5) as resp:
                return str(resp.read().decode())

        return await anyio.to_thread.run_sync(fetch)


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(control_path: str, *extra_path: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYAIR_AGENT_DEBUG")}
    env["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP, *extra_path])
    env["PYAIR_CONTROL"] = control_path
    env["PYAIR_PID"] = str(os.getpid())  # the server listens in this process
    env.update(extra)
    return env


@asynccontextmanager
async def running(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    ready: bytes,
    stdin: int | None = None,
) -> AsyncIterator[tuple[anyio.abc.Process, bytes]]:
    """Start ``cmd``; wait (with a deadline) for a stdout line starting with ``ready``."""
    proc = await anyio.open_process(list(cmd), cwd=cwd, env=env, stdin=stdin, stderr=None)
    try:
        assert proc.stdout is not None
        reader = BufferedByteReceiveStream(proc.stdout)
        with anyio.fail_after(20):
            while not (line := await reader.receive_until(b"\n", 10_000)).startswith(ready):
                pass
        yield proc, line
    finally:
        if proc.returncode is None:
            proc.terminate()
            with anyio.move_on_after(5):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await proc.aclose()


@asynccontextmanager
async def app(
    name: str,
    tmp_path: Path,
    control_path: str,
    *,
    script: str = "app.py",
    extra_path: Sequence[str] = (),
    **extra_env: str,
) -> AsyncIterator[App]:
    where = tmp_path / name
    shutil.copytree(APPS / name, where, ignore=shutil.ignore_patterns("__pycache__"))
    env = child_env(control_path, *extra_path, **extra_env)
    async with running([sys.executable, script], cwd=where, env=env, ready=b"PORT ") as (
        proc,
        line,
    ):
        yield App(proc, where, int(line.split()[1]))


async def connected(server: ControlServer, app: App, engine: str) -> None:
    assert await server.wait_for_agent(10), "the agent never said hello"
    info = server.agent
    assert info is not None
    assert info.pid == app.pid
    assert engine in info.engines


# --- Jinja2 ----------------------------------------------------------------------------------


async def test_jinja_kept_template_swaps_in_place(server: ControlServer, tmp_path: Path) -> None:
    async with app("agent_jinja", tmp_path, server.path) as a:
        await connected(server, a, "jinja2")
        before = await a.get("/")
        assert "page v1" in before and f"pid={a.pid}" in before

        page = a.edit("page.html", "page v1", "page v2")
        result = await server.swap([page], timeout_ms=5000)
        assert result.ok, result
        assert result.names == ("page.html",)
        assert result.unclaimed == ()
        after = await a.get("/")  # the module-level PAGE object, auto_reload=False
        assert "page v2" in after and f"pid={a.pid}" in after
        assert a.proc.returncode is None


async def test_jinja_base_edit_reaches_children(server: ControlServer, tmp_path: Path) -> None:
    async with app("agent_jinja", tmp_path, server.path) as a:
        await connected(server, a, "jinja2")
        assert "footer v1" in await a.get("/child")
        assert "part v1" in await a.get("/child")

        base = a.edit("base.html", "footer v1", "footer v2")
        part = a.edit("part.html", "part v1", "part v2")
        result = await server.swap([base, part], timeout_ms=5000)
        assert result.ok, result
        assert set(result.names) == {"base.html", "part.html"}
        child = await a.get("/child")
        assert "footer v2" in child and "part v2" in child and "child v1" in child
        assert "footer v2" in await a.get("/")  # the kept page's parent too


async def test_jinja_syntax_error_is_all_or_nothing_then_the_fix_swaps(
    server: ControlServer, tmp_path: Path
) -> None:
    async with app("agent_jinja", tmp_path, server.path) as a:
        await connected(server, a, "jinja2")
        await a.get("/child")  # load part.html
        part = a.edit("part.html", "part v1", "part v2")
        page = a.edit("page.html", "<p>page v1</p>", "<p>page v2 {% if %}</p>")
        result = await server.swap([part, page], timeout_ms=5000)
        assert not result.ok and result.reason == control.TEMPLATE_ERROR
        assert not result.fallback
        assert result.error is not None
        assert result.error.file == page
        assert result.error.line == 2
        assert "expected an expression" in result.error.message.lower()
        assert "page v1" in await a.get("/")  # old templates keep serving...
        assert "part v1" in await a.get("/child")  # ...including the valid one (all or nothing)

        a.edit("page.html", "{% if %}", "fixed")
        result = await server.swap([part, page], timeout_ms=5000)
        assert result.ok, result
        assert "page v2 fixed" in await a.get("/")
        assert "part v2" in await a.get("/child")


async def test_jinja_auto_reload_edit_with_the_same_mtime(
    server: ControlServer, tmp_path: Path
) -> None:
    """auto_reload compares mtimes with ==, so an edit that keeps the mtime stays stale
    (FIELD-NOTES §5): the swap does not depend on mtimes."""
    async with app("agent_jinja", tmp_path, server.path, AGENT_TEST_AUTO_RELOAD="1") as a:
        await connected(server, a, "jinja2")
        assert "child v1" in await a.get("/child")
        child = a.template("child.html")
        stamp = child.stat()
        a.edit("child.html", "child v1", "child v2")
        os.utime(child, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        assert "child v1" in await a.get("/child")  # what Jinja2 alone does
        assert (await server.swap([str(child)], timeout_ms=5000)).ok
        assert "child v2" in await a.get("/child")


async def test_with_auto_reload_the_project_templates_wait_for_pyair(
    server: ControlServer, tmp_path: Path
) -> None:
    """Jinja's own check would read a saved file at once (and a broken one would answer
    500): under the project root, the cached template serves until pyair swaps it."""
    root = str(tmp_path / "agent_jinja")
    reload = {"AGENT_TEST_AUTO_RELOAD": "1", "PYAIR_ROOT": root, "PYAIR_TEMPLATE_EXT": "html"}
    async with app("agent_jinja", tmp_path, server.path, **reload) as a:
        await connected(server, a, "jinja2")
        assert "child v1" in await a.get("/child")
        child = a.edit("child.html", "child v1", "child v2")
        assert "child v1" in await a.get("/child")  # saved, not swapped yet: still the old one
        assert (await server.swap([child], timeout_ms=5000)).ok
        assert "child v2" in await a.get("/child")


async def test_templates_outside_the_project_still_auto_reload(
    server: ControlServer, tmp_path: Path
) -> None:
    """A library's templates (outside the root) are not pyair's: Jinja's check stays."""
    elsewhere = str(tmp_path / "another-project")
    reload = {"AGENT_TEST_AUTO_RELOAD": "1", "PYAIR_ROOT": elsewhere, "PYAIR_TEMPLATE_EXT": "html"}
    async with app("agent_jinja", tmp_path, server.path, **reload) as a:
        await connected(server, a, "jinja2")
        assert "child v1" in await a.get("/child")
        a.edit("child.html", "child v1", "child v2")
        assert "child v2" in await a.get("/child")  # no swap: Jinja re-read it


async def test_a_template_broken_before_its_first_render_serves_its_last_good_text(
    server: ControlServer, tmp_path: Path
) -> None:
    root = str(tmp_path / "agent_jinja")
    reload = {"AGENT_TEST_AUTO_RELOAD": "1", "PYAIR_ROOT": root, "PYAIR_TEMPLATE_EXT": "html"}
    async with app("agent_jinja", tmp_path, server.path, **reload) as a:
        await connected(server, a, "jinja2")
        good = a.template("child.html").read_text()
        child = a.edit("child.html", "child v1", "child v2 {% if %}")  # never rendered yet
        result = await server.swap([child], timeout_ms=5000, sources={child: good})
        assert result.reason == control.TEMPLATE_ERROR and result.error is not None
        assert result.error.file == child
        page = await a.get("/child")
        assert "child v1" in page and "{% if %}" not in page
        a.edit("child.html", "child v2 {% if %}", "child v3")
        assert (await server.swap([child], timeout_ms=5000)).ok
        assert "child v3" in await a.get("/child")


RELOADERS_CHECK = """
import json, sys
import werkzeug, werkzeug.serving, flask.cli, django.utils.autoreload as dj, uvicorn.config as uc
calls = []
def fake(*args, **kwargs):
    calls.append([list(args[3:]), kwargs])
werkzeug.serving.run_simple = werkzeug.run_simple = flask.cli.run_simple = fake
from supervisor.agent import _reloaders, _runtime
for module in (werkzeug.serving, dj, uc):
    _reloaders.switch_off(module)
werkzeug.serving.run_simple("h", 1, "app", True, True)  # as app.run() passes them
flask.cli.run_simple("h", 1, "app", use_reloader=True, use_debugger=True)  # flask run --debug
ran = dj.run_with_reloader(lambda *a, **k: ["inner_run", a, k], 1, use_threading=True)
config = uc.Config("main:app", reload=True)
print(json.dumps({
    "calls": calls,
    "rebound": werkzeug.run_simple is werkzeug.serving.run_simple is flask.cli.run_simple,
    "django": ran, "uvicorn": config.should_reload, "notes": _runtime._notes,
}))
"""


def test_the_frameworks_reloaders_are_switched_off_and_say_so() -> None:
    out = subprocess.run(
        [sys.executable, "-c", RELOADERS_CHECK],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["calls"] == [  # the debugger stays on, the reloader goes
        [[False, True], {}],
        [[], {"use_reloader": False, "use_debugger": True}],
    ]
    assert report["rebound"]  # werkzeug and flask.cli bound it at import: they got the new one
    assert report["django"] == ["inner_run", [1], {"use_threading": True}]  # in this process
    assert report["uvicorn"] is False
    assert [note.split(":")[0] for note in report["notes"]] == [
        "Werkzeug's reloader is off",
        "Django's autoreloader is off",
        "uvicorn's --reload is off",
    ]


async def test_uvicorn_stops_at_once_yet_finishes_what_is_in_flight(
    server: ControlServer, tmp_path: Path
) -> None:
    """Its fixed pauses end early under the agent; its lifespan and requests still finish."""
    where = tmp_path / "agent_uvicorn"
    shutil.copytree(APPS / "agent_uvicorn", where)
    port = free_tcp_port()
    cmd = [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)]
    env = child_env(server.path, PORT=str(port))
    async with running(cmd, cwd=where, env=env, ready=b"PORT ") as (proc, _line):
        assert await server.wait_for_agent(10)
        # PORT is printed by the lifespan's startup, before uvicorn binds: wait for the port
        with anyio.fail_after(10):
            while True:
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await anyio.sleep(0.005)  # poll

        def slow() -> int:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/slow", timeout=10) as resp:
                return int(resp.status)

        async with anyio.create_task_group() as tg:
            answers: list[int] = []

            async def ask() -> None:
                answers.append(await anyio.to_thread.run_sync(slow))

            tg.start_soon(ask)
            with anyio.fail_after(10):
                while not (where / "slow.started").exists():
                    await anyio.sleep(0.005)  # poll
            proc.terminate()  # while /slow is answering
        assert answers == [200]  # the request in flight finished
        with anyio.fail_after(10):
            assert await proc.wait() is not None
    assert (where / "stopped").read_text() == "lifespan shutdown ran"


def test_jinja_loaders_overlays_and_kept_templates(tmp_path: Path) -> None:
    """Every loader kind in one process, through the agent's swap (no socket)."""
    out = subprocess.run(
        [sys.executable, str(APPS / "agent_loaders" / "check.py"), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["before"]["kept"]["choice"] == "A1"

    ack = report["ack_all"]
    assert ack["ok"], ack
    assert set(ack["names"]) == {
        "page.html",
        "only_b.html",
        "pre/x.html",
        "f.html",
        "n.html",
        "p.html",
    }
    # b/page.html is shadowed by a/page.html; anon/ has no filenames (cache cleared instead)
    assert sorted(ack["unclaimed"]) == [
        str(tmp_path / "anon/c.html"),
        str(tmp_path / "b/page.html"),
    ]
    kept, fresh = report["after_all"]["kept"], report["after_all"]["fresh"]
    for key in ("choice", "choice_b", "prefix", "package", "func", "nocache", "named", "overlay"):
        assert kept[key].endswith("2"), key
        assert fresh[key].endswith("2"), key
    assert (kept["anon"], fresh["anon"]) == ("C1", "C2")
    assert kept["dict"] == fresh["dict"] == "D1"

    assert report["ack_shadowed"]["names"] == []
    assert report["after_shadowed"]["fresh"]["choice"] == "A2"

    error = report["ack_error"]
    assert not error["ok"]
    assert error["error"] == {
        "file": str(tmp_path / "pre/x.html"),
        "line": 2,
        "message": "Expected an expression, got 'end of statement block'",
    }
    after = report["after_error"]
    assert after["kept"]["choice"] == after["fresh"]["choice"] == "A2"  # the good file waited
    assert after["fresh"]["prefix"] == "X2"

    assert report["ack_deleted"]["names"] == ["only_b.html"]
    assert report["deleted_fresh"] == "not found"


async def test_jinja_unknown_file_is_reported_unclaimed(
    server: ControlServer, tmp_path: Path
) -> None:
    async with app("agent_jinja", tmp_path, server.path) as a:
        await connected(server, a, "jinja2")
        stray = tmp_path / "static" / "index.html"
        stray.parent.mkdir()
        stray.write_text("<p>not a template of this app</p>")
        result = await server.swap([str(stray)], timeout_ms=5000)
        assert result.ok and result.names == () and result.unclaimed == (str(stray),)


async def test_flask(server: ControlServer, tmp_path: Path) -> None:
    async with app("agent_flask", tmp_path, server.path) as a:
        assert "flask page v1" in await a.get("/")  # app.jinja_env is created lazily
        await connected(server, a, "jinja2")
        page = a.edit("page.html", "flask page v1", "flask page v2")
        base = a.edit("base.html", "flask footer v1", "flask footer v2")
        result = await server.swap([page, base], timeout_ms=5000)
        assert result.ok, result
        body = await a.get("/")
        assert "flask page v2" in body and "flask footer v2" in body and f"pid={a.pid}" in body

        bad = a.edit("page.html", "{% endblock %}", "{% endblok %}")
        result = await server.swap([bad], timeout_ms=5000)
        assert result.reason == control.TEMPLATE_ERROR
        assert result.error is not None and result.error.file == bad and result.error.line == 2
        assert "flask page v2" in await a.get("/")


# --- Django, Mako, custom ----------------------------------------------------------------------


async def test_django(server: ControlServer, tmp_path: Path) -> None:
    async with app("agent_django", tmp_path, server.path, script="serve.py") as a:
        assert "django page v1" in await a.get("/")
        await connected(server, a, "django")
        assert "django page v1" in await a.get("/")  # cached loader: served from memory

        page = a.edit("page.html", "django page v1", "django page v2")
        result = await server.swap([page], timeout_ms=5000)
        assert result.ok, result
        assert result.names == ("page.html",)
        assert "django page v2" in await a.get("/")

        base = a.edit("base.html", "django footer v1", "django footer v2")
        assert (await server.swap([base], timeout_ms=5000)).ok
        body = await a.get("/")
        assert "django footer v2" in body and f"pid={a.pid}" in body

        bad = a.edit("page.html", "{% endblock %}", "{% if %}{% endblock %}")
        result = await server.swap([bad], timeout_ms=5000)
        assert result.reason == control.TEMPLATE_ERROR
        assert result.error is not None and result.error.file == bad and result.error.line == 2
        assert "django page v2" in await a.get("/")

        a.edit("page.html", "{% if %}", "")
        assert (await server.swap([bad], timeout_ms=5000)).ok
        assert "django page v2" in await a.get("/")


async def test_mako(server: ControlServer, tmp_path: Path) -> None:
    async with app("agent_mako", tmp_path, server.path) as a:
        await connected(server, a, "mako")
        assert "mako page v1" in await a.get("/")
        page = a.edit("page.html", "mako page v1", "mako page v2")
        base = a.edit("base.html", "mako footer v1", "mako footer v2")
        result = await server.swap([page, base], timeout_ms=5000)
        assert result.ok, result
        body = await a.get("/")
        assert "mako page v2" in body and "mako footer v2" in body

        bad = a.edit("page.html", "<p>", "<p>${")
        result = await server.swap([bad], timeout_ms=5000)
        assert result.reason == control.TEMPLATE_ERROR
        assert result.error is not None and result.error.file == bad and result.error.line == 2
        assert "mako page v2" in await a.get("/")


async def test_custom_engine_via_register(server: ControlServer, tmp_path: Path) -> None:
    async with app("agent_custom", tmp_path, server.path) as a:
        await connected(server, a, "custom")
        assert "custom page v1" in await a.get("/")
        page = str(a.template("page.tpl"))
        a.edit("page.tpl", "custom page v1", "custom page v2")
        result = await server.swap([page], timeout_ms=5000)
        assert result.ok and result.names == ("page.tpl",), result
        body = await a.get("/")
        assert "custom page v2" in body and f"pid={a.pid}" in body

        a.edit("page.tpl", "pid=$pid", "pid=$pid $ 5")
        result = await server.swap([page], timeout_ms=5000)
        assert result.reason == control.TEMPLATE_ERROR
        assert result.error == control.TemplateError(page, 2, "invalid placeholder")
        assert "custom page v2" in await a.get("/")


# --- start-up: sitecustomize chain, no agent ----------------------------------------------------


async def test_apps_own_sitecustomize_still_runs(server: ControlServer, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    usersite = str(APPS / "agent_usersite")
    async with app(
        "agent_jinja", tmp_path, server.path, extra_path=[usersite], AGENT_TEST_MARKER=str(marker)
    ) as a:
        await connected(server, a, "jinja2")
        info = json.loads(marker.read_text())
        assert info["name"] == "sitecustomize" and info["pid"] == a.pid
        assert info["file"] == str(APPS / "agent_usersite" / "sitecustomize.py")
        assert info["agent"] == "supervisor.agent"  # the agent was armed first
        assert BOOTSTRAP not in info["sys_path"]  # and the bootstrap left sys.path alone
        page = a.edit("page.html", "page v1", "page v2")
        assert (await server.swap([page], timeout_ms=5000)).ok
        assert "page v2" in await a.get("/")


async def test_another_supervisor_package_does_not_clash(
    server: ControlServer, tmp_path: Path
) -> None:
    """supervisord's package is also called ``supervisor``: the agent loads under an alias."""
    fake = tmp_path / "fake" / "supervisor"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("WHO = 'supervisord'\n")
    marker = tmp_path / "marker.txt"
    extra = [str(fake.parent), str(APPS / "agent_usersite")]
    async with app(
        "agent_jinja", tmp_path, server.path, extra_path=extra, AGENT_TEST_MARKER=str(marker)
    ) as a:
        await connected(server, a, "jinja2")
        info = json.loads(marker.read_text())
        assert info["agent"] == "_pyair_supervisor.agent"
        assert info["supervisor"] == str(fake / "__init__.py")
        page = a.edit("page.html", "page v1", "page v2")
        assert (await server.swap([page], timeout_ms=5000)).ok
        assert "page v2" in await a.get("/")


async def test_python_dash_S_child_never_says_hello(server: ControlServer, tmp_path: Path) -> None:
    env = child_env(server.path, AGENT_TEST_SITE_PACKAGES=sysconfig.get_paths()["purelib"])
    cmd = [sys.executable, "-S", str(APPS / "agent_nosite" / "app.py")]
    async with running(cmd, cwd=tmp_path, env=env, ready=b"READY", stdin=subprocess.PIPE):
        assert await server.wait_for_agent(0.5) is False  # jinja2 was imported, still silent
        result = await server.swap([str(tmp_path / "page.html")], timeout_ms=1000)
        assert (result.ok, result.reason, result.fallback) == (False, control.NO_AGENT, True)


async def test_shell_child_never_says_hello(server: ControlServer, tmp_path: Path) -> None:
    env = child_env(server.path)
    cmd = ["/bin/sh", "-c", "echo READY; exec cat"]
    async with running(cmd, cwd=tmp_path, env=env, ready=b"READY", stdin=subprocess.PIPE):
        assert await server.wait_for_agent(0.3) is False
        result = await server.swap([str(tmp_path / "page.html")], timeout_ms=1000)
        assert result.reason == control.NO_AGENT


def test_bootstrap_imports_nothing_until_an_engine_shows_up() -> None:
    code = "import sys; print(' '.join(sorted(sys.modules)))"
    plain = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env("/nonexistent/control.sock") | {"PYTHONPATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    armed = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env("/nonexistent/control.sock"),
        capture_output=True,
        text=True,
        check=True,
    )
    added = set(armed.stdout.split()) - set(plain.stdout.split())
    # childside: loaded by path for the variable's name, then the agent's copy too
    assert added == {
        "sitecustomize",
        "_pyair_childside",
        "supervisor",
        "supervisor.childside",
        "supervisor.agent",
    }
    assert armed.stderr == ""


def test_bootstrap_loads_the_agent_by_path_when_supervisor_is_not_importable(
    tmp_path: Path,
) -> None:
    """pyair runs from its own venv; the app's interpreter may not have it installed."""
    code = (
        "import sys; import sitecustomize; "  # -S: site did not import it, so we do
        "import supervisor.agent as a; "
        "print(a.__file__); print(any(p.rstrip('/') == sys.argv[1] for p in sys.path))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(REPO)],
        cwd=tmp_path,
        env=child_env("/nonexistent.sock"),
        capture_output=True,
        text=True,
        check=True,
    )
    agent_file, repo_on_path = out.stdout.split()
    assert agent_file == str(REPO / "supervisor" / "agent" / "__init__.py")
    assert repo_on_path == "False"  # pyair's own site-packages stay off the app's sys.path
    assert out.stderr == ""


# --- robustness: the agent against a bad supervisor ---------------------------------------------


async def test_app_keeps_serving_when_the_control_socket_is_gone(tmp_path: Path) -> None:
    async with app("agent_jinja", tmp_path, str(tmp_path / "nothing-here.sock")) as a:
        assert "page v1" in await a.get("/")
        assert "child v1" in await a.get("/child")


async def test_agent_survives_garbage_and_a_100_mb_frame(tmp_path: Path) -> None:
    sock_path = str(tmp_path / "fake.sock")
    async with (
        await anyio.create_unix_listener(sock_path) as listener,
        app("agent_jinja", tmp_path, sock_path) as a,
    ):
        with anyio.fail_after(10):
            stream = await listener.accept()
        decoder = protocol.FrameDecoder()

        async def receive() -> protocol.Message:
            with anyio.fail_after(5):
                while (msg := decoder.next_message()) is None:
                    decoder.feed(await stream.receive())
            return msg

        hello = await receive()
        assert hello["type"] == "hello" and hello["pid"] == a.pid and hello["v"] == 1

        # a malformed frame and an unknown message are dropped; the agent still answers
        await stream.send(len(b"{nope").to_bytes(4, "big") + b"{nope")
        await stream.send(protocol.encode({"type": "swap", "id": "x", "paths": []}))
        await stream.send(protocol.encode(protocol.ping(41)))
        assert await receive() == protocol.pong(41)

        # an oversized header: the agent hangs up without reading 100 MB
        await stream.send((100 * 1024 * 1024).to_bytes(4, "big") + b"\0" * 65536)
        with anyio.fail_after(5):
            try:
                while await stream.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
        await stream.aclose()
        assert "page v1" in await a.get("/")  # the app never noticed
        assert a.proc.returncode is None


# --- measurements (make bench) -------------------------------------------------------------------


@pytest.mark.bench
async def test_bench_swap_round_trip(server: ControlServer, tmp_path: Path) -> None:
    async with app("agent_jinja", tmp_path, server.path) as a:
        await connected(server, a, "jinja2")
        page = str(a.template("page.html"))
        totals, swaps = [], []
        for i in range(50):
            Path(page).write_text(
                '{% extends "base.html" %}{% block content %}<p>page r'
                + str(i)
                + "</p>{% endblock %}"
            )
            started = time.perf_counter()
            result = await server.swap([page], timeout_ms=5000)
            body = await a.get("/")
            totals.append((time.perf_counter() - started) * 1000)
            swaps.append(result.rtt_ms)
            assert result.ok and f"page r{i}<" in body
        print(
            f"\nswap rtt median {statistics.median(swaps):.2f} ms; "
            f"swap + GET median {statistics.median(totals):.2f} ms, "
            f"p90 {sorted(totals)[44]:.2f} ms"
        )
        assert statistics.median(totals) < 25


@pytest.mark.bench
def test_bench_startup_overhead(tmp_path: Path) -> None:
    """Wall time added to ``python -c pass`` and ``import jinja2``: with this checkout as is
    (no .pyc if PYTHONDONTWRITEBYTECODE is set) and with a byte-compiled copy (an install)."""
    import compileall

    shutil.copytree(REPO / "supervisor", tmp_path / "supervisor")
    assert compileall.compile_dir(tmp_path / "supervisor", quiet=1)
    installed = str(tmp_path / "supervisor" / "agent" / "bootstrap")

    def median_ms(env: dict[str, str], code: str, runs: int = 30) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    plain = child_env("/nonexistent.sock") | {"PYTHONPATH": ""}
    plain.pop("PYAIR_CONTROL")
    checkout = child_env("/nonexistent.sock")
    compiled = checkout | {"PYTHONPATH": installed}
    for code in ("pass", "import jinja2"):
        base = median_ms(plain, code)
        as_is = median_ms(checkout, code)
        pyc = median_ms(compiled, code)
        print(
            f"\npython -c {code!r}: {base:.1f} ms plain; with the agent {pyc:.1f} ms "
            f"(+{pyc - base:.1f}) byte-compiled, {as_is:.1f} ms (+{as_is - base:.1f}) as is"
        )
