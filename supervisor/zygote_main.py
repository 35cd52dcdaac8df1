"""The zygote: a warm interpreter that has imported an app's libraries and forks the app.

pyair runs it as ``<the app's python> [the app's interpreter options] zygote_main.py FD PPID``
with the app's environment (minus ``PYAIR_CONTROL``), stdio inherited, in its own session. It
runs inside the app's interpreter, so it uses the standard library only and Python 3.8 syntax.

Over the socket ``FD`` (pyair's frames: :mod:`supervisor.childside`, loaded by path)::

    pyair -> zygote  {"op": "preload", "modules": [...], "argv": [...], "root": "/proj"}
    zygote -> pyair  {"ev": "ready", "pid": 1, "ms": 210.0, "imported": 287, "failed": [...],
                      "files": {"/venv/.../flask/app.py": [mtime_ns, size], ...}}
                  or {"ev": "unsafe", "reason": "importing x started a thread", "files": {...}}
    pyair -> zygote  {"op": "fork", "id": 3, "kind": "script" | "module", "target": "app.py",
                      "argv": [...], "orig_argv": [...], "path0": "/proj", "cwd": "/proj",
                      "env": {...}, "token": "<session>/app-4"}
    zygote -> pyair  {"ev": "forked", "id": 3, "pid": 4242}  or  {"ev": "fork-failed", ...}
    zygote -> pyair  {"ev": "exit", "pid": 4242, "code": -15}   (Popen.returncode's meaning)
    pyair -> zygote  {"op": "retire"}  (fork no more; exit when the last child is gone)

The user's own modules (files under the project root, outside site-packages and the
interpreter's prefixes) are never imported here: an import finder refuses them while the
preload runs. After the preload the zygote must be safe to fork: one thread, no socket, pipe or
event-poll descriptor, no asyncio loop; otherwise it says ``unsafe`` and exits.

A forked child starts a new session, marks its ``/proc`` environment with its own tree token
(rewritten in place, so pyair's tree sweep and guardian find it as a cold child), restores the
signal handlers the preload left, closes the zygote's descriptors, takes the app's environment,
cwd, ``sys.argv`` and ``sys.path[0]``, reseeds ``random``, starts pyair's agent when the app
would have had it, and runs the script or module as ``__main__`` the way ``python`` does.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from importlib.machinery import ModuleSpec
    from types import FrameType, ModuleType, TracebackType
    from typing import Any

    from . import childside  # at run time: _load_childside()

    Message = dict[str, Any]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_UNSAFE_FD_KINDS = ("socket:", "pipe:", "anon_inode:")
_PYAIR_DIR = os.path.dirname(os.path.realpath(__file__))  # pyair's package


def _load_childside() -> ModuleType:
    """pyair's child-side module, from the file next to this one (this runs as a script in the
    app's interpreter: pyair's directory must not be on its sys.path)."""
    from _frozen_importlib import ModuleSpec, module_from_spec
    from _frozen_importlib_external import SourceFileLoader

    name, path = "_pyair_childside", os.path.join(os.path.dirname(__file__), "childside.py")
    loader = SourceFileLoader(name, path)
    spec = ModuleSpec(name, loader, origin=path)
    spec.has_location = True
    module = module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[name] = module
    return module


if not TYPE_CHECKING:
    childside = _load_childside()


# --------------------------------------------------------------------------- preloading


class _ProjectGuard:
    """A ``sys.meta_path`` finder that refuses the project's own modules during the preload."""

    def __init__(self, root: str, prefixes: Sequence[str]) -> None:
        self.root = root
        self.prefixes = prefixes
        self.refused: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        spec = childside.find_spec_past(self, fullname, path, target)
        if spec is None:
            return None
        places = [spec.origin] if spec.has_location and spec.origin else []
        places += list(spec.submodule_search_locations or ())
        if any(childside.is_project_file(p, self.root, self.prefixes) for p in places):
            self.refused.append(fullname)
            raise ImportError(f"{fullname} is the project's own module: not preloaded")
        return spec

    def invalidate_caches(self) -> None:
        pass


def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover - not Linux
        threading = sys.modules.get("threading")
        return int(threading.active_count()) if threading is not None else 1


