"""Save→served for a .py edit: pyair vs the watchfiles CLI vs a cold start, interleaved.

    python -m benchmarks.reload --rounds 30

Each tool supervises its own copy of a tiny http.server app. Every round saves a new VERSION
into each copy in turn and polls the app until it serves it; the floor is a cold
``python app.py`` started by hand and polled until it answers. One run, interleaved rounds,
so the machine's noise hits every tool alike.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import (
    APP,
    Series,
    Supervised,
    bench_env,
    cold_start,
    free_port,
    poll_until,
    pyair_argv,
    save_version,
    stop,
    table,
    watchfiles_cli,
)

PYAIR_TOML = """
[build]
full_bin = "{python} app.py"
preload = {preload}
[env]
PORT = "{port}"
"""


def write_app(project: Path) -> None:
    (project / "app.py").write_text(APP)


def pyair(project: Path, port: int, preload: str = '"auto"') -> list[str]:
    """pyair with its defaults (warm restarts from the second one on)."""
    text = PYAIR_TOML.format(python=sys.executable, port=port, preload=preload)
    (project / ".air.toml").write_text(text)
    return pyair_argv("-c", str(project / ".air.toml"))


def pyair_cold(project: Path, port: int) -> list[str]:
    """pyair with ``preload = false``: every restart is a cold start, as in other tools."""
    return pyair(project, port, preload="false")


def run(rounds: int) -> tuple[Series, list[Series]]:
    base = Path(tempfile.mkdtemp(prefix="pyair-bench-"))
    floor = Series("cold `python app.py` (floor)")
    tools = [
        Supervised(name, base, argv, write_app, ready="version=0")
        for name, argv in (
            ("pyair", pyair),
            ("pyair preload=false", pyair_cold),
            ("watchfiles CLI", watchfiles_cli()),
        )
    ]
    time.sleep(1.0)  # the watchers settle before the first edit
    series = {tool.name: Series(tool.name) for tool in tools}
    try:
        for _ in range(rounds):
            floor.samples.append(cold_start(base, APP))
            for tool in tools:
                series[tool.name].samples.append(tool.round(save_version))
                time.sleep(0.3)  # let the restarted app settle before the next tool's edit
    finally:
        for tool in tools:
            tool.close()
        shutil.rmtree(base, ignore_errors=True)
    return floor, list(series.values())


def burst_restarts(files: int = 500) -> int:
    """How many times pyair restarts the app for a burst of ``files`` new .py files."""
    base = Path(tempfile.mkdtemp(prefix="pyair-burst-"))
    try:
        project = base / "p"
        project.mkdir()
        (project / "app.py").write_text(
            APP.replace("if __name__", "open('starts.log', 'a').write('x\\n')\nif __name__")
        )
        port = free_port()
        proc = subprocess.Popen(
            pyair(project, port),
            cwd=project,
            env=bench_env(port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            poll_until(port, "version=0", timeout=30)
            time.sleep(1.0)
            pkg = project / "pkg"
            pkg.mkdir()
            for i in range(files):
                (pkg / f"m{i}.py").write_text(f"X = {i}\n")
            time.sleep(3.0)  # a bounded window for any extra restart to show up
            return (project / "starts.log").read_text().count("x") - 1
        finally:
            stop(proc)
    finally:
        shutil.rmtree(base, ignore_errors=True)


TARGET_MEDIAN_MS = 35.0  # pyair's .py save → served, tiny app, defaults


def main(argv: list[str] | None = None) -> list[Series]:
    """Print the table; returns its rows (the floor first)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    floor, rows = run(args.rounds)
    print(table(".py save → new version served (tiny http.server app)", [floor, *rows], floor))
    by_name = {row.name: row for row in rows}
    peer = by_name["watchfiles CLI"]
    for name in ("pyair", "pyair preload=false"):
        row = by_name[name]
        print(
            f"{name}: {row.median - floor.median:+.1f} ms vs the floor (median), "
            f"{row.median / peer.median:.2f}x the watchfiles CLI"
        )
    print(f"restarts for a 500-file burst: pyair {burst_restarts()}")
    return [floor, *rows]


if __name__ == "__main__":
    main()
