"""The engine's routing, driven by a scripted change stream and a fake runtime.

No subprocess, no socket, no file touched: the project root does not even exist, and an audit
hook fails the test if the engine opens, lists, writes, binds or spawns anything. What the
engine orders is recorded by the fake runtime; what it tells observers, by the events.
"""

from __future__ import annotations

import io
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from supervisor.classify import Change, FileChange
from supervisor.config import BuildConfig, Config, ProcessConfig, RuleConfig, TemplatesConfig
from supervisor.console import Console
from supervisor.control import NO_AGENT, SWAPPED, TEMPLATE_ERROR, SwapResult, TemplateError
from supervisor.engine import Engine, State
from supervisor.errors import PyairError
from supervisor.events import (
    AppExited,
    AppStarted,
    AssetsChanged,
    BuildFailed,
    Event,
    ProcessExited,
    ProcessStarted,
    Restarting,
    RuleRan,
    TemplateFailed,
    TemplatesSwapped,
)
from supervisor.process import StepResult, StopReport

pytestmark = pytest.mark.anyio

ROOT = Path("/nonexistent/project")  # never created: the engine must not need it
DEADLINE_S = 5.0

# --------------------------------------------------------------------------- no OS effects

_SPAWNS = {"subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec", "os.system", "os.spawn"}
_FILES = {
    *("open", "os.listdir", "os.scandir", "os.mkdir", "os.remove", "os.rmdir", "os.rename"),
    *("os.chmod", "os.truncate", "os.utime", "os.link", "os.symlink", "shutil.rmtree"),
}
_SOCKETS = {"socket.bind", "socket.connect"}
_PYTHON_HOMES = tuple(
    str(Path(entry).resolve()) for entry in {*sys.path, sys.prefix, sys.base_prefix} if entry
)
_effects: list[str] | None = None  # recording while not None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _effects is None or event not in _SPAWNS | _FILES | _SOCKETS:
        return
    target = args[0] if args else None
    if event in _FILES:
        if isinstance(target, int):  # an open descriptor, not a path
            return
        path = str(Path(target.decode() if isinstance(target, bytes) else target).resolve())
        if path.startswith(_PYTHON_HOMES):  # an import finding its module
            return
    _effects.append(f"{event} {target!r}")


sys.addaudithook(_audit)


@contextmanager
def no_os_effects() -> Iterator[None]:
    """Fail when the code inside spawns, binds or opens, lists, writes anything."""
    global _effects
    _effects = []
    try:
        yield
        assert not _effects, f"the engine reached the OS: {_effects}"
    finally:
        _effects = None


# --------------------------------------------------------------------------- the fakes


