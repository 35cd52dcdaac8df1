"""What the engine's decisions do on this machine: build steps, the app, swaps, readiness.

    runtime = LocalRuntime(config, console)
    await tg.start(runtime.run)                      # the guardian, the control socket, the zygote
    env = runtime.environment()
    result = await runtime.run_step("make", env)     # a StepResult; output streamed to the console
    app, warm = await runtime.start_app(env, generation=1)
    worker = await runtime.start_process(config.process[0], generation=1)   # output prefixed
    ready = await runtime.wait_ready(app)            # Ready / NotReady; None: nothing to probe
    swap = await runtime.swap(["/app/templates/page.html"], timeout_ms=1000)

:class:`~supervisor.engine.Engine` decides what happens (restart, swap, keep the old app) and
a runtime carries it out; the engine's tests hand it a scripted one. :class:`LocalRuntime` wires
the services: build steps and the app's process tree (``process``), the control socket to the
agent inside the app (``control``), warm starts forked from a preloaded zygote (``zygote``), and
the guardian that kills the app's tree if pyair itself dies.

The extra processes (``[[process]]``) are trees of their own, nested under the session's token
(so the guardian kills them too), with stdin from /dev/null and their output read from pipes
and shown under their names. A pipe is not a terminal, so each one is told what a terminal
would have told it: ``PYTHONUNBUFFERED=1`` (lines as they are printed), and, when pyair's own
output is coloured, ``FORCE_COLOR=1``, ``CLICOLOR_FORCE=1`` and ``PY_COLORS=1`` (what Node's and
Python's colour libraries read); a value the process's own environment sets wins.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from .agent import bootstrap_dir
from .childside import ROOT_ENV, TEMPLATE_EXT_ENV
from .config import AppCommand, Config, ProcessConfig, child_environment
from .console import Console
from .control import ControlServer, SwapResult
from .errors import PyairError
from .listeners import HOLDERS_POLL_S, HeldSocket, with_listen_fds
from .process import (
    TREE_ENV,
    AppProcess,
    Guardian,
    Leader,
    StepResult,
    belongs_to_tree,
    pump_lines,
    raise_open_file_limit,
    run_step,
)
from .readiness import NotReady, Ready, app_port, command_host, probe_target, wait_ready
from .sources import LastGood
from .zygote import Invocation, Preloader, parse_invocation

__all__ = [
    "LocalRuntime",
    "app_environment",
    "process_environment",
    "source_excerpt",
    "without_shell",
]


class LocalRuntime:
    """The engine's effects with real processes and sockets; see the module docstring.

    ``token`` names the app's process tree (``PYAIR_TREE``): every process pyair starts
    carries it, the guardian and the tree sweep find them by it.
    """

    def __init__(self, config: Config, console: Console, *, token: str | None = None) -> None:
        self.config = config
        self.console = console
        self.token = token or secrets.token_hex(8)
        self.control = ControlServer(
            is_member=self._in_app_tree, log=console.debug, on_modules=self._on_modules
        )
        self.preloader: Preloader | None = None  # warm restarts ([build] preload)
        self.last_good = LastGood(config)  # what keeps serving when a template breaks
        self._leader: AppProcess | None = None  # the app started last
        self.held: HeldSocket | None = None  # the app's port, held across restarts
        self._hand_off = ""  # how the app gets it: "agent" or "listen_fds" ("": not held)
        self._hold_at: tuple[str, int] = ("", 0)  # (host, port) held, decided once at start
        self._tg: anyio.abc.TaskGroup | None = None  # reads the extra processes' output

    # -- lifetime ---------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the guardian, the control socket and the zygotes until cancelled.

        ``task_status.started()`` once all of them are up. On the way out the zygotes are
        killed, the socket is removed and the guardian sweeps whatever is left of the app's
        tree. A control socket that cannot be made is a one-line :class:`PyairError`.
        """
        raise_open_file_limit()  # a browser's keep-alive connections add up (macOS: 256)
        guardian = Guardian.start(self.token)
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    await stack.enter_async_context(self.control)
                except OSError as exc:
                    raise PyairError(
                        f"cannot make the control socket in {tempfile.gettempdir()}: "
                        f"{exc.strerror or exc}",
                        hint="point TMPDIR at a short, writable directory",
                    ) from None
                guardian.remove_on_exit(self.control.directory)  # also when pyair is SIGKILLed
                stack.callback(self.release_port)
                self._hold_port()
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    tg.start_soon(self._remember_templates, name="templates")
                    self.preloader = self._preloader()
                    if self.preloader is not None:
                        await tg.start(self.preloader.run, name="preloader")
                    task_status.started()
                    await anyio.sleep_forever()
        finally:
            guardian.close(kill_tree=True)
            if self.config.misc.clean_on_exit:
                shutil.rmtree(self.config.tmp_path, ignore_errors=True)

    # -- the app's port -------------------------------------------------------------------

    def _hold_port(self) -> None:
        """Decide how the app's port stays open across restarts, and say so (see
        :mod:`supervisor.listeners`): with the agent, LISTEN_FDS, or not at all."""
        build = self.config.build
        port = app_port(self.config)
        if not build.hold_port or not port:
            why = "hold_port = false" if port else "no app port known"
            self.console.debug(f"app port: not held across restarts ({why})")
            return
        if not HeldSocket.can_see_holders():  # pragma: no cover - not Linux
            self.console.debug("app port: not held (cannot see which process holds a socket)")
            return
        env = self.environment()
        if build.listen_fds:
            how = "listen_fds"
        elif self._is_python(env):
            how = "agent"
        else:
            name = os.path.basename(self._first_word()) or "the app"
            self.console.runner(
                f"port {port} closes during restarts: {name} is not a Python app "
                "(set [build] listen_fds = true if it takes a LISTEN_FDS socket)"
            )
            return
        self._hold_at = (command_host(self.config.app_command().display) or "127.0.0.1", port)
        self._hand_off = how
        if self._open_port():
            said = "the app's bind() adopts it" if how == "agent" else "as LISTEN_FDS, fd 3"
            assert self.held is not None
            self.console.debug(f"app port: pyair holds {self.held.where} across restarts ({said})")

    def _open_port(self) -> bool:
        host, port = self._hold_at
        try:
            self.held = HeldSocket.open(host, port)
        except OSError as exc:
            self.console.warning(
                f"cannot hold port {port} across restarts ({exc.strerror or exc}); "
                "restarts close it meanwhile"
            )
            self._hand_off = ""
            return False
        return True

    def _first_word(self) -> str:
        command = self.config.app_command()
        if command.argv is not None:
            return command.argv[0] if command.argv else ""
        words = [w for w in (command.shell or "").split() if "=" not in w]
        return words[0] if words else ""

    def _is_python(self, env: Mapping[str, str]) -> bool:
        """Whether the app runs Python with the agent in it (a shell line: its first word)."""
        command = without_shell(self.config.app_command(), env)
        if command.argv is None:
            exe = shutil.which(self._first_word(), path=env.get("PATH"))
            if exe is None:
                return False
            command = AppCommand(argv=(exe,), shell=None)
        return isinstance(parse_invocation(command, env), Invocation)

    @property
    def holds_port(self) -> bool:
        """Whether the app's port is held: a restart then needs no gap (see ``released``)."""
        return self.held is not None

    def release_port(self) -> None:
        """Close the held port (pyair exits, or the app is gone for good: a client then
        hears "refused" at once instead of waiting for an app that is not coming)."""
        held, self.held = self.held, None
        if held is not None:
            held.close()
            self.console.debug(f"app port: {held.where} closed")

    async def released(self, app: Leader, stopped: anyio.Event) -> float:
        """Wait until ``app``'s tree no longer holds the port (it stopped accepting: closed
        its listener, or exited) or ``stopped`` is set; how long that took, in ms."""
        started = time.perf_counter()
        held = self.held
        if held is not None:
            pids = held.family(app.pid)
            while not stopped.is_set() and held.holders(pids):
                await anyio.sleep(HOLDERS_POLL_S)
        else:
            await stopped.wait()
        return (time.perf_counter() - started) * 1000

    async def _remember_templates(self) -> None:
        kept = await anyio.to_thread.run_sync(self.last_good.remember_all, abandon_on_cancel=True)
        self.console.debug(f"templates: kept the text of {kept} template file(s)")

    def _preloader(self) -> Preloader | None:
        """Warm restarts for a Python app command, unless ``[build] preload = false``."""
        if not self.config.build.preload:
            return None

        def zygote_env() -> dict[str, str]:
            return self._with_agent(self.environment())

        env = zygote_env()
        return Preloader.create(
            self.config,
            self.console,
            session=self.token,
            command=without_shell(self.config.app_command(), env),
            env=zygote_env,
            bootstrap=str(bootstrap_dir()),
        )

    def _in_app_tree(self, pid: int) -> bool:
        return belongs_to_tree(pid, self.token)

    def _on_modules(self, pid: int, msg: Mapping[str, object]) -> None:
        """The app's agent reported its modules (preload = "auto"): only the app's leader's."""
        leader = self._leader
        if self.preloader is None or leader is None or leader.returncode is not None:
            return
        if pid == leader.pid:
            self.preloader.modules_reported(msg)

    # -- build steps --------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The environment of build steps and the app (re-read: ``.env`` edits apply)."""
        return app_environment(self.config, self.token)

    async def run_step(
        self, command: str, env: Mapping[str, str], *, rule: str | None = None
    ) -> StepResult:
        """``command`` through the shell in the project root, its output on the console
        (under ``[rule]`` for a ``[[build.rules]]`` command)."""
        on_output = self.console.build_output
        if rule is not None:
            on_output = functools.partial(self.console.rule_output, rule)
        return await run_step(command, cwd=self.config.root, env=env, on_output=on_output)

    def log_build_failure(self, result: StepResult) -> None:
        """Append a failed build step and its output to ``[build] log`` under tmp_dir."""
        log_path = self.config.build_log_path
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("a", encoding="utf-8") as log:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"[{stamp}] $ {result.command} (exit {result.returncode})\n")
                log.write(result.output if result.output.endswith("\n") else result.output + "\n")
        except OSError as exc:
            self.console.warning(f"cannot append to {log_path}: {exc}")

    # -- the app --------------------------------------------------------------------------------

    async def start_app(
        self, env: Mapping[str, str], generation: int
    ) -> tuple[AppProcess, bool | None]:
        """Start the app: forked from the warm zygote when one is ready and fit, else cold.

        Returns (app, warm): warm is None when there is no zygote at all (preload off, or not
        a Python command). Raises :class:`PyairError` when the app cannot be started.
        """
        command = without_shell(self.config.app_command(), env)
        app_env = self._with_agent(env)
        token = f"{self.token}/app-{generation}"
        app: AppProcess | None = None
        if self._hand_off and self.held is None:  # closed when the last app was gone
            self._open_port()
        fds: tuple[int, ...] = ()
        preloader = self.preloader
        if self.held is not None:
            fds = (self.held.fd,)
            if self._hand_off == "listen_fds":
                command = with_listen_fds(command, self.held.fd, sys.executable)
                preloader = None  # the exec in front is not the app: start it cold
            else:
                overlap = self.config.build.kill_delay if self.config.build.overlap else 0
                app_env.update(self.held.agent_env(bind_retry_ms=overlap))
        if preloader is not None:
            leader = await preloader.start(
                command,
                cwd=self.config.root,
                env=app_env,
                token=token,
                wait=generation > 1,
                pass_fds=fds,
            )
            if leader is not None:
                app = AppProcess(leader, command, token)
        warm = None if preloader is None else app is not None
        if app is None:
            try:
                app = await AppProcess.start(
                    command, cwd=self.config.root, env=app_env, token=token, pass_fds=fds
                )
            except OSError as exc:
                raise PyairError(f"cannot start {command.display}: {exc}") from None
        self._leader = app
        return app, warm

    def _with_agent(self, env: Mapping[str, str]) -> dict[str, str]:
        """The app's environment plus what loads the template agent inside Python apps."""
        with_agent = dict(env)
        with_agent.update(self.control.agent_env())
        with_agent[ROOT_ENV] = str(self.config.root)
        with_agent[TEMPLATE_EXT_ENV] = ",".join(self.config.templates.include_ext)
        existing = with_agent.get("PYTHONPATH")
        bootstrap = str(bootstrap_dir())
        with_agent["PYTHONPATH"] = bootstrap + (os.pathsep + existing if existing else "")
        if self.preloader is not None:
            with_agent.update(self.preloader.agent_env())
        return with_agent

    # -- extra processes ----------------------------------------------------------------

    async def start_process(self, process: ProcessConfig, generation: int) -> AppProcess:
        """Start one ``[[process]]`` entry as a tree of its own, its output shown under its
        name. Raises :class:`PyairError` when it cannot be started."""
        assert self._tg is not None, "start_process() before run() started"
        env = process_environment(self.environment(), process, colour=self.console.coloured)
        command = without_shell(AppCommand(argv=None, shell=process.cmd), env)
        cwd = self.config.root / process.cwd if process.cwd else self.config.root
        token = f"{self.token}/proc-{process.name}-{generation}"
        try:
            proc = await AppProcess.start(command, cwd=cwd, env=env, token=token, piped=True)
        except OSError as exc:
            raise PyairError(f"cannot start {process.cmd!r} in {cwd}: {exc}") from None
        show = functools.partial(self.console.process_output, process.name)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                self._tg.start_soon(pump_lines, stream, show, name=f"{process.name} output")
        return proc

    async def wait_ready(self, app: Leader) -> Ready | NotReady | None:
        """Until the app answers (see :mod:`supervisor.readiness`); None: nothing to probe.

        NotReady (said on the console) when it did not within ``ready_timeout``, or exited.
        """
        target = probe_target(self.config)
        if target is None:
            return None
        timeout_ms = self.config.build.ready_timeout
        result = await wait_ready(
            target, alive=lambda: app.returncode is None, timeout_s=timeout_ms / 1000
        )
        if isinstance(result, NotReady) and not result.exited:
            self.console.warning(f"pid {app.pid} not ready after {timeout_ms} ms: {result.reason}")
        return result

    # -- templates --------------------------------------------------------------------------

    async def swap(self, paths: Sequence[str], timeout_ms: int) -> SwapResult:
        """Ask the agents in the app to swap these templates; never raises.

        The last good text of each file goes along: what keeps serving if the new one breaks.
        """
        fallbacks, now = self.last_good.for_swap(paths)  # a few small files: no thread hop
        result = await self.control.swap(list(paths), timeout_ms=timeout_ms, sources=fallbacks)
        if result.ok:
            self.last_good.compiled(now)
        return result

    @property
    def agent_pid(self) -> int | None:
        """The pid of the process whose agent answers swaps (not a shell in front of it)."""
        agent = self.control.agent
        return agent.pid if agent is not None else None

    def source_excerpt(self, file: str | None, line: int | None) -> list[str]:
        """The lines around a template error, as :func:`source_excerpt` numbers them."""
        return source_excerpt(file, line)


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


def process_environment(
    env: Mapping[str, str], process: ProcessConfig, *, colour: bool
) -> dict[str, str]:
    """An extra process's environment: pyair's children's, what a pipe needs instead of a
    terminal (unless set), and the process's own ``env`` (which wins)."""
    result = dict(env)
    result.setdefault("PYTHONUNBUFFERED", "1")
    if colour and "NO_COLOR" not in result:
        for name in ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS"):
            result.setdefault(name, "1")
    result.update(process.env)
    return result


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
