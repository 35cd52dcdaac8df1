"""The tutorials' apps, run as their docs say: `pyair init`, then `pyair` with what it wrote.

Three apps of tests/apps, written in the shapes the frameworks' tutorials give them: a Flask
package with an app factory and blueprints (``flask --app flaskr run --debug``), FastAPI's
templates app (``Jinja2Templates`` + ``StaticFiles``, nothing at ``/``), and a Django project
made by ``startproject`` (``manage.py`` one level down, app templates). Each is prepared the
way its tutorial says (``init-db``, ``migrate``), copied, given to ``pyair init``, and run by a
real ``pyair`` through its live-reload proxy, with the framework's own reloader on and off,
and Jinja's ``auto_reload`` on and off. Through the proxy, as a browser would: the first page
(asked while pyair starts) is held and answered; a template edit is served by the same pid; a
template that does not compile keeps the old HTML (200), also on a page first rendered after
the error, while the overlay is up; the fix clears it; a ``.py`` save restarts warm.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import APPS, PyairRun, free_port, run_pyair, wait_until

TAG = "/__pyair/client.js"
SWAPPED = r"swapped \S+ in [\d.]+ ms \(pid {pid}, no restart\)"
KEEPS = r"the previous template keeps serving"
WARM = r"pid (\d+) ready in \d+ ms \(warm"
ZYGOTE_READY = r"preload: zygote \d+ \(pid \d+\) is warm"


@dataclass(frozen=True)
class Tutorial:
    """One app and what its test does to it (paths are root-relative)."""

    app: str
    prepare: tuple[str, ...]  # run once, as its tutorial says (python ...)
    page: str  # the page opened first
    template: str  # a template of that page, and a marker in it
    marker: str
    later_page: str  # a page nobody opens before its template breaks
    later_template: str
    later_marker: str
    source: str  # a .py file, and an edit of it
    source_edit: tuple[str, str]
    broken: str = " {% if %}"  # what makes a template stop compiling
    boom: str | None = None  # a page whose view raises


TUTORIALS = {
    "flask": Tutorial(
        "tutorial_flask",
        ("-m", "flask", "--app", "flaskr", "init-db"),
        "/",
        "flaskr/templates/blog/index.html",
        "Posts v1",
        "/auth/login",
        "flaskr/templates/auth/login.html",
        'value="Log In"',
        "flaskr/blog.py",
        ('bp = Blueprint("blog", __name__)', 'bp = Blueprint("blog", __name__)  # edited'),
        boom="/boom",
    ),
    "fastapi": Tutorial(
        "tutorial_fastapi",
        (),
        "/items/7",
        "templates/item.html",
        "item v1",
        "/about",
        "templates/about.html",
        "about v1",
        "main.py",
        ('VERSION = "1"', 'VERSION = "2"'),
        boom="/boom",
    ),
    "django": Tutorial(
        "tutorial_django",
        ("mysite/manage.py", "migrate", "-v", "0"),
        "/polls/",
        "mysite/polls/templates/polls/index.html",
        "polls index v1",
        "/polls/1/",
        "mysite/polls/templates/polls/detail.html",
        'value="Vote"',
        "mysite/polls/views.py",
        ("from .models import", "# edited\nfrom .models import"),
    ),
}


@dataclass(frozen=True)
class Variant:
    """How the command ``pyair init`` wrote is changed (or not) for one run."""

    name: str
    tutorial: str
    replace: tuple[str, str] = ("", "")  # in full_bin
    reloader: str | None = None  # the -d line saying the framework's reloader is off
    notes: tuple[str, ...] = field(default=())


WERKZEUG = r"agent \(pid {pid}\): Werkzeug's reloader is off"
VARIANTS = [
    # as `pyair init` writes them
    Variant("flask run --debug (reloader, auto_reload on)", "flask", reloader=WERKZEUG),
    Variant("uvicorn (auto_reload on)", "fastapi"),
    Variant("runserver --noreload", "django"),
    # the other way round
    Variant("flask run (auto_reload off)", "flask", (" --debug", "")),
    Variant(
        "uvicorn --reload",
        "fastapi",
        (" --port", " --reload --port"),
        reloader=r"agent \(pid {pid}\): uvicorn's --reload is off",
    ),
    Variant(
        "runserver with its autoreloader",
        "django",
        (" --noreload", ""),
        reloader=r"agent \(pid {pid}\): Django's autoreloader is off",
    ),
]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tutorial app copied once and prepared as its tutorial says (init-db, migrate)."""
    base = tmp_path_factory.mktemp("tutorials")
    out: dict[str, Path] = {}
    for name, tutorial in TUTORIALS.items():
        target = base / name
        shutil.copytree(APPS / tutorial.app, target, ignore=shutil.ignore_patterns("__pycache__"))
        if tutorial.prepare:
            subprocess.run(
                [sys.executable, *tutorial.prepare],
                cwd=target,
                check=True,
                capture_output=True,
                timeout=120,
            )
        out[name] = target
    return out


