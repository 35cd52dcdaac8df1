"""Where the milliseconds of a save go: a template swap and a ``.py`` restart, step by step.

    python -m benchmarks.breakdown --rounds 30

pyair's engine runs in this process, exactly as ``pyair -d`` would (its own watcher, control
socket, zygote and guardian), with probes on the steps of a change: the lines it prints are
time-stamped as they are written, the engine's events are recorded, the control socket's
``swap`` and the engine's stop of the old app are timed, and the app writes
``time.perf_counter()`` (CLOCK_MONOTONIC, the same clock in every process) as its first line.
Each round saves a file (truncate + write, as editors do) and polls the app until it serves
the new text. Debug output costs a little: the end-to-end figures of ``benchmarks.templates``
and ``benchmarks.reload`` (pyair as a subprocess, no ``-d``) are the reference; this one says
where their time goes.
"""

from __future__ import annotations

import argparse
import functools
import io
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from supervisor import control, engine
from supervisor.config import load_config
from supervisor.console import Console
from supervisor.events import AppStarted, Event, Restarting
from supervisor.watcher import Watcher

from .common import APP, Series, free_port, poll_until, write_version
from .templates import APP as TEMPLATE_APP
from .templates import BASE_HTML, PAGE_HTML, READY, save_page

WARMUP = 3
SETTLE_S = 0.3  # between rounds: the previous restart's aftermath (zygote refill) settles
FIRST_LINE = "import time as _t; open('first_line', 'a').write(f'{_t.perf_counter()}\\n')\n"

TOML = """
[build]
full_bin = "{python} app.py"
[env]
PORT = "{port}"
"""


class StampedStream(io.TextIOBase):
    """A text stream that remembers when each chunk was written."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.chunks.append((time.perf_counter(), text))
        return len(text)

    def isatty(self) -> bool:
        return False

    def first(self, pattern: str, after: float) -> float | None:
        regex = re.compile(pattern)
        for stamp, text in self.chunks:
            if stamp >= after and regex.search(text):
                return stamp
        return None


@dataclass
class Probes:
    stream: StampedStream = field(default_factory=StampedStream)
    events: list[tuple[float, Event]] = field(default_factory=list)
    swaps: list[tuple[float, float, float]] = field(default_factory=list)  # start, end, agent ms
    stops: list[tuple[float, float]] = field(default_factory=list)

    def on_event(self, event: Event) -> None:
        self.events.append((time.perf_counter(), event))

    def event(self, kind: type[Any], after: float) -> float | None:
        return next((t for t, e in self.events if t >= after and isinstance(e, kind)), None)

    def swap_after(self, after: float, timeout: float = 5.0) -> tuple[float, float, float] | None:
        """(sent, acked, agent ms) of the first swap sent after ``after``, once it is acked."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((swap for swap in self.swaps if swap[0] >= after), None)
            if found is not None:
                return found
            time.sleep(0.001)  # poll
        return None