def _quiet_fds() -> Callable[[], None]:
    """Send fd 1 and 2 to /dev/null (the app printed its import-time output already)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    try:
        saved = [os.dup(1), os.dup(2)]
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return lambda: None
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)

    def restore() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        for target in (1, 2):
            os.dup2(saved[target - 1], target)
            os.close(saved[target - 1])

    return restore


def preload(names: Iterable[str], guard: _ProjectGuard) -> tuple[int, list[list[str]], str | None]:
    """Import each module (failures are skipped); stop at the first that starts a thread.

    Returns (how many were imported, [[name, error], ...], the unsafe reason or None).
    """
    imported = 0
    failed: list[list[str]] = []
    sys.meta_path.insert(0, guard)
    restore = _quiet_fds()
    try:
        for name in names:
            if name in sys.modules or childside.skipped_name(name):
                continue
            try:
                __import__(name)
                imported += 1
            except (Exception, SystemExit) as exc:
                failed.append([name, f"{type(exc).__name__}: {exc}"[:200]])
            if thread_count() > 1:
                return imported, failed, f"importing {name} started a thread"
    finally:
        restore()
        if guard in sys.meta_path:
            sys.meta_path.remove(guard)
    return imported, failed, None


def unsafe_state(own_fds: Iterable[int], root: str, prefixes: Sequence[str]) -> str | None:
    """Why forking this process now would not give a sound app process (None: it would)."""
    if not hasattr(os, "fork"):
        return "this interpreter cannot fork"
    threads = thread_count()
    if threads > 1:
        return f"{threads} threads are running after the preload"
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate()[1:])
        return f"threads are running after the preload ({names})"
    asyncio_events = sys.modules.get("asyncio.events")
    if asyncio_events is not None:
        running = getattr(asyncio_events, "_get_running_loop", lambda: None)
        if running() is not None:
            return "an asyncio event loop is running"
        policy = getattr(asyncio_events, "_event_loop_policy", None)
        local = getattr(policy, "_local", None)
        if getattr(local, "_loop", None) is not None:
            return "a preloaded module created an asyncio event loop"
    own = set(own_fds) | {0, 1, 2}
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # pragma: no cover - not Linux
        fds = []
    for fd in fds:
        if fd in own:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listdir's own descriptor, closed by now
            continue
        if target.startswith(_UNSAFE_FD_KINDS):
            return f"a preloaded module left fd {fd} open ({target})"
    for name, module in list(sys.modules.items()):
        where = childside.module_location(module)
        if where and childside.is_under(os.path.realpath(where), _PYAIR_DIR):
            continue  # pyair's agent, preloaded: the project may hold pyair (its own demo)
        if where and childside.is_project_file(where, root, prefixes):
            return f"the project's module {name} was imported"
    return None


def watched_files(root: str, prefixes: Sequence[str]) -> dict[str, list[int]]:
    """Every file the preload loaded, the library directories and the interpreter itself:
    path -> [mtime_ns, size] (pyair rebuilds the zygote when one of them changes)."""
    paths: list[str] = []
    for module in list(sys.modules.values()):
        where = getattr(module, "__file__", None)
        if isinstance(where, str):
            paths.append(where)
    for entry in sys.path:
        if entry and os.path.isdir(entry) and not childside.is_project_file(entry, root, prefixes):
            paths.append(entry)
    paths.append(sys.executable)
    paths.append(os.path.join(sys.prefix, "pyvenv.cfg"))
    found: dict[str, list[int]] = {}
    for path in paths:
        path = os.path.abspath(path)
        if path in found:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        found[path] = [st.st_mtime_ns, st.st_size]
    return found


# --------------------------------------------------------------------------- the zygote


def _die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG: the kernel SIGKILLs us when pyair dies (a second line behind the
    guardian and the socket's EOF)."""
    if not sys.platform.startswith("linux"):  # pragma: no cover - not Linux
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except Exception:  # pragma: no cover - no prctl
        pass
    if os.getppid() != parent:  # pyair died before the prctl took effect
        os._exit(0)


def _exit_code(status: int) -> int:
    if hasattr(os, "waitstatus_to_exitcode"):
        return int(os.waitstatus_to_exitcode(status))
    if os.WIFSIGNALED(status):  # pragma: no cover - Python < 3.9
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)  # pragma: no cover


