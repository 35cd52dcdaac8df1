"""The tutorials' apps with their frameworks' own reloaders on: pyair beside those reloaders.

    python -m benchmarks.frameworks --rounds 30

Apps: tests/apps/tutorial_fastapi (FastAPI's templates tutorial) and tests/apps/tutorial_flask
(Flask's flaskr, its database made with ``init-db``), each in its own copy per tool. Rows, in
one run with interleaved rounds:

- ``.py`` save → new version served, with the inner reloader ON, as the frameworks' docs run
  them: pyair running ``uvicorn main:app --reload`` / ``flask --app flaskr run --debug``
  (its agent switches those reloaders off, restarts fork the warm zygote), beside the same
  command run alone (uvicorn's and Werkzeug's own reloaders). Target: pyair ≤ 150 ms median.
- uvicorn's own SIGTERM → exit, alone (~200 ms of fixed pauses: part of every restart by
  any other tool; under pyair its agent ends those pauses when nothing is in flight).
- ``pyair init`` then ``pyair``: spawn → the first page through the live-reload proxy, for the
  three tutorial apps (the Django one too), with the config init wrote, unchanged. Target:
  under a second.

pyair's rows are checked: its log must say ``(warm`` for every measured restart.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .common import (
    REPO,
    Series,
    Supervised,
    bench_env,
    free_port,
    poll_until,
    pyair_argv,
    stop,
    table,
)

APPS = REPO / "tests" / "apps"
TARGET_MEDIAN_MS = 150.0
TARGET_FIRST_PAGE_MS = 1000.0
SETTLE_S = 0.3  # between tools in a round: the previous restart settles
ZYGOTE_TIMEOUT_S = 30.0

PYAIR_TOML = """
[build]
full_bin = "{command}"
"""


class App:
    """One tutorial app: how to copy and prepare it, run it, and save a new version."""

    def __init__(
        self,
        name: str,
        source: str,
        command: str,
        page: str,
        module: str,
        prepare: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.source = APPS / source
        self.command = command  # with {python} and {port}
        self.page = page
        self.module = module  # the .py file that holds VERSION
        self.prepare = prepare

    def write(self, project: Path) -> None:
        shutil.rmtree(project)
        shutil.copytree(self.source, project, ignore=shutil.ignore_patterns("__pycache__"))
        if self.prepare:
            subprocess.run(
                [sys.executable, *self.prepare], cwd=project, check=True, capture_output=True
            )

    def save(self, project: Path, n: int) -> tuple[float, str]:
        """A new VERSION in the module (truncate + write, as editors do); (t0, what shows)."""
        path = project / self.module
        text = re.sub(r'VERSION = "[^"]*"', f'VERSION = "v{n}"', path.read_text())
        t0 = time.perf_counter()
        with open(path, "w") as out:
            out.write(text)
        return t0, f"version=v{n}"

    def alone(self) -> Callable[[Path, int], list[str]]:
        """The framework's own command, its reloader on (what its docs say to run)."""

        def argv(project: Path, port: int) -> list[str]:
            return self.command.format(python=sys.executable, port=port).split()

        return argv

    def under_pyair(self) -> Callable[[Path, int], list[str]]:
        """The same command, under pyair (its agent switches the inner reloader off)."""

        def argv(project: Path, port: int) -> list[str]:
            command = self.command.format(python="python", port=port)
            (project / ".air.toml").write_text(PYAIR_TOML.format(command=command))
            return pyair_argv("-d", "-c", str(project / ".air.toml"))

        return argv


FASTAPI = App(
    "FastAPI",
    "tutorial_fastapi",
    "{python} -m uvicorn main:app --reload --port {port}",
    "/items/1",
    "main.py",
)
FLASK = App(
    "Flask --debug",
    "tutorial_flask",
    "{python} -m flask --app flaskr run --debug --port {port}",
    "/",
    "flaskr/__init__.py",
    ("-m", "flask", "--app", "flaskr", "init-db"),
)
DJANGO_PREPARE = ("mysite/manage.py", "migrate", "-v", "0")


