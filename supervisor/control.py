"""Supervisor side of the control socket: a private Unix socket the in-app agent connects to.

    async with ControlServer(is_member=tree.contains, log=console.control) as control:
        env.update(control.agent_env())              # plus PYTHONPATH=agent.bootstrap_dir()
        ...start the app...
        result = await control.swap(["/abs/templates/page.html"], timeout_ms=2000)
        if result.fallback:                          # "no agent" / "timeout" / "disconnected"
            ...restart instead...

The socket lives in a fresh ``mkdtemp`` directory (0700, checked: a directory of ours, not a
link) and is itself 0600. The directory is made where nobody else can rename it away:
``$XDG_RUNTIME_DIR`` when it is private, else the temporary directory (``$TMPDIR``, ``/tmp``)
when it is not writable by others or is sticky; a place whose socket path would be too long
for ``AF_UNIX`` is passed over for a shorter one (one line in the log). The agent checks the
other way round (:func:`~supervisor.childside.connect_control`): it sends nothing before it
knows the listener is this pyair (same uid, the pid in ``agent_env()``). Every connection's
peer is checked with ``SO_PEERCRED``: same uid, and ``is_member(pid)`` must say the pid belongs
to the app tree pyair started; anything else is logged and closed. Every agent that said hello
and is still connected is asked to swap (each worker of a pre-fork server has its own): a swap
is acked when all of them acked, and fails when one of them refused or did not answer in time.
Bad frames are logged and dropped (an oversized or garbage header closes that one connection);
nothing here raises into the engine except misuse (``path`` before the server started).

``is_member`` is called on the event loop, so it must be quick (a psutil parent walk is fine).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from . import protocol
from .childside import CONTROL_ENV, SERVER_PID_ENV, peer_credentials
from .protocol import PROTOCOL_VERSION, FrameDecoder, FrameTooLarge, ProtocolError

__all__ = [
    "AGENT_ERROR",
    "DISCONNECTED",
    "NO_AGENT",
    "SWAPPED",
    "TEMPLATE_ERROR",
    "TIMEOUT",
    "AgentInfo",
    "ControlServer",
    "SwapResult",
    "TemplateError",
    "peer_credentials",
    "private_directory",
]

SOCKET_NAME = "control.sock"
RECV_SIZE = 65536
DIR_PREFIX = "pyair-"
# sun_path's size less its NUL: 108 on Linux, 104 on macOS and the BSDs
MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103
ACCEPT_PAUSE_MIN_S, ACCEPT_PAUSE_MAX_S = 0.01, 1.0  # accept() out of descriptors: back off

# SwapResult.reason values
SWAPPED = "swapped"  # the agent swapped everything (ok=True)
TEMPLATE_ERROR = "template error"  # the agent refused: a template did not compile; old ones serve
NO_AGENT = "no agent"  # nobody to ask: fall back
TIMEOUT = "timeout"  # asked, no ack in time: fall back
DISCONNECTED = "disconnected"  # the agent went away mid-swap: fall back
AGENT_ERROR = "agent error"  # the agent itself failed (not the template): fall back


@dataclass(frozen=True)
class TemplateError:
    """Where a changed template failed to compile (file/line may be unknown)."""

    file: str | None
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file or "<template>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class SwapResult:
    """What one ``swap()`` came to. ``reason`` is one of the module's reason constants."""

    ok: bool
    reason: str
    names: tuple[str, ...] = ()
    ms: float = 0.0  # time the agent spent (compile + swap)
    rtt_ms: float = 0.0  # send → ack, as pyair saw it
    error: TemplateError | None = None
    unclaimed: tuple[str, ...] = ()  # changed paths no engine in the app knew about
    pids: tuple[int, ...] = ()  # the processes whose agents answered

    @property
    def fallback(self) -> bool:
        """True when no agent answered, so the change still needs a restart (or an ignore)."""
        return self.reason in (NO_AGENT, TIMEOUT, DISCONNECTED, AGENT_ERROR)


@dataclass(frozen=True)
class AgentInfo:
    pid: int  # from SO_PEERCRED, not from the hello
    uid: int
    version: int
    engines: tuple[str, ...]
    connected_at: float  # time.monotonic()


@dataclass(eq=False)
class _Waiter:
    event: anyio.Event = field(default_factory=anyio.Event)
    reply: protocol.Message | None = None