class ForkServer:
    """The zygote's fork loop. ``serve()`` returns only in a forked child, with what it runs."""

    def __init__(self, channel: childside.FrameChannel, preload_msg: Message) -> None:
        import select
        import signal

        self.channel = channel
        self.select = select
        self.signal = signal
        self.root = os.path.realpath(preload_msg.get("root") or os.getcwd())
        self.prefixes = childside.real_prefixes(
            self.root, (sys.prefix, sys.base_prefix, sys.exec_prefix)
        )
        self.tree_value = os.environ.get(childside.TREE_ENV, "")
        self.children: set[int] = set()
        self.retired = False
        self.wake_r = -1
        self.wake_w = -1
        self.handlers: dict[int, Any] = {}
        self.bootstrap: str = preload_msg.get("bootstrap") or ""
        self.module_mode = preload_msg.get("kind") == "module"

    # -- start -----------------------------------------------------------------------------

    def start(self, msg: Message) -> bool:
        """Preload, check, report; False when the zygote is unsafe (it then exits)."""
        import time

        started = time.perf_counter()
        argv = msg.get("argv")
        if isinstance(argv, list) and argv:
            sys.argv[:] = [str(arg) for arg in argv]  # what the libraries see at import time
        if self.module_mode:
            import runpy  # noqa: F401 - what `python -m` runs the module with

        guard = _ProjectGuard(self.root, self.prefixes)
        imported, failed, unsafe = preload(msg.get("modules") or (), guard)
        if unsafe is None and self._agent_wanted(dict(os.environ)):
            _preload_agent(self.bootstrap)
        if unsafe is None:
            unsafe = unsafe_state((self.channel.fd,), self.root, self.prefixes)
        files = watched_files(self.root, self.prefixes)
        if unsafe is not None:
            self.channel.send({"ev": "unsafe", "reason": unsafe, "files": files})
            return False
        self.handlers = self._signal_snapshot()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        self.signal.signal(self.signal.SIGCHLD, _on_sigchld)
        self.signal.set_wakeup_fd(self.wake_w)
        self.channel.send(
            {
                "ev": "ready",
                "pid": os.getpid(),
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "imported": imported,
                "modules": len(sys.modules),
                "loaded": list(sys.modules),
                "failed": failed,
                "refused": guard.refused,
                "files": files,
                "executable": sys.executable,
                "version": sys.version.split()[0],
            }
        )
        return True

    def _signal_snapshot(self) -> dict[int, Any]:
        signal = self.signal
        handlers: dict[int, Any] = {}
        for signum in signal.valid_signals():
            if signum in (signal.SIGKILL, signal.SIGSTOP):
                continue
            try:
                handler = signal.getsignal(signum)
            except (OSError, ValueError):
                continue
            if handler is not None:  # None: set outside Python, leave it alone
                handlers[signum] = handler
        return handlers

    # -- the loop --------------------------------------------------------------------------

    def serve(self) -> Message | None:
        """Fork on request until pyair goes away; the fork request in a child, else None."""
        fd = self.channel.fd
        while True:
            if self.retired and not self.children:
                return None
            readable, _, _ = self.select.select([fd, self.wake_r], [], [])
            if self.wake_r in readable:
                self._drain_wakeups()
                self._reap()
            if fd not in readable:
                continue
            for msg in self.channel.read():
                op = msg.get("op")
                if op == "fork":
                    child = self._fork(msg)
                    if child is not None:
                        return child
                elif op == "retire":
                    self.retired = True
                elif op == "exit":
                    return None
            if self.channel.closed:
                return None

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except OSError:  # BlockingIOError: drained
            pass

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                self.children.discard(pid)
                self.channel.send({"ev": "exit", "pid": pid, "code": _exit_code(status)})

    def _fork(self, msg: Message) -> Message | None:
        # descriptors pyair passed with this request (the app's held listening socket)
        count = int(msg.get("fds") or 0)
        passed, self.channel.fds = self.channel.fds[:count], self.channel.fds[count:]
        try:
            return self._fork_with(msg, passed)
        finally:
            for fd in passed:  # the child has its own copies; the zygote holds no socket
                try:  # noqa: SIM105 - no contextlib import in the app's interpreter for this
                    os.close(fd)
                except OSError:
                    pass

    def _fork_with(self, msg: Message, passed: list[int]) -> Message | None:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        try:
            pid = os.fork()
        except OSError as exc:
            self.channel.send({"ev": "fork-failed", "id": msg.get("id"), "error": str(exc)})
            return None
        if pid == 0:
            try:
                self._take_passed(msg, passed)
                self._become_child(msg)
            except BaseException as exc:
                try:
                    sys.stderr.write(f"pyair zygote: cannot start the app: {exc!r}\n")
                    sys.stderr.flush()
                finally:
                    os._exit(1)
            return msg
        self.children.add(pid)
        self.channel.send({"ev": "forked", "id": msg.get("id"), "pid": pid})
        return None

    # -- in the child ----------------------------------------------------------------------

    def _take_passed(self, msg: Message, passed: list[int]) -> None:
        """Keep the passed descriptors open in the child (under new numbers: the env says)."""
        env = msg["env"]
        listen = env.get(childside.LISTEN_ENV)
        kept = [os.dup(fd) for fd in passed]  # the parent's numbers are closed on the way out
        for fd in kept:
            os.set_inheritable(fd, True)
        if listen and kept:
            env[childside.LISTEN_ENV] = childside.with_listen_fd(listen, kept[0])

    def _become_child(self, msg: Message) -> None:
        token = str(msg["token"])
        mark_tree(self.tree_value, token)
        os.setsid()
        set_cmdline([str(arg) for arg in msg.get("orig_argv") or ()])
        signal = self.signal
        signal.set_wakeup_fd(-1)
        for signum, handler in self.handlers.items():
            try:
                if signal.getsignal(signum) is not handler:
                    signal.signal(signum, handler)
            except (OSError, ValueError, TypeError):
                continue
        self.channel.release()
        for fd in (self.wake_r, self.wake_w):
            try:  # noqa: SIM105 - no contextlib import in the app's interpreter for this
                os.close(fd)
            except OSError:
                pass
        env = msg["env"]
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
        os.chdir(str(msg["cwd"]))
        sys.argv[:] = [str(arg) for arg in msg["argv"]]
        if hasattr(sys, "orig_argv") and msg.get("orig_argv"):
            sys.orig_argv = [str(arg) for arg in msg["orig_argv"]]
        if not (sys.flags.isolated or getattr(sys.flags, "safe_path", False)):
            sys.path.insert(0, str(msg["path0"]))
        try:  # directory listings cached in the zygote may predate new files
            from _frozen_importlib_external import PathFinder

            PathFinder.invalidate_caches()
        except ImportError:  # pragma: no cover - other interpreters
            pass
        _reseed()
        if env.get(childside.CONTROL_ENV) and self._agent_wanted(env):
            _start_agent(self.bootstrap)

    def _agent_wanted(self, env: dict[str, str]) -> bool:
        """The app gets the agent when its bootstrap is on PYTHONPATH and site runs."""
        if not self.bootstrap or sys.flags.no_site or sys.flags.ignore_environment:
            return False
        entries = env.get("PYTHONPATH", "").split(os.pathsep)
        here = os.path.realpath(self.bootstrap)
        return any(entry and os.path.realpath(entry) == here for entry in entries)


