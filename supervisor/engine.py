"""The supervisor's lifetime: one task group that owns the watcher, builds and the app.

    exit_code = anyio.run(Engine(config, console).run)

States: ``building`` → ``running`` → (change) ``building`` → ``running`` …; an app that exits
on its own leaves the engine ``crashed`` (waiting for the next change, or a rerun with
back-off); a first Ctrl-C/SIGTERM/SIGHUP moves to ``stopping`` and a second one kills at once.

The engine decides; it does nothing to the outside world itself. Changes come from a
:class:`ChangeSource` (the :class:`~supervisor.watcher.Watcher`), and every effect (a build
step, starting the app, a template swap, waiting until it answers) goes through a
:class:`Runtime` (:class:`~supervisor.runtime.LocalRuntime`). Tests hand it scripted ones::

    engine = Engine(config, console, changes=ScriptedChanges(), runtime=FakeRuntime())

Services never import each other: the watcher feeds batches through a memory object stream,
and this module routes each classified :class:`~supervisor.classify.Plan`.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import signal
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .classify import FileChange, Plan, classify, is_asset, is_template
from .companions import Backoff, Companion, Handle, RuleRunner
from .config import Config, ProcessConfig, config_warnings
from .console import Console
from .control import TEMPLATE_ERROR, SwapResult
from .errors import PyairError
from .events import (
    AppExited,
    AppNotReady,
    AppReady,
    AppStarted,
    AssetsChanged,
    BuildFailed,
    Event,
    ProcessExited,
    ProcessStarted,
    Restarting,
    RuleRan,
    Stopping,
    TemplateFailed,
    TemplatesSwapped,
)
from .process import StepResult, StopReport
from .proxy import Proxy
from .readiness import NotReady, Ready
from .runtime import LocalRuntime
from .watcher import Watcher, app_filter

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport
    from exceptiongroup import BaseExceptionGroup


class State(enum.Enum):
    idle = "idle"
    building = "building"
    running = "running"
    crashed = "crashed"
    stopping = "stopping"


# --------------------------------------------------------------------------- the seams


class ChangeSource(Protocol):
    """Where batches of file changes come from (the :class:`~supervisor.watcher.Watcher`)."""

    @property
    def watched_dirs(self) -> Sequence[Path]:
        """The directories watched (for the "watching N directories" line)."""
        ...

    async def run(
        self,
        send: MemoryObjectSendStream[list[FileChange]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Send one list per debounced batch until cancelled; ``started()`` once watching."""
        ...


class AppHandle(Protocol):
    """One started app (its process tree): what the engine watches and stops."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int:
        """Until the app exits on its own or is stopped: its exit code."""
        ...

    async def stop(self, *, interrupt: bool, kill_delay_ms: int) -> StopReport:
        """Stop the whole tree (polite signal, then SIGKILL after ``kill_delay_ms``)."""
        ...

    async def kill(self) -> None:
        """Kill the whole tree now, even while a ``stop()`` is still waiting."""
        ...


class Runtime(Protocol):
    """The effects the engine orders (:class:`~supervisor.runtime.LocalRuntime` does them)."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold what the effects need (guardian, control socket, zygote) until cancelled."""
        ...

    def environment(self) -> dict[str, str]:
        """The environment of build steps and the app, read afresh."""
        ...

    async def run_step(
        self, command: str, env: Mapping[str, str], *, rule: str | None = None
    ) -> StepResult:
        """One build step (or a ``[[build.rules]]`` command) through the shell, its output
        shown as it arrives."""
        ...

    async def start_process(self, process: ProcessConfig, generation: int) -> Handle:
        """Start one ``[[process]]`` entry's tree, its output shown under its name.
        PyairError if it cannot start."""
        ...

    def log_build_failure(self, result: StepResult) -> None:
        """Keep a failed build step's output in the build log."""
        ...

    async def start_app(
        self, env: Mapping[str, str], generation: int
    ) -> tuple[AppHandle, bool | None]:
        """(app, warm): warm True/False, None without a zygote. PyairError if it cannot start."""
        ...

    @property
    def holds_port(self) -> bool:
        """Whether pyair holds the app's listening socket across restarts."""
        ...

    async def released(self, app: AppHandle, stopped: anyio.Event) -> float:
        """Until ``app`` no longer accepts on the held socket, or ``stopped``; in ms."""
        ...

    def release_port(self) -> None:
        """Close the held socket: no app is coming (it crashed, or the build failed)."""
        ...

    async def wait_ready(self, app: AppHandle) -> Ready | NotReady | None:
        """Until ``app`` answers: Ready, NotReady (not in time, or it exited); None when there
        is nothing to probe (no port or URL known)."""
        ...

    async def swap(self, paths: Sequence[str], timeout_ms: int) -> SwapResult:
        """Ask the agent in the app to swap these templates; never raises."""
        ...

    @property
    def agent_pid(self) -> int | None:
        """The pid of the process whose agent answers swaps, if one is connected."""
        ...

    def source_excerpt(self, file: str | None, line: int | None) -> list[str]:
        """Numbered lines around a template error."""
        ...


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def one_line_error(error: BaseException) -> PyairError | None:
    """The :class:`PyairError` a failure comes down to, through any task groups around it.

    None when anything else is in it (a bug, which deserves its traceback).
    """
    leaves = list(_leaves(error))
    if leaves and all(isinstance(leaf, PyairError) for leaf in leaves):
        first = leaves[0]
        assert isinstance(first, PyairError)
        return first
    return None


