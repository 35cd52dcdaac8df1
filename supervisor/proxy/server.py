"""The proxy's lifetime and what the engine's events do to it: ``Proxy``.

    proxy = Proxy(config, console)
    await proxy.listen()                 # optional: a busy port fails here, as a PyairError
    await tg.start(proxy.serve)          # listening; prints the URL (proxy_port 0: a free one)
    engine.observers.append(proxy.on_event)

Each accepted connection is a ``BrowserConnection``; the state they share lives here: the
upstream pool, the hub of tabs, the script, and what the current pages were served with.
"""

from __future__ import annotations

import secrets
import socket
from typing import Any

import anyio
from anyio.abc import Listener, SocketAttribute, SocketStream, TaskGroup, TaskStatus

from ..config import Config
from ..console import Console
from ..errors import PyairError
from ..events import (
    AppExited,
    AppNotReady,
    AppReady,
    AssetsChanged,
    BuildFailed,
    Event,
    Restarting,
    Stopping,
    TemplateFailed,
    TemplatesSwapped,
)
from .assets import AssetTable
from .browser import BrowserConnection
from .gate import Gate
from .hub import Hub, sse
from .inject import Script, Served
from .listener import IdleConnections, accept_forever
from .pages import app_error, build_error, css_refresh, template_error
from .upstream import UpstreamPool

__all__ = ["Proxy"]


class Proxy:
    """Serves the app on ``[proxy] bind:proxy_port`` with live reload (see the package doc)."""

    def __init__(self, config: Config, console: Console) -> None:
        self.config = config
        self.settings = config.proxy
        self.console = console
        self.instance = secrets.token_hex(6)
        self.port = self.settings.proxy_port  # the bound port once serving (proxy_port 0: any)
        self.hub = Hub()
        self.script = Script(self.instance)
        self.pool = UpstreamPool(self.settings)
        self.assets = AssetTable(config.root)
        self.gate = Gate(self.settings.allowed_hosts, self.settings.bind)
        self.idle = IdleConnections()  # closed first when file descriptors run out
        self._gen = 0  # the generation of the app that answers now
        self._rev = 0  # template swaps so far
        self._css = 0  # stylesheet refreshes so far
        self._error: dict[str, Any] | None = None
        self._listener: anyio.abc.Listener[SocketStream] | None = None

    # -- lifetime ---------------------------------------------------------------------------

    async def listen(self) -> None:
        """Bind the port now (a busy port is a plain PyairError); ``serve`` then uses it."""
        if self._listener is not None:
            return
        try:
            self._listener = await anyio.create_tcp_listener(
                local_host=self.settings.bind, local_port=self.settings.proxy_port
            )
        except OSError as exc:
            where = f"{self.settings.bind}:{self.settings.proxy_port}"
            raise PyairError(
                f"the proxy cannot listen on {where}: {exc.strerror or exc}",
                hint="pick another [proxy] proxy_port, or 0 for any free port",
            ) from None
        self.port = int(self._listener.extra(SocketAttribute.local_port))

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``task_status.started(port)`` once bound."""
        self.pool.open()
        await self.listen()
        assert self._listener is not None
        self.console.main(
            f"proxy on {self.url} → app on port {self.settings.app_port} (live reload)"
        )
        task_status.started(self.port)
        try:
            async with self._listener, anyio.create_task_group() as tg:
                self.pool.task_group = tg
                tg.start_soon(self.assets.keep_index)
                for listening in _sockets(self._listener):
                    tg.start_soon(self._accept, listening, tg)
        finally:
            self.hub.close_all()

    async def _accept(self, listening: socket.socket, tg: TaskGroup) -> None:
        await accept_forever(
            listening,
            self._browser,
            tg,
            warn=self.console.warning,
            debug=self.console.debug,
            idle=self.idle,
        )

    async def _browser(self, stream: SocketStream) -> None:
        await BrowserConnection(self, stream).run()

    @property
    def url(self) -> str:
        host = self.settings.bind
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    # -- events from the engine ---------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Engine observer: update state and queue messages for the tabs; never blocks."""
        if isinstance(event, Restarting):
            self.pool.hold()
            self.assets.changed(event.paths)
            self.assets.restarted()
        elif isinstance(event, AppReady):
            self._gen = event.generation
            self.pool.release()
            self._error = None
            self.hub.broadcast(sse("ready", {"gen": str(self._gen)}))
        elif isinstance(event, AppNotReady):
            self._gen = event.generation
            self.pool.release()
            if self.pool.down is None:  # an exit says more than "not ready"
                message = event.reason or (
                    f"the app did not answer on port {self.settings.app_port} in time"
                )
                self._set_error(app_error("App not ready", message))
        elif isinstance(event, AppExited):
            why = f"the app exited with code {event.code}; pyair waits for a change"
            self.pool.exited(why)
            self.assets.restarted()
            self._set_error(app_error("App exited", why))
        elif isinstance(event, TemplatesSwapped):
            self.assets.changed(event.paths)
            self._rev += 1
            if self._error and self._error["kind"] == "template":
                self._error = None
            self.hub.broadcast(sse("update", {"rev": self._rev}))
        elif isinstance(event, TemplateFailed):
            self._set_error(template_error(event, self.config.root))
        elif isinstance(event, BuildFailed):
            self._set_error(build_error(event, self.config.root))
        elif isinstance(event, AssetsChanged):
            self.assets.changed(event.paths)
            if event.css_only and self.settings.css_refresh:
                self._css += 1
                versions = self.assets.versions(event.paths)  # the tokens their ETags carry
                self.hub.broadcast(
                    sse("css", css_refresh(self._css, event.paths, self.config.root, versions))
                )
            else:  # the tabs fetch the changed files first: the reload then finds them cached
                self.hub.broadcast(sse("reload", {"fetch": self.assets.fresh_urls(event.paths)}))
        elif isinstance(event, Stopping):
            self.pool.stopping()
            self.hub.close_all()  # the tabs reconnect to the next pyair and reload once

    def _set_error(self, error: dict[str, Any]) -> None:
        self._error = error
        self.hub.broadcast(sse("error", error))

    # -- what pages and tabs are told ---------------------------------------------------------

    def served(self) -> Served:
        """What a page served now is served with (its tag carries it)."""
        return Served(str(self._gen), self._rev, self._css)

    def broken(self) -> bool:
        """Whether a template or a build is broken now (the tabs show its overlay)."""
        return self._error is not None and self._error.get("kind") in ("template", "build")

    def hello(self) -> dict[str, Any]:
        """The state a (re)connecting tab compares its page with."""
        return {
            "instance": self.instance,
            "gen": str(self._gen),
            "rev": self._rev,
            "css": self._css,
            "up": self.pool.up,
            "error": self._error,
        }


def _sockets(listener: Listener[SocketStream]) -> list[socket.socket]:
    """The listening sockets behind ``listener`` (one per address the bind name has)."""
    listeners = getattr(listener, "listeners", None) or [listener]
    return [item.extra(SocketAttribute.raw_socket) for item in listeners]
