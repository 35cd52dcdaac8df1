"""Warm restarts: a preloading fork server (a zygote) for Python apps.

    preloader = Preloader.create(config, console, session=token, command=cmd, env=make_env)
    await tg.start(preloader.run)                   # builds, watches and finally kills zygotes
    leader = await preloader.start(cmd, cwd=root, env=env, token=app_token)
    if leader is not None:                          # forked by the warm zygote
        app = AppProcess(leader, cmd, app_token)
    else:                                           # no warm zygote (the reason is in -d)
        app = await AppProcess.start(cmd, cwd=root, env=env, token=app_token)

When the app command is a Python invocation (``python app.py``, ``python -m pkg``, a console
script such as ``uvicorn`` whose shebang names a Python, ``python manage.py runserver``), pyair
keeps a zygote: the app's own interpreter, options, environment and cwd, which has imported the
app's libraries (:mod:`supervisor.zygote_main` runs in it) and waits. A restart forks it, and
the child runs the app's entry point as ``python`` would; only the user's own modules are
imported afresh. The cost of a restart drops from "import flask, jinja2, werkzeug, the app" to
"fork, import the app".

``[build] preload``: ``"auto"`` (the default) preloads what the previous app process had
imported (the agent reports ``sys.modules`` over the control socket), minus the project's own
modules. The set is remembered between runs (``<tmp_dir>/pyair-preload.json``, with the
interpreter's and the requirement files' stats): the next pyair builds its zygote from it at
once, alongside the first (cold) start, so the first restart is warm too. A restart that comes
while a zygote is still being built waits for it (it costs less than the cold start it
replaces). A list preloads those modules from the start. ``false`` turns it off.

Safety (Spring's and multiprocessing forkserver's lessons): the zygote never imports the
project's modules (an import finder refuses them), and after the preload it must hold one
thread, no socket/pipe/epoll descriptor and no asyncio loop, or pyair stays cold with a
one-line notice. The files the zygote loaded, the library directories, the interpreter,
``pyvenv.cfg`` and the project's requirement files are watched: a change rebuilds the zygote
(notice), and a restart never forks a stale one (they are checked again right before). On
Linux their directories are watched with inotify, so a waiting zygote costs no wakeup; other
platforms check the files once a second. A
changed environment (``.env``) rebuilds it too. The runner line says ``warm`` or ``cold``.

Process tree: the zygote carries ``PYAIR_TREE=<session>/zygote-N/____`` (padded), so the guardian
kills it with pyair, and it also asks the kernel for SIGKILL when pyair dies (PDEATHSIG). A
child rewrites that value in its ``/proc`` environment to ``<session>/app-N/warm``, so the tree
sweep and the guardian find it as they find a cold app; its exit status comes over the zygote's
socket (:class:`WarmLeader`), and the ``AppProcess`` the runtime wraps around it stops it as usual.

pyair and the zygote speak in frames (:mod:`supervisor.childside`): :class:`ZygoteProcess` is
pyair's end of one zygote, :class:`~supervisor.zygote_main.ForkServer` the zygote's own loop.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from . import childside, inotify
from .childside import (
    BIND_RETRY_ENV,
    CONTROL_ENV,
    LISTEN_ENV,
    PRELOAD_ENV,
    TREE_ENV,
    ZYGOTE_MAX_FRAME,
)
from .config import AppCommand, Config
from .console import Console

PYAIR_DIR = str(Path(__file__).resolve().parent)  # pyair's own modules: never preloaded
ZYGOTE_MAIN = os.path.join(PYAIR_DIR, "zygote_main.py")  # the zygote's program, run by path
BUILD_TIMEOUT_S = 60.0  # a preload that takes longer is given up (notice)
FORK_TIMEOUT_S = 5.0
WATCH_S = 1.0  # without inotify: how often the zygote's files are checked while it waits
# a library directory's entries written, created, removed or renamed (not read or opened)
_LIBRARY_EVENTS = (
    inotify.CLOSE_WRITE
    | inotify.ATTRIB
    | inotify.MOVED_FROM
    | inotify.MOVED_TO
    | inotify.CREATE
    | inotify.DELETE
    | inotify.ONLYDIR
)
EXIT_POLL_S = 0.05  # a warm app whose zygote died: its exit is polled
MAX_FAILED_STARTS = 2  # zygotes that die before they are ready: then stay cold
BUILD_WAIT_S = 5.0  # a restart waits this long at most for a zygote being built
MEMORY_FILE = "pyair-preload.json"  # under tmp_dir: the modules of the last run
MEMORY_VERSION = 1
PROJECT_FILES = ("pyproject.toml", "poetry.lock", "uv.lock", "Pipfile.lock", "requirements*.txt")
# differ per app generation (or per held socket), never rebuild for them
_VOLATILE_ENV = (CONTROL_ENV, TREE_ENV, LISTEN_ENV, BIND_RETRY_ENV)
_PYTHON_NAME = re.compile(r"(python|pypy)(\d+(\.\d+)*)?")
_FLAGS = "bBdEIOPqRsSuv"  # CPython's option letters that take no argument and change nothing else


class ZygoteError(Exception):
    """The zygote could not fork (it died, timed out or refused)."""


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class Invocation:
    """A Python command split as the interpreter reads it."""

    argv: tuple[str, ...]  # the command as a cold start runs it
    interpreter: str
    options: tuple[str, ...]  # interpreter options, given to the zygote too
    kind: str  # "script" or "module"
    target: str  # the script's path or the module's name
    args: tuple[str, ...]  # the app's own arguments

    @property
    def sys_argv(self) -> list[str]:
        """``sys.argv`` when the app starts (``runpy`` replaces ``-m`` with the module's file)."""
        return [self.target if self.kind == "script" else "-m", *self.args]

    @property
    def orig_argv(self) -> list[str]:
        head = [self.target] if self.kind == "script" else ["-m", self.target]
        return [self.interpreter, *self.options, *head, *self.args]

    def path0(self, cwd: Path) -> str:
        """``sys.path[0]`` as ``python`` computes it: the script's real directory, or cwd."""
        if self.kind == "module":
            return str(cwd)
        return os.path.dirname(os.path.realpath(os.path.join(cwd, self.target)))


def _parse_options(argv: Sequence[str]) -> tuple[list[str], str, str, list[str]] | str:
    """``python [options] (script | -m module) args`` → (options, kind, target, args), or why
    it cannot be forked."""
    options: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name != "--check-hash-based-pycs":
                return f"interpreter option {arg}"
            if not eq:
                i += 1
                if i >= len(argv):
                    return f"{arg} without a value"
                value = argv[i]
            options += [name, value]
            i += 1
            continue
        if not arg.startswith("-") or arg == "-":
            break
        j = 1
        while j < len(arg):
            letter = arg[j]
            if letter in "mWX":
                value = arg[j + 1 :]
                if not value:
                    i += 1
                    if i >= len(argv):
                        return f"-{letter} without a value"
                    value = argv[i]
                if letter == "m":
                    return options, "module", value, list(argv[i + 1 :])
                options += [f"-{letter}", value]
                break
            if letter == "c":
                return "python -c"
            if letter not in _FLAGS:
                return f"interpreter option -{letter}"
            options.append(f"-{letter}")
            j += 1
        i += 1
    if i >= len(argv):
        return "no script"
    if argv[i] == "-":
        return "a script on stdin"
    return options, "script", argv[i], list(argv[i + 1 :])


def _is_python(path: str) -> bool:
    return bool(_PYTHON_NAME.fullmatch(os.path.basename(path)))


def _shebang(path: str, env: Mapping[str, str]) -> list[str] | None:
    """The interpreter argv a ``#!`` line names (``/usr/bin/env python3`` resolved)."""
    try:
        with open(path, "rb") as script:
            head = script.read(512)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
    interpreter, _, rest = line.partition(" ")
    words = rest.split() if rest.strip() else []
    if os.path.basename(interpreter) == "env":
        if words[:1] == ["-S"]:
            words = words[1:]
        if not words:
            return None
        found = shutil.which(words[0], path=env.get("PATH"))
        if found is None:
            return None
        return [found, *words[1:]]
    return [interpreter, *([rest.strip()] if rest.strip() else [])]


def parse_invocation(command: AppCommand, env: Mapping[str, str]) -> Invocation | str:
    """The app command as a Python :class:`Invocation`, or why it is not one."""
    if command.argv is None or not command.argv:
        return "the command runs through a shell"
    argv = list(command.argv)
    if _is_python(argv[0]):
        parsed = _parse_options(argv)
        if isinstance(parsed, str):
            return parsed
        options, kind, target, args = parsed
        return Invocation(tuple(argv), argv[0], tuple(options), kind, target, tuple(args))
    head = _shebang(argv[0], env)
    if head is None or not _is_python(head[0]):
        return f"{os.path.basename(argv[0])} is not a Python program"
    parsed = _parse_options([*head, argv[0]])
    if isinstance(parsed, str) or parsed[1] != "script" or parsed[3]:
        return f"the #! line of {argv[0]}"
    return Invocation(tuple(argv), head[0], tuple(parsed[0]), "script", argv[0], tuple(argv[1:]))


# --------------------------------------------------------------------------- the modules


def select_modules(msg: Mapping[str, Any], root: Path, *, pyair_dir: str = PYAIR_DIR) -> list[str]:
    """From an agent's ``modules`` report: the names to preload, in import order.

    The standard library and installed libraries stay; the project's own modules (under
    ``root``, outside site-packages and the interpreter's prefixes), pyair's agent and modules
    that act on import do not.
    """
    real_root = os.path.realpath(root)
    prefixes = childside.real_prefixes(real_root, msg.get("prefixes", ()))
    pyair = os.path.realpath(pyair_dir)
    chosen: list[str] = []
    for name, where in zip(msg["names"], msg["files"], strict=False):
        if childside.skipped_name(name):
            continue
        if where:
            if childside.is_under(os.path.realpath(where), pyair):
                continue
            if childside.is_project_file(where, real_root, prefixes):
                continue
        chosen.append(name)
    return chosen


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def project_files(root: Path) -> dict[str, tuple[int, int] | None]:
    """The project's requirement files (pyproject.toml, lock files): path -> stat or None."""
    found: dict[str, tuple[int, int] | None] = {}
    for pattern in PROJECT_FILES:
        paths = glob.glob(str(root / pattern)) if "*" in pattern else [str(root / pattern)]
        for path in paths:
            found[path] = _stat(path)
    return found


def first_change(files: Mapping[str, tuple[int, int] | None]) -> str | None:
    """The first of ``files`` whose stat differs from the one recorded, or None."""
    for path, seen in files.items():
        if _stat(path) != seen:
            return path
    return None


def _env_key(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in _VOLATILE_ENV}


# --------------------------------------------------------------------------- one zygote


class WarmLeader:
    """A warm app's leader (what the runtime's ``AppProcess`` leads): the zygote's child.

    Its exit status comes over the zygote's socket; if the zygote dies first, it is polled.
    """

    def __init__(self, pid: int, zygote: ZygoteProcess) -> None:
        self.pid = pid
        self.zygote = zygote
        self.returncode: int | None = None
        self.start_ticks = childside.start_ticks(pid)
        self._exited = anyio.Event()

    def set_exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def gone(self) -> bool:
        """Whether the process is gone (or its pid is someone else's now)."""
        return childside.is_gone(self.pid, self.start_ticks)

    async def poll_exit(self) -> None:
        """For a warm app whose zygote died: wait for it to vanish (status unknown: 1)."""
        while self.returncode is None and not self.gone():
            await anyio.sleep(EXIT_POLL_S)  # poll
        self.set_exited(1)


class ZygoteProcess:
    """pyair's end of one zygote process: its socket, state and children."""

    def __init__(
        self,
        number: int,
        process: anyio.abc.Process,
        stream: anyio.abc.UNIXSocketStream,
        modules: tuple[str, ...],
        env: Mapping[str, str],
    ) -> None:
        self.number = number
        self.process = process
        self.pid = process.pid
        self.stream = stream
        self.modules = modules
        self.env_key = _env_key(env)
        self.state = "starting"  # → ready | unsafe | dead
        self.reason = ""  # why unsafe or dead
        self.info: dict[str, Any] = {}
        self.files: dict[str, tuple[int, int] | None] = {}
        self.children: dict[int, WarmLeader] = {}
        self.retired = False
        self.settled = anyio.Event()  # ready, unsafe or dead
        self.closed = anyio.Event()  # the socket is done (the zygote exited)
        self._ids = 0
        self._forks: dict[int, tuple[anyio.Event, list[dict[str, Any]]]] = {}
        self._send_lock = anyio.Lock()

    async def send(self, msg: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
        """One frame; ``fds`` go along with it (SCM_RIGHTS), for the zygote's next fork."""
        data = childside.encode_frame(msg, ZYGOTE_MAX_FRAME)
        async with self._send_lock:
            if fds:
                await self.stream.send_fds(data, list(fds))
            else:
                await self.stream.send(data)

    async def read_loop(self) -> None:
        """Read the zygote's messages until it exits; then reap it, and poll the exits of the
        children it could not report (it died before them)."""
        reader = childside.FrameReader(ZYGOTE_MAX_FRAME)
        try:
            while True:
                try:
                    chunk = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    break
                except OSError:
                    break
                reader.feed(chunk)
                try:
                    for msg in reader:
                        self._handle(msg)
                except (ValueError, KeyError, TypeError) as exc:  # FrameError is a ValueError
                    self.reason = f"bad message from the zygote: {exc!r}"
                    return  # the finally marks it dead; kill() follows
        finally:
            if self.state == "starting":
                self.state, self.reason = "dead", "it exited before it was ready"
            elif self.state == "ready":
                self.state, self.reason = "dead", "it exited"
            self.settled.set()
            for event, _box in self._forks.values():
                event.set()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(2):
                await self.process.wait()
            if self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
            await self.stream.aclose()
        self.closed.set()
        async with anyio.create_task_group() as tg:
            for leader in list(self.children.values()):
                tg.start_soon(leader.poll_exit)
        self.children.clear()

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("ev")
        if kind == "ready":
            self.info = msg
            self.files.update({p: (int(s[0]), int(s[1])) for p, s in msg["files"].items()})
            self.state = "ready"
            self.settled.set()
        elif kind == "unsafe":
            self.files.update({p: (int(s[0]), int(s[1])) for p, s in msg["files"].items()})
            self.state, self.reason = "unsafe", str(msg.get("reason"))
            self.settled.set()
        elif kind in ("forked", "fork-failed"):
            waiting = self._forks.get(int(msg.get("id") or 0))
            if kind == "forked":  # registered now: its exit may be in the same read
                leader = WarmLeader(int(msg["pid"]), self)
                self.children[leader.pid] = leader
                msg["leader"] = leader
                if waiting is None:  # too late: pyair started the app cold meanwhile
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(leader.pid, signal.SIGKILL)
            if waiting is not None:
                waiting[1].append(msg)
                waiting[0].set()
        elif kind == "exit":
            exited = self.children.pop(int(msg["pid"]), None)
            if exited is not None:
                exited.set_exited(int(msg["code"]))

    async def fork(self, request: dict[str, Any], fds: Sequence[int] = ()) -> WarmLeader:
        """A child forked with ``request``; ``fds`` are passed to it (the zygote keeps none)."""
        self._ids += 1
        request = {**request, "op": "fork", "id": self._ids, "fds": len(fds)}
        event = anyio.Event()
        box: list[dict[str, Any]] = []
        self._forks[self._ids] = (event, box)
        try:
            with anyio.move_on_after(FORK_TIMEOUT_S):
                try:
                    await self.send(request, fds)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    raise ZygoteError(f"the zygote is gone ({exc})") from None
                await event.wait()
        finally:
            self._forks.pop(request["id"], None)
        if not box:
            raise ZygoteError("the zygote did not answer" if not event.is_set() else "it died")
        reply = box[0]
        if reply.get("ev") != "forked":
            raise ZygoteError(f"fork failed: {reply.get('error')}")
        leader: WarmLeader = reply["leader"]
        return leader

    async def retire(self) -> None:
        """Fork no more; the zygote exits once its last child is gone."""
        if self.retired:
            return
        self.retired = True
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self.send({"op": "retire"})

    async def kill(self) -> None:
        """SIGKILL it and reap it (its children, if any, are left to the tree sweep)."""
        self.retired = True
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(2):
                await self.process.wait()
            await self.stream.aclose()


# --------------------------------------------------------------------------- between runs


class PreloadMemory:
    """The preload set of the last run, kept in a file under ``tmp_dir``.

    It holds the command, the interpreter's stat and the requirement files' stats it was
    taken with; any of them changed, and it is not used (the zygote waits for the first app's
    report, as on a first run).
    """

    def __init__(self, path: Path, invocation: Invocation, root: Path) -> None:
        self.path = path
        self.invocation = invocation
        self.root = root

    def _fingerprint(self) -> dict[str, Any]:
        stat = _stat(self.invocation.interpreter)
        return {
            "version": MEMORY_VERSION,
            "command": list(self.invocation.argv),
            "interpreter": [self.invocation.interpreter, list(stat) if stat else None],
            "project_files": {
                p: list(s) if s else None for p, s in project_files(self.root).items()
            },
        }

    def recall(self) -> tuple[list[str], str]:
        """(the remembered modules, or [] ; why not, when not)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return [], "nothing remembered yet"
        except (OSError, ValueError) as exc:
            return [], f"{self.path.name} is unreadable ({exc})"
        if not isinstance(data, dict) or not isinstance(data.get("modules"), list):
            return [], f"{self.path.name} is not pyair's"
        fingerprint = self._fingerprint()
        for key, what in (
            ("version", "pyair's format"),
            ("command", "the command"),
            ("interpreter", "the interpreter"),
            ("project_files", "the requirement files"),
        ):
            if data.get(key) != fingerprint[key]:
                return [], f"{what} changed since"
        return [str(name) for name in data["modules"]], ""

    def remember(self, modules: Sequence[str]) -> None:
        """Keep ``modules`` for the next run (atomically; a failure is only a debug line)."""
        data = {**self._fingerprint(), "modules": list(modules)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, self.path)


# --------------------------------------------------------------------------- the preloader


class Preloader:
    """Keeps one ready zygote for the app and starts warm apps from it. See the module doc."""

    def __init__(
        self,
        config: Config,
        console: Console,
        *,
        session: str,
        invocation: Invocation,
        env: Callable[[], dict[str, str]],
        bootstrap: str,
    ) -> None:
        self.config = config
        self.console = console
        self.session = session
        self.invocation = invocation
        self._env = env
        self.bootstrap = bootstrap
        setting = config.build.preload
        self.auto = setting == "auto"
        self._wanted: dict[str, None] = dict.fromkeys(() if self.auto else setting)
        self._known: set[str] = set(self._wanted)  # wanted, or loaded by a zygote anyway
        self.current: ZygoteProcess | None = None
        self.zygotes: list[ZygoteProcess] = []
        self._number = 0
        self._build_wanted = anyio.Event()
        self._building = False
        self._built = anyio.Event()  # set when the build in progress is over
        self.memory = PreloadMemory(config.tmp_path / MEMORY_FILE, invocation, config.root)
        self._remembered: tuple[str, ...] = ()
        self._unsafe: ZygoteProcess | None = None  # the last unsafe one: its files are watched
        self._files_moved: anyio.Event | None = None  # set: the zygotes' files changed hands
        self._said: set[str] = set()
        self._failed_starts = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._width = max(96, len(session) + 64)
        self.last_reason = "no zygote yet"

    @classmethod
    def create(
        cls,
        config: Config,
        console: Console,
        *,
        session: str,
        command: AppCommand,
        env: Callable[[], dict[str, str]],
        bootstrap: str,
    ) -> Preloader | None:
        """A preloader for this config's app, or None (off, or not a Python command: -d says)."""
        if not config.build.preload:
            return None
        invocation = parse_invocation(command, env())
        if isinstance(invocation, str):
            console.debug(f"preload: off ({invocation}: {command.display})")
            return None
        if not hasattr(os, "fork"):  # pragma: no cover - not POSIX
            return None
        return cls(
            config, console, session=session, invocation=invocation, env=env, bootstrap=bootstrap
        )

    def agent_env(self) -> dict[str, str]:
        """What the app's environment needs so its agent reports its modules ("auto")."""
        return {PRELOAD_ENV: "auto"} if self.auto else {}

    # -- lifetime -----------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Build zygotes when asked, watch their files; kill them all when cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._builder)
                if self.auto:
                    self._recall()
                if self._wanted:
                    self._request_build()
                task_status.started()
                await self._watch_files()
        finally:
            with anyio.CancelScope(shield=True):
                for zygote in list(self.zygotes):
                    await zygote.kill()
                self.zygotes.clear()
                self.current = None

    def _recall(self) -> None:
        """Start from the last run's modules, when they still fit (a first restart is warm)."""
        modules, why = self.memory.recall()
        if not modules:
            self.console.debug(f"preload: no modules from the last run ({why})")
            return
        self._remembered = tuple(modules)
        self._wanted.update(dict.fromkeys(modules))
        self._known.update(modules)
        self.console.debug(
            f"preload: building the zygote from the last run's {len(modules)} modules"
        )

    def _remember(self) -> None:
        modules = tuple(self._wanted)
        if not self.auto or modules == self._remembered:
            return
        try:
            self.memory.remember(modules)
            self._remembered = modules
        except OSError as exc:
            self.console.debug(f"preload: cannot remember the modules: {exc}")

    def modules_reported(self, msg: Mapping[str, Any]) -> None:
        """The app's agent reported its modules: preload the new ones in a new zygote."""
        if not self.auto:
            return
        names = select_modules(msg, self.config.root)
        fresh = [name for name in names if name not in self._known]
        if not fresh:
            return
        self._known.update(fresh)
        self._wanted.update(dict.fromkeys(fresh))
        if self._unsafe is not None:
            return  # it would stop at the same module; a change to its files retries
        shown = ", ".join(fresh[:4]) + (", ..." if len(fresh) > 4 else "")
        self.console.debug(
            f"preload: {len(fresh)} new module(s) reported ({shown}), {len(self._wanted)} in all"
        )
        self._request_build()

    def _request_build(self) -> None:
        self._build_wanted.set()

    async def _builder(self) -> None:
        while True:
            await self._build_wanted.wait()
            self._build_wanted = anyio.Event()
            if self._failed_starts >= MAX_FAILED_STARTS:
                continue
            self._building = True
            try:
                await self._build()
            except Exception as exc:  # never take the supervisor down
                self._give_up(exc)
            finally:
                self._building = False
                self._built.set()
                self._built = anyio.Event()

    def _give_up(self, exc: Exception) -> None:
        """A bug of ours: say it once, start cold from now on."""
        self._failed_starts = MAX_FAILED_STARTS
        self.last_reason = f"preload failed: {exc!r}"
        self._say(f"preload: internal error ({exc!r}); restarts stay cold", warn=True)
        current, self.current = self.current, None
        self._moved()
        if current is not None:
            if current in self.zygotes:
                self.zygotes.remove(current)
            assert self._tg is not None
            self._tg.start_soon(current.kill)

    async def _build(self) -> None:
        modules = tuple(self._wanted)
        self._number += 1
        number = self._number
        env = self._env()
        zygote_env = {k: v for k, v in env.items() if k not in (CONTROL_ENV, LISTEN_ENV)}
        zygote_env[TREE_ENV] = f"{self.session}/zygote-{number}/".ljust(self._width, "_")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        inv = self.invocation
        argv = [inv.interpreter, *inv.options, ZYGOTE_MAIN, str(theirs.fileno()), str(os.getpid())]
        started = time.perf_counter()
        try:
            process = await anyio.open_process(
                argv,
                stdin=None,
                stdout=None,
                stderr=None,
                cwd=self.config.root,
                env=zygote_env,
                start_new_session=True,
                pass_fds=(theirs.fileno(),),
            )
        except OSError as exc:
            ours.close()
            self._failed_starts = MAX_FAILED_STARTS
            self._say(f"preload: cannot start a zygote ({exc}); restarts stay cold", warn=True)
            return
        finally:
            theirs.close()
        stream = await anyio.abc.UNIXSocketStream.from_socket(ours)
        zygote = ZygoteProcess(number, process, stream, modules, env)
        self.zygotes.append(zygote)
        assert self._tg is not None
        self._tg.start_soon(self._follow, zygote)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await zygote.send(
                {
                    "op": "preload",
                    "modules": list(modules),
                    "argv": inv.sys_argv,
                    "root": str(self.config.root),
                    "kind": inv.kind,
                    "bootstrap": self.bootstrap,
                }
            )
        with anyio.move_on_after(BUILD_TIMEOUT_S):
            await zygote.settled.wait()
        zygote.files.update(project_files(self.config.root))
        ms = (time.perf_counter() - started) * 1000
        if zygote.state == "ready":
            self._failed_starts = 0
            self._unsafe = None
            self._moved()
            await self._promote(zygote, ms)
            self._remember()
            return
        await zygote.kill()
        self.zygotes.remove(zygote)
        if zygote.state == "unsafe":
            self._unsafe = zygote
            self._moved()
            self.last_reason = f"unsafe: {zygote.reason}"
            self._say(f"preload: restarts stay cold: {zygote.reason}", warn=True)
            return
        self._failed_starts += 1
        why = zygote.reason or f"no answer within {BUILD_TIMEOUT_S:g} s"
        self.last_reason = f"the zygote failed: {why}"
        self._say(
            f"preload: the zygote (pid {zygote.pid}) failed: {why}; restarts stay cold", warn=True
        )

    async def _promote(self, zygote: ZygoteProcess, ms: float) -> None:
        info = zygote.info
        self._known.update(info.get("loaded") or ())  # its own imports are no news either
        failed = info.get("failed") or []
        detail = f"; {len(failed)} failed" if failed else ""
        self.console.debug(
            f"preload: zygote {zygote.number} (pid {zygote.pid}) is warm after {ms:.0f} ms: "
            f"{len(zygote.modules)} modules asked for, {info.get('modules', 0)} loaded{detail}"
        )
        for name, error in failed[:5]:
            self.console.debug(f"preload:   not preloaded: {name} ({error})")
        if info.get("refused"):
            self.console.debug(
                f"preload:   refused (project modules): {', '.join(info['refused'][:5])}"
            )
        old, self.current = self.current, zygote
        self._moved()
        if old is not None:
            await old.retire()

    async def _drop_current(self, why: str) -> None:
        zygote, self.current = self.current, None
        self._moved()
        self.last_reason = why
        if zygote is not None:
            await zygote.retire()

    async def _watch_files(self) -> None:
        """Check the zygotes' files whenever the kernel says one of their directories changed.

        The set of directories follows the zygotes (``_files_moved`` is set when one is
        promoted or found unsafe). Without inotify the files are checked every WATCH_S.
        """
        try:
            kernel = inotify.Inotify()
        except (OSError, AttributeError):  # not Linux, or no inotify instance left
            while True:
                await anyio.sleep(WATCH_S)  # poll: no way to be told
                await self._checked()
        watches: dict[str, int] = {}
        with kernel:
            while True:
                self._files_moved = anyio.Event()
                if self._retarget(kernel, watches):
                    await self._checked()  # an edit made before the watch was placed
                async with anyio.create_task_group() as tg:

                    async def first(wait: Callable[..., Awaitable[object]], *args: Any) -> None:
                        await wait(*args)
                        tg.cancel_scope.cancel()

                    tg.start_soon(first, anyio.wait_readable, kernel.fd)
                    tg.start_soon(first, self._files_moved.wait)
                if kernel.read():
                    await self._checked()

    def _retarget(self, kernel: inotify.Inotify, watches: dict[str, int]) -> bool:
        """Watch exactly the directories of the current and the unsafe zygote's files;
        whether any directory is newly watched."""
        wanted = {
            os.path.dirname(path)
            for zygote in (self.current, self._unsafe)
            if zygote is not None
            for path in zygote.files
        }
        for directory in set(watches) - wanted:
            kernel.rm_watch(watches.pop(directory))
        added = False
        for directory in wanted - set(watches):
            try:
                watches[directory] = kernel.add_watch(directory, _LIBRARY_EVENTS)
            except OSError:  # gone, or no watch left: the check before each fork still runs
                continue
            added = True
        return added

    def _moved(self) -> None:
        """The current or the unsafe zygote changed: watch its files instead."""
        if self._files_moved is not None:
            self._files_moved.set()

    async def _checked(self) -> None:
        try:
            await self._check_files()
        except Exception as exc:  # never take the supervisor down
            self._give_up(exc)

    async def _check_files(self) -> None:
        for zygote in (self.current, self._unsafe):
            if zygote is None:
                continue
            changed = await anyio.to_thread.run_sync(first_change, dict(zygote.files))
            if changed is None:
                continue
            self._say(f"preload: {self._short(changed)} changed; rebuilding the zygote")
            if zygote is self._unsafe:
                self._unsafe = None
                self._moved()
                self._said.clear()  # a new verdict deserves a new notice
            else:
                await self._drop_current(f"{self._short(changed)} changed")
            self._request_build()

    async def _follow(self, zygote: ZygoteProcess) -> None:
        """Read the zygote's messages until it exits; then forget it (rebuild a ready one)."""
        await zygote.read_loop()
        try:
            self._reap(zygote)
        except Exception as exc:  # never take the supervisor down
            self._give_up(exc)

    def _reap(self, zygote: ZygoteProcess) -> None:
        """Forget a zygote that exited; a ready one that died is rebuilt (a few times)."""
        if zygote in self.zygotes:
            self.zygotes.remove(zygote)
            if zygote is self.current and not zygote.retired:
                self.current = None
                self._moved()
                self._failed_starts += 1
                self.last_reason = f"the zygote (pid {zygote.pid}) exited"
                self._say(
                    f"preload: the zygote (pid {zygote.pid}) exited; rebuilding it", warn=True
                )
                self._request_build()

    # -- starting the app ---------------------------------------------------------------------

    async def start(
        self,
        command: AppCommand,
        *,
        cwd: Path,
        env: Mapping[str, str],
        token: str,
        wait: bool = False,
        pass_fds: Sequence[int] = (),
    ) -> WarmLeader | None:
        """The app's leader forked from the warm zygote, or None (then start it cold; -d says
        why). The caller makes it an ``AppProcess`` with ``token``, as for a cold start.

        ``wait``: a zygote being built is waited for (up to ``BUILD_WAIT_S``): what is left of
        its preload is less than a cold start's imports. The first start does not wait.
        ``pass_fds``: descriptors the child gets (sent to the zygote with the request).
        """
        try:
            current = self.current
            if wait and self._building and (current is None or current.state != "ready"):
                with anyio.move_on_after(BUILD_WAIT_S):
                    await self._built.wait()
            return await self._start(command, cwd=cwd, env=env, token=token, fds=pass_fds)
        except Exception as exc:  # never keep the app from starting
            self._give_up(exc)
            return None

    async def _start(
        self,
        command: AppCommand,
        *,
        cwd: Path,
        env: Mapping[str, str],
        token: str,
        fds: Sequence[int] = (),
    ) -> WarmLeader | None:
        started = time.perf_counter()
        zygote = self.current
        reason = await self._unfit(zygote, command, env)
        if reason is not None or zygote is None:
            self.console.debug(f"preload: cold start ({reason or self.last_reason})")
            return None
        inv = self.invocation
        request = {
            "kind": inv.kind,
            "target": inv.target,
            "argv": inv.sys_argv,
            "orig_argv": list(inv.argv) if _is_python(inv.argv[0]) else inv.orig_argv,
            "path0": inv.path0(cwd),
            "cwd": str(cwd),
            "env": {**env, TREE_ENV: token},  # what AppProcess.start gives a cold app
            "token": token,
        }
        try:
            leader = await zygote.fork(request, fds)
        except ZygoteError as exc:
            self.console.debug(f"preload: cold start (zygote {zygote.number}: {exc})")
            return None
        self.console.debug(
            f"preload: warm start: pid {leader.pid} forked by zygote {zygote.number} "
            f"(pid {zygote.pid}) in {(time.perf_counter() - started) * 1000:.1f} ms"
        )
        return leader

    async def _unfit(
        self, zygote: ZygoteProcess | None, command: AppCommand, env: Mapping[str, str]
    ) -> str | None:
        """Why ``zygote`` must not fork this app (None: it may)."""
        if zygote is None or zygote.state != "ready" or zygote.retired:
            if self._building:
                return "the zygote is still preloading"
            return self.last_reason
        if command.argv != self.invocation.argv:
            return "the command changed"
        if _env_key(env) != zygote.env_key:
            self._say("preload: the app's environment changed; rebuilding the zygote")
            await self._drop_current("the environment changed")
            self._request_build()
            return "the environment changed"
        changed = await anyio.to_thread.run_sync(first_change, dict(zygote.files))
        if changed is not None:
            self._say(f"preload: {self._short(changed)} changed; rebuilding the zygote")
            await self._drop_current(f"{self._short(changed)} changed")
            self._request_build()
            return f"{self._short(changed)} changed"
        return None

    # -- helpers ------------------------------------------------------------------------------

    def _short(self, path: str) -> str:
        with contextlib.suppress(ValueError):
            return str(Path(path).relative_to(self.config.root))
        home = str(Path.home())
        return "~" + path[len(home) :] if path.startswith(home + os.sep) else path

    def _say(self, line: str, *, warn: bool = False) -> None:
        """A one-line notice (a warning once per distinct text)."""
        if warn:
            if line in self._said:
                self.console.debug(line)
                return
            self._said.add(line)
            self.console.warning(line)
        else:
            self.console.runner(line)
