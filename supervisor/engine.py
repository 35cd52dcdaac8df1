"""The supervisor's lifetime: one task group that owns the watcher, builds and the app.

    exit_code = anyio.run(Engine(config, console).run)

States: ``building`` → ``running`` → (change) ``building`` → ``running`` …; an app that exits
on its own leaves the engine ``crashed`` (waiting for the next change, or a rerun with
back-off); a first Ctrl-C/SIGTERM/SIGHUP moves to ``stopping`` and a second one kills at once.

Services never import each other: the watcher feeds batches through a memory object stream,
and this module routes each classified :class:`~supervisor.classify.Plan`.
"""

from __future__ import annotations

import enum
import http.client
import os
import re
import secrets
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from .agent import ENV_VAR as AGENT_ENV
from .agent import bootstrap_dir
from .classify import FileChange, Plan, classify, is_asset, is_template
from .config import AppCommand, Config, child_environment
from .console import Console
from .control import TEMPLATE_ERROR, ControlServer, SwapResult
from .events import (
    AppExited,
    AppNotReady,
    AppReady,
    AppStarted,
    AssetsChanged,
    BuildFailed,
    Event,
    Restarting,
    Stopping,
    TemplateFailed,
    TemplatesSwapped,
)
from .process import TREE_ENV, AppProcess, Guardian, StepResult, belongs_to_tree, run_step
from .proxy import Proxy
from .watcher import Watcher
from .zygote import Preloader

RERUN_BACKOFF_CAP_MS = 30_000
STABLE_RUN_S = 10.0  # a rerun app that ran this long resets its back-off


class State(enum.Enum):
    idle = "idle"
    building = "building"
    running = "running"
    crashed = "crashed"
    stopping = "stopping"


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