def free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@dataclass
class Answer:
    status: int
    content_type: str
    body: str


def navigate(port: int, path: str, timeout: float = 5.0) -> Answer | None:
    """A browser's navigation to ``path`` on ``port`` (None: nothing answers there yet)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate"})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        return Answer(response.status, response.getheader("content-type") or "", body)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def hello(port: int) -> dict[str, object]:
    """The first event a tab's event stream gets: what the overlay shows comes from it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"GET /__pyair/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        data = b""
        while b"event: hello" not in data or not data.rstrip(b"\r\n").endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    found = re.search(rb"event: hello\ndata: (\{.*\})\n", data)
    assert found is not None, data
    value: dict[str, object] = json.loads(found.group(1))
    return value


def pid_in(body: str) -> int:
    found = re.search(r"pid=(\d+)", body)
    assert found is not None, body
    return int(found[1])


class Project:
    """A prepared tutorial app, its ports, its files and pyair's run of it."""

    def __init__(self, source: Path, tmp_path: Path) -> None:
        self.dir = tmp_path / "project"
        shutil.copytree(source, self.dir)
        self.browser, self.app = free_ports(2)
        self.run: PyairRun | None = None

    def init(self) -> str:
        result = run_pyair(
            "init", "--port", str(self.browser), "--app-port", str(self.app), cwd=self.dir
        )
        assert result.returncode == 0, result.stderr
        return result.stderr

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.dir / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new, 1))

    def page(self, path: str, needle: str, timeout: float = 15.0) -> Answer:
        """The first answer through the proxy whose body holds ``needle``."""

        def answer() -> Answer | None:
            got = navigate(self.browser, path)
            return got if got is not None and needle in got.body else None

        return wait_until(answer, timeout=timeout, message=f"{needle!r} at {path}")

    @property
    def log(self) -> PyairRun:
        assert self.run is not None
        return self.run


@pytest.mark.parametrize("variant", VARIANTS, ids=[variant.name for variant in VARIANTS])
def test_init_then_pyair_runs_the_whole_dev_loop(
    prepared: dict[str, Path], tmp_path: Path, variant: Variant
) -> None:
    tutorial = TUTORIALS[variant.tutorial]
    project = Project(prepared[variant.tutorial], tmp_path)
    said = project.init()
    assert f"open       http://127.0.0.1:{project.browser}/ (live reload" in said, said
    config = (project.dir / ".air.toml").read_text()
    assert "\nready_url" not in config  # no page that could answer 404: any answer is up
    old, new = variant.replace
    if old:  # in the command line only
        command = re.search(r"^full_bin = .*$", config, re.M)
        assert command is not None and old in command.group(0), config
        config = config.replace(command.group(0), command.group(0).replace(old, new))
    full_bin = re.search(r"^full_bin = .*$", config, re.M)
    assert full_bin is not None
    with PyairRun(project.dir, config, "-d") as run:
        project.run = run
        # the first page, asked while pyair starts: held by the proxy until the app answers
        first = wait_until(
            lambda: navigate(project.browser, tutorial.page, timeout=30),
            timeout=30,
            message="the first page through the proxy",
        )
        assert first.status == 200 and TAG in first.body, first
        pid = pid_in(first.body)
        # the process pyair started is the one serving: no second (reloader) process
        assert int(run.wait_for_log(r"pid (\d+) ready in \d+ ms \(cold")) == pid
        run.wait_for_log(rf"pid {pid} answered \d+ at / \(1 request\(s\)\)")
        if variant.reloader:
            run.wait_for_log(variant.reloader.format(pid=pid))
        run.wait_for_log(r"control: agent connected")
        if tutorial.boom and "--debug" in full_bin.group(0):  # Werkzeug's debugger is still there
            debugger = navigate(project.browser, tutorial.boom)
            assert debugger is not None and debugger.status == 500
            assert "Werkzeug Debugger" in debugger.body and TAG in debugger.body

        # a template edit: served in place by the same process
        project.edit(tutorial.template, tutorial.marker, tutorial.marker + " v2")
        assert pid_in(project.page(tutorial.page, tutorial.marker + " v2").body) == pid
        run.wait_for_log(SWAPPED.format(pid=pid))

        # a template that does not compile: the old HTML keeps serving, the overlay is up
        project.edit(tutorial.template, " v2", " v2" + tutorial.broken)
        run.wait_for_log(re.escape(f"  {tutorial.template}:") + rf"\d+: .*{KEEPS}")
        kept = navigate(project.browser, tutorial.page)
        assert kept is not None and kept.status == 200, kept
        assert tutorial.marker + " v2" in kept.body and "{% if %}" not in kept.body
        assert pid_in(kept.body) == pid
        error = hello(project.browser)["error"]
        assert isinstance(error, dict) and error["kind"] == "template", error
        assert error["file"] == tutorial.template

        # ... also on a page first rendered after its template broke
        project.edit(tutorial.later_template, tutorial.later_marker, "{% if %}")
        run.wait_for_log(re.escape(f"  {tutorial.later_template}:") + rf"\d+: .*{KEEPS}")
        later = navigate(project.browser, tutorial.later_page)
        assert later is not None and later.status == 200, later
        assert tutorial.later_marker in later.body and "{% if %}" not in later.body
        if tutorial.boom:  # the app's own error answer gets the overlay too
            failed = navigate(project.browser, tutorial.boom)
            assert failed is not None and failed.status == 500
            assert failed.content_type.startswith("text/html") and TAG in failed.body

        # the fix clears it
        project.edit(tutorial.later_template, "{% if %}", tutorial.later_marker)
        project.edit(tutorial.template, " v2" + tutorial.broken, " v3")
        fixed = project.page(tutorial.page, tutorial.marker + " v3")
        assert pid_in(fixed.body) == pid
        wait_until(lambda: hello(project.browser)["error"] is None, message="the overlay gone")

        # a .py save: a warm restart (from the zygote the first app's imports made)
        run.wait_for_log(ZYGOTE_READY, timeout=30)
        project.edit(tutorial.source, *tutorial.source_edit)
        warm = int(run.wait_for_log(WARM, timeout=30))
        after = project.page(tutorial.page, tutorial.marker + " v3")
        assert pid_in(after.body) == warm != pid
        assert run.count(r"ready in \d+ ms \(cold") == 1, run.log()