def _on_sigchld(signum: int, frame: FrameType | None) -> None:
    pass  # the wakeup fd does the work


def _reseed() -> None:
    """A fresh seed where a cold start would have one (os.fork reseeds random already)."""
    random = sys.modules.get("random")
    if random is not None:
        random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        try:  # noqa: SIM105
            numpy_random.seed()
        except Exception:
            pass


def mark_tree(old_value: str, token: str) -> bool:
    """Rewrite ``PYAIR_TREE`` in this process's original environment block in place.

    ``/proc/PID/environ`` shows the block the process was exec'd with, never ``os.environ``;
    the zygote's value is padded, so ``<token>/warm`` fits in it and the tree sweep and the
    guardian find this process by its own token. False when it could not be done (the value
    then stays the zygote's, which the guardian still matches).
    """
    new = (token + "/warm").ljust(len(old_value), "_")
    if not old_value or len(new) != len(old_value):
        return False
    try:
        import ctypes

        fields = childside.stat_fields()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (Linux 3.5+)
        if not start or end <= start:
            return False
        block = ctypes.string_at(start, end - start)
        name = childside.TREE_ENV
        needle = f"{name}={old_value}\0".encode()
        at = 0 if block.startswith(needle) else block.find(b"\0" + needle) + 1
        if at <= 0 and not block.startswith(needle):
            return False
        value_at = start + at + len(name) + 1
        ctypes.memmove(value_at, new.encode(), len(new))
        return True
    except (OSError, ValueError, IndexError, ImportError):
        return False