class Engine:
    """Supervises one app: watch, classify, build, restart; stop everything on the way out."""

    def __init__(
        self,
        config: Config,
        console: Console,
        *,
        debug: bool = False,
        observers: Sequence[Callable[[Event], None]] = (),
    ) -> None:
        self.config = config
        self.observers = list(observers)
        self.console = console
        self.debug = debug
        self.state = State.idle
        self.token = secrets.token_hex(8)
        self.app: AppProcess | None = None
        self.restarts = 0
        self._app_lock = anyio.Lock()
        self._build_scope: anyio.CancelScope | None = None
        self._stop_requested = anyio.Event()
        self._force = False
        self._rerun_backoff_ms = config.build.rerun_delay
        self._task_group: TaskGroup | None = None
        self._stopping: AppProcess | None = None
        self._generation = 0
        self.control: ControlServer | None = None
        self.preloader: Preloader | None = None  # warm restarts ([build] preload)
        self._cycles = 0  # restart cycles in flight

    # -- lifetime ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until a stop signal; returns the process exit code (0 after a clean stop)."""
        self._banner()
        guardian = Guardian.start(self.token)
        control = ControlServer(
            is_member=self._in_app_tree, log=self.console.debug, on_modules=self._on_modules
        )
        try:
            proxy = Proxy(self.config, self.console) if self.config.proxy.enabled else None
            if proxy is not None:
                await proxy.listen()  # a busy port: one clear error, nothing started
            async with control, anyio.create_task_group() as tg:
                self.control = control
                self._task_group = tg
                self.preloader = self._preloader()
                if self.preloader is not None:  # cancelled last: kills the zygotes
                    await tg.start(self.preloader.run)
                tg.start_soon(self._handle_signals)
                send, receive = anyio.create_memory_object_stream[list[FileChange]](64)
                watcher = Watcher(
                    self.config,
                    notice=self.console.warning,
                    debug=self._debug_fs,
                    eager=self._acts_in_place,
                )
                await tg.start(watcher.run, send)
                self.console.watcher(self._watching_line(watcher))
                tg.start_soon(self._route_batches, receive)
                if proxy is not None:  # listening before the app starts: requests wait
                    await tg.start(proxy.serve)
                    self.observers.append(proxy.on_event)
                tg.start_soon(self._cycle, "start", None)
                await self._stop_requested.wait()
                await self._shutdown()
                tg.cancel_scope.cancel()
        finally:
            guardian.close(kill_tree=True)
        return 0

    def _banner(self) -> None:
        banner = self.config.misc.startup_banner
        if banner is None:
            from . import __version__

            self.console.main(f"pyair {__version__} · {self.config.app_command().display}")
        elif banner:
            self.console.main(banner)
        for key in self.config.unused_keys:
            self.console.warning(f"config key '{key}' means nothing to pyair and is ignored")

    def _watching_line(self, watcher: Watcher) -> str:
        dirs = watcher.watched_dirs
        return f"watching {len(dirs)} directories under {self.config.root}"

    def _with_agent(self, env: Mapping[str, str]) -> dict[str, str]:
        """The app's environment plus what loads the template agent inside Python apps."""
        assert self.control is not None
        with_agent = dict(env)
        with_agent[AGENT_ENV] = self.control.path
        existing = with_agent.get("PYTHONPATH")
        bootstrap = str(bootstrap_dir())
        with_agent["PYTHONPATH"] = bootstrap + (os.pathsep + existing if existing else "")
        if self.preloader is not None:
            with_agent.update(self.preloader.agent_env())
        return with_agent

    def _preloader(self) -> Preloader | None:
        """Warm restarts for a Python app command, unless ``[build] preload = false``."""
        if not self.config.build.preload:
            return None

        def zygote_env() -> dict[str, str]:
            return self._with_agent(app_environment(self.config, self.token))

        env = zygote_env()
        return Preloader.create(
            self.config,
            self.console,
            session=self.token,
            command=without_shell(self.config.app_command(), env),
            env=zygote_env,
            bootstrap=str(bootstrap_dir()),
        )

    def _on_modules(self, pid: int, msg: Mapping[str, object]) -> None:
        """The app's agent reported its modules (preload = "auto"): only the app's leader's."""
        if self.preloader is not None and self.app is not None and pid == self.app.pid:
            self.preloader.modules_reported(msg)

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

    def _in_app_tree(self, pid: int) -> bool:
        return belongs_to_tree(pid, self.token)

    def _debug_fs(self, message: str) -> None:
        self.console.debug(message)

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
                    for victim in (self._stopping, self.app):
                        if victim is not None:
                            await victim.kill()  # a second signal: no more grace

    async def _shutdown(self) -> None:
        self.state = State.stopping
        self.emit(Stopping())
        if self._build_scope is not None:
            self._build_scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._stop_app(reason="exit")
            for command in self.config.build.post_cmd:
                if self._force:
                    break
                await self._run_step(command)
            if self.config.misc.clean_on_exit:
                shutil.rmtree(self.config.tmp_path, ignore_errors=True)

    # -- changes ------------------------------------------------------------------------------

    async def _route_batches(self, receive: MemoryObjectReceiveStream[list[FileChange]]) -> None:
        async with receive:
            async for batch in receive:
                if self._stop_requested.is_set():
                    return
                for change, path in batch:
                    self.console.debug(f"{change.name} {path}")
                plan = classify(batch, self.config)
                await self._on_plan(plan)

    async def _on_plan(self, plan: Plan) -> None:
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
        self._task_group.start_soon(self._cycle, "change", plan)

    async def _swap_templates(self, plan: Plan, what: str) -> None:
        """Hot-swap ``plan.templates`` in the running app, or restart when no agent can."""
        if self._cycles and self.state is State.building:
            # the app about to be started reads every template afresh
            self.console.debug(f"{what} changed during a restart: the new app loads it")
            return
        assert self.control is not None
        timeout = self.config.templates.swap_timeout
        result = await self.control.swap(list(plan.templates), timeout_ms=timeout)
        if result.ok:
            self.console.runner(self._swapped_line(result, what))
            self.emit(TemplatesSwapped(result.names, plan.templates, result.rtt_ms))
            return
        if result.reason == TEMPLATE_ERROR and result.error is not None:
            error = result.error
            source = source_excerpt(error.file, error.line)
            self.console.error(
                f"{str(error).rstrip('.')}; the previous template keeps serving", source=source
            )
            self.emit(TemplateFailed(error.file, error.line, error.message, tuple(source)))
            return
        if self.config.templates.on_no_agent == "ignore":
            self.console.watcher(f"{what} changed; not swapped ({result.reason}), ignored")
            return
        self.console.watcher(f"{what} changed; not swapped ({result.reason}): restarting")
        self._restart(plan)

    def _swapped_line(self, result: SwapResult, what: str) -> str:
        names = ", ".join(result.names) or what
        line = f"swapped {names} in {result.rtt_ms:.1f} ms"
        agent = self.control.agent if self.control is not None else None
        if agent is not None:  # the process that swapped, not a shell in front of it
            line += f" (pid {agent.pid}, no restart)"
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
        env = app_environment(self.config, self.token)
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
                await self._stop_app(reason="build failed")
                self.state = State.crashed
            elif self.app is not None:
                self.console.build("build failed: the previous app keeps serving")
            return
        async with self._app_lock:
            if self._stop_requested.is_set():
                return
            self.emit(Restarting(why, paths))
            await self._stop_app(reason=why)
            await self._start_app(env, build_ms=build_ms, started=started, why=why)

    async def _build(self, env: Mapping[str, str]) -> bool:
        steps = [*self.config.build.pre_cmd]
        if self.config.build.cmd:
            steps.append(self.config.build.cmd)
        for command in steps:
            self.console.build(f"$ {command}")
            result = await self._run_step(command, env)
            if not result.ok:
                self._report_build_failure(result)
                self.emit(BuildFailed(result.command, result.returncode, result.output))
                return False
        return True

    async def _run_step(self, command: str, env: Mapping[str, str] | None = None) -> StepResult:
        return await run_step(
            command,
            cwd=self.config.root,
            env=env if env is not None else app_environment(self.config, self.token),
            on_output=self.console.build_output,
        )

    def _report_build_failure(self, result: StepResult) -> None:
        self.console.error(f"build failed (exit {result.returncode}): {result.command}")
        log_path = self.config.build_log_path
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("a", encoding="utf-8") as log:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"[{stamp}] $ {result.command} (exit {result.returncode})\n")
                log.write(result.output if result.output.endswith("\n") else result.output + "\n")
        except OSError as exc:
            self.console.warning(f"cannot append to {log_path}: {exc}")

    async def _start_app(
        self, env: Mapping[str, str], *, build_ms: float, started: float, why: str
    ) -> None:
        command = without_shell(self.config.app_command(), env)
        spawn_start = time.perf_counter()
        self._generation += 1
        try:
            app, warm = await self._spawn(command, env, f"{self.token}/app-{self._generation}")
        except OSError as exc:
            self.console.error(f"cannot start {command.display}: {exc}")
            self.state = State.crashed
            return
        self.app = app
        self.state = State.running
        if why != "start":
            self.restarts += 1
        generation = self._generation
        self.emit(AppStarted(app.pid, generation))
        assert self._task_group is not None
        self._task_group.start_soon(self._watch_exit, app, env)
        ready_ms = await self._wait_ready(app)
        if ready_ms is not None:
            self.emit(AppReady(app.pid, generation, ready_ms))
        elif self._probes_readiness:
            self.emit(AppNotReady(app.pid, generation))
        timing = f"build {build_ms:.0f} ms" if self.config.build.cmd else "no build"
        if self.preloader is not None:  # warm: forked from the zygote; cold: a new interpreter
            timing = f"{'warm' if warm else 'cold'}, {timing}"
        if ready_ms is not None:
            self.console.runner(
                f"pid {app.pid} ready in {ready_ms:.0f} ms ({timing}, "
                f"total {_ms_since(started):.0f} ms)"
            )
        else:
            self.console.runner(
                f"started pid {app.pid} in {_ms_since(spawn_start):.0f} ms ({timing})"
            )

    async def _spawn(
        self, command: AppCommand, env: Mapping[str, str], token: str
    ) -> tuple[AppProcess, bool]:
        """Fork the warm zygote when it is ready and healthy, else start cold; (app, warm)."""
        app_env = self._with_agent(env)
        if self.preloader is not None:
            app = await self.preloader.start(
                command, cwd=self.config.root, env=app_env, token=token
            )
            if app is not None:
                return app, True
        return await AppProcess.start(
            command, cwd=self.config.root, env=app_env, token=token
        ), False

    @property
    def _probes_readiness(self) -> bool:
        return bool(self.config.build.ready_url or self.config.proxy.app_port)

    async def _wait_ready(self, app: AppProcess) -> float | None:
        """Milliseconds until the app answers (ready_url or app_port), None if not configured."""
        url = self.config.build.ready_url
        port = self.config.proxy.app_port
        if not url and not port:
            return None
        start = time.perf_counter()
        with anyio.move_on_after(self.config.build.ready_timeout / 1000):
            while app.returncode is None:
                if await anyio.to_thread.run_sync(_probe, url, port):
                    return _ms_since(start)
                await anyio.sleep(0.005)
        if app.returncode is None:
            self.console.warning(
                f"pid {app.pid} not ready after {self.config.build.ready_timeout} ms "
                f"({url or f'port {port}'})"
            )
        return None

    async def _watch_exit(self, app: AppProcess, env: Mapping[str, str]) -> None:
        started = time.perf_counter()
        code = await app.wait()
        if self.app is not app or self.state in (State.stopping,) or self._stop_requested.is_set():
            return
        self.app = None
        self.state = State.crashed
        self.emit(AppExited(app.pid, code))
        if code == 0:
            self.console.runner("app exited (code 0); waiting for a change")
        else:
            self.console.error(f"app exited with code {code}; waiting for a change")
        if not self.config.build.rerun:
            return
        ran_s = time.perf_counter() - started
        if ran_s >= STABLE_RUN_S:
            self._rerun_backoff_ms = self.config.build.rerun_delay
        delay = self._rerun_backoff_ms
        self._rerun_backoff_ms = min(max(delay * 2, 1), RERUN_BACKOFF_CAP_MS)
        self.console.runner(f"rerun in {delay} ms")
        await anyio.sleep(delay / 1000)
        async with self._app_lock:
            if self.app is None and not self._stop_requested.is_set():
                self.emit(Restarting("rerun"))
                await self._start_app(env, build_ms=0, started=time.perf_counter(), why="rerun")

    async def _stop_app(self, *, reason: str) -> None:
        app, self.app = self.app, None
        if app is None:
            return
        self._stopping = app
        build = self.config.build
        # an app that already exited may still have left children: stop() sweeps them at once
        delay = 0 if self._force or app.returncode is not None else build.kill_delay
        try:
            report = await app.stop(interrupt=build.send_interrupt, kill_delay_ms=delay)
        finally:
            self._stopping = None
        how = "stopped" if report.graceful else f"killed {report.killed} process(es)"
        self.console.debug(f"pid {app.pid} {how} in {report.duration_ms:.0f} ms ({reason})")
        if not report.graceful and delay:
            self.console.runner(f"pid {app.pid} did not stop within {delay} ms: killed")