class Ticks:
    """Something happened: lets a test wait for a condition, with a deadline."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def note(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def until(self, condition: Callable[[], object], what: str) -> None:
        try:
            with anyio.fail_after(DEADLINE_S):
                while not condition():
                    await self._event.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


class ScriptedChanges:
    """A change source whose batches the test delivers by hand."""

    watched_dirs = (ROOT,)

    def __init__(self) -> None:
        self._send: MemoryObjectSendStream[list[FileChange]] | None = None

    async def run(
        self,
        send: MemoryObjectSendStream[list[FileChange]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        async with send:
            self._send = send
            task_status.started()
            await anyio.sleep_forever()

    async def deliver(self, *names: str) -> None:
        """One batch: a modification of each of ``names`` (relative to the root)."""
        assert self._send is not None
        await self._send.send([(Change.modified, str(ROOT / name)) for name in names])


class FakeApp:
    def __init__(self, pid: int, generation: int) -> None:
        self.pid = pid
        self.generation = generation
        self.returncode: int | None = None
        self.stopped = False
        self.asked_to_stop = anyio.Event()  # it stops accepting the moment it is asked
        self.drain: anyio.Event | None = None  # set: stop() finishes only when it is set
        self._exited = anyio.Event()

    def exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    async def stop(self, *, interrupt: bool, kill_delay_ms: int) -> StopReport:
        self.asked_to_stop.set()
        if self.drain is not None:
            await self.drain.wait()
        self.stopped = True
        if self.returncode is None:
            self.exit(-15)
        return StopReport(graceful=True, duration_ms=1.0, killed=0)

    async def kill(self) -> None:
        self.stopped = True
        if self.returncode is None:
            self.exit(-9)


Outcome = Literal["ok", "fail", "hold"]


@dataclass
class FakeRuntime:
    """Records what the engine orders; builds, swaps and readiness answer from scripts."""

    ticks: Ticks
    steps: deque[Outcome] = field(default_factory=deque)  # per step run; then "ok"
    swaps: deque[SwapResult] = field(default_factory=deque)  # per swap; then swapped
    ran: list[str] = field(default_factory=list)  # commands, as they began
    cancelled: list[str] = field(default_factory=list)  # commands cancelled while held
    logged: list[StepResult] = field(default_factory=list)  # failures kept in the build log
    apps: list[FakeApp] = field(default_factory=list)
    processes: list[tuple[str, FakeApp]] = field(default_factory=list)  # as they started
    swapped: list[tuple[str, ...]] = field(default_factory=list)
    release: anyio.Event = field(default_factory=anyio.Event)  # lets held steps finish
    agent_pid: int | None = None
    holds_port: bool = False
    port_releases: int = 0
    drain_next: bool = False  # the next app started drains until the test sets its .drain

    async def released(self, app: FakeApp, stopped: anyio.Event) -> float:
        await app.asked_to_stop.wait()
        return 1.0

    def release_port(self) -> None:
        self.port_releases += 1

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    def environment(self) -> dict[str, str]:
        return {"PYAIR_TREE": "fake"}

    async def run_step(self, command: str, env: object, *, rule: str | None = None) -> StepResult:
        outcome = self.steps.popleft() if self.steps else "ok"
        self.ran.append(command)
        self.ticks.note()
        if outcome == "hold":
            try:
                await self.release.wait()
            except anyio.get_cancelled_exc_class():
                self.cancelled.append(command)
                self.ticks.note()
                raise
        code = 1 if outcome == "fail" else 0
        return StepResult(command, code, "make: *** [all] Error 1\n" if code else "", 1.0)

    def log_build_failure(self, result: StepResult) -> None:
        self.logged.append(result)

    async def start_app(self, env: object, generation: int) -> tuple[FakeApp, bool | None]:
        app = FakeApp(1000 + generation, generation)
        if self.drain_next:
            app.drain = anyio.Event()
        self.apps.append(app)
        self.agent_pid = app.pid
        self.ticks.note()
        return app, None

    async def start_process(self, process: ProcessConfig, generation: int) -> FakeApp:
        proc = FakeApp(2000 + len(self.processes), generation)
        self.processes.append((process.name, proc))
        self.ticks.note()
        return proc

    def started(self, name: str) -> list[FakeApp]:
        return [proc for each, proc in self.processes if each == name]

    async def wait_ready(self, app: object) -> float | None:
        return None

    async def swap(self, paths: tuple[str, ...], timeout_ms: int) -> SwapResult:
        self.swapped.append(tuple(paths))
        if self.swaps:
            return self.swaps.popleft()
        names = tuple(Path(path).name for path in paths)
        return SwapResult(ok=True, reason=SWAPPED, names=names, rtt_ms=2.0)

    def source_excerpt(self, file: str | None, line: int | None) -> list[str]:
        return [f">  {line} | " + "{{ broken }}"]


@dataclass
class Supervised:
    engine: Engine
    changes: ScriptedChanges
    runtime: FakeRuntime
    ticks: Ticks
    events: list[Event]
    out: io.StringIO

    @property
    def apps(self) -> list[FakeApp]:
        return self.runtime.apps

    def restarts(self) -> list[Restarting]:
        return [event for event in self.events if isinstance(event, Restarting)]

    def seen(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def until(self, condition: Callable[[], object], what: str) -> None:
        await self.ticks.until(condition, what)

    async def settled(self) -> None:
        """Every task of the engine is waiting: nothing more happens without new input."""
        await anyio.wait_all_tasks_blocked()


def make_config(**build: Any) -> Config:
    templates = build.pop("templates", TemplatesConfig())
    processes = build.pop("process", ())
    return Config(
        root=ROOT,
        build=BuildConfig(full_bin="python app.py", **build),
        templates=templates,
        process=processes,
    )


@asynccontextmanager
async def supervised(
    config: Config, *steps: Outcome, holds_port: bool = False
) -> AsyncIterator[Supervised]:
    """The engine running with scripted changes and a fake runtime, its first app started;
    ``holds_port``: the runtime holds the app's listening socket across restarts."""
    ticks = Ticks()
    events: list[Event] = []

    def observe(event: Event) -> None:
        events.append(event)
        ticks.note()

    out = io.StringIO()
    changes = ScriptedChanges()
    runtime = FakeRuntime(ticks, steps=deque(steps), holds_port=holds_port)
    engine = Engine(
        config, Console(stream=out), changes=changes, runtime=runtime, observers=[observe]
    )
    run = Supervised(engine, changes, runtime, ticks, events, out)
    codes: list[int] = []
    with no_os_effects():
        async with anyio.create_task_group() as tg:

            async def run_engine() -> None:
                codes.append(await engine.run())

            tg.start_soon(run_engine)
            await run.until(lambda: run.seen(AppStarted), "the first app")
            yield run
            engine.request_stop()
    assert codes == [0]
    assert all(app.returncode is not None for app in runtime.apps), "an app outlived the engine"
    assert all(proc.returncode is not None for _, proc in runtime.processes), "a process lives"