@dataclass(eq=False)
class _Conn:
    stream: anyio.abc.SocketStream
    pid: int
    uid: int
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    info: AgentInfo | None = None
    waiting: dict[int, _Waiter] = field(default_factory=dict)

    async def send(self, msg: protocol.Message) -> None:
        data = protocol.encode(msg)
        async with self.lock:
            await self.stream.send(data)


# --------------------------------------------------------------------------- the private directory


def _unsafe_parent(path: str, *, private: bool) -> str | None:
    """Why pyair's directory should not be made in ``path``; None when it may.

    Anyone who can write to a directory without the sticky bit can rename pyair's directory
    away and put one of their own, with their socket, in its place.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if private:
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            return f"{path} is not private (owner uid {info.st_uid}, mode {info.st_mode:o})"
        return None
    if info.st_uid not in (os.getuid(), 0):
        return f"{path} belongs to uid {info.st_uid}"
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        return f"{path} is writable by others and not sticky"
    return None


def _parents() -> list[tuple[str, bool]]:
    """Where the directory may go, best first: (path, must it be private to us?)."""
    found: list[tuple[str, bool]] = []
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and os.path.isabs(runtime_dir):
        found.append((runtime_dir, True))
    for temp in (tempfile.gettempdir(), "/tmp"):
        if all(os.path.realpath(temp) != os.path.realpath(p) for p, _ in found):
            found.append((temp, False))
    return found


def _too_long(parent: str) -> bool:
    name = os.path.join(parent, DIR_PREFIX + "x" * 8, SOCKET_NAME)  # mkdtemp adds 8 letters
    return len(os.fsencode(name)) > MAX_SOCKET_PATH


def private_directory(log: Callable[[str], None]) -> str:
    """A new directory only this user can enter (0700, checked), for the control socket.

    The first safe place of :func:`_parents` whose socket path fits; when none is safe, the
    first that fits (the agent's check of the listener still keeps its messages from anyone
    else). One line to ``log`` when the best place was passed over. OSError when nothing fits.
    """
    parents = _parents()
    fitting = [(p, private) for p, private in parents if not _too_long(p)]
    safe = [p for p, private in fitting if _unsafe_parent(p, private=private) is None]
    if not fitting:
        raise OSError(errno.ENAMETOOLONG, "no place for it has a path short enough for a socket")
    parent = safe[0] if safe else fitting[0][0]
    best, best_private = parents[0]
    if parent != best:
        why = (
            "too long a path for a Unix socket"
            if _too_long(best)
            else _unsafe_parent(best, private=best_private)
        )
        if not safe:
            why = f"{why}; nowhere is safe, so only the agent's check of the listener protects it"
        log(f"control: socket made in {parent}, not {best} ({why})")
    directory = tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parent)
    os.chmod(directory, 0o700)
    info = os.lstat(directory)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or stat.S_IMODE(info.st_mode) != 0o700
    ):
        with contextlib.suppress(OSError):
            os.rmdir(directory)
        raise OSError(f"{directory} is not a private directory of ours once made")
    return directory


class ControlServer:
    """The private control socket and the agent connected to it. See the module docstring.

    One-shot: start it once (``async with`` or ``serve()``), close it once.
    """

    def __init__(
        self,
        *,
        is_member: Callable[[int], bool],
        log: Callable[[str], None],
        max_frame: int = protocol.MAX_FRAME,
        hello_timeout: float = 10.0,
        on_modules: Callable[[int, protocol.Message], None] | None = None,
    ) -> None:
        self._is_member = is_member
        self._on_modules = on_modules  # (peer pid, "modules" message), for preload = "auto"
        self._log = log
        self._max_frame = max_frame
        self._hello_timeout = hello_timeout
        self._dir: str | None = None
        self._path: str | None = None
        self._agents: list[_Conn] = []  # said hello, still connected: oldest first
        self._ids = itertools.count(1)
        self._scope: anyio.CancelScope | None = None
        self._closed: anyio.Event | None = None
        self._hello: anyio.Event | None = None
        self._own_tg: anyio.abc.TaskGroup | None = None

    # --- state ------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The socket path for ``PYAIR_CONTROL`` (available once the server is started)."""
        if self._path is None:
            raise RuntimeError("ControlServer is not started")
        return self._path

    @property
    def directory(self) -> str:
        """The private directory that holds the socket (removed when the server closes)."""
        if self._dir is None:
            raise RuntimeError("ControlServer is not started")
        return self._dir

    def agent_env(self) -> dict[str, str]:
        """What the app's environment needs for its agent to find (and trust) this server."""
        return {CONTROL_ENV: self.path, SERVER_PID_ENV: str(os.getpid())}

    @property
    def agent(self) -> AgentInfo | None:
        """The newest agent that said hello and is still connected."""
        return self._agents[-1].info if self._agents else None

    @property
    def agents(self) -> tuple[AgentInfo, ...]:
        """Every connected agent (one per process that renders), oldest first."""
        return tuple(conn.info for conn in self._agents if conn.info is not None)

    @property
    def agent_connected(self) -> bool:
        return bool(self._agents)

    async def wait_for_agent(self, timeout: float, count: int = 1) -> bool:
        """Wait up to ``timeout`` seconds for ``count`` agents; True once they are connected."""
        with anyio.move_on_after(timeout):
            while len(self._agents) < count:
                if self._hello is None:  # not started, or closed
                    return False
                await self._hello.wait()
        return len(self._agents) >= count

    # --- lifetime ---------------------------------------------------------------------------

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Create the directory and socket, then accept agents until cancelled or ``aclose()``.

        For ``await task_group.start(server.serve)``; ``async with server`` does this for you.
        """
        if self._scope is not None:
            raise RuntimeError("ControlServer already started")
        self._closed = anyio.Event()
        self._hello = anyio.Event()
        with anyio.CancelScope() as scope:
            self._scope = scope
            try:
                self._dir = private_directory(self._log)
                path = os.path.join(self._dir, SOCKET_NAME)
                listener = await anyio.create_unix_listener(path, mode=0o600)
                self._path = path
                async with listener, anyio.create_task_group() as tg:
                    task_status.started()
                    await self._accept_loop(listener, tg)
            finally:
                self._agents.clear()
                self._hello = None  # wait_for_agent() now answers False at once
                self._cleanup_files()
                self._closed.set()

    async def _accept_loop(
        self, listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup
    ) -> None:
        said: set[int | None] = set()
        pause = ACCEPT_PAUSE_MIN_S
        while True:
            try:
                stream = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                # EMFILE and friends (anyio wraps them for Unix listeners): say so once, back
                # off, go on; an agent's connect waits in the backlog meanwhile
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                if not isinstance(cause, OSError):
                    raise
                if cause.errno not in said:
                    said.add(cause.errno)
                    self._log(f"control: accept failed: {cause.strerror or cause}; retrying")
                await anyio.sleep(pause)
                pause = min(pause * 2, ACCEPT_PAUSE_MAX_S)
                continue
            pause = ACCEPT_PAUSE_MIN_S
            tg.start_soon(self._handle, stream)

    def _cleanup_files(self) -> None:
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
        if self._dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._dir)

    async def aclose(self) -> None:
        """Stop accepting, drop every connection, remove the socket and its directory."""
        if self._scope is None:
            return
        self._scope.cancel()
        if self._closed is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._closed.wait()  # serve()'s cleanup is synchronous once cancelled

    async def __aenter__(self) -> ControlServer:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(self.serve)
        except BaseException:
            if self._scope is not None:
                self._scope.cancel()
            await tg.__aexit__(None, None, None)
            raise
        self._own_tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The body's own exception (or cancellation) propagates as is, not in a group: the
        # serve task is cancelled first, so the task group has nothing else to report.
        if self._scope is not None:
            self._scope.cancel()
        tg, self._own_tg = self._own_tg, None
        if tg is not None:
            await tg.__aexit__(None, None, None)

    # --- per connection ---------------------------------------------------------------------

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                pid, uid, _gid = peer_credentials(stream.extra(SocketAttribute.raw_socket))
            except OSError as exc:
                self._log(f"control: refused a connection: cannot read its credentials ({exc})")
                return
            if uid != os.getuid():
                self._log(f"control: refused a connection from pid {pid}: uid {uid} is not ours")
                return
            try:
                member = self._is_member(pid)
            except Exception as exc:
                self._log(f"control: refused a connection from pid {pid}: membership check: {exc}")
                return
            if not member:
                self._log(
                    f"control: refused a connection from pid {pid}: not in the app's process tree"
                )
                return
            conn = _Conn(stream, pid, uid)
            try:
                await self._read_loop(conn)
            finally:
                self._drop(conn)

    async def _read_loop(self, conn: _Conn) -> None:
        decoder = FrameDecoder(self._max_frame)
        deadline = anyio.current_time() + self._hello_timeout
        while True:
            limit = None if conn.info is not None else max(0.0, deadline - anyio.current_time())
            try:
                with anyio.move_on_after(limit) as waited:
                    data = await conn.stream.receive(RECV_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            except OSError as exc:
                self._log(f"control: pid {conn.pid}: read failed: {exc}")
                return
            if waited.cancelled_caught:
                self._log(
                    f"control: pid {conn.pid} sent no hello in {self._hello_timeout:g} s; closing"
                )
                return
            decoder.feed(data)
            while True:
                try:
                    msg = decoder.next_message()
                except FrameTooLarge as exc:
                    self._log(f"control: pid {conn.pid}: {exc}; closing the connection")
                    return
                except ProtocolError as exc:
                    self._log(f"control: pid {conn.pid}: dropped a bad frame: {exc}")
                    continue
                if msg is None:
                    break
                if not await self._dispatch(conn, msg):
                    return

    async def _dispatch(self, conn: _Conn, msg: protocol.Message) -> bool:
        """Handle one message; False closes the connection."""
        kind = msg["type"]
        if kind == "hello":
            if msg["v"] != PROTOCOL_VERSION:
                self._log(
                    f"control: agent pid {conn.pid} speaks protocol v{msg['v']}, "
                    f"pyair speaks v{PROTOCOL_VERSION}; closing"
                )
                return False
            conn.info = AgentInfo(
                pid=conn.pid,
                uid=conn.uid,
                version=msg["v"],
                engines=tuple(msg["engines"]),
                connected_at=time.monotonic(),
            )
            if conn not in self._agents:
                self._agents.append(conn)
            engines = ", ".join(conn.info.engines) or "none yet"
            self._log(f"control: agent connected (pid {conn.pid}; engines: {engines})")
            if self._hello is not None:
                self._hello.set()
                self._hello = anyio.Event()  # the next hello wakes wait_for_agent() again
        elif kind in ("ack", "pong"):
            waiter = conn.waiting.get(msg["id"])
            if waiter is None:
                self._log(f"control: pid {conn.pid}: late or unknown {kind} #{msg['id']} ignored")
            else:
                waiter.reply = msg
                waiter.event.set()
        elif kind == "ping":
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await conn.send(protocol.pong(msg["id"]))
        elif kind == "note":
            self._log(f"agent (pid {conn.pid}): {msg['text']}")
        elif kind == "modules":  # needs no hello: the agent sends it on a connection of its own
            if self._on_modules is not None:
                try:
                    self._on_modules(conn.pid, msg)
                except Exception as exc:
                    self._log(f"control: pid {conn.pid}: modules report failed: {exc!r}")
        else:
            self._log(f"control: pid {conn.pid}: unexpected {kind!r} message dropped")
        return True

    def _drop(self, conn: _Conn) -> None:
        if conn in self._agents:
            self._agents.remove(conn)
            self._log(f"control: agent disconnected (pid {conn.pid})")
        for waiter in conn.waiting.values():
            waiter.event.set()  # reply stays None: disconnected
        conn.waiting.clear()

    # --- requests ---------------------------------------------------------------------------

    async def _request(
        self, conn: _Conn, msg: protocol.Message, timeout_ms: float
    ) -> tuple[str, protocol.Message | None, float]:
        """Send ``msg`` and wait for the reply with the same id → (reason, reply, rtt_ms)."""
        waiter = _Waiter()
        conn.waiting[msg["id"]] = waiter
        started = time.perf_counter()
        try:
            with anyio.move_on_after(max(timeout_ms, 0) / 1000):
                try:
                    await conn.send(msg)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    return DISCONNECTED, None, (time.perf_counter() - started) * 1000
                await waiter.event.wait()
        finally:
            conn.waiting.pop(msg["id"], None)
        rtt_ms = (time.perf_counter() - started) * 1000
        if not waiter.event.is_set():
            return TIMEOUT, None, rtt_ms
        if waiter.reply is None:
            return DISCONNECTED, None, rtt_ms
        return "answered", waiter.reply, rtt_ms

    async def swap(
        self,
        paths: Sequence[str],
        timeout_ms: int,
        sources: Mapping[str, str] | None = None,
    ) -> SwapResult:
        """Ask every connected agent to swap these templates (absolute paths); never raises.

        ``sources``: the last text of each file that compiled (what keeps serving where the new
        text does not). Acked when every agent acked; an agent that went away meanwhile is not
        waited for, one that refused or did not answer decides the result.
        """
        conns = list(self._agents)
        if not conns:
            return SwapResult(ok=False, reason=NO_AGENT)
        msg_id = next(self._ids)
        try:
            msg = protocol.swap(msg_id, [os.fspath(p) for p in paths], dict(sources or {}))
            protocol.encode(msg, self._max_frame)
        except ProtocolError as exc:  # the swap message itself would be oversized
            return SwapResult(
                ok=False, reason=AGENT_ERROR, error=TemplateError(None, None, str(exc))
            )
        answers: list[SwapResult] = []

        async def ask(conn: _Conn) -> None:
            reason, reply, rtt_ms = await self._request(conn, msg, timeout_ms)
            answers.append(self._swap_result(conn, msg_id, reason, reply, rtt_ms, timeout_ms))

        async with anyio.create_task_group() as tg:
            for conn in conns:
                tg.start_soon(ask, conn)
        return _combined(answers)

    def _swap_result(
        self,
        conn: _Conn,
        msg_id: int,
        reason: str,
        reply: protocol.Message | None,
        rtt_ms: float,
        timeout_ms: int,
    ) -> SwapResult:
        if reply is None:
            if reason == TIMEOUT:
                self._log(
                    f"control: swap #{msg_id} got no ack within {timeout_ms} ms from pid {conn.pid}"
                )
            return SwapResult(ok=False, reason=reason, rtt_ms=rtt_ms)
        error = reply.get("error")
        ok = bool(reply["ok"])
        if ok:
            reason = SWAPPED
        elif error is not None and error.get("internal"):
            reason = AGENT_ERROR
            self._log(
                f"control: the agent of pid {conn.pid} failed swap #{msg_id}: " + error["message"]
            )
        else:
            reason = TEMPLATE_ERROR
        return SwapResult(
            ok=ok,
            reason=reason,
            names=tuple(reply.get("names", ())),
            ms=float(reply.get("ms", 0.0)),
            rtt_ms=rtt_ms,
            error=(
                TemplateError(error.get("file"), error.get("line"), error["message"])
                if error is not None
                else None
            ),
            unclaimed=tuple(reply.get("unclaimed", ())),
            pids=(conn.pid,),
        )

    async def ping(self, timeout_ms: int = 1000) -> float | None:
        """Round trip to the newest agent in ms, or None (no agent, timeout, gone)."""
        if not self._agents:
            return None
        conn = self._agents[-1]
        _reason, reply, rtt_ms = await self._request(
            conn, protocol.ping(next(self._ids)), timeout_ms
        )
        return rtt_ms if reply is not None else None


# Which one answer stands for all, when they differ: a refusal, then no answer in time.
_PRECEDENCE = (TEMPLATE_ERROR, AGENT_ERROR, TIMEOUT)


def _combined(answers: Sequence[SwapResult]) -> SwapResult:
    """One result for a swap asked of several agents (see ``ControlServer.swap``)."""
    for reason in _PRECEDENCE:
        for answer in answers:
            if answer.reason == reason:
                return answer
    swapped = [answer for answer in answers if answer.ok]
    if not swapped:  # every agent went away meanwhile
        return answers[0] if answers else SwapResult(ok=False, reason=DISCONNECTED)
    names = tuple(dict.fromkeys(name for answer in swapped for name in answer.names))
    unclaimed = set.intersection(*(set(answer.unclaimed) for answer in swapped))
    return SwapResult(
        ok=True,
        reason=SWAPPED,
        names=names,
        ms=max(answer.ms for answer in swapped),
        rtt_ms=max(answer.rtt_ms for answer in swapped),
        unclaimed=tuple(p for p in swapped[0].unclaimed if p in unclaimed),
        pids=tuple(sorted(pid for answer in swapped for pid in answer.pids)),
    )