def _install(probes: Probes) -> Callable[[], None]:
    """Time ControlServer.swap and Engine._stop_app; returns the undo."""
    original_swap = control.ControlServer.swap
    original_stop = engine.Engine._stop_app

    @functools.wraps(original_swap)
    async def swap(self: control.ControlServer, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = await original_swap(self, *args, **kwargs)
        probes.swaps.append((start, time.perf_counter(), result.ms))
        return result

    @functools.wraps(original_stop)
    async def stop_app(self: engine.Engine, *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        had_app = self.app is not None
        await original_stop(self, *args, **kwargs)  # a hand-off returns once it stopped accepting
        if had_app:
            probes.stops.append((start, time.perf_counter()))

    control.ControlServer.swap = swap  # type: ignore[method-assign]
    engine.Engine._stop_app = stop_app  # type: ignore[method-assign]

    def undo() -> None:
        control.ControlServer.swap = original_swap  # type: ignore[method-assign]
        engine.Engine._stop_app = original_stop  # type: ignore[method-assign]

    return undo


Step = tuple[str, Callable[[float, float], float | None]]  # label, (t0, served) -> ms


def run_engine(
    project: Path,
    port: int,
    ready: str,
    rounds: int,
    one_round: Callable[[Probes], None],
    *,
    settled: str,
) -> Probes:
    """Supervise ``project`` in-process; ``one_round`` is called (in a thread) each round once
    the app serves ``ready`` and pyair logged ``settled``."""
    probes = Probes()
    (project / ".air.toml").write_text(TOML.format(python=sys.executable, port=port))
    config = load_config(project / ".air.toml", cwd=project)
    console = Console(config.log, config.color, config.screen, debug=True, stream=probes.stream)
    undo = _install(probes)

    def drive() -> None:
        poll_until(port, ready, timeout=30)
        deadline = time.monotonic() + 20
        while probes.stream.first(settled, 0.0) is None:
            if time.monotonic() > deadline:
                lines = "".join(text for _, text in probes.stream.chunks)
                raise TimeoutError(f"no /{settled}/ in pyair's output:\n{lines}")
            time.sleep(0.01)  # poll
        for _ in range(WARMUP + rounds):
            one_round(probes)
            time.sleep(SETTLE_S)

    async def main() -> None:
        supervisor = engine.Engine(config, console, debug=True, observers=[probes.on_event])
        async with anyio.create_task_group() as tg:
            tg.start_soon(supervisor.run)
            try:
                await anyio.to_thread.run_sync(drive)
            finally:
                supervisor.request_stop()

    try:
        anyio.run(main)
    finally:
        undo()
    return probes


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else (b - a) * 1000


@dataclass
class Round:
    t0: float
    served: float
    marks: dict[str, float | None]


def _table(title: str, steps: Sequence[str], rounds: Sequence[Round]) -> str:
    lines = [title, f"{'step':<46} {'n':>4} {'median ms':>10} {'p90 ms':>8}"]
    for step in steps:
        row = Series(step, [v for r in rounds[WARMUP:] if (v := r.marks.get(step)) is not None])
        lines.append(f"{step:<46} {len(row.samples):>4} {row.median:>10.2f} {row.pct(90):>8.2f}")
    return "\n".join(lines)


# --- template swap ------------------------------------------------------------------------------

SWAP_STEPS = [
    "save → watcher sees it",
    "watcher sees it → batch out (quiet window)",
    "batch out → swap sent (engine, classify)",
    "swap sent → ack (agent round trip)",
    "  of which the agent (compile + swap)",
    "ack → new HTML served (next GET)",
    "total save → served",
]


def template_rounds(base: Path, rounds: int) -> list[Round]:
    project = base / "tpl"
    (project / "templates").mkdir(parents=True)
    (project / "app.py").write_text(TEMPLATE_APP)
    (project / "templates" / "base.html").write_text(BASE_HTML)
    (project / "templates" / "page.html").write_text(PAGE_HTML.replace("@N@", "0"))
    port = free_port()
    done: list[Round] = []
    counter = iter(range(1, 10**6))

    def one(probes: Probes) -> None:
        t0, needle = save_page(project, next(counter))
        served = poll_until(port, needle)
        seen = probes.stream.first(r"modified .*page\.html", t0)
        batch = probes.stream.first(r"batch of", t0)
        swap = probes.swap_after(t0)  # the page may be served before the ack is back
        start, end, agent_ms = swap if swap else (None, None, None)
        marks = [
            _ms(t0, seen),
            _ms(seen, batch),
            _ms(batch, start),
            _ms(start, end),
            agent_ms,
            _ms(end, served),
            _ms(t0, served),
        ]
        done.append(Round(t0, served, dict(zip(SWAP_STEPS, marks, strict=True))))

    run_engine(project, port, READY, rounds, one, settled=r"agent connected")
    return done


# --- .py restart --------------------------------------------------------------------------------

RESTART_STEPS = [
    "save → watcher sees it",
    "watcher sees it → batch out (quiet window)",
    "batch out → restart begins (engine, classify)",
    "stop the old app (signal → tree gone)",
    "tree gone → new app spawned (zygote fork)",
    "spawned → new app's first line",
    "first line → new version served (import, bind, GET)",
    "total save → first line",
    "total save → served",
]


def restart_rounds(base: Path, rounds: int) -> list[Round]:
    project = base / "py"
    project.mkdir(parents=True)
    (project / "app.py").write_text(FIRST_LINE + APP)
    port = free_port()
    done: list[Round] = []
    counter = iter(range(1, 10**6))

    def first_line(after: float) -> float | None:
        path = project / "first_line"
        stamps = [float(s) for s in path.read_text().split()] if path.exists() else []
        return next((s for s in stamps if s >= after), None)

    def one(probes: Probes) -> None:
        n = next(counter)
        t0 = write_version(project / "app.py", str(n))
        served = poll_until(port, f"version={n}")
        seen = probes.stream.first(r"modified .*app\.py", t0)
        batch = probes.stream.first(r"batch of", t0)
        began = probes.event(Restarting, t0)
        stop = next(((s, e) for s, e in probes.stops if s >= t0), None)
        spawned = probes.event(AppStarted, t0)
        line = first_line(t0)
        stopped = stop[1] if stop else None
        marks = [
            _ms(t0, seen),
            _ms(seen, batch),
            _ms(batch, began),
            _ms(stop[0], stopped) if stop else None,
            _ms(stopped, spawned),
            _ms(spawned, line),
            _ms(line, served),
            _ms(t0, line),
            _ms(t0, served),
        ]
        done.append(Round(t0, served, dict(zip(RESTART_STEPS, marks, strict=True))))

    run_engine(project, port, "version=0", rounds, one, settled=r"zygote \d+ .*is warm")
    return done


# --- the watcher alone ----------------------------------------------------------------------------


def watcher_alone(base: Path, rounds: int) -> list[Series]:
    """save → batch out of the Watcher itself (no engine, no debug output), per backend:
    a template (eager: acted on once written and closed) and a .py file (``delay`` of quiet)."""
    project = base / "alone"
    (project / "templates").mkdir(parents=True)
    (project / "app.py").write_text('VERSION = "0"\n')
    (project / "templates" / "page.html").write_text("<p>0</p>\n")
    rows = []
    for backend in ("inotify", "poll"):
        config = load_config(None, overrides={"build.poll": str(backend == "poll")}, cwd=project)
        for rel in ("templates/page.html", "app.py"):
            row = Series(f"{backend}: {rel}")
            count = rounds if backend == "inotify" else max(5, rounds // 5)
            anyio.run(_time_watcher, config, project / rel, count, row)
            rows.append(row)
    return rows


async def _time_watcher(config: Any, path: Path, rounds: int, row: Series) -> None:
    send, receive = anyio.create_memory_object_stream[list[Any]](10)
    watcher = Watcher(config, eager=lambda p: p.endswith(".html"))
    async with receive, anyio.create_task_group() as tg:
        await tg.start(watcher.run, send)
        for n in range(rounds + WARMUP):
            text = path.read_text()
            t0 = time.perf_counter()
            with open(path, "w") as out:  # truncate + write, as editors do
                out.write(text + f"<!-- {n} -->\n")
            await receive.receive()
            if n >= WARMUP:
                row.samples.append((time.perf_counter() - t0) * 1000)
            await anyio.sleep(0.05)
        tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="pyair-bench-steps-"))
    try:
        rows = watcher_alone(base, args.rounds)
        lines = ["save → batch out of the watcher alone (in-process, no debug output)"]
        lines.append(f"{'backend: file':<46} {'n':>4} {'median ms':>10} {'p90 ms':>8}")
        for row in rows:
            lines.append(
                f"{row.name:<46} {len(row.samples):>4} {row.median:>10.2f} {row.pct(90):>8.2f}"
            )
        print("\n".join(lines))
        print()
        swaps = template_rounds(base, args.rounds)
        print(
            _table("template save → served, step by step (pyair -d, in-process)", SWAP_STEPS, swaps)
        )
        print()
        restarts = restart_rounds(base, args.rounds)
        title = ".py save → served, step by step (tiny http.server app, warm restarts)"
        print(_table(title, RESTART_STEPS, restarts))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
