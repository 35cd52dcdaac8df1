"""Taking browser connections: the accept loop, and the stream each connection reads.

    async with anyio.create_task_group() as tg:
        await accept_forever(raw_listening_socket, handle, tg, warn=console.warning)

Three promises, each against a way a proxy falls over under load:

- Out of file descriptors (EMFILE, ENFILE) or kernel buffers, ``accept()`` backs off (doubling,
  up to a second) instead of failing; connections wait in the kernel's backlog meanwhile. It
  is said once, with the limit to raise (any other accept failure too: once per errno). And
  connections that have waited over a second for their next request (:class:`IdleConnections`)
  are closed, oldest first, to make room: a browser reopens a closed keep-alive connection
  by itself, and a flood of idle sockets cannot starve the tab that is sending a request.
- Each connection is a :class:`BrowserStream`: it reads its socket only when asked, never
  ahead into memory, so an app that reads an upload slowly slows the browser down instead of
  filling pyair's memory, whatever the size. (anyio's accepted streams start out reading
  ahead, as fast as the browser sends, until the first read that finds nothing queued.)
- A handler that raises is logged and its connection closed: one connection's bug never ends
  the proxy.
"""

from __future__ import annotations

import errno
import resource
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import anyio
import anyio.lowlevel
from anyio.abc import SocketStream, TaskGroup

__all__ = ["BrowserStream", "IdleConnections", "accept_forever"]

BACKOFF_MIN_S = 0.01
BACKOFF_MAX_S = 1.0
SHEDDABLE_AFTER_S = 1.0  # idle this long, a connection may be closed to make room
# accept() failures that pass once something is freed: wait, don't fail
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# a connection that died in the backlog, or was refused by a firewall: take the next one
_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})


class IdleConnections:
    """Connections waiting for their next request, oldest first: the first to go when file
    descriptors run out.

        with idle.waiting() as scope:        # cancelled by shed(): close the connection
            data = await stream.receive()
    """

    def __init__(self) -> None:
        self._waiting: dict[anyio.CancelScope, float] = {}  # insertion order: oldest first

    def __len__(self) -> int:
        return len(self._waiting)

    @contextmanager
    def waiting(self) -> Iterator[anyio.CancelScope]:
        with anyio.CancelScope() as scope:
            self._waiting[scope] = anyio.current_time()
            try:
                yield scope
            finally:
                self._waiting.pop(scope, None)

    def shed(self) -> int:
        """Close half of the connections idle over SHEDDABLE_AFTER_S (at least one); how many."""
        cutoff = anyio.current_time() - SHEDDABLE_AFTER_S
        old = [scope for scope, since in self._waiting.items() if since <= cutoff]
        doomed = old[: max(1, len(old) // 2)] if old else []
        for scope in doomed:
            self._waiting.pop(scope, None)
            scope.cancel()
        return len(doomed)


class BrowserStream(SocketStream):
    """A connected socket read and written only on request (back-pressure both ways)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket = sock
        self._closed = False

    @property
    def _raw_socket(self) -> socket.socket:
        return self._socket

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()
        while True:
            self._check_open()
            try:
                data = self._socket.recv(max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._socket)
                continue
            except OSError as exc:
                raise self._broken(exc) from exc
            if not data:
                raise anyio.EndOfStream
            return data

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        view = memoryview(item)
        while view:
            self._check_open()
            try:
                sent = self._socket.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self._socket)
                continue
            except OSError as exc:
                raise self._broken(exc) from exc
            view = view[sent:]

    async def send_eof(self) -> None:
        self._check_open()
        try:
            self._socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._broken(exc) from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self._socket)  # a task waiting on it wakes: closed
            self._socket.close()
        await anyio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError

    def _broken(self, exc: OSError) -> Exception:
        if self._closed:
            return anyio.ClosedResourceError()
        return anyio.BrokenResourceError(str(exc))


async def accept_forever(
    listening: socket.socket,
    handle: Callable[[BrowserStream], Awaitable[None]],
    tg: TaskGroup,
    *,
    warn: Callable[[str], None],
    debug: Callable[[str], None] = lambda message: None,
    idle: IdleConnections | None = None,
) -> None:
    """Accept connections on ``listening`` (non-blocking) until cancelled; each is handled
    in ``tg``. See the module docstring for what happens when accepting fails."""
    listening.setblocking(False)
    backoff = 0.0
    warned: set[int | None] = set()
    while True:
        try:
            client, _ = listening.accept()
        except BlockingIOError:
            await anyio.wait_readable(listening)
            continue
        except OSError as exc:
            if exc.errno in _GONE:
                continue
            if exc.errno in warned:
                debug(f"proxy: accept failed again: {exc.strerror}")
            elif exc.errno in _EXHAUSTED:
                soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                warn(
                    f"proxy: cannot take new connections ({exc.strerror}); they wait until "
                    f"some close (pyair's open-file limit is {soft}: `ulimit -n` raises it)"
                )
            else:
                warn(f"proxy: accepting a connection failed ({exc}); trying again")
            warned.add(exc.errno)
            if idle is not None and exc.errno in _EXHAUSTED and (shed := idle.shed()):
                debug(f"proxy: closed {shed} idle connection(s) to make room")
            backoff = min(max(backoff * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)
            await anyio.sleep(backoff)
            continue
        backoff = 0.0
        tg.start_soon(_guarded, handle, BrowserStream(client), warn)


async def _guarded(
    handle: Callable[[BrowserStream], Awaitable[None]],
    stream: BrowserStream,
    warn: Callable[[str], None],
) -> None:
    try:
        await handle(stream)
    except Exception as exc:  # a bug in one connection: that connection ends, not the proxy
        warn(f"proxy: a connection failed: {type(exc).__name__}: {exc}")
    finally:
        await anyio.aclose_forcefully(stream)
