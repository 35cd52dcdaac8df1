"""``pyair smoke``: one command that checks the whole dev loop on the real app, for CI.

    $ pyair smoke -c .air.toml --json smoke.json
    build         -      skip  no [build] cmd or pre_cmd
    ready       412 ms   ok    pid 4242 answers http://127.0.0.1:8000/
    procs       501 ms   ok    worker pid 4243, tailwind pid 4244 running
    swap         31 ms   ok    templates/page.html swapped in pid 4242 (page.html), no restart
    restart     530 ms   ok    app.py: pid 4242 -> 4250, ready again; worker pid 4243 -> 4251
    stop         95 ms   ok    no process of the app tree left
    smoke passed in 1.1 s

The engine runs in this process; an observer queues its events, and each step waits for the
events that prove it, with a deadline (``--timeout``, per step):

1. build: ``pre_cmd`` and ``cmd`` succeed (``BuildFailed`` fails it).
2. ready: the app answers its ``ready_url`` with 2xx/3xx, or answers HTTP at all on its port
   (``[proxy] app_port``, ``PORT`` in ``[env]``, the command's ``--port``; see
   :mod:`supervisor.readiness`) (``AppReady``; ``AppExited``, ``AppNotReady`` or the deadline
   fail it).
2b. procs, when the config has ``[[process]]`` entries: each one started and is still running
   a moment later (``ProcessStarted``; a ``ProcessExited`` fails it).
3. swap, when a watched template exists: a comment is appended to it; ``TemplatesSwapped``
   passes, ``Restarting`` (a restart instead of a swap), ``TemplateFailed`` or the deadline fail.
4. restart: a comment is appended to a source file; ``Restarting`` then ``AppReady`` passes,
   once every process with ``restart = "app"`` started again too.
5. stop: ``request_stop()``, the engine returns, and no process of the app tree is left: none
   carries the tree token, and (Linux) none of the orphans this process adopted as the child
   subreaper of the app tree is alive. A daemon that double-forked out of the app's session and
   dropped ``PYAIR_TREE`` from its environment is invisible to pyair's tree sweep, but it is
   re-parented here and reported. Leftovers are killed after they are reported.

Touched files get their exact bytes and atime/mtime back as the stop begins, and again in a
``finally`` (a no-op by then): also on failure, Ctrl-C or SIGTERM, which the engine turns into
a stop that the steps see as an interruption. A file edited by someone else during the run is
left as it is, and said so. Exit codes: 0 every step passed, 1 a step failed (one line each),
2 bad usage or config, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anyio

from .classify import Change, classify
from .config import Config, find_config, load_config
from .console import Console
from .engine import Engine
from .errors import ConfigError, PyairError
from .events import (
    AppExited,
    AppNotReady,
    AppReady,
    AppStarted,
    BuildFailed,
    Event,
    ProcessExited,
    ProcessStarted,
    Restarting,
    Stopping,
    TemplateFailed,
    TemplatesSwapped,
)
from .process import GIVE_UP_S, adopt_orphans, child_pids, command_line, kill_processes, tree_pids
from .readiness import probe_target
from .runtime import LocalRuntime
from .sources import project_files
from .watcher import build_filter

DEFAULT_TIMEOUT_S = 30.0
VERDICT_GRACE_S = 1.0  # the ready step waits this much past --timeout for the engine's verdict
AGENT_WAIT_S = 5.0  # how long the swap step waits for the app's template agent to say hello
ALIVE_S = 1.0  # the processes step: each one must still run this long after its start
POLL_S = 0.02  # while leftovers are being killed
EXIT_INTERRUPTED = 130

# What is appended to a touched file, by extension: a comment that keeps the file valid.
_COMMENTS: dict[str, str] = {
    **dict.fromkeys(("py", "pyi", "pyx", "rb", "sh", "toml", "yaml", "yml", "cfg", "r"), "#"),
    **dict.fromkeys(("js", "mjs", "cjs", "ts", "tsx", "jsx", "go", "rs", "java", "kt"), "//"),
    **dict.fromkeys(("c", "h", "cc", "cpp", "hpp", "cs", "swift", "scss", "less"), "//"),
    **dict.fromkeys(("html", "htm", "xml", "svg", "tpl", "tmpl", "vue", "ejs", "hbs"), "<!--"),
    **dict.fromkeys(("jinja", "jinja2", "j2", "njk"), "{#"),
    **dict.fromkeys(("sql", "lua", "hs"), "--"),
    "mako": "##",
    "css": "/*",
}
_CLOSERS = {"<!--": " -->", "{#": " #}", "/*": " */"}


def touch_text(path: Path, data: bytes) -> bytes:
    """What a smoke touch appends to ``path`` (whose content is ``data``).

    A ``pyair smoke`` comment in the file's own syntax, on a line of its own; a bare newline
    for kinds without comments (json, txt).
    """
    opener = _COMMENTS.get(path.suffix.lstrip(".").lower())
    line = f"{opener} pyair smoke{_CLOSERS.get(opener, '')}" if opener else ""
    newline = b"" if not data or data.endswith(b"\n") else b"\n"
    return newline + line.encode() + b"\n"


# --------------------------------------------------------------------------- touched files


@dataclass(frozen=True)
class _Saved:
    data: bytes
    atime_ns: int
    mtime_ns: int
    touched: bytes  # what the file holds after the touch


class TouchedFiles:
    """Appends smoke comments to files and puts back their exact bytes, atime and mtime."""

    def __init__(self) -> None:
        self._saved: dict[Path, _Saved] = {}

    def touch(self, path: Path) -> None:
        """Append a harmless comment to ``path`` (the first touch saves the original)."""
        saved = self._saved.get(path)
        if saved is None:
            stat = path.stat()  # before the read, which may move atime
            data = path.read_bytes()
            saved = _Saved(data, stat.st_atime_ns, stat.st_mtime_ns, data + touch_text(path, data))
            self._saved[path] = saved
        with path.open("wb") as out:  # in place: same inode, mode and links
            out.write(saved.touched)

    def restore(self) -> list[str]:
        """Put every touched file back; one line per file that could not be (idempotent)."""
        problems: list[str] = []
        for path, saved in list(self._saved.items()):
            try:
                current = path.read_bytes()
                if current not in (saved.touched, saved.data):
                    problems.append(
                        f"{path} was changed by someone else during the run: left as it is "
                        "(remove the 'pyair smoke' line by hand)"
                    )
                    del self._saved[path]
                    continue
                if current != saved.data:
                    with path.open("wb") as out:
                        out.write(saved.data)
                os.utime(path, ns=(saved.atime_ns, saved.mtime_ns))
                del self._saved[path]
            except OSError as exc:
                problems.append(f"cannot restore {path}: {exc}")
        return problems

    def __len__(self) -> int:
        return len(self._saved)


# --------------------------------------------------------------------------- what to touch


def _command_files(config: Config) -> Iterator[Path]:
    """Files the app command names: ``app.py``, ``server.js``, ``main:app``, ``--app app``."""
    try:
        command = config.app_command().display
    except PyairError:
        return
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    for token in tokens:
        if token.startswith("-"):
            token = token.partition("=")[2]
        if not token:
            continue
        yield config.root / token
        module = token.partition(":")[0]
        if module and all(part.isidentifier() for part in module.split(".")):
            base = config.root.joinpath(*module.split("."))
            yield base.with_name(base.name + ".py")
            yield base / "__init__.py"


def _action(path: Path, config: Config) -> str:
    return classify([(Change.modified, str(path))], config).action


def pick_files(config: Config) -> tuple[Path | None, Path | None]:
    """(a watched template, a watched source file) of the project, either may be None.

    The source file is one the app command names (``app.py``, ``manage.py``, ``main`` of
    ``main:app``), else the first watched source file under root; the template the first one
    under root (``templates/`` directories first).
    """
    accept = build_filter(config)

    def watched(path: Path) -> bool:
        return path.is_file() and accept(Change.modified, str(path))

    source = next(
        (
            path
            for path in _command_files(config)
            if watched(path) and _action(path, config) == "restart"
        ),
        None,
    )
    template = None
    for path in project_files(config):
        if not watched(path):
            continue
        action = _action(path, config)
        if template is None and action == "swap":
            template = path
        elif source is None and action == "restart":
            source = path
        if template is not None and source is not None:
            break
    return template, source


# --------------------------------------------------------------------------- the report


@dataclass
class Step:
    name: str
    status: str = "skip"  # "ok", "fail" or "skip"
    ms: float | None = None
    detail: str = ""

    def line(self) -> str:
        took = f"{self.ms:>7.0f} ms" if self.ms is not None else f"{'-':>7}   "
        return f"{self.name:<8} {took}  {self.status:<4}  {self.detail}"


STEP_NAMES = ("build", "ready", "procs", "swap", "restart", "stop")


@dataclass
class Report:
    config: str | None
    ready: str
    steps: list[Step] = field(default_factory=list)
    interrupted: bool = False
    total_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(step.status != "fail" for step in self.steps)

    @property
    def failures(self) -> list[str]:
        return [f"{step.name}: {step.detail}" for step in self.steps if step.status == "fail"]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 0 if self.ok else 1

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "interrupted": self.interrupted,
            "config": self.config,
            "ready": self.ready,
            "total_ms": round(self.total_ms, 1),
            "steps": [
                {**asdict(step), "ms": None if step.ms is None else round(step.ms, 1)}
                for step in self.steps
            ],
            "failures": self.failures,
        }


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _build_failure(event: BuildFailed) -> str:
    lines = [line.strip() for line in event.output.splitlines() if line.strip()]
    last = f": {lines[-1][:160]}" if lines else ""
    return f"build failed (exit {event.returncode}): {event.command}{last}"


# --------------------------------------------------------------------------- the run


class Smoke:
    """One smoke run of ``config``: see the module docstring."""

    def __init__(
        self,
        config: Config,
        console: Console,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        template: Path | None = None,
        source: Path | None = None,
        out: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.template = template
        self.source = source
        self.out = out
        self.runtime = LocalRuntime(config, console)
        self.engine = Engine(config, console, observers=[self._observe], runtime=self.runtime)
        self.files = TouchedFiles()
        self.report = Report(
            config=str(config.source) if config.source else None,
            ready=target.where if (target := probe_target(config)) is not None else "",
        )
        self._send, self._events = anyio.create_memory_object_stream[tuple[float, Event]](math.inf)
        self._stop_sent = False
        self._scope: anyio.CancelScope | None = None
        self._adopting = False
        self._baseline: set[int] = set()
        self.pid: int | None = None  # the app's current pid
        self.process_starts: dict[str, list[tuple[int, str]]] = {}  # name: (pid, reason)...
        self.process_exits: dict[str, list[int]] = {}  # name: exit codes
        self._running: tuple[Step, float] | None = None  # the step now running, since when
        self._started = time.perf_counter()

    # -- events ---------------------------------------------------------------------------

    def _observe(self, event: Event) -> None:
        if isinstance(event, Stopping) and not self._stop_sent:
            self.report.interrupted = True
            if self._scope is not None:
                self._scope.cancel()
        if isinstance(event, AppStarted):
            self.pid = event.pid
        if isinstance(event, ProcessStarted):
            self.process_starts.setdefault(event.name, []).append((event.pid, event.reason))
        if isinstance(event, ProcessExited):
            self.process_exits.setdefault(event.name, []).append(event.code)
        self._send.send_nowait((time.perf_counter(), event))

    async def _next(self, deadline: float) -> tuple[float, Event] | None:
        """The next event, or None once ``deadline`` (time.monotonic) passed."""
        with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
            return await self._events.receive()
        return None

    def _deadline(self) -> float:
        return time.monotonic() + self.timeout

    async def _until(self, condition: Callable[[], bool], deadline: float) -> bool:
        """Take events until ``condition()`` holds (True) or ``deadline`` passed (False)."""
        while not condition():
            if await self._next(deadline) is None:
                return condition()
        return True

    # -- steps ----------------------------------------------------------------------------

    def _begin(self, name: str, at: float | None = None) -> None:
        """``name`` is the step now running, since ``at`` (perf_counter; default: now)."""
        self._running = (Step(name), time.perf_counter() if at is None else at)

    def _end(self, status: str, detail: str) -> None:
        """The running step ends with ``status``; it is recorded and printed."""
        assert self._running is not None
        step, started = self._running
        self._running = None
        step.ms = (time.perf_counter() - started) * 1000
        self._record(step, status, detail)

    def _record(self, step: Step, status: str, detail: str) -> None:
        step.status = status
        step.detail = detail
        self.report.steps.append(step)
        self.out(step.line())

    def _skip(self, name: str, detail: str) -> None:
        self._record(Step(name), "skip", detail)

    async def _start(self) -> bool:
        """The build and the first start: True once the app is ready."""
        has_build = bool(self.config.build.cmd or self.config.build.pre_cmd)
        if has_build:
            self._begin("build", self._started)
        else:
            self._skip("build", "no [build] cmd or pre_cmd")
            self._begin("ready", self._started)
        # the engine's own verdict (its ready_timeout is --timeout too) says what the app did:
        # give it the time to arrive before this deadline speaks
        deadline = self._deadline() + VERDICT_GRACE_S
        while True:
            got = await self._next(deadline)
            if got is None:
                if has_build:
                    reason = f"the build did not finish within {self.timeout:g} s"
                elif self.pid is None:
                    reason = f"no app started within {self.timeout:g} s (see the log above)"
                else:
                    reason = (
                        f"pid {self.pid} did not answer {self.report.ready} "
                        f"within {self.timeout:g} s"
                    )
                self._end("fail", reason)
                return False
            at, event = got
            if isinstance(event, BuildFailed):
                self._end("fail", _build_failure(event))
                return False
            if isinstance(event, Restarting) and has_build:
                has_build = False
                self._end("ok", "pre_cmd and cmd succeeded")
                self._begin("ready", at)
            elif isinstance(event, AppReady):
                self._end("ok", f"pid {event.pid} {event.answer or 'answers ' + self.report.ready}")
                return True
            elif isinstance(event, AppNotReady):
                self._end(
                    "fail",
                    f"pid {event.pid} was not ready within "
                    f"{self.config.build.ready_timeout / 1000:g} s: {event.reason}",
                )
                return False
            elif isinstance(event, AppExited):
                self._end("fail", f"the app exited with code {event.code} before it was ready")
                return False

    async def _swap(self) -> None:
        template = self.template
        if template is None:
            self._skip("swap", "no watched template in the project")
            return
        rel = _rel(template, self.config.root)
        agent = await self.runtime.control.wait_for_agent(min(self.timeout, AGENT_WAIT_S))
        old_pid = self.pid
        self._begin("swap")
        self.files.touch(template)
        deadline = self._deadline()
        while True:
            got = await self._next(deadline)
            if got is None:
                self._end(
                    "fail",
                    f"{rel} was neither swapped nor restarted within {self.timeout:g} s "
                    "(is it watched? see [build] include_ext and [templates])",
                )
                return
            _at, event = got
            if isinstance(event, TemplatesSwapped):
                names = f" ({', '.join(event.names)})" if event.names else ""
                what = "swapped" if event.names else "not loaded by the app yet, nothing to swap"
                self._end("ok", f"{rel} {what} in pid {old_pid}{names}, no restart")
                return
            if isinstance(event, TemplateFailed):
                self._end("fail", f"{rel} stopped compiling once touched: {event.message}")
                return
            if isinstance(event, Restarting):
                why = (
                    "the template agent did not answer"
                    if agent
                    else "no pyair template agent in the app: does it render with Jinja2, "
                    "Django or Mako, or register() its engine?"
                )
                self._end("fail", f"{rel}: the app restarted instead of swapping it ({why})")
                await self._ready_again()
                return
            if isinstance(event, AppExited):
                self._end("fail", f"the app exited with code {event.code} after {rel} changed")
                return

    async def _ready_again(self) -> None:
        """After a restart the swap step did not expect: wait for the new app (no step)."""
        deadline = self._deadline()
        while (got := await self._next(deadline)) is not None:
            if isinstance(got[1], AppReady | AppNotReady | AppExited | BuildFailed):
                return

    async def _restart(self) -> None:
        source = self.source
        if source is None:
            self._record(
                Step("restart"), "fail", "no watched source file to touch (pass --source FILE)"
            )
            return
        rel = _rel(source, self.config.root)
        old_pid = self.pid
        before = {name: len(self.process_starts.get(name, [])) for name in self._names}
        self._begin("restart")
        self.files.touch(source)
        restarted = False
        deadline = self._deadline()
        while True:
            got = await self._next(deadline)
            if got is None:
                if restarted:
                    reason = f"after {rel} changed the app was not ready within {self.timeout:g} s"
                else:
                    reason = (
                        f"touching {rel} did not restart the app within {self.timeout:g} s "
                        "(is it watched? see [build] include_ext and exclude_dir)"
                    )
                self._end("fail", reason)
                return
            _at, event = got
            if isinstance(event, Restarting):
                restarted = True
            elif isinstance(event, BuildFailed):
                self._end("fail", f"after {rel} changed: {_build_failure(event)}")
                return
            elif isinstance(event, AppReady) and restarted:
                if event.pid == old_pid:
                    self._end("fail", f"{rel}: the app is ready but kept pid {old_pid}")
                else:
                    await self._restart_ok(source, old_pid, event.pid, before, deadline)
                return
            elif isinstance(event, AppNotReady):
                self._end(
                    "fail",
                    f"after {rel} changed, pid {event.pid} was not ready within "
                    f"{self.config.build.ready_timeout / 1000:g} s: {event.reason}",
                )
                return
            elif isinstance(event, AppExited):
                self._end("fail", f"after {rel} changed the app exited with code {event.code}")
                return

    async def _processes(self) -> bool:
        """Every ``[[process]]`` entry started and still runs ALIVE_S later."""
        names = [process.name for process in self.config.process]
        if not names:
            self._skip("procs", "no [[process]] in the config")
            return True
        self._begin("procs")
        if not await self._until(lambda: all(n in self.process_starts for n in names),
                                 self._deadline()):  # fmt: skip
            missing = ", ".join(n for n in names if n not in self.process_starts)
            self._end("fail", f"not started within {self.timeout:g} s: {missing} (see the log)")
            return False
        await self._until(lambda: bool(self.process_exits), time.monotonic() + ALIVE_S)
        if self.process_exits:
            name, codes = next(iter(self.process_exits.items()))
            self._end("fail", f"{name} exited with code {codes[0]} right after it started")
            return False
        running = ", ".join(f"{n} pid {self.process_starts[n][-1][0]}" for n in names)
        self._end("ok", f"{running} running")
        return True

    def _should_restart(self, source: Path) -> list[str]:
        """The processes a change to ``source`` restarts: "app" ones, and those it is one of
        the own files of."""
        own = classify([(Change.modified, str(source))], self.config).processes
        return [p.name for p in self.config.process if p.restart == "app" or p.name in own]

    def _process_restarts(self, source: Path, before: dict[str, int]) -> tuple[bool, str]:
        """After a source change: did each process follow its policy? (done, what)"""
        said: list[str] = []
        wanted = self._should_restart(source)
        for process in self.config.process:
            starts = self.process_starts.get(process.name, [])
            if process.name not in wanted:
                if len(starts) != before[process.name]:
                    return False, f"{process.name} restarted (restart = {process.restart!r})"
                continue
            fresh = starts[before[process.name] :]
            if not fresh:
                return False, f"{process.name} was not restarted (restart = {process.restart!r})"
            said.append(
                f"{process.name} pid {starts[before[process.name] - 1][0]} -> {fresh[-1][0]}"
            )
        return True, "; ".join(said)

    @property
    def _names(self) -> list[str]:
        return [process.name for process in self.config.process]

    async def _restart_ok(
        self, source: Path, old_pid: int | None, pid: int, before: dict[str, int], deadline: float
    ) -> None:
        """The app is ready again: the processes that restart with it must have, too."""
        rel = _rel(source, self.config.root)
        detail = f"{rel}: pid {old_pid} -> {pid}, ready again"
        wanted = self._should_restart(source)

        def restarted() -> bool:
            return all(len(self.process_starts.get(n, [])) > before[n] for n in wanted)

        await self._until(restarted, deadline)
        done, what = self._process_restarts(source, before)
        if not done:
            self._end("fail", f"after {rel} changed: {what}")
            return
        self._end("ok", f"{detail}; {what}" if what else detail)

    async def _steps(self) -> None:
        if await self._start() and await self._processes():
            await self._swap()
            await self._restart()

    def _leftovers(self) -> set[int]:
        found = tree_pids(self.runtime.token)
        if self._adopting:
            found |= child_pids() - self._baseline
        return found

    async def _kill_leftovers(self) -> dict[int, str]:
        """Leftovers of the app tree (pid: command line, read before the kill), killed."""
        seen: dict[int, str] = {}
        give_up = time.monotonic() + GIVE_UP_S
        while (found := self._leftovers()) and time.monotonic() < give_up:
            for pid in found - seen.keys():
                seen[pid] = command_line(pid, 60)
            kill_processes(found)
            await anyio.sleep(POLL_S)  # poll
        return seen

    async def _stop(self, engine_done: anyio.Event) -> bool:
        """Stop the engine and check the tree is gone; False if the engine did not return."""
        self._begin("stop")
        problems = self.files.restore()  # first: the engine ignores changes once stopping
        grace = self.timeout + self.config.build.kill_delay / 1000 + GIVE_UP_S
        with anyio.move_on_after(grace):
            await engine_done.wait()
        if not engine_done.is_set():
            self._end("fail", f"pyair did not stop within {grace:g} s")
            return False
        assert self._running is not None
        step, started = self._running
        step.ms = (time.perf_counter() - started) * 1000  # the leftover check is not the stop's
        self._running = None
        with anyio.CancelScope(shield=True):
            leftovers = await self._kill_leftovers()
        if leftovers:
            shown = ", ".join(f"pid {pid} ({leftovers[pid]})" for pid in sorted(leftovers))
            detail = (
                f"{len(leftovers)} process(es) of the app tree outlived the stop "
                f"(killed now): {shown}"
            )
            self._record(step, "fail", detail)
        else:
            self._record(step, "ok", "no process of the app tree left")
        for problem in problems:
            self._record(Step("files"), "fail", problem)
        return True

    async def _run(self) -> Report:
        self._started = time.perf_counter()
        engine_done = anyio.Event()

        async def run_engine() -> None:
            try:
                await self.engine.run()
            finally:
                engine_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_engine)
            try:
                with anyio.CancelScope() as self._scope:
                    await self._steps()
            finally:
                self._scope = None
                self._stop_sent = True
                self.engine.request_stop()
                self.files.restore()
            if self._running is not None:  # cancelled by an interruption
                self._end("skip", "interrupted")
            ran = {step.name for step in self.report.steps}
            for name in STEP_NAMES[:-1]:
                if name not in ran:
                    why = "interrupted" if self.report.interrupted else "an earlier step failed"
                    self._skip(name, f"not run: {why}")
            if not await self._stop(engine_done):
                tg.cancel_scope.cancel()  # the guardian kills the tree on the way out
        self.report.total_ms = (time.perf_counter() - self._started) * 1000
        return self.report

    def run(self) -> Report:
        """Run every step (blocking); the files are restored whatever happens."""
        self._adopting = adopt_orphans(True)
        self._baseline = child_pids() if self._adopting else set()
        try:
            return anyio.run(self._run)
        except KeyboardInterrupt:  # before the engine's signal handling started, or after it
            self.report.interrupted = True
            return self.report
        finally:
            for problem in self.files.restore():
                self.out(f"files: {problem}")
            if self._adopting:
                adopt_orphans(False)


# --------------------------------------------------------------------------- command line


def _file_option(value: str | None, option: str, config: Config, action: str) -> Path | None:
    """``--template`` / ``--source``: an existing, watched file whose change means ``action``."""
    if value is None:
        return None
    path = Path(value).expanduser()
    path = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if not path.is_file():
        raise ConfigError(f"{option}: {value} is not a file", hint="give a file of the project")
    if not build_filter(config)(Change.modified, str(path)):
        raise ConfigError(
            f"{option}: {value} is not watched",
            hint="see [build] include_ext, include_dir and exclude_dir",
        )
    if _action(path, config) != action:
        kind = "a template" if action == "swap" else "a source file"
        raise ConfigError(
            f"{option}: {value} is not {kind} by this config",
            hint="see [templates] include_ext and include_dir",
        )
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyair smoke",
        description="Build, start, wait ready, swap one template, restart on one source file, "
        "stop, and check nothing is left; exit 0 when all of it held.",
    )
    parser.add_argument("-c", "--config", metavar="FILE", type=Path, help="config file")
    parser.add_argument(
        "--url", help="ready when this URL answers 2xx/3xx (overrides [build] ready_url)"
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"deadline of each step in seconds (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the report here")
    parser.add_argument("--template", metavar="FILE", help="the template to touch")
    parser.add_argument("--source", metavar="FILE", help="the source file to touch")
    parser.add_argument("--no-swap", action="store_true", help="skip the template step")
    return parser


def main(argv: Sequence[str]) -> int:
    """``pyair smoke``: 0 when every step held, 1 when one failed, 2 on bad usage or config."""
    args = _parser().parse_args(list(argv))
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise ConfigError(f"--timeout: {args.timeout:g} is not a positive number of seconds")
    path = find_config(args.config, Path.cwd())
    overrides = {"build.ready_timeout": str(math.ceil(args.timeout * 1000))}
    if args.url:
        overrides["build.ready_url"] = args.url
    config = load_config(path, overrides=overrides)
    if probe_target(config) is None:
        raise ConfigError(
            "pyair smoke needs to know when the app is ready",
            path=path,
            hint="pass --url http://127.0.0.1:8000/, set [proxy] app_port or PORT in [env], "
            "or give the command a --port",
        )
    template, source = pick_files(config)
    template = _file_option(args.template, "--template", config, "swap") or template
    source = _file_option(args.source, "--source", config, "restart") or source
    if args.no_swap:
        template = None
    console = Console(config.log, config.color, config.screen)
    smoke = Smoke(
        config,
        console,
        timeout=args.timeout,
        template=template,
        source=source,
        out=lambda line: print(line, flush=True),
    )
    report = smoke.run()
    if report.interrupted:
        print(f"smoke interrupted after {report.total_ms / 1000:.1f} s", flush=True)
    elif report.ok:
        print(f"smoke passed in {report.total_ms / 1000:.1f} s", flush=True)
    else:
        print(f"smoke failed in {report.total_ms / 1000:.1f} s:", flush=True)
        for failure in report.failures:
            print(f"FAIL {failure}", flush=True)
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"cannot write {args.json}: {exc}", flush=True)
            return max(report.exit_code, 1)
    return report.exit_code