# --------------------------------------------------------------------------- the five rules


async def test_a_source_change_restarts() -> None:
    async with supervised(make_config()) as run:
        first = run.apps[0]
        await run.changes.deliver("app.py")
        await run.until(lambda: len(run.apps) == 2, "the new app")
        assert first.stopped and not run.apps[1].stopped
        assert run.restarts() == [
            Restarting("start"),
            Restarting("change", (str(ROOT / "app.py"),)),
        ]
        assert [event.generation for event in run.seen(AppStarted)] == [1, 2]
        assert run.runtime.swapped == []
        assert "watch  app.py changed\n" in run.out.getvalue()
        assert run.engine.restarts == 1


async def test_a_template_only_change_swaps_without_a_restart() -> None:
    async with supervised(make_config()) as run:
        await run.changes.deliver("templates/page.html")
        await run.until(lambda: run.seen(TemplatesSwapped), "the swap")
        await run.settled()
        page = str(ROOT / "templates" / "page.html")
        assert run.runtime.swapped == [(page,)]
        assert run.seen(TemplatesSwapped) == [TemplatesSwapped(("page.html",), (page,), 2.0)]
        assert len(run.apps) == 1 and not run.apps[0].stopped
        assert run.restarts() == [Restarting("start")]
        assert "swapped page.html in 2.0 ms (pid 1001, no restart)" in run.out.getvalue()


async def test_a_change_during_a_build_cancels_that_build() -> None:
    async with supervised(make_config(cmd="make"), "ok", "hold", "ok") as run:
        await run.changes.deliver("app.py")
        await run.until(lambda: len(run.runtime.ran) == 2, "the second build to begin")
        await run.changes.deliver("lib.py")  # while that build runs
        await run.until(lambda: len(run.apps) == 2, "the app of the newer build")
        await run.settled()
        assert run.runtime.ran == ["make", "make", "make"]
        assert run.runtime.cancelled == ["make"]
        assert run.restarts() == [
            Restarting("start"),
            Restarting("change", (str(ROOT / "lib.py"),)),
        ]
        assert len(run.apps) == 2, "only the newer build's app starts"


async def test_a_template_error_keeps_the_old_app() -> None:
    page = str(ROOT / "templates" / "page.html")
    error = TemplateError(page, 3, "unexpected '}'")
    async with supervised(make_config()) as run:
        run.runtime.swaps.append(SwapResult(ok=False, reason=TEMPLATE_ERROR, error=error))
        await run.changes.deliver("templates/page.html")
        await run.until(lambda: run.seen(TemplateFailed), "the template error")
        await run.settled()
        assert run.seen(TemplateFailed) == [
            TemplateFailed(page, 3, "unexpected '}'", (">  3 | {{ broken }}",))
        ]
        assert len(run.apps) == 1 and not run.apps[0].stopped
        assert run.restarts() == [Restarting("start")]
        # the message names the file relative to the project root (the event keeps it whole)
        said = "templates/page.html:3: unexpected '}'; the previous template keeps serving"
        assert f"pyair  {said}\n" in run.out.getvalue()


