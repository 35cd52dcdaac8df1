"""Connections to the app: a spare connected ahead, kept-alive ones, held while it restarts.

    pool = UpstreamPool(config.proxy)
    pool.open()                            # from now on requests wait until ``release()``
    pool.task_group = tg                   # where spares connect and stale connections close
    upstream = await pool.connect(kept)    # held while the app restarts, retried while refused
    ...                                    # one request and its response over ``upstream``
    if not pool.park(upstream):            # kept for the browser's next request, or
        await upstream.close()             # ...closed

The engine's events drive it: ``hold()`` on a restart (a new epoch: connections to the old app
are never reused), ``release()`` once the new app answers, ``exited(why)`` when there is no app
to wait for.
"""

from __future__ import annotations

import select
from typing import Any

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream, TaskGroup

from ..config import ProxyConfig
from .wire import MAX_HEAD, next_event, send

__all__ = ["Unavailable", "Upstream", "UpstreamFailed", "UpstreamPool", "reusable"]

APP_HOST = "127.0.0.1"
CONNECT_RETRY_S = 0.01


class Unavailable(Exception):
    """The app cannot take this request: why, for the error page."""


class UpstreamFailed(Exception):
    """The app connection broke before (or while) a response came back."""


def reusable(stream: SocketStream) -> bool:
    """Is an idle connection still open? The app may have closed it since (idle timeout).

    Idle, nothing may be readable: readable means the app closed it (or sent bytes nobody
    asked for). A zero-timeout poll asks the kernel without touching the stream.
    """
    try:
        fd = stream.extra(SocketAttribute.raw_socket).fileno()
    except anyio.TypedAttributeLookupError:
        return False
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return not poller.poll(0)


class Upstream:
    """One connection to the app, reused while the app and both ends allow it."""

    def __init__(self, stream: SocketStream, epoch: int) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.epoch = epoch

    async def send(self, *events: Any) -> None:
        await send(self.conn, self.stream, *events)

    async def next_event(self) -> Any:
        return await next_event(self.conn, self.stream)

    def recycle(self) -> bool:
        """Ready for the next request? (Else it must be closed.)"""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            return True
        return False

    async def close(self) -> None:
        await anyio.aclose_forcefully(self.stream)


class UpstreamPool:
    """Where requests get their app connection (see the module doc)."""

    def __init__(self, settings: ProxyConfig) -> None:
        self.settings = settings
        self.epoch = 0  # bumped per restart: older app connections are never reused
        self.down: str | None = None  # why the app cannot answer at all (it exited)
        self.task_group: TaskGroup | None = None
        self._up: anyio.Event | None = None  # set while requests may go to the app
        self._spare: Upstream | None = None  # connected ahead: a request skips the connect
        self._refilling = False
        self._idle: set[Upstream] = set()  # kept-alive app connections between requests

    @property
    def up(self) -> bool:
        """May requests go to the app right now?"""
        return self._up is not None and self._up.is_set() and self.down is None

    def open(self) -> None:
        """Requests wait from now on, until the first ``release()``."""
        self._up = anyio.Event()

    def hold(self) -> None:
        """The app restarts: new requests wait, connections to the old one are closed."""
        self.epoch += 1
        self.down = None
        if self._up is not None and self._up.is_set():
            self._up = anyio.Event()
        self.drop_idle()

    def stopping(self) -> None:
        """pyair stops: waiting requests go on, no connection is kept for the app."""
        self.release()
        self.epoch += 1  # the ones in use now are closed after their answer
        self.drop_idle()

    def drop_idle(self) -> None:
        """Close the kept-alive and the spare app connections."""
        # idle connections to the old app would only make its shutdown wait for them
        stale = [*self._idle, *([self._spare] if self._spare else [])]
        self._idle.clear()
        self._spare = None
        if self.task_group is not None:
            for upstream in stale:
                self.task_group.start_soon(upstream.close)

    def release(self) -> None:
        """Held requests go on (to the app, or to ``down``'s error page)."""
        if self._up is not None:
            self._up.set()
        self._refill()

    def exited(self, why: str) -> None:
        """The app is gone until the next restart: requests get ``why`` instead of waiting."""
        self.down = why
        self.release()

    def park(self, upstream: Upstream) -> bool:
        """Keep ``upstream`` idle for its browser's next request; False: close it instead."""
        if upstream.recycle() and upstream.epoch == self.epoch:
            self._idle.add(upstream)
            return True
        return False

    def forget(self, upstream: Upstream) -> None:
        """Its browser went away: the caller closes it."""
        self._idle.discard(upstream)

    async def connect(self, kept: Upstream | None) -> Upstream:
        """An app connection: ``kept`` if still good, else a new one once the app is up.

        Waits while the app restarts and retries refused connects, up to app_start_timeout;
        past it, or when the app exited, raises Unavailable.
        """
        if kept is not None:
            self._idle.discard(kept)
            if kept.epoch == self.epoch and reusable(kept.stream):
                return kept
            await kept.close()
        assert self._up is not None
        timeout = self.settings.app_start_timeout / 1000
        with anyio.move_on_after(timeout) as waited:
            while True:
                if not self._up.is_set():  # (wait() on a set event still yields: skip it)
                    await self._up.wait()  # held while the app restarts
                if self.down is not None:
                    raise Unavailable(self.down)
                spare = self._take_spare()
                if spare is not None:
                    return spare
                try:
                    stream = await anyio.connect_tcp(APP_HOST, self.settings.app_port)
                except OSError:
                    await anyio.sleep(CONNECT_RETRY_S)
                    continue
                return Upstream(stream, self.epoch)
        assert waited.cancel_called
        raise Unavailable(
            f"the app did not answer on port {self.settings.app_port} within "
            f"{self.settings.app_start_timeout} ms (proxy.app_start_timeout)"
        )

    def _refill(self) -> None:
        """Connect a spare ahead of the next request (if the app is up and none is on hand)."""
        wanted = self._spare is None and not self._refilling and self.down is None
        if wanted and self.task_group is not None and self._up is not None and self._up.is_set():
            self._refilling = True
            self.task_group.start_soon(self._connect_spare, self.epoch)

    async def _connect_spare(self, epoch: int) -> None:
        try:
            stream = await anyio.connect_tcp(APP_HOST, self.settings.app_port)
        except OSError:
            return
        finally:
            self._refilling = False
        if epoch != self.epoch or self._spare is not None:
            await anyio.aclose_forcefully(stream)
        else:
            self._spare = Upstream(stream, epoch)

    def _take_spare(self) -> Upstream | None:
        spare, self._spare = self._spare, None
        if spare is not None and (spare.epoch != self.epoch or not reusable(spare.stream)):
            if self.task_group is not None:
                self.task_group.start_soon(spare.close)
            spare = None
        self._refill()
        return spare