def app_environment(config: Config, token: str) -> dict[str, str]:
    """pyair's environment + env_files + [env], with pyair's venv active for the children.

    Running ``.venv/bin/pyair`` without activating the venv still gives the app that venv's
    ``python``, ``uvicorn`` and ``flask`` on PATH, as ``uvicorn --reload`` children get.
    """
    env = child_environment(config, os.environ)
    env[TREE_ENV] = token  # build steps nest their own token under it: the guardian covers them
    if sys.prefix != sys.base_prefix and "VIRTUAL_ENV" not in os.environ:
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", os.defpath)
        env["VIRTUAL_ENV"] = sys.prefix
    return env


_SHELL_SYNTAX = re.compile(r"""[|&;<>()$`\\"'*?\[\]#~=%{}\n]""")


def without_shell(command: AppCommand, env: Mapping[str, str]) -> AppCommand:
    """Run a plain ``full_bin`` line like ``python app.py`` without ``/bin/sh`` in between.

    One process fewer per restart, and the app itself gets the stop signal. Lines that use
    any shell syntax (variables, pipes, quotes, ``A=b cmd``) still go through the shell.
    """
    if command.shell is None or _SHELL_SYNTAX.search(command.shell):
        return command
    argv = command.shell.split()
    exe = shutil.which(argv[0], path=env.get("PATH")) if argv else None
    if exe is None:
        return command
    return AppCommand(argv=(exe, *argv[1:]), shell=None)


def source_excerpt(file: str | None, line: int | None, context: int = 2) -> list[str]:
    """The lines around ``line`` of ``file``, numbered, the failing one marked with ``>``."""
    if not file or not line:
        return []
    try:
        lines = Path(file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    first, last = max(1, line - context), min(len(lines), line + context)
    return [
        f"{'>' if number == line else ' '} {number:>4} | {lines[number - 1]}"
        for number in range(first, last + 1)
    ]


def _probe(url: str, port: int) -> bool:
    if url:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return 200 <= int(response.status) < 400
        except urllib.error.HTTPError as exc:
            return 200 <= exc.code < 400
        except (OSError, ValueError):
            return False
    # the port accepting is not enough: a server can listen before it can answer
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/", headers={"User-Agent": "pyair-ready-probe"})
        conn.getresponse().close()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
