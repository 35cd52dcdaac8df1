"""uvicorn stops as soon as it is asked to, when nothing is in flight.

Every restart stops the old app first, and uvicorn takes about 200 ms to stop on SIGTERM, most
of it in fixed pauses: its main loop looks at the signal every 100 ms, then its shutdown waits
100 ms for connections to finish, whether there are any or not. Under pyair those pauses end
early: the main loop wakes at the signal, and once stopping, each pause lasts only while a
connection or a task is still open (up to the same 100 ms). The app's lifespan shutdown still
runs, and requests in flight still finish; so does a request that had just arrived
(:func:`answer_fresh_connections`).

How: ``uvicorn.server`` reaches asyncio through its module global ``asyncio``; that becomes
:class:`_Pauses`, which passes everything through to asyncio but ``sleep``, and
``Server.handle_exit`` (the signal handler) tells it the server is stopping.
"""

from __future__ import annotations

import functools

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType, ModuleType
    from typing import Any

STEP_S = 0.005  # while stopping: how often a pause looks whether anything is still open
FRESH_GRACE_S = 0.05  # at shutdown: how long a connection without a request may send one


class _Pauses:
    """``asyncio`` for ``uvicorn.server``: the same, but its pauses end when they may."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real
        self._stopping: Any = None  # the Server that was asked to stop
        self._wakers: set[tuple[Any, Any]] = set()  # (loop, event) of pauses in progress

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def stop(self, server: Any) -> None:
        """From the signal handler: the pauses in progress end now."""
        self._stopping = server
        for loop, event in list(self._wakers):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                continue

    async def sleep(self, delay: float, result: Any = None) -> Any:
        asyncio = self._real
        if delay <= 0:
            return await asyncio.sleep(delay, result)
        server = self._stopping
        if server is None:  # running: the same pause, but the stop signal ends it
            waker = (asyncio.get_running_loop(), asyncio.Event())
            self._wakers.add(waker)
            try:
                await asyncio.wait_for(waker[1].wait(), delay)
            except asyncio.TimeoutError:
                pass
            finally:
                self._wakers.discard(waker)
            return result
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        # A connection accepted just before the stop is registered a few loop turns later,
        # after uvicorn told the others to finish: wait for it, and tell it too.
        await asyncio.sleep(STEP_S)
        while loop.time() < deadline:
            _tell_late_connections(server)
            if not _busy(server):
                break
            await asyncio.sleep(STEP_S)
        return await asyncio.sleep(0, result)


def _busy(server: Any) -> bool:
    state = getattr(server, "server_state", None)
    return bool(getattr(state, "connections", None) or getattr(state, "tasks", None))


def _tell_late_connections(server: Any) -> None:
    """``shutdown()`` the connections uvicorn has not told (it tells each one once)."""
    state = getattr(server, "server_state", None)
    for connection in list(getattr(state, "connections", None) or ()):
        if not getattr(connection, "_pyair_told", True):  # a protocol patched below
            connection.shutdown()


def stop_quickly(module: ModuleType) -> None:
    """Patch ``uvicorn.server`` (see the module docstring); once."""
    cls = getattr(module, "Server", None)
    real = getattr(module, "asyncio", None)
    handle_exit = getattr(cls, "handle_exit", None)
    if cls is None or real is None or handle_exit is None or isinstance(real, _Pauses):
        return
    pauses = _Pauses(real)

    @functools.wraps(handle_exit)
    def on_signal(self: Any, sig: int, frame: FrameType | None) -> None:
        handle_exit(self, sig, frame)
        if getattr(self, "should_exit", False):
            pauses.stop(self)

    module.asyncio = pauses  # type: ignore[attr-defined]
    cls.handle_exit = on_signal


def answer_fresh_connections(module: ModuleType) -> None:
    """Patch an ``uvicorn.protocols.http`` module: at shutdown, a connection that has no
    request yet gets ``FRESH_GRACE_S`` to send one, and is answered, not closed unread.

    uvicorn closes such a connection at once; one accepted a moment before the stop signal
    usually has its request already in the socket's buffer, and closing it unread resets it.
    With pyair holding the port, the next app is starting meanwhile: the old one can afford it.
    A connection registered only after uvicorn told the others (accepted in the same loop turn
    as the signal) is told by the pauses of :class:`_Pauses`; uvicorn itself would serve it
    with keep-alive on, and an idle browser connection would then hold the exit.
    """
    for name in ("H11Protocol", "HttpToolsProtocol"):
        cls = getattr(module, name, None)
        shutdown = getattr(cls, "shutdown", None)
        if cls is None or shutdown is None or getattr(shutdown, "_pyair", False):
            continue

        def graceful(self: Any, _shutdown: Any = shutdown) -> None:
            if getattr(self, "_pyair_told", False):
                return  # told once already (by uvicorn, or late, by the pauses)
            self._pyair_told = True
            loop = getattr(self, "loop", None)
            if getattr(self, "cycle", True) is None and loop is not None:
                loop.call_later(FRESH_GRACE_S, _shutdown, self)
                return
            _shutdown(self)

        graceful._pyair = True  # type: ignore[attr-defined]
        cls.shutdown = graceful
        cls._pyair_told = False
