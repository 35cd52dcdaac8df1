"""Warm restarts: a Flask app's .py save→served with pyair's zygote vs cold starts, interleaved.

    python -m benchmarks.warm --rounds 30

Four rows, each supervising (or starting) its own copy of the same Flask + Jinja2 app:

- pyair, ``preload = "auto"`` (the default): restarts fork the warm zygote;
- pyair, ``preload = false``: every restart is a new interpreter;
- the ``watchfiles`` CLI (``watchfiles "python app.py" dir``): the best peer that runs here;
- the floor: a cold ``python app.py`` started by hand and polled until it answers.

Every round saves a new VERSION into each copy in turn (truncate + write, as editors do) and
polls ``GET /`` until it is served. Target: pyair warm ≤ 0.5 × the cold-start floor. The warm
rows are checked: pyair's log must say ``(warm`` for the rounds it measured.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .common import Series, Supervised, cold_start, pyair_argv, save_version, table, watchfiles_cli

TARGET_RATIO = 0.5
SETTLE_S = 0.3  # between tools in a round: the previous restart settles
ZYGOTE_TIMEOUT_S = 30.0

APP = """\
import logging
import os

from flask import Flask, render_template_string

VERSION = "0"
PAGE = (
    "<h1>{{ title }}</h1><ul>{% for item in items %}<li>{{ item }}</li>{% endfor %}</ul>"
    "<p>version={{ version }}</p>"
)

app = Flask(__name__)
logging.getLogger("werkzeug").setLevel(logging.ERROR)


@app.route("/")
def index():
    return render_template_string(PAGE, title="bench", items=range(5), version=VERSION)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), use_reloader=False)
"""

PYAIR_TOML = """
[build]
full_bin = "{python} app.py"
preload = {preload}
[env]
PORT = "{port}"
"""


def write_app(project: Path) -> None:
    (project / "app.py").write_text(APP)


def pyair(preload: str) -> Callable[[Path, int], list[str]]:
    def argv(project: Path, port: int) -> list[str]:
        config = PYAIR_TOML.format(python=sys.executable, port=port, preload=preload)
        (project / ".air.toml").write_text(config)
        return pyair_argv("-d", "-c", str(project / ".air.toml"))

    return argv


WARM = "pyair warm (preload auto)"
COLD = "pyair cold (preload false)"
PEER = "watchfiles CLI"


def run(rounds: int) -> tuple[Series, list[Series], int]:
    """(floor, rows, warm restarts pyair logged)."""
    base = Path(tempfile.mkdtemp(prefix="pyair-bench-warm-"))
    floor = Series("cold `python app.py` (floor)")
    tools: list[Supervised] = []
    try:
        tools = [
            Supervised(name, base, argv, write_app, ready="version=0")
            for name, argv in (
                (WARM, pyair('"auto"')),
                (COLD, pyair("false")),
                (PEER, watchfiles_cli()),
            )
        ]
        tools[0].wait_for(r"preload: zygote \d+ \(pid \d+\) is warm", ZYGOTE_TIMEOUT_S)
        time.sleep(1.0)  # the watchers settle before the first edit
        series = {tool.name: Series(tool.name) for tool in tools}
        for _ in range(rounds):
            floor.samples.append(cold_start(base, APP))
            for tool in tools:
                series[tool.name].samples.append(tool.round(save_version))
                time.sleep(SETTLE_S)
        for tool in tools:
            tool.close()  # first: pyair's last log lines are flushed on exit
        warm = tools[0].count(r"ready in \d+ ms \(warm|started pid \d+ in \d+ ms \(warm")
        return floor, list(series.values()), warm
    finally:
        for tool in tools:
            tool.close()
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    floor, rows, warm = run(args.rounds)
    print(table(".py save → new version served (Flask + Jinja2 app)", [floor, *rows], floor))
    by_name = {row.name: row for row in rows}
    ratio = by_name[WARM].median / floor.median
    verdict = "ok" if ratio <= TARGET_RATIO else "MISSED"
    print(
        f"pyair warm / floor: {ratio:.2f}x (target ≤ {TARGET_RATIO}: {verdict}); "
        f"warm / cold pyair: {by_name[WARM].median / by_name[COLD].median:.2f}x; "
        f"warm / {PEER}: {by_name[WARM].median / by_name[PEER].median:.2f}x; "
        f"warm restarts: {warm}/{args.rounds}"
    )


if __name__ == "__main__":
    main()