def set_cmdline(argv: Sequence[str]) -> bool:
    """Show the app's command line in ``ps`` (``/proc/PID/cmdline``) instead of the zygote's,
    when it fits in the zygote's (as setproctitle does); False when it does not."""
    if not argv:
        return False
    try:
        import ctypes

        fields = childside.stat_fields()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (Linux 3.5+)
        new = "\0".join(argv).encode(errors="replace") + b"\0"
        if not start or len(new) > end - start:
            return False
        ctypes.memmove(start, new.ljust(end - start, b"\0"), end - start)
        return True
    except (OSError, ValueError, IndexError, ImportError):
        return False


_BOOTSTRAP = "_pyair_bootstrap"  # the bootstrap's sitecustomize, loaded by path under this name


def _bootstrap(bootstrap: str) -> ModuleType:
    module = sys.modules.get(_BOOTSTRAP)
    if module is None:
        module = childside.load_source(_BOOTSTRAP, os.path.join(bootstrap, "sitecustomize.py"))
    return module


def _preload_agent(bootstrap: str) -> None:
    """Load pyair's agent without arming it (it stays quiet in the zygote): a forked app then
    only arms it, instead of compiling it again in every app (~20 ms where no bytecode cache
    can be written). A failure only leaves that work to the app."""
    try:
        _bootstrap(bootstrap)._preload_agent(bootstrap, childside)
    except Exception as exc:
        sys.stderr.write(f"pyair zygote: agent not preloaded ({type(exc).__name__}: {exc})\n")


def _start_agent(bootstrap: str) -> None:
    """What the bootstrap's sitecustomize does when PYAIR_CONTROL is set (the zygote had none
    when site ran): load pyair's agent (loaded already when the zygote preloaded it) and arm
    it. The agent catches up on template engines that are already imported."""
    try:
        _bootstrap(bootstrap)._start_agent(bootstrap, childside)
    except Exception as exc:
        sys.stderr.write(f"pyair agent: disabled ({type(exc).__name__}: {exc})\n")


# --------------------------------------------------------------------------- running the app


def _clean_excepthook(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    """The traceback a cold start prints: without the zygote's own frames on top."""
    here = os.path.abspath(__file__)
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == here:
        tb = tb.tb_next
    if isinstance(value, BaseException):
        value.__traceback__ = tb  # what the default hook prints
    sys.__excepthook__(kind, value, tb)


def run_app(msg: Message) -> None:
    """Run the app's script or module as ``__main__``, exactly as ``python`` would."""
    import builtins

    main = type(sys)("__main__")
    main.__dict__.update(
        __builtins__=builtins,
        __annotations__={},
        __doc__=None,
        __package__=None,
        __spec__=None,
    )
    sys.modules["__main__"] = main
    sys.excepthook = _clean_excepthook
    target = str(msg["target"])
    if msg.get("kind") == "module":
        import runpy

        run_module: Callable[[str, bool], object] = runpy._run_module_as_main  # type: ignore[attr-defined]
        run_module(target, True)
        return
    import io
    from _frozen_importlib_external import SourceFileLoader

    path = os.path.abspath(target)
    main.__dict__.update(
        __file__=path, __cached__=None, __loader__=SourceFileLoader("__main__", path)
    )
    with io.open_code(path) as source:
        code = compile(source.read(), path, "exec", dont_inherit=True)
    exec(code, main.__dict__)


def main(argv: Sequence[str]) -> None:
    fd, parent = int(argv[1]), int(argv[2])
    os.set_inheritable(fd, False)
    _die_with_parent(parent)
    channel = childside.FrameChannel(fd, childside.ZYGOTE_MAX_FRAME, takes_fds=True)
    msg = channel.receive()
    if msg is None:  # pyair went away before saying anything
        return
    server = ForkServer(channel, msg)
    if not server.start(msg):
        return
    child = server.serve()
    if child is None:
        return
    del server, channel, msg
    run_app(child)


if __name__ == "__main__":
    # Started by path: our directory (pyair's package) must not shadow the app's imports.
    _here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and sys.path[0] and os.path.realpath(sys.path[0]) == _here:
        del sys.path[0]
    del _here
    main(sys.argv)
