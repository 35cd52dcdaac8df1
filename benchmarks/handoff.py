"""Restarts on the app's own port, with and without pyair holding the listening socket.

    python -m benchmarks.handoff --rounds 30

Apps (tests/apps/handoff): ``drain.py``, a stdlib server that on SIGTERM closes its listener
and drains for 300 ms, as uvicorn and gunicorn do; ``asgi.py``, a FastAPI app under
``uvicorn asgi:app``. Each runs under pyair twice, with ``hold_port = true`` (the default:
the new app starts as soon as the old one stopped accepting) and ``hold_port = false`` (the
old tree must be gone first), in interleaved rounds. Measured on the app's port directly, as
an API client or a front-end dev server proxying ``/api`` sees it: ``.py`` save → the new
version served, and how many connections were refused meanwhile (the client polls every
0.5 ms). Targets: draining app ≤ 100 ms, FastAPI ≤ 80 ms, with the hand-off.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .common import REPO, Series, Supervised, fetch, pyair_argv, table

APPS = REPO / "tests" / "apps" / "handoff"
BIN = Path(sys.executable).parent
TARGETS_MS = {"draining": 100.0, "fastapi": 80.0}
SETTLE_S = 0.5  # between tools in a round: the old app's drain ends
BASE_VERSION = 1000  # versions are 4-digit: "1001 " never matches inside a pid

CONFIG = """root = "."
[build]
full_bin = "{command}"
include_ext = ["py"]
hold_port = {hold}
[env]
PORT = "{port}"
"""


def _project(
    app: str, command: str, hold: bool
) -> tuple[Callable[[Path], None], Callable[[Path, int], list[str]]]:
    def write(directory: Path) -> None:
        shutil.copy(APPS / app, directory / app)

    def argv(directory: Path, port: int) -> list[str]:
        line = command.format(python=sys.executable, bin=BIN, port=port)
        config = CONFIG.format(command=line, hold=str(hold).lower(), port=port)
        (directory / ".air.toml").write_text(config)
        return pyair_argv("-c", str(directory / ".air.toml"))

    return write, argv


class Refusals:
    """How many polls of one tool found the port refusing (or resetting) a connection."""

    def __init__(self) -> None:
        self.refused = 0


def one_round(tool: Supervised, app: str, counter: Refusals) -> float:
    tool.n += 1
    version = BASE_VERSION + tool.n
    source = tool.dir / app
    text = re.sub(r"VERSION = \d+", f"VERSION = {version}", source.read_text())
    needle = f"{version} "
    t0 = time.perf_counter()
    source.write_text(text)
    deadline = t0 + 20
    while time.perf_counter() < deadline:
        body = fetch(tool.port)
        if body is None:
            counter.refused += 1
        elif body.startswith(needle):
            return (time.perf_counter() - t0) * 1000
        time.sleep(0.0005)
    raise TimeoutError(f"{tool.name} never served {needle!r}")


def main(argv: list[str] | None = None) -> list[Series]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.handoff")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    cases = [
        ("draining", "drain.py", "{python} drain.py"),
        ("fastapi", "asgi.py", "{bin}/uvicorn asgi:app --port {port}"),
    ]
    base = Path(tempfile.mkdtemp(prefix="pyair-bench-handoff-"))
    tools: list[tuple[str, str, bool, Supervised, Series, Refusals]] = []
    try:
        for kind, app, command in cases:
            for hold in (True, False):
                write, make_argv = _project(app, command, hold)
                name = f"pyair {kind}, hold_port = {str(hold).lower()}"
                tool = Supervised(name, base, make_argv, write, ready="0 ")
                tools.append((kind, app, hold, tool, Series(name), Refusals()))
        time.sleep(2.0)  # the zygotes preload (a restart that comes first waits for it)
        for tool_row in tools:  # one unmeasured restart each: the first may be cold
            one_round(tool_row[3], tool_row[1], Refusals())
            time.sleep(SETTLE_S)
        for _ in range(args.rounds):
            for _kind, app, _hold, tool, series, refusals in tools:
                series.samples.append(one_round(tool, app, refusals))
                time.sleep(SETTLE_S)
    finally:
        for row in tools:
            row[3].close()
    series = [row[4] for row in tools]
    print(
        table(
            f"restart on the app's own port: .py save -> new version served, {args.rounds} rounds",
            series,
        )
    )
    for kind, _app, hold, tool, row, refusals in tools:
        warm = tool.count(r"\(warm")
        print(f"  {row.name:<34} refused {refusals.refused:>5} connection(s); warm restarts {warm}")
        if hold:
            target = TARGETS_MS[kind]
            verdict = "met" if row.median <= target else "NOT met"
            print(f"    target {kind} <= {target:.0f} ms median: {verdict}")
    shutil.rmtree(base, ignore_errors=True)
    return series


if __name__ == "__main__":
    main(sys.argv[1:])
