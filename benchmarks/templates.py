"""Template save→served: pyair's hot-swap vs a restart-on-.html peer; render throughput with and
without the agent.

    python -m benchmarks.templates --rounds 30 --requests 300

1. Latency. Each tool supervises its own copy of a Jinja2 app on http.server that keeps a
   module-level ``Template`` with ``auto_reload=False`` (so only a swap or a restart shows an
   edit). Every round saves a new ``templates/page.html`` into each copy in turn (truncate +
   write, as editors do) and polls ``GET /`` until the new HTML is served. The peer is the
   ``watchfiles`` CLI restarting the same app on changes under ``templates/``. Interleaved
   rounds, so the machine's noise hits every tool alike. The rounds pyair measured must all
   come from the same pid (swapped in place, never restarted).
2. Throughput. The same app twice: started by hand (no bootstrap) and under pyair (bootstrap on
   PYTHONPATH, agent connected and proven live by one swap). Batches of N sequential GETs
   against each, alternating which goes first; requests/s per batch.

Targets: median save→served ≤ 10 ms and p95 ≤ 60 ms for the swap; no measurable throughput cost.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.childside import CONTROL_ENV

from .common import REPO, Series, Supervised, bench_env, fetch, pyair_argv, watchfiles_cli

TARGET_MEDIAN_MS = 10.0
TARGET_P95_MS = 60.0
WARMUP = 3  # rounds per tool that are not counted (the agent's hello, first imports)
SETTLE_S = 0.2  # pause between tools in a round: the previous tool's restart settles

APP = """\
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")), auto_reload=False
)
PAGE = env.get_template("page.html")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = PAGE.render(pid=os.getpid(), items=range(20)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

BASE_HTML = """\
<!doctype html><html><head><title>{% block title %}bench{% endblock %}</title></head>
<body>{% block content %}{% endblock %}
<ul>{% for item in items %}<li>item {{ item }}</li>{% endfor %}</ul>
<footer>pid={{ pid }}</footer></body></html>
"""

PAGE_HTML = '{% extends "base.html" %}\n{% block content %}<p>page r@N@</p>{% endblock %}\n'

PYAIR_TOML = """
[build]
full_bin = "{python} app.py"
{extra}
[env]
PORT = "{port}"
"""


READY = "page r0<"


def make_project(where: Path) -> None:
    (where / "templates").mkdir(parents=True)
    (where / "app.py").write_text(APP)
    (where / "templates" / "base.html").write_text(BASE_HTML)
    (where / "templates" / "page.html").write_text(PAGE_HTML.replace("@N@", "0"))


def save_page(project: Path, n: int) -> tuple[float, str]:
    """Save a new page.html the way an editor does (truncate + write); (t0, what then serves)."""
    text = PAGE_HTML.replace("@N@", str(n))
    t0 = time.perf_counter()
    with open(project / "templates" / "page.html", "w") as out:
        out.write(text)
    return t0, f"page r{n}<"


def served_pid(port: int) -> int:
    body = fetch(port) or ""
    found = re.search(r"pid=(\d+)", body)
    if found is None:
        raise RuntimeError(f"port {port} served no pid: {body[:200]!r}")
    return int(found[1])


Argv = Callable[[Path, int], list[str]]


def pyair(extra: str = "") -> Argv:
    def argv(project: Path, port: int) -> list[str]:
        config = PYAIR_TOML.format(python=sys.executable, port=port, extra=extra)
        (project / ".air.toml").write_text(config)
        return pyair_argv("-c", str(project / ".air.toml"))

    return argv


def plain_app(project: Path, port: int) -> list[str]:
    return [sys.executable, "app.py"]


# --- 1. save → served ---------------------------------------------------------------------------


@dataclass
class Latency:
    rows: list[Series]
    swap_rtt: list[float]  # the agent's round trip as pyair logged it, default config
    notes: list[str]


def latency(rounds: int) -> Latency:
    base = Path(tempfile.mkdtemp(prefix="pyair-bench-tpl-"))
    tools = [
        Supervised(name, base, argv, make_project, ready=READY)
        for name, argv in (
            ("pyair swap (default config)", pyair()),
            ("pyair swap (build.delay = 0)", pyair("delay = 0")),
            ("watchfiles CLI (restart on .html)", watchfiles_cli("templates")),
        )
    ]
    series = [Series(tool.name) for tool in tools]
    notes: list[str] = []
    swap_rtt: list[float] = []
    pids: list[int] = []
    try:
        for i in range(WARMUP + rounds):
            for tool, row in zip(tools, series, strict=True):
                ms = tool.round(save_page)
                if i >= WARMUP:
                    row.samples.append(ms)
                time.sleep(SETTLE_S)  # settle
            if i == WARMUP - 1:
                pids = [served_pid(tool.port) for tool in tools[:2]]
        for tool, pid in zip(tools[:2], pids, strict=True):
            same = served_pid(tool.port) == pid
            swaps = re.findall(r"swapped page\.html in ([\d.]+) ms", tool.text())
            notes.append(
                f"{tool.name}: {len(swaps)} swaps for {WARMUP + rounds} saves, "
                f"pid {'unchanged' if same else 'CHANGED'} over the measured rounds"
            )
            if not same:
                raise RuntimeError(f"{tool.name} restarted the app:\n{tool.text()}")
            if tool is tools[0]:
                swap_rtt = [float(ms) for ms in swaps[-rounds:]]
    finally:
        for tool in tools:
            tool.close()
        shutil.rmtree(base, ignore_errors=True)
    return Latency(series, swap_rtt, notes)


def latency_table(title: str, rows: Sequence[Series], baseline: Series) -> str:
    lines = [
        title,
        f"{'tool':<34} {'n':>4} {'median ms':>10} {'p90 ms':>8} {'p95 ms':>8} {'vs pyair':>9}",
    ]
    for row in rows:
        ratio = row.median / baseline.median if baseline.samples else float("nan")
        lines.append(
            f"{row.name:<34} {len(row.samples):>4} {row.median:>10.1f} {row.pct(90):>8.1f} "
            f"{row.pct(95):>8.1f} {ratio:>8.2f}x"
        )
    return "\n".join(lines)


def verdict(row: Series) -> str:
    def check(value: float, target: float) -> str:
        return f"{value:.1f} ms {'ok' if value <= target else 'MISSED'}"

    return (
        f"targets for {row.name}: median ≤ {TARGET_MEDIAN_MS:.0f} ms: "
        f"{check(row.median, TARGET_MEDIAN_MS)}; p95 ≤ {TARGET_P95_MS:.0f} ms: "
        f"{check(row.pct(95), TARGET_P95_MS)}"
    )


# --- 2. render throughput -------------------------------------------------------------------------


def throughput(rounds: int, requests: int) -> tuple[Series, Series, str]:
    base = Path(tempfile.mkdtemp(prefix="pyair-bench-rps-"))
    plain = Supervised("plain `python app.py`", base, plain_app, make_project, ready=READY)
    under = Supervised("under pyair (agent loaded)", base, pyair(), make_project, ready=READY)
    rows = {plain.name: Series(plain.name), under.name: Series(under.name)}
    try:
        # prove the agent is live in that app: one save, swapped in place
        pid = served_pid(under.port)
        under.round(save_page)
        live = served_pid(under.port) == pid and "swapped page.html" in under.text()
        note = f"agent {'live (one save swapped in place)' if live else 'NOT LIVE'} in pid {pid}"
        for i in range(rounds + 1):
            order = (plain, under) if i % 2 == 0 else (under, plain)
            for app in order:
                started = time.perf_counter()
                for _ in range(requests):
                    if fetch(app.port) is None:
                        raise RuntimeError(f"{app.name}: a request failed")
                rps = requests / (time.perf_counter() - started)
                if i:  # the first round warms both up
                    rows[app.name].samples.append(rps)
    finally:
        plain.close()
        under.close()
        shutil.rmtree(base, ignore_errors=True)
    return rows[plain.name], rows[under.name], note


RENDER_CODE = """
import sys, time, app
page, env = app.PAGE, app.env
started = time.perf_counter()
for _ in range({n}):
    page.render(pid=1, items=range(20))
    env.get_template("page.html").render(pid=1, items=range(20))
rate = {n} / (time.perf_counter() - started)
print(rate, any(name.endswith("agent._jinja") for name in sys.modules))
"""


def render_rate(rounds: int, renders: int = 5000) -> tuple[Series, Series]:
    """Renders/s inside one process, with the agent's hooks installed and without.

    With the bootstrap on PYTHONPATH and PYAIR_CONTROL naming a socket nobody listens on, the
    agent patches Jinja2 exactly as under pyair (its connection attempt just fails).
    """
    base = Path(tempfile.mkdtemp(prefix="pyair-bench-render-"))
    make_project(base)
    plain = Series("plain `import app`")
    hooked = Series("with the agent's Jinja2 hooks")
    bootstrap = str(REPO / "supervisor" / "agent" / "bootstrap")
    envs = {
        plain.name: bench_env(0) | {"PYTHONPATH": ""},
        hooked.name: bench_env(0)
        | {"PYTHONPATH": bootstrap, CONTROL_ENV: str(base / "nobody.sock")},
    }
    try:
        for i in range(rounds):
            for row in (plain, hooked) if i % 2 == 0 else (hooked, plain):
                out = subprocess.run(
                    [sys.executable, "-c", RENDER_CODE.format(n=renders)],
                    cwd=base,
                    env=envs[row.name],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rate, patched = out.stdout.split()
                if (patched == "True") != (row is hooked):
                    raise RuntimeError(f"{row.name}: agent hooks installed = {patched}")
                row.samples.append(float(rate))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return plain, hooked


def throughput_table(
    title: str, rows: Sequence[Series], baseline: Series, unit: str = "req/s"
) -> str:
    lines = [
        title,
        f"{'app':<34} {'n':>4} {'median ' + unit:>13} {'p10 ' + unit:>10} {'vs plain':>9}",
    ]
    for row in rows:
        ratio = row.median / baseline.median if baseline.samples else float("nan")
        lines.append(
            f"{row.name:<34} {len(row.samples):>4} {row.median:>13.0f} {row.pct(10):>10.0f} "
            f"{ratio:>8.3f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Series]:
    """Print the tables; returns the save→served rows (pyair's swap first, the peer last)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=300, help="GETs per throughput batch")
    args = parser.parse_args(argv)

    result = latency(args.rounds)
    swap, _zero, peer = result.rows
    title = "template save → new HTML served (Jinja2 app, kept Template, auto_reload=False)"
    print(latency_table(title, result.rows, swap))
    for note in result.notes:
        print(note)
    if result.swap_rtt:
        print(
            f"agent round trip (pyair → agent → ack): median "
            f"{statistics.median(result.swap_rtt):.1f} ms, max {max(result.swap_rtt):.1f} ms"
        )
    print(f"watchfiles CLI / pyair swap: {peer.median / swap.median:.2f}x median")
    print(verdict(swap))

    plain, under, note = throughput(args.rounds, args.requests)
    print()
    title = f"render throughput (GET / on the same app, {args.requests} sequential GETs per batch)"
    print(throughput_table(title, [plain, under], plain))
    print(note)
    print(ratio_line("under pyair / plain", plain, under))

    bare, hooked = render_rate(args.rounds)
    print()
    title = "in-process render rate (kept Template + env.get_template, 5000 each per run)"
    print(throughput_table(title, [bare, hooked], bare, unit="r/s"))
    print(ratio_line("hooks installed / plain", bare, hooked))
    return result.rows


def ratio_line(label: str, base: Series, other: Series) -> str:
    """The ratio of medians, plus each round's own pair (run back to back) against drift."""
    paired = Series("paired", [b / a for a, b in zip(base.samples, other.samples, strict=True)])
    spread = statistics.pstdev(base.samples) / base.median if len(base.samples) > 1 else 0.0
    return (
        f"{label}: {other.median / base.median:.3f}x; per round {paired.median:.3f}x "
        f"(p10 {paired.pct(10):.3f}, p90 {paired.pct(90):.3f}); "
        f"run-to-run spread of the baseline ±{spread * 100:.1f} %"
    )


if __name__ == "__main__":
    main()