# --------------------------------------------------------------------------- the engine


class Engine:
    """Supervises one app: watch, classify, build, restart; stop everything on the way out."""

    def __init__(
        self,
        config: Config,
        console: Console,
        *,
        debug: bool = False,
        observers: Sequence[Callable[[Event], None]] = (),
        changes: ChangeSource | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        """``changes`` and ``runtime`` default to a :class:`~supervisor.watcher.Watcher` of
        ``config.root`` and a :class:`~supervisor.runtime.LocalRuntime`."""
        self.config = config
        self.observers = list(observers)
        self.console = console
        self.debug = debug
        if changes is None:
            changes = Watcher(
                config, notice=console.warning, debug=console.debug, eager=self._acts_in_place
            )
        self.changes: ChangeSource = changes
        self.runtime: Runtime = runtime if runtime is not None else LocalRuntime(config, console)
        self.state = State.idle
        self.app: AppHandle | None = None
        self.restarts = 0
        self._app_lock = anyio.Lock()
        self._build_scope: anyio.CancelScope | None = None
        self._stop_requested = anyio.Event()
        self._force = False
        self._rerun_backoff = Backoff(config.build.rerun_delay)
        self._task_group: TaskGroup | None = None
        self._counts = app_filter(config)  # the app's own files (not a rule's, a process's)
        self.rules = [
            RuleRunner(rule.delay, functools.partial(self._run_rule, index))
            for index, rule in enumerate(config.build.rules)
        ]
        report = _ProcessLines(self)
        self.processes = {
            process.name: Companion(
                process.name,
                start=functools.partial(self.runtime.start_process, process),
                stop=self._stop_tree,
                report=report,
                backoff=Backoff(config.build.rerun_delay),
            )
            for process in config.process
        }
        self._process_started: set[str] = set()
        console.name_processes(list(self.processes))
        self._stopping: AppHandle | None = None
        self._draining: set[AppHandle] = set()  # old apps finishing while the new one serves
        self._generation = 0
        self._cycles = 0  # restart cycles in flight

    # -- lifetime ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until a stop signal; returns the process exit code (0 after a clean stop).

        What cannot start (a busy proxy port, a control socket that cannot be made, a
        directory that cannot be watched) raises one :class:`PyairError`, nothing left running.
        """
        self._banner()
        proxy = Proxy(self.config, self.console) if self.config.proxy.enabled else None
        if proxy is not None:
            await proxy.listen()  # a busy port: one clear error, nothing started
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                await self._start(tg, "runtime", self.runtime.run, failure="pyair cannot start")
                tg.start_soon(self._handle_signals, name="signals")
                send, receive = anyio.create_memory_object_stream[list[FileChange]](64)
                tg.start_soon(self._route_batches, receive, name="router")
                where = f"cannot watch {self.config.root}"
                await self._start(tg, "watcher", self.changes.run, send, failure=where)
                self.console.watcher(self._watching_line())
                for runner in self.rules:
                    tg.start_soon(runner.run, name="rule")
                for process in self.config.process:
                    if process.restart != "app":  # the others start with the app, built
                        await self._start_process(process.name, "start")
                if proxy is not None:  # listening before the app starts: requests wait
                    await self._start(tg, "proxy", proxy.serve, failure="the proxy cannot start")
                    self.observers.append(proxy.on_event)
                tg.start_soon(self._cycle, "start", None, name="cycle: start")
                await self._stop_requested.wait()
                await self._shutdown()
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            error = one_line_error(group)
            if error is None:
                raise
            raise error from None
        return 0

    async def _start(
        self,
        tg: TaskGroup,
        name: str,
        func: Callable[..., Coroutine[Any, Any, Any]],
        *args: object,
        failure: str,
    ) -> None:
        """``tg.start`` a service; what it raises before it is up becomes one line."""
        try:
            await tg.start(func, *args, name=name)
        except Exception as exc:
            error = one_line_error(exc)
            if error is not None:
                raise error from None
            for chunk in traceback.format_exception(exc):  # shown with -d
                for line in chunk.rstrip("\n").splitlines():
                    self.console.debug(line)
            first = next(_leaves(exc))
            raise PyairError(f"{failure}: {_describe(first)}") from exc

    def _banner(self) -> None:
        banner = self.config.misc.startup_banner
        if banner is None:
            from . import __version__

            self.console.main(f"pyair {__version__} · {self.config.app_command().display}")
        elif banner:
            self.console.main(banner)
        for key in self.config.unused_keys:
            self.console.warning(f"config key '{key}' means nothing to pyair and is ignored")
        for warning in config_warnings(self.config):
            self.console.warning(warning)

    def _watching_line(self) -> str:
        dirs = self.changes.watched_dirs
        return f"watching {len(dirs)} directories under {self.config.root}"

    def emit(self, event: Event) -> None:
        """Tell every observer; an observer that raises is reported, never fatal."""
        for observer in self.observers:
            try:
                observer(event)
            except Exception as exc:  # an observer's bug must not take the supervisor down
                self.console.warning(f"observer {observer!r} failed on {event}: {exc!r}")

    def request_stop(self) -> None:
        """Stop as the first Ctrl-C would (for programmatic runs such as smoke tests)."""
        self._stop_requested.set()

    def _acts_in_place(self, path: str) -> bool:
        """Swapped or refreshed without a restart: cheap to act on at once, even twice."""
        return is_template(path, self.config) or is_asset(path, self.config)

    async def _handle_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for signum in signals:
                if not self._stop_requested.is_set():
                    name = signal.Signals(signum).name
                    self.console.main(f"{name}: stopping (again to kill at once)")
                    self._stop_requested.set()
                else:
                    self.console.main("killing at once")
                    self._force = True
                    for victim in (self._stopping, self.app, *self._draining):
                        if victim is not None:
                            await victim.kill()  # a second signal: no more grace
                    for companion in self.processes.values():
                        await companion.kill()

    async def _shutdown(self) -> None:
        self.state = State.stopping
        self.emit(Stopping())
        if self._build_scope is not None:
            self._build_scope.cancel()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:  # the app and the processes at once
                tg.start_soon(self._stop_app, "exit")
                for companion in self.processes.values():
                    tg.start_soon(companion.close)
            for command in self.config.build.post_cmd:
                if self._force:
                    break
                await self.runtime.run_step(command, self.runtime.environment())

    # -- changes ------------------------------------------------------------------------------

    async def _route_batches(self, receive: MemoryObjectReceiveStream[list[FileChange]]) -> None:
        async with receive:
            async for batch in receive:
                if self._stop_requested.is_set():
                    return
                for change, path in batch:
                    self.console.debug(f"{change.name} {path}")
                plan = classify(batch, self.config, counts=self._counts)
                await self._on_plan(plan)

    async def _on_plan(self, plan: Plan) -> None:
        for index, paths in plan.rules:  # rules first: their files are theirs only
            self.rules[index].changed(paths)
        for name in plan.processes:
            if plan.action == "restart" and self.config.process_named(name).restart == "app":
                continue  # restarted with the app once the build passed
            self.console.process(name, "its files changed: restarting")
            self._restart_process(name, "files")
        if plan.action == "ignore":
            return
        what = plan.describe(str(self.config.root))
        if plan.action == "assets":
            self.console.watcher(f"{what} changed (static, served from disk)")
            self.emit(AssetsChanged(plan.assets, plan.css_only))
            return
        if plan.action == "swap":
            await self._swap_templates(plan, what)
            return
        self.console.clear_on_rebuild()
        self.console.watcher(f"{what} changed")
        self._restart(plan)

    def _restart(self, plan: Plan | None) -> None:
        assert self._task_group is not None
        if self._build_scope is not None:
            self._build_scope.cancel()
        self._task_group.start_soon(self._cycle, "change", plan, name="cycle: change")

    async def _swap_templates(self, plan: Plan, what: str) -> None:
        """Hot-swap ``plan.templates`` in the running app, or restart when no agent can."""
        if self._cycles and self.state is State.building:
            # the app about to be started reads every template afresh
            self.console.debug(f"{what} changed during a restart: the new app loads it")
            return
        timeout = self.config.templates.swap_timeout
        result = await self.runtime.swap(plan.templates, timeout_ms=timeout)
        if result.ok:
            self.console.runner(self._swapped_line(result, what))
            self.emit(TemplatesSwapped(result.names, plan.templates, result.rtt_ms))
            return
        if result.reason == TEMPLATE_ERROR and result.error is not None:
            error = result.error
            source = self.runtime.source_excerpt(error.file, error.line)
            shown = replace(error, file=self._relative(error.file))
            self.console.error(
                f"{str(shown).rstrip('.')}; the previous template keeps serving", source=source
            )
            self.emit(TemplateFailed(error.file, error.line, error.message, tuple(source)))
            return
        if self.config.templates.on_no_agent == "ignore":
            self.console.watcher(f"{what} changed; not swapped ({result.reason}), ignored")
            return
        self.console.watcher(f"{what} changed; not swapped ({result.reason}): restarting")
        self._restart(plan)

    def _relative(self, path: str | None) -> str | None:
        """``path`` as messages show it: relative to the project root when under it."""
        if not path:
            return path
        with contextlib.suppress(ValueError):
            return str(Path(path).relative_to(self.config.root))
        return path

    def _swapped_line(self, result: SwapResult, what: str) -> str:
        names = ", ".join(result.names) or what
        line = f"swapped {names} in {result.rtt_ms:.1f} ms"
        pids = result.pids or ((self.runtime.agent_pid,) if self.runtime.agent_pid else ())
        if len(pids) > 1:  # every worker of a pre-fork server swapped
            line += f" (pids {', '.join(map(str, pids))}, no restart)"
        elif pids:  # the process that swapped, not a shell in front of it
            line += f" (pid {pids[0]}, no restart)"
        if result.unclaimed:
            line += f"; no engine uses {len(result.unclaimed)} of the files"
        return line

    # -- build and restart ------------------------------------------------------------------

    async def _cycle(self, why: str, plan: Plan | None) -> None:
        """Build (cancellable by the next change), then swap the old app for a new one."""
        self._cycles += 1
        try:
            await self._build_and_start(why, plan.paths if plan else ())
        finally:
            self._cycles -= 1

    async def _build_and_start(self, why: str, paths: tuple[str, ...]) -> None:
        started = time.perf_counter()
        env = self.runtime.environment()
        with anyio.CancelScope() as scope:
            self._build_scope = scope
            self.state = State.building
            ok = await self._build(env)
        if scope.cancel_called or self._stop_requested.is_set():
            return
        if self._build_scope is scope:
            self._build_scope = None
        build_ms = _ms_since(started)
        if not ok:
            if self.config.build.stop_on_error:
                await self._stop_app("build failed")
                self.runtime.release_port()
                self.state = State.crashed
            else:
                if self.app is not None:
                    self.console.build("build failed: the previous app keeps serving")
                self.state = State.running if self.app is not None else State.crashed
            return
        for process in self.config.process:
            if process.restart == "app":
                self._restart_process(process.name, "start" if why == "start" else "app")
        async with self._app_lock:
            if self._stop_requested.is_set():
                return
            self.emit(Restarting(why, paths))
            await self._stop_app(why, hand_off=True)
            await self._start_app(env, build_ms=build_ms, started=started, why=why)

    async def _build(self, env: Mapping[str, str]) -> bool:
        steps = [*self.config.build.pre_cmd]
        if self.config.build.cmd:
            steps.append(self.config.build.cmd)
        for command in steps:
            self.console.build(f"$ {command}")
            result = await self.runtime.run_step(command, env)
            if not result.ok:
                self.console.error(f"build failed (exit {result.returncode}): {result.command}")
                self.runtime.log_build_failure(result)
                self.emit(BuildFailed(result.command, result.returncode, result.output))
                return False
        return True

    async def _start_app(
        self, env: Mapping[str, str], *, build_ms: float, started: float, why: str
    ) -> None:
        spawn_start = time.perf_counter()
        self._generation += 1
        generation = self._generation
        try:
            app, warm = await self.runtime.start_app(env, generation)
        except PyairError as exc:
            self.console.error(str(exc))
            self.state = State.crashed
            return
        self.app = app
        self.state = State.running
        if why != "start":
            self.restarts += 1
        self.emit(AppStarted(app.pid, generation))
        assert self._task_group is not None
        self._task_group.start_soon(self._watch_exit, app, env, name=f"app {app.pid}")
        ready = await self.runtime.wait_ready(app)
        if isinstance(ready, Ready):
            self.emit(AppReady(app.pid, generation, ready.ms, ready.answer))
        elif ready is not None:
            self.emit(AppNotReady(app.pid, generation, ready.reason))
        timing = f"build {build_ms:.0f} ms" if self.config.build.cmd else "no build"
        if warm is not None:  # warm: forked from the zygote; cold: a new interpreter
            timing = f"{'warm' if warm else 'cold'}, {timing}"
        if isinstance(ready, Ready):
            self.console.runner(
                f"pid {app.pid} ready in {ready.ms:.0f} ms ({timing}, "
                f"total {_ms_since(started):.0f} ms)"
            )
            self.console.debug(f"pid {app.pid} {ready.answer} ({ready.requests} request(s))")
        else:
            self.console.runner(
                f"started pid {app.pid} in {_ms_since(spawn_start):.0f} ms ({timing})"
            )

    async def _watch_exit(self, app: AppHandle, env: Mapping[str, str]) -> None:
        started = time.perf_counter()
        code = await app.wait()
        if self.app is not app or self.state in (State.stopping,) or self._stop_requested.is_set():
            return
        self.app = None
        self.state = State.crashed
        self.emit(AppExited(app.pid, code))
        self.runtime.release_port()  # a client hears "refused", not silence, until the next one
        if code == 0:
            self.console.runner("app exited (code 0); waiting for a change")
        else:
            self.console.error(f"app exited with code {code}; waiting for a change")
        if not self.config.build.rerun:
            return
        delay = self._rerun_backoff.next_delay(time.perf_counter() - started)
        self.console.runner(f"rerun in {delay} ms")
        await anyio.sleep(delay / 1000)
        async with self._app_lock:
            if self.app is None and not self._stop_requested.is_set():
                self.emit(Restarting("rerun"))
                await self._start_app(env, build_ms=0, started=time.perf_counter(), why="rerun")

    async def _stop_app(self, reason: str, *, hand_off: bool = False) -> None:
        """Stop the app's tree. ``hand_off`` (a restart, the port held, ``overlap``): return
        as soon as the old app stopped accepting, and let it finish in the background."""
        app, self.app = self.app, None
        if app is None:
            return
        build = self.config.build
        # an app that already exited may still have left children: stop() sweeps them at once
        delay = 0 if self._force or app.returncode is not None else build.kill_delay
        if hand_off and delay and build.overlap and self.runtime.holds_port:
            await self._hand_off(app, reason, delay)
            return
        self._stopping = app
        try:
            report = await app.stop(interrupt=build.send_interrupt, kill_delay_ms=delay)
        finally:
            self._stopping = None
        self._stopped(app, report, reason, delay)

    async def _hand_off(self, app: AppHandle, reason: str, delay: int) -> None:
        """Stop ``app`` in the background; return once it no longer accepts on the held
        socket: connections wait in the kernel's backlog for the new app, and the old one
        finishes its requests in flight (within ``kill_delay``) while the new one starts."""
        assert self._task_group is not None
        stopped = anyio.Event()
        self._draining.add(app)

        async def finish() -> None:
            try:
                report = await app.stop(
                    interrupt=self.config.build.send_interrupt, kill_delay_ms=delay
                )
            finally:
                self._draining.discard(app)
                stopped.set()
            self._stopped(app, report, reason, delay)

        self._task_group.start_soon(finish, name=f"stop {app.pid}")
        ms = await self.runtime.released(app, stopped)
        if not stopped.is_set():
            self.console.debug(
                f"pid {app.pid} stopped accepting in {ms:.0f} ms: the new app starts while it "
                "finishes"
            )

    def _stopped(self, app: AppHandle, report: StopReport, reason: str, delay: int) -> None:
        how = "stopped" if report.graceful else f"killed {report.killed} process(es)"
        self.console.debug(f"pid {app.pid} {how} in {report.duration_ms:.0f} ms ({reason})")
        if not report.graceful and delay:
            self.console.runner(f"pid {app.pid} did not stop within {delay} ms: killed")

    # -- build rules and extra processes ----------------------------------------------------

    async def _run_rule(self, index: int, paths: tuple[str, ...]) -> None:
        """One run of a ``[[build.rules]]`` command (its runner keeps it one at a time)."""
        rule = self.config.build.rules[index]
        what = Plan("ignore", sources=paths).describe(str(self.config.root))
        self.console.rule(rule.name, f"{what} changed: $ {rule.cmd}")
        started = time.perf_counter()
        result = await self.runtime.run_step(rule.cmd, self.runtime.environment(), rule=rule.name)
        ms = _ms_since(started)
        if result.ok:
            self.console.rule(rule.name, f"done in {ms:.0f} ms")
        else:
            lines = [line for line in result.output.splitlines() if line.strip()]
            last = f": {lines[-1].strip()[:200]}" if lines else ""
            self.console.rule(
                rule.name, f"failed (exit {result.returncode}) in {ms:.0f} ms{last}", error=True
            )
            self.runtime.log_build_failure(result)
        self.emit(RuleRan(rule.name, paths, result.returncode, result.output, ms))

    async def _start_process(self, name: str, reason: str) -> None:
        assert self._task_group is not None
        self._process_started.add(name)
        await self._task_group.start(self.processes[name].run, reason, name=f"process {name}")

    def _restart_process(self, name: str, reason: str) -> None:
        if self._stop_requested.is_set():
            return
        if name in self._process_started:
            self.processes[name].restart(reason)
            return
        assert self._task_group is not None
        self._process_started.add(name)
        self._task_group.start_soon(self.processes[name].run, reason, name=f"process {name}")

    async def _stop_tree(self, handle: Handle) -> StopReport:
        build = self.config.build
        delay = 0 if self._force or handle.returncode is not None else build.kill_delay
        return await handle.stop(interrupt=build.send_interrupt, kill_delay_ms=delay)


class _ProcessLines:
    """How the engine reports its extra processes: a line under the process's name, and
    an event."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def started(self, name: str, handle: Handle, generation: int, reason: str) -> None:
        why = {"start": "", "app": " (with the app)", "files": " (its files changed)"}
        self.engine.console.process(name, f"started pid {handle.pid}{why.get(reason, '')}")
        self.engine.emit(ProcessStarted(name, handle.pid, generation, reason))

    def exited(self, name: str, handle: Handle, code: int, retry_ms: int) -> None:
        self.engine.emit(ProcessExited(name, handle.pid, code))
        if self.engine._stop_requested.is_set():
            return
        self.engine.console.process(
            name, f"exited with code {code}; rerun in {retry_ms} ms", error=code != 0
        )

    def failed(self, name: str, error: str, retry_ms: int) -> None:
        self.engine.console.process(name, f"{error}; retry in {retry_ms} ms", error=True)


def _describe(error: BaseException) -> str:
    """The first line of what an exception says (its type when it says nothing)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