def restarts(rounds: int) -> list[Series]:
    """.py save → served, pyair beside each framework's own reloader, interleaved."""
    base = Path(tempfile.mkdtemp(prefix="pyair-bench-frameworks-"))
    tools: list[tuple[App, Supervised, bool]] = []
    try:
        for app in (FASTAPI, FLASK):
            for ours in (True, False):
                argv = app.under_pyair() if ours else app.alone()
                name = f"{'pyair' if ours else 'alone'}: {app.name}"
                tool = Supervised(name, base, argv, app.write, ready="version=", path=app.page)
                tools.append((app, tool, ours))
        for _app, tool, ours in tools:
            if ours:
                tool.wait_for(r"preload: zygote \d+ \(pid \d+\) is warm", ZYGOTE_TIMEOUT_S)
        time.sleep(1.0)  # the watchers settle before the first edit
        series = {tool.name: Series(tool.name) for _app, tool, _ours in tools}
        for _ in range(rounds):
            for app, tool, _ours in tools:
                series[tool.name].samples.append(tool.round(app.save))
                time.sleep(SETTLE_S)
        for _app, tool, _ours in tools:
            tool.close()
        for _app, tool, ours in tools:
            if ours:
                warm = tool.count(r"ready in \d+ ms \(warm")
                assert warm == rounds, f"{tool.name}: {warm}/{rounds} warm restarts"
        return list(series.values())
    finally:
        for _app, tool, _ours in tools:
            tool.close()
        shutil.rmtree(base, ignore_errors=True)


def uvicorn_stop(rounds: int) -> Series:
    """uvicorn's own SIGTERM → exit, alone: its main loop looks at the signal every 100 ms,
    then its shutdown pauses 100 ms (pyair's agent ends those pauses early)."""
    base = Path(tempfile.mkdtemp(prefix="pyair-bench-stop-"))
    series = Series("uvicorn alone: SIGTERM → exit")
    try:
        FASTAPI.write(_made(base / "app"))
        for _ in range(rounds):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)],
                cwd=base / "app",
                env=bench_env(port),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            poll_until(port, "version=", path=FASTAPI.page, timeout=30)
            t0 = time.perf_counter()
            proc.terminate()
            proc.wait()
            series.samples.append((time.perf_counter() - t0) * 1000)
        return series
    finally:
        shutil.rmtree(base, ignore_errors=True)


def first_page(rounds: int) -> list[Series]:
    """``pyair init`` then ``pyair``: spawn → first page through the proxy, per app."""
    base = Path(tempfile.mkdtemp(prefix="pyair-bench-first-"))
    apps = [
        ("FastAPI", "tutorial_fastapi", "/items/1", ()),
        ("Flask", "tutorial_flask", "/", FLASK.prepare),
        ("Django", "tutorial_django", "/polls/", DJANGO_PREPARE),
    ]
    out: list[Series] = []
    try:
        for name, source, page, prepare in apps:
            project = base / source
            App(name, source, "", page, "", prepare).write(_made(project))
            series = Series(f"init → pyair → first page: {name}")
            for _ in range(rounds):
                series.samples.append(_first_page_ms(project, page))
            out.append(series)
        return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _first_page_ms(project: Path, page: str) -> float:
    (project / ".air.toml").unlink(missing_ok=True)
    shutil.rmtree(project / "tmp", ignore_errors=True)  # no memory of an earlier run: cold
    browser, app = free_port(), free_port()
    subprocess.run(
        pyair_argv("init", "--port", str(browser), "--app-port", str(app)),
        cwd=project,
        env=bench_env(app),
        check=True,
        capture_output=True,
    )
    url = f"http://127.0.0.1:{browser}{page}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        pyair_argv(),
        cwd=project,
        env=bench_env(app),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = t0 + 30
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    if response.status == 200:
                        return (time.perf_counter() - t0) * 1000
            except OSError:
                time.sleep(0.002)  # the proxy is not listening yet
        raise TimeoutError(f"{url} never answered")
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> list[Series]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    rows = restarts(args.rounds)
    rows.append(uvicorn_stop(max(5, args.rounds // 3)))
    by_name = {row.name: row for row in rows}
    for app in (FASTAPI, FLASK):
        ours, alone = by_name[f"pyair: {app.name}"], by_name[f"alone: {app.name}"]
        shown = [alone, ours] + [row for row in rows if app is FASTAPI and "SIGTERM" in row.name]
        title = f".py save → served, {app.name} tutorial app, its reloader on (vs its reloader)"
        print(table(title, shown, alone))
        verdict = "ok" if ours.median <= TARGET_MEDIAN_MS else "MISSED"
        print(
            f"{app.name}: pyair {ours.median:.0f} ms median (target ≤ {TARGET_MEDIAN_MS:.0f}: "
            f"{verdict}), {ours.median / alone.median:.2f}x its own reloader"
        )
        print()
    firsts = first_page(max(5, args.rounds // 3))
    print(table("pyair init, then pyair: spawn → first page through the proxy", firsts))
    for row in firsts:
        verdict = "ok" if row.median <= TARGET_FIRST_PAGE_MS else "MISSED"
        print(f"{row.name}: {row.median:.0f} ms median (target < 1 s: {verdict})")
    return rows + firsts


if __name__ == "__main__":
    main()