def test_kept_django_templates_render_the_new_version(
    prepared: dict[str, Path], tmp_path: Path
) -> None:
    """polls.views keeps RESULTS = loader.get_template(...) from import on: a swap reaches it."""
    project = Project(prepared["django"], tmp_path)
    project.init()
    with PyairRun(project.dir, (project.dir / ".air.toml").read_text(), "-d") as run:
        first = project.page("/polls/1/results/", "results v1", timeout=30)
        run.wait_for_log(r"control: agent connected")
        template = "mysite/polls/templates/polls/results.html"
        project.edit(template, "results v1", "results v2")
        assert pid_in(project.page("/polls/1/results/", "results v2").body) == pid_in(first.body)
        project.edit(template, "results v2", "results v3 {% if %}")
        run.wait_for_log(re.escape(f"  {template}:") + rf"\d+: .*{KEEPS}")
        kept = navigate(project.browser, "/polls/1/results/")
        assert kept is not None and kept.status == 200 and "results v2" in kept.body


@pytest.mark.parametrize("name", sorted(TUTORIALS))
def test_init_then_smoke_passes(prepared: dict[str, Path], tmp_path: Path, name: str) -> None:
    project = Project(prepared[name], tmp_path)
    project.init()
    smoke = run_pyair("smoke", cwd=project.dir, timeout=90)
    assert smoke.returncode == 0, f"{smoke.stdout}\n{smoke.stderr}"
    assert re.search(r"^ready .* ok +pid \d+ answered \d+ at /$", smoke.stdout, re.M), smoke.stdout
    assert re.search(r"^swap .* ok .*no restart$", smoke.stdout, re.M), smoke.stdout


def test_every_worker_of_uvicorn_workers_2_serves_the_new_template(
    prepared: dict[str, Path], tmp_path: Path
) -> None:
    project = Project(prepared["fastapi"], tmp_path)
    project.init()
    config = (project.dir / ".air.toml").read_text().replace(" --port", " --workers 2 --port")
    with PyairRun(project.dir, config, "-d") as run:
        project.page("/items/7", "item v1", timeout=30)
        workers = workers_serving(project, "item v1")
        run.wait_for_log(r"control: agent connected", count=2)
        project.edit("templates/item.html", "item v1", "item v2")
        line = run.wait_for_log(r"swapped item\.html in [\d.]+ ms \(pids ([\d, ]+), no restart\)")
        assert {int(pid) for pid in line.split(", ")} == workers
        assert workers_serving(project, "item v2") == workers  # none still serves v1


def workers_serving(project: Project, needle: str) -> set[int]:
    """The pids that answer /items/7, asked on fresh connections until both workers did;
    every answer must hold ``needle``."""
    seen: set[int] = set()

    def both() -> bool:
        got = navigate(project.app, "/items/7")  # the app's own port: the kernel picks a worker
        if got is not None:
            assert needle in got.body, got.body
            seen.add(pid_in(got.body))
        return len(seen) == 2

    wait_until(both, timeout=30, message="both workers answering")
    return seen