async def test_a_burst_delivered_as_one_batch_is_one_cycle() -> None:
    async with supervised(make_config()) as run:
        await run.changes.deliver(*(f"pkg/mod_{i}.py" for i in range(500)))
        await run.until(lambda: len(run.apps) == 2, "the restart")
        await run.changes.deliver("static/site.css")  # routed only after the burst was
        await run.until(lambda: run.seen(AssetsChanged), "the stylesheet")
        await run.settled()
        assert len(run.apps) == 2
        assert len(run.restarts()) == 2  # the start and one restart
        assert len(run.restarts()[1].paths) == 500
        assert run.out.getvalue().count("changed") == 2
        assert "(+497 more) changed\n" in run.out.getvalue()


# --------------------------------------------------------------------------- more rules


async def test_no_agent_to_swap_falls_back_to_a_restart() -> None:
    async with supervised(make_config()) as run:
        run.runtime.swaps.append(SwapResult(ok=False, reason=NO_AGENT))
        await run.changes.deliver("templates/page.html")
        await run.until(lambda: len(run.apps) == 2, "the fallback restart")
        page = str(ROOT / "templates" / "page.html")
        assert run.restarts()[1] == Restarting("change", (page,))
        assert "not swapped (no agent): restarting" in run.out.getvalue()


async def test_no_agent_with_on_no_agent_ignore_keeps_the_app() -> None:
    config = make_config(templates=TemplatesConfig(on_no_agent="ignore"))
    async with supervised(config) as run:
        run.runtime.swaps.append(SwapResult(ok=False, reason=NO_AGENT))
        await run.changes.deliver("templates/page.html")
        await run.settled()
        assert "templates/page.html changed; not swapped (no agent), ignored" in run.out.getvalue()
        assert len(run.apps) == 1 and not run.apps[0].stopped
        assert run.restarts() == [Restarting("start")]


async def test_a_failed_build_keeps_the_old_app() -> None:
    async with supervised(make_config(cmd="make"), "ok", "fail") as run:
        await run.changes.deliver("app.py")
        await run.until(lambda: run.seen(BuildFailed), "the failed build")
        await run.settled()
        assert len(run.apps) == 1 and not run.apps[0].stopped
        assert run.engine.state is State.running
        assert [result.command for result in run.runtime.logged] == ["make"]
        assert run.seen(BuildFailed) == [BuildFailed("make", 1, "make: *** [all] Error 1\n")]
        assert "build failed: the previous app keeps serving" in run.out.getvalue()
        await run.changes.deliver("app.py")  # fixed: the next change builds and restarts
        await run.until(lambda: len(run.apps) == 2, "the fixed build's app")


async def test_stop_on_error_stops_the_old_app_until_a_build_passes() -> None:
    config = make_config(cmd="make", stop_on_error=True)
    async with supervised(config, "ok", "fail") as run:
        await run.changes.deliver("app.py")
        await run.until(lambda: run.apps[0].stopped, "the old app stopped")
        await run.settled()
        assert run.engine.state is State.crashed
        assert len(run.apps) == 1
        await run.changes.deliver("app.py")
        await run.until(lambda: len(run.apps) == 2, "the app of the passing build")


async def test_a_template_change_during_a_restart_is_left_to_the_new_app() -> None:
    async with supervised(make_config(cmd="make"), "ok", "hold") as run:
        await run.changes.deliver("app.py")
        await run.until(lambda: len(run.runtime.ran) == 2, "the build to begin")
        await run.changes.deliver("templates/page.html")
        await run.settled()
        run.runtime.release.set()
        await run.until(lambda: len(run.apps) == 2, "the new app")
        await run.settled()
        assert run.runtime.swapped == []  # the new app reads the template afresh
        assert run.runtime.cancelled == []


async def test_an_app_that_exits_waits_for_a_change() -> None:
    async with supervised(make_config()) as run:
        run.apps[0].exit(3)
        await run.until(lambda: run.seen(AppExited), "the exit")
        await run.settled()
        assert run.seen(AppExited) == [AppExited(1001, 3)]
        assert run.engine.state is State.crashed and len(run.apps) == 1
        assert "app exited with code 3; waiting for a change" in run.out.getvalue()
        await run.changes.deliver("app.py")
        await run.until(lambda: len(run.apps) == 2, "the restart after a change")


# --------------------------------------------------------------------------- the held port


async def test_with_the_port_held_the_new_app_starts_while_the_old_one_drains() -> None:
    async with supervised(make_config(), holds_port=True) as run:
        old = run.apps[0]
        old.drain = anyio.Event()
        await run.changes.deliver("app.py")
        await run.until(lambda: len(run.apps) == 2, "the new app, the old one still draining")
        assert old.asked_to_stop.is_set() and not old.stopped and old.returncode is None
        old.drain.set()
        await run.settled()
        assert old.stopped and old.returncode is not None
        assert run.engine.app is run.apps[1] and not run.apps[1].stopped
        assert run.runtime.port_releases == 0  # its exit was the restart's, not a crash


@pytest.mark.parametrize(
    ("overlap", "holds_port"), [(False, True), (True, False)], ids=["overlap-off", "not-held"]
)
async def test_the_new_app_starts_after_the_old_one_is_gone(
    overlap: bool, holds_port: bool
) -> None:
    async with supervised(make_config(overlap=overlap), holds_port=holds_port) as run:
        old = run.apps[0]
        old.drain = anyio.Event()
        await run.changes.deliver("app.py")
        await run.until(lambda: old.asked_to_stop.is_set(), "the old app asked to stop")
        await run.settled()
        assert len(run.apps) == 1
        old.drain.set()
        await run.until(lambda: len(run.apps) == 2, "the new app once the old one is gone")
        assert old.stopped


async def test_an_app_that_crashes_lets_go_of_the_port() -> None:
    async with supervised(make_config(), holds_port=True) as run:
        run.apps[0].exit(1)
        await run.until(lambda: run.runtime.port_releases == 1, "the port let go")
        await run.changes.deliver("app.py")
        await run.until(lambda: len(run.apps) == 2, "the next app")


async def test_a_change_source_that_cannot_start_is_one_error() -> None:
    class Unwatchable(ScriptedChanges):
        async def run(
            self,
            send: MemoryObjectSendStream[list[FileChange]],
            *,
            task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
        ) -> None:
            async with send, anyio.create_task_group():  # fails inside its own task group
                raise PermissionError(13, "Permission denied", str(ROOT))

    runtime = FakeRuntime(Ticks())
    engine = Engine(
        make_config(), Console(stream=io.StringIO()), changes=Unwatchable(), runtime=runtime
    )
    with no_os_effects(), pytest.raises(PyairError) as raised:
        await engine.run()
    assert str(raised.value) == (f"cannot watch {ROOT}: [Errno 13] Permission denied: '{ROOT}'")
    assert runtime.apps == []


# --------------------------------------------------------------------------- rules and processes

SASS = RuleConfig.finish(0, {"name": "css", "cmd": "sass", "include_ext": ("scss",), "delay": 0})


def process(name: str, **keys: Any) -> ProcessConfig:
    return ProcessConfig.finish(0, {"name": name, "cmd": f"run {name}", **keys})


async def test_a_rules_file_runs_the_rule_and_never_restarts() -> None:
    async with supervised(make_config(rules=(SASS,))) as run:
        await run.changes.deliver("assets/site.scss")
        await run.until(lambda: run.seen(RuleRan), "the rule's run")
        await run.settled()
        assert run.runtime.ran == ["sass"]
        assert run.seen(RuleRan)[0].paths == (str(ROOT / "assets" / "site.scss"),)
        assert len(run.apps) == 1 and not run.apps[0].stopped
        assert run.restarts() == [Restarting("start")] and run.runtime.swapped == []
        assert "build  [css] assets/site.scss changed: $ sass\n" in run.out.getvalue()


async def test_a_rule_runs_once_per_burst_and_once_more_for_changes_during_a_run() -> None:
    rule = RuleConfig.finish(0, {"cmd": "sass", "include_ext": ("scss",), "delay": 100})
    async with supervised(make_config(rules=(rule,)), "hold", "ok") as run:
        runner = run.engine.rules[0]
        for i in range(20):  # 20 batches, each within the rule's quiet window
            await run.changes.deliver(f"scss/part_{i}.scss")
        await run.until(lambda: runner.running, "the first run")
        for i in range(3):  # while it runs: queued, not run in parallel
            await run.changes.deliver(f"scss/late_{i}.scss")
        await run.settled()
        assert runner.runs == 1
        run.runtime.release.set()
        await run.until(lambda: runner.runs == 2 and runner.idle, "exactly one more run")
        await run.settled()
        first, second = run.seen(RuleRan)
        assert len(first.paths) == 20 and len(second.paths) == 3
        assert run.runtime.ran == ["sass", "sass"] and len(run.apps) == 1


async def test_a_failing_rule_is_one_line_and_the_app_keeps_running() -> None:
    async with supervised(make_config(rules=(SASS,)), "fail") as run:
        await run.changes.deliver("site.scss")
        await run.until(lambda: run.seen(RuleRan), "the rule's run")
        assert not run.seen(RuleRan)[0].ok
        assert [result.command for result in run.runtime.logged] == ["sass"]
        assert "[css] failed (exit 1) in " in run.out.getvalue()
        assert ": make: *** [all] Error 1\n" in run.out.getvalue()
        assert len(run.apps) == 1 and not run.apps[0].stopped


async def test_a_process_with_the_app_policy_restarts_with_the_app() -> None:
    config = make_config(process=(process("worker"), process("tailwind", restart="never")))
    async with supervised(config) as run:
        await run.until(lambda: run.runtime.started("worker"), "the worker")
        await run.changes.deliver("app.py")
        await run.until(lambda: len(run.runtime.started("worker")) == 2, "the new worker")
        await run.settled()
        old, new = run.runtime.started("worker")
        assert old.stopped and not new.stopped and len(run.apps) == 2
        (tailwind,) = run.runtime.started("tailwind")  # kept running across the restart
        assert not tailwind.stopped
        reasons = [(e.name, e.reason) for e in run.seen(ProcessStarted)]
        assert sorted(reasons) == [("tailwind", "start"), ("worker", "app"), ("worker", "start")]


async def test_a_process_with_its_own_patterns_restarts_alone() -> None:
    config = make_config(process=(process("beat", include_dir=("schedules",)),))
    async with supervised(config) as run:
        await run.until(lambda: run.runtime.started("beat"), "the process")
        await run.changes.deliver("schedules/nightly.yaml")
        await run.until(lambda: len(run.runtime.started("beat")) == 2, "its restart")
        await run.settled()
        assert run.runtime.started("beat")[0].stopped
        assert len(run.apps) == 1 and not run.apps[0].stopped  # not the app's file
        await run.changes.deliver("app.py")  # the app's file: the app only
        await run.until(lambda: len(run.apps) == 2, "the app's restart")
        await run.settled()
        assert len(run.runtime.started("beat")) == 2


async def test_a_process_that_exits_reruns_with_back_off_and_the_app_stays() -> None:
    config = make_config(process=(process("worker"),), rerun_delay=5)
    async with supervised(config) as run:
        await run.until(lambda: run.runtime.started("worker"), "the worker")
        for n in (1, 2, 3):
            run.runtime.started("worker")[-1].exit(1)
            await run.until(lambda n=n: len(run.runtime.started("worker")) == n + 1, f"rerun {n}")
        assert [e.code for e in run.seen(ProcessExited)] == [1, 1, 1]
        out = run.out.getvalue()
        for delay in (5, 10, 20):  # doubling
            assert f"exited with code 1; rerun in {delay} ms" in out
        assert len(run.apps) == 1 and not run.apps[0].stopped
