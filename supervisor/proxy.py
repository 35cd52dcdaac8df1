"""The live-reload reverse proxy: the browser talks to pyair, pyair talks to the app.

    proxy = Proxy(config, console)
    await proxy.listen()                 # optional: a busy port fails here, as a PyairError
    await tg.start(proxy.serve)          # listening; prints the URL (proxy_port 0: a free one)
    engine.observers.append(proxy.on_event)

HTTP/1.1 on both sides with h11 (the only module that imports it), keep-alive on both sides,
bodies streamed with back-pressure; only ``text/html`` responses are buffered, to inject one
``<script>`` tag. Everything under ``/__pyair/`` is pyair's own: the client script and an SSE
stream of events, one connection per tab. What the engine reports becomes:

* ``Restarting`` → new requests are held (not refused) until the new app answers, then sent on;
  past ``app_start_timeout`` they get an error page that retries by itself.
* ``AppReady`` → ``ready``: tabs showing a page from an older app reload, once.
* ``TemplatesSwapped`` → ``update``: tabs fetch their URL again and morph the DOM in place.
* ``AssetsChanged`` → ``css`` (matching stylesheets swapped in place) or ``reload``.
* ``TemplateFailed`` / ``BuildFailed`` / ``AppExited`` → ``error``: an overlay on the page.

Every injected tag carries the proxy instance, the app generation and the template and CSS
revisions the page was served with, and each SSE connection starts with a ``hello`` that holds
the current ones: a tab that missed events (it was stalled, or pyair itself restarted) catches
up when it reconnects.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import re
import secrets
import select
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream, TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .config import Config
from .console import Console
from .errors import PyairError
from .events import (
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

__all__ = ["Proxy", "inject_script", "should_inject"]

RESERVED = "/__pyair/"
APP_HOST = "127.0.0.1"
RECV_SIZE = 65536
MAX_HEAD = 64 * 1024  # request/response head: big cookies fit
MAX_HTML = 16 * 1024 * 1024  # larger HTML is streamed as it is, without the script
REPLAY_LIMIT = 64 * 1024  # a request body this small is kept, to resend after a restart
TAB_QUEUE = 64  # events queued per tab; a tab this far behind is dropped and resyncs
HEARTBEAT_S = 15.0
RETRY_MS = 300  # EventSource reconnect delay: quick, so a restarted pyair is found at once
CONNECT_RETRY_S = 0.01
MAX_ATTEMPTS = 5  # upstream failures before a request is answered with an error page
STATIC = Path(__file__).parent / "static"

_Headers = list[tuple[bytes, bytes]]
_STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_DECODABLE = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": 0}
_BODY_CLOSE = re.compile(rb"</body", re.IGNORECASE)
_DOCUMENT = re.compile(rb"<!doctype|<html|<head|<body", re.IGNORECASE)
# "File "x.py", line 3" (tracebacks) or "x.py:3:" (compilers, linters)
_LOCATION = re.compile(r'File "([^"]+)", line (\d+)|^([^\s:][^:\n]*\.\w+):(\d+):', re.MULTILINE)


# --------------------------------------------------------------------------- pure helpers


def inject_script(body: bytes, tag: bytes) -> bytes:
    """``tag`` before the last ``</body>`` (any case), else at the end.

    >>> inject_script(b"<body>x</body></html>", b"<s>")
    b'<body>x<s></body></html>'
    """
    last = None
    for last in _BODY_CLOSE.finditer(body):  # noqa: B007 - the last match is the one we want
        pass
    if last is None:
        return body + tag
    return body[: last.start()] + tag + body[last.start() :]


MAX_CSS_PREVIEW = 256 * 1024


def _stylesheet_texts(files: Iterable[str], names: Iterable[str]) -> dict[str, str]:
    """The saved stylesheets' text, for the page to apply before its re-fetch returns.

    The app serves the same file a few milliseconds later and that copy replaces this one, so
    an app that transforms CSS on the way out is only previewed from disk for that long.
    """
    texts: dict[str, str] = {}
    for file, name in zip(files, names, strict=False):
        try:
            with open(file, "rb") as source:
                data = source.read(MAX_CSS_PREVIEW + 1)
        except OSError:
            continue
        if len(data) <= MAX_CSS_PREVIEW:
            texts[name] = data.decode("utf-8", errors="replace")
    return texts


def should_inject(request: _Headers, method: bytes, status: int, response: _Headers) -> bool:
    """Is this response a page the script belongs in (not a fragment, a download, a HEAD)?"""
    if method == b"HEAD" or status in (204, 206, 304) or status < 200:  # 206: a byte range
        return False
    content_type = _get(response, b"content-type") or b""
    if not content_type.lower().startswith(b"text/html"):
        return False
    if b"attachment" in (_get(response, b"content-disposition") or b"").lower():
        return False
    # htmx and friends fetch fragments: a script there would start a second client
    return _get(request, b"hx-request") is None


def decode_body(body: bytes, coding: bytes) -> bytes | None:
    """``body`` without its Content-Encoding (gzip or deflate), None when that is impossible."""
    coding = coding.strip().lower()
    if coding in (b"", b"identity"):
        return body
    if coding not in _DECODABLE:
        return None
    try:
        if coding == b"deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
        return zlib.decompress(body, _DECODABLE[coding])
    except zlib.error:
        return None


def _get(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _tokens(value: bytes | None) -> set[bytes]:
    return {t.strip().lower() for t in (value or b"").split(b",") if t.strip()}


def _wants_document(headers: _Headers) -> bool:
    mode = _get(headers, b"sec-fetch-mode")
    if mode is not None:
        return mode == b"navigate"
    return b"text/html" in (_get(headers, b"accept") or b"")


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    return _tokens(b",".join(v for k, v in headers if k.lower() == b"connection"))


def _end_to_end(headers: Iterable[tuple[bytes, bytes]], keep: Iterable[bytes] = ()) -> _Headers:
    """Headers without the hop-by-hop ones (and those the Connection header names)."""
    headers = list(headers)
    drop = (_HOP_BY_HOP | _connection_tokens(headers)) - set(keep)
    return [(k, v) for k, v in headers if k.lower() not in drop]


def _excerpt(file: str, line: int, context: int = 3) -> list[str]:
    try:
        lines = Path(file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    first, last = max(1, line - context), min(len(lines), line + context)
    return [f"{'>' if n == line else ' '} {n:>4} | {lines[n - 1]}" for n in range(first, last + 1)]


# --------------------------------------------------------------------------- the event hub


@dataclass(eq=False)
class _Tab:
    """One connected tab: its queue, and the scope of the task writing to it."""

    send: MemoryObjectSendStream[bytes]
    receive: MemoryObjectReceiveStream[bytes]
    scope: anyio.CancelScope


def sse(name: str, data: object) -> bytes:
    """One Server-Sent Event frame."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Hub:
    """Fan-out of events to tabs; broadcasting never waits for any of them.

    Each tab has a bounded queue. A tab whose queue is full is stalled (a paused debugger, a
    suspended laptop lid, a dead peer): it is dropped, and its browser reconnects and catches
    up from the ``hello`` instead of holding everybody else back.
    """

    def __init__(self, queue: int = TAB_QUEUE) -> None:
        self.queue = queue
        self.tabs: set[_Tab] = set()
        self.dropped = 0

    def join(self) -> _Tab:
        send, receive = anyio.create_memory_object_stream[bytes](self.queue)
        tab = _Tab(send, receive, anyio.CancelScope())
        self.tabs.add(tab)
        return tab

    def leave(self, tab: _Tab) -> None:
        self.tabs.discard(tab)
        tab.send.close()
        tab.receive.close()

    def broadcast(self, message: bytes) -> None:
        for tab in list(self.tabs):
            try:
                tab.send.send_nowait(message)
            except anyio.WouldBlock:
                self.dropped += 1
                tab.scope.cancel()
                self.leave(tab)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.leave(tab)

    def close_all(self) -> None:
        for tab in list(self.tabs):
            tab.scope.cancel()
            self.leave(tab)


# --------------------------------------------------------------------------- connections


class _Unavailable(Exception):
    """The app cannot take this request: why, for the error page."""


class _UpstreamFailed(Exception):
    """The app connection broke before a response began."""


class _ClientGone(Exception):
    """The browser went away while its request body was being read."""


async def _client_event(conn: h11.Connection, stream: SocketStream) -> Any:
    """The next event of the client's request body; _ClientGone if it broke off."""
    try:
        event = await _next_event(conn, stream)
    except h11.ProtocolError as exc:
        raise _ClientGone from exc
    if not isinstance(event, h11.Data | h11.EndOfMessage):
        raise _ClientGone
    return event


async def _next_event(conn: h11.Connection, stream: SocketStream) -> Any:
    """The next h11 event of ``conn``, reading from ``stream`` as needed (EOF included)."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive(RECV_SIZE)
        except _STREAM_ERRORS:
            data = b""
        conn.receive_data(data)


async def _send(conn: h11.Connection, stream: SocketStream, *events: Any) -> None:
    """Send ``events`` in one write (a head and a small body: one packet, one syscall)."""
    data = b"".join(conn.send(event) or b"" for event in events)
    if data:
        await stream.send(data)


def _reusable(stream: SocketStream) -> bool:
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


class _Upstream:
    """One connection to the app, reused while the app and both ends allow it."""

    def __init__(self, stream: SocketStream, epoch: int) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.epoch = epoch

    async def send(self, *events: Any) -> None:
        await _send(self.conn, self.stream, *events)

    async def next_event(self) -> Any:
        return await _next_event(self.conn, self.stream)

    def recycle(self) -> bool:
        """Ready for the next request? (Else it must be closed.)"""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            return True
        return False

    async def close(self) -> None:
        await anyio.aclose_forcefully(self.stream)


@dataclass
class _Served:
    """What a page was served with, for its tag."""

    gen: str
    rev: int
    css: int


@dataclass
class _Body:
    """A request body on its way: its start is kept, while small, to resend after a restart."""

    done: bool = False
    replay: bytearray = field(default_factory=bytearray)
    replayable: bool = True

    def keep(self, data: bytes) -> None:
        if self.replayable and len(self.replay) + len(data) <= REPLAY_LIMIT:
            self.replay += data
        else:
            self.replayable, self.replay = False, bytearray()


class Proxy:
    """Serves the app on ``[proxy] bind:proxy_port`` with live reload (see the module doc)."""

    def __init__(self, config: Config, console: Console) -> None:
        self.config = config
        self.settings = config.proxy
        self.console = console
        self.instance = secrets.token_hex(6)
        self.port = self.settings.proxy_port  # the bound port once serving (proxy_port 0: any)
        self.hub = Hub()
        client = (STATIC / "morph.js").read_bytes() + b"\n" + (STATIC / "client.js").read_bytes()
        self._client_js = client
        self._client_version = hashlib.sha256(client).hexdigest()[:12]
        self._up: anyio.Event | None = None  # set while requests may go to the app
        self._down: str | None = None  # why the app cannot answer at all (it exited)
        self._epoch = 0  # bumped per restart: older app connections are never reused
        self._gen = 0  # the generation of the app that answers now
        self._rev = 0  # template swaps so far
        self._css = 0  # stylesheet refreshes so far
        self._error: dict[str, Any] | None = None
        self._tg: TaskGroup | None = None
        self._spare: _Upstream | None = None  # connected ahead: a request skips the connect
        self._refilling = False
        self._idle: set[_Upstream] = set()  # kept-alive app connections between requests
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
        self._up = anyio.Event()
        await self.listen()
        assert self._listener is not None
        self.console.main(
            f"proxy on {self.url} → app on port {self.settings.app_port} (live reload)"
        )
        task_status.started(self.port)
        try:
            async with self._listener, anyio.create_task_group() as tg:
                self._tg = tg
                await self._listener.serve(self._connection, task_group=tg)
        finally:
            self.hub.close_all()

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
            self._hold()
        elif isinstance(event, AppReady):
            self._gen = event.generation
            self._release()
            self._error = None
            self.hub.broadcast(sse("ready", {"gen": str(self._gen)}))
        elif isinstance(event, AppNotReady):
            self._gen = event.generation
            self._release()
            if self._down is None:  # an exit says more than "not ready"
                message = f"the app did not answer on port {self.settings.app_port} in time"
                self._set_error({"kind": "app", "title": "App not ready", "message": message})
        elif isinstance(event, AppExited):
            self._down = f"the app exited with code {event.code}; pyair waits for a change"
            self._release()
            self._set_error({"kind": "app", "title": "App exited", "message": self._down})
        elif isinstance(event, TemplatesSwapped):
            self._rev += 1
            if self._error and self._error["kind"] == "template":
                self._error = None
            self.hub.broadcast(sse("update", {"rev": self._rev}))
        elif isinstance(event, TemplateFailed):
            self._set_error(self._template_error(event))
        elif isinstance(event, BuildFailed):
            self._set_error(self._build_error(event))
        elif isinstance(event, AssetsChanged):
            if event.css_only and self.settings.css_refresh:
                self._css += 1
                paths = [self._display(p) for p in event.paths]
                texts = _stylesheet_texts(event.paths, paths)
                self.hub.broadcast(sse("css", {"rev": self._css, "paths": paths, "texts": texts}))
            else:
                self.hub.broadcast(sse("reload", {}))
        elif isinstance(event, Stopping):
            self._release()
            self.hub.close_all()  # the tabs reconnect to the next pyair and reload once

    def _hold(self) -> None:
        self._epoch += 1
        self._down = None
        if self._up is not None and self._up.is_set():
            self._up = anyio.Event()
        # idle connections to the old app would only make its shutdown wait for them
        stale = [*self._idle, *([self._spare] if self._spare else [])]
        self._idle.clear()
        self._spare = None
        if self._tg is not None:
            for upstream in stale:
                self._tg.start_soon(upstream.close)

    def _release(self) -> None:
        if self._up is not None:
            self._up.set()
        self._refill()

    def _refill(self) -> None:
        """Connect a spare ahead of the next request (if the app is up and none is on hand)."""
        wanted = self._spare is None and not self._refilling and self._down is None
        if wanted and self._tg is not None and self._up is not None and self._up.is_set():
            self._refilling = True
            self._tg.start_soon(self._connect_spare, self._epoch)

    async def _connect_spare(self, epoch: int) -> None:
        try:
            stream = await anyio.connect_tcp(APP_HOST, self.settings.app_port)
        except OSError:
            return
        finally:
            self._refilling = False
        if epoch != self._epoch or self._spare is not None:
            await anyio.aclose_forcefully(stream)
        else:
            self._spare = _Upstream(stream, epoch)

    def _take_spare(self) -> _Upstream | None:
        spare, self._spare = self._spare, None
        if spare is not None and (spare.epoch != self._epoch or not _reusable(spare.stream)):
            if self._tg is not None:
                self._tg.start_soon(spare.close)
            spare = None
        self._refill()
        return spare

    def _set_error(self, error: dict[str, Any]) -> None:
        self._error = error
        self.hub.broadcast(sse("error", error))

    def _display(self, path: str) -> str:
        with contextlib.suppress(ValueError):
            return Path(path).resolve().relative_to(self.config.root.resolve()).as_posix()
        return path

    def _template_error(self, event: TemplateFailed) -> dict[str, Any]:
        return {
            "kind": "template",
            "title": "Template error",
            "file": self._display(event.file) if event.file else None,
            "line": event.line,
            "message": event.message,
            "source": list(event.source)
            or (_excerpt(event.file, event.line) if event.file and event.line else []),
        }

    def _build_error(self, event: BuildFailed) -> dict[str, Any]:
        file: str | None = None
        line: int | None = None
        found = list(_LOCATION.finditer(event.output))
        if found:  # the last location of a traceback is where it failed
            match = found[-1]
            file = match.group(1) or match.group(3)
            line = int(match.group(2) or match.group(4))
            if not Path(file).is_absolute():
                file = str(self.config.root / file)
        output = event.output.strip().splitlines()[-40:]
        return {
            "kind": "build",
            "title": f"Build failed (exit {event.returncode}): {event.command}",
            "file": self._display(file) if file else None,
            "line": line,
            "message": "\n".join(output),
            "source": _excerpt(file, line) if file and line else [],
        }

    def hello(self) -> dict[str, Any]:
        """The state a (re)connecting tab compares its page with."""
        return {
            "instance": self.instance,
            "gen": str(self._gen),
            "rev": self._rev,
            "css": self._css,
            "up": self._up is not None and self._up.is_set() and self._down is None,
            "error": self._error,
        }

    # -- one client connection ----------------------------------------------------------------

    async def _connection(self, stream: SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        slot: list[_Upstream] = []  # at most one kept-alive app connection per client
        try:
            while True:
                try:
                    event = await _next_event(conn, stream)
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._simple(conn, stream, exc.error_status_hint, str(exc))
                    return
                if not isinstance(event, h11.Request):
                    return  # closed, or paused after an upgrade nobody accepted
                if not await self._request(conn, stream, event, slot):
                    return
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                else:
                    return
        except (*_STREAM_ERRORS, h11.ProtocolError, _ClientGone, _UpstreamFailed):
            pass  # the browser went away, or the app broke mid-response: drop both
        finally:
            for upstream in slot:
                self._idle.discard(upstream)
                await upstream.close()
            await anyio.aclose_forcefully(stream)

    async def _request(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        request: h11.Request,
        slot: list[_Upstream],
    ) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        target = request.target.decode("latin-1")
        if target.startswith(RESERVED):
            return await self._internal(conn, stream, request, target)
        return await self._forward(conn, stream, request, slot)

    async def _simple(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        status: int,
        body: str | bytes,
        content_type: bytes = b"text/plain; charset=utf-8",
        extra: _Headers | None = None,
        *,
        method: bytes = b"GET",
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        extra = extra or []
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(data)).encode()),
            *([] if _get(extra, b"cache-control") else [(b"cache-control", b"no-store")]),
            *extra,
        ]
        body_events = [h11.Data(data=data)] if data and method != b"HEAD" else []
        await _send(
            conn,
            stream,
            h11.Response(status_code=status, headers=headers),
            *body_events,
            h11.EndOfMessage(),
        )

    # -- pyair's own endpoints ----------------------------------------------------------------

    async def _internal(
        self, conn: h11.Connection, stream: SocketStream, request: h11.Request, target: str
    ) -> bool:
        path = target.split("?", 1)[0]
        if not await self._drain_body(conn, stream):
            return False
        if path == RESERVED + "client.js":
            cache = b"public, max-age=31536000, immutable" if "?v=" in target else b"no-cache"
            await self._simple(
                conn,
                stream,
                200,
                self._client_js,
                b"text/javascript; charset=utf-8",
                [(b"cache-control", cache)],
                method=request.method,
            )
            return True
        if path == RESERVED + "events":
            await self._events(conn, stream)
            return False
        await self._simple(conn, stream, 404, f"pyair: nothing at {path}\n", method=request.method)
        return True

    async def _drain_body(self, conn: h11.Connection, stream: SocketStream) -> bool:
        while True:
            event = await _next_event(conn, stream)
            if isinstance(event, h11.EndOfMessage):
                return True
            if not isinstance(event, h11.Data):
                return False

    async def _events(self, conn: h11.Connection, stream: SocketStream) -> None:
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]
        tab = self.hub.join()
        first = f"retry: {RETRY_MS}\n\n".encode() + sse("hello", self.hello())
        try:
            head = h11.Response(status_code=200, headers=headers)
            await _send(conn, stream, head, h11.Data(data=first))
            with tab.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._until_closed, stream, tg.cancel_scope)
                    while True:
                        message = b": ping\n\n"  # a comment now and then finds dead peers
                        with anyio.move_on_after(HEARTBEAT_S):
                            message = await tab.receive.receive()
                        await _send(conn, stream, h11.Data(data=message))
        except _STREAM_ERRORS:
            pass
        finally:
            self.hub.leave(tab)

    @staticmethod
    async def _until_closed(stream: SocketStream, scope: anyio.CancelScope) -> None:
        """An EventSource never sends after its request: any read ending means it left."""
        with contextlib.suppress(*_STREAM_ERRORS):
            while await stream.receive(RECV_SIZE):
                pass
        scope.cancel()

    # -- forwarding -----------------------------------------------------------------------------

    def _upstream_headers(self, request: h11.Request, stream: SocketStream) -> _Headers:
        headers = list(request.headers)
        upgrade = _get(headers, b"upgrade") is not None and b"upgrade" in _connection_tokens(
            headers
        )
        out = _end_to_end(headers, keep=(b"upgrade",) if upgrade else ())
        out = [(k, v) for k, v in out if k not in (b"expect", b"accept-encoding")]
        if upgrade:
            out.append((b"connection", b"upgrade"))
        if _get(headers, b"transfer-encoding") is not None:
            out.append((b"transfer-encoding", b"chunked"))
        # a page is decoded here to inject the script: ask for it plain, and otherwise only
        # for codings pyair can decode
        if _wants_document(headers):
            out.append((b"accept-encoding", b"identity"))
        else:
            wanted = _tokens(_get(headers, b"accept-encoding")) & {b"gzip", b"deflate"}
            if wanted:
                out.append((b"accept-encoding", b", ".join(sorted(wanted))))
        peer = stream.extra(SocketAttribute.remote_address, ("", 0))
        client_ip = str(peer[0]) if isinstance(peer, tuple) else ""
        forwarded = _get(headers, b"x-forwarded-for")
        chain = forwarded + b", " + client_ip.encode() if forwarded else client_ip.encode()
        out = [(k, v) for k, v in out if k != b"x-forwarded-for"]
        out.append((b"x-forwarded-for", chain))
        if _get(headers, b"x-forwarded-proto") is None:
            out.append((b"x-forwarded-proto", b"http"))
        if _get(headers, b"x-forwarded-host") is None and (host := _get(headers, b"host")):
            out.append((b"x-forwarded-host", host))
        return out

    async def _connect(self, slot: list[_Upstream]) -> _Upstream:
        """An app connection: the kept one if still good, else a new one once the app is up.

        Waits while the app restarts and retries refused connects, up to app_start_timeout.
        """
        if slot:
            self._idle.discard(slot[0])
            if slot[0].epoch == self._epoch and _reusable(slot[0].stream):
                return slot[0]
            await slot.pop().close()
        assert self._up is not None
        timeout = self.settings.app_start_timeout / 1000
        with anyio.move_on_after(timeout) as waited:
            while True:
                if not self._up.is_set():  # (wait() on a set event still yields: skip it)
                    await self._up.wait()  # held while the app restarts
                if self._down is not None:
                    raise _Unavailable(self._down)
                spare = self._take_spare()
                if spare is not None:
                    slot.append(spare)
                    return spare
                try:
                    stream = await anyio.connect_tcp(APP_HOST, self.settings.app_port)
                except OSError:
                    await anyio.sleep(CONNECT_RETRY_S)
                    continue
                slot.append(_Upstream(stream, self._epoch))
                return slot[0]
        assert waited.cancel_called
        raise _Unavailable(
            f"the app did not answer on port {self.settings.app_port} within "
            f"{self.settings.app_start_timeout} ms (proxy.app_start_timeout)"
        )

    async def _forward(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        request: h11.Request,
        slot: list[_Upstream],
    ) -> bool:
        headers = self._upstream_headers(request, stream)
        upgrade = any(k == b"upgrade" for k, _ in headers)
        head = h11.Request(method=request.method, target=request.target, headers=headers)
        body = _Body()
        for attempt in range(MAX_ATTEMPTS):
            try:
                upstream = await self._connect(slot)
            except _Unavailable as exc:
                return await self._unavailable(conn, stream, request, str(exc), body.done)
            served = _Served(str(self._gen), self._rev, self._css)
            try:
                await self._send_request(conn, stream, upstream, head, body)
                response = await self._response_head(upstream, conn, stream)
            except (*_STREAM_ERRORS, h11.ProtocolError, _UpstreamFailed) as exc:
                await slot.pop().close()
                if not body.replayable:
                    self.console.debug(f"proxy: {request.target!r}: the app failed ({exc!r})")
                    return await self._unavailable(
                        conn, stream, request, "the app closed the connection", body.done
                    )
                if attempt:  # a fresh connection failed too: give a restart time to begin
                    await anyio.sleep(CONNECT_RETRY_S * attempt)
                continue
            if upgrade and response.status_code == 101:
                await self._tunnel(conn, stream, upstream, response)
                return False
            keep = await self._relay(conn, stream, request, upstream, response, served)
            if upstream.recycle() and upstream.epoch == self._epoch:
                self._idle.add(upstream)
            else:
                await slot.pop().close()
            return keep
        return await self._unavailable(
            conn, stream, request, "the app kept closing the connection", body.done
        )

    async def _send_request(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        upstream: _Upstream,
        head: h11.Request,
        body: _Body,
    ) -> None:
        """The request to the app, its body streamed from the client (or replayed)."""
        pending: list[Any] = [head]
        if body.replay:
            pending.append(h11.Data(data=bytes(body.replay)))
        if not body.done and conn.client_is_waiting_for_100_continue:
            try:
                await _send(conn, stream, h11.InformationalResponse(status_code=100, headers=[]))
            except _STREAM_ERRORS as exc:
                raise _ClientGone from exc
        while not body.done:
            try:
                event = conn.next_event()  # often the whole body (or its end) is already here
            except h11.ProtocolError as exc:
                raise _ClientGone from exc
            if event is h11.NEED_DATA:
                await upstream.send(*pending)
                pending = []
                event = await _client_event(conn, stream)
            elif not isinstance(event, h11.Data | h11.EndOfMessage):
                raise _ClientGone
            if isinstance(event, h11.EndOfMessage):
                body.done = True
            else:
                body.keep(event.data)
                pending.append(h11.Data(data=event.data))
        await upstream.send(*pending, h11.EndOfMessage())

    async def _response_head(
        self, upstream: _Upstream, conn: h11.Connection, stream: SocketStream
    ) -> h11.Response | h11.InformationalResponse:
        """The app's response head; other 1xx responses are passed on to the client."""
        while True:
            event = await upstream.next_event()
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    return event
                with contextlib.suppress(h11.LocalProtocolError):  # a client that cannot take it
                    await _send(
                        conn,
                        stream,
                        h11.InformationalResponse(
                            status_code=event.status_code, headers=_end_to_end(event.headers)
                        ),
                    )
                continue
            if isinstance(event, h11.Response):
                return event
            raise _UpstreamFailed(f"no response ({event!r})")

    async def _relay(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        request: h11.Request,
        upstream: _Upstream,
        response: h11.Response | h11.InformationalResponse,
        served: _Served,
    ) -> bool:
        assert isinstance(response, h11.Response)
        headers = _end_to_end(response.headers)
        status = response.status_code
        if should_inject(list(request.headers), request.method, status, headers):
            return await self._relay_page(conn, stream, request, upstream, response, served)
        head = h11.Response(status_code=status, headers=headers, reason=response.reason)
        return await self._stream_body(conn, stream, upstream, [head])

    async def _stream_body(
        self, conn: h11.Connection, stream: SocketStream, upstream: _Upstream, pending: list[Any]
    ) -> bool:
        """Pass the app's body on as it arrives; what already arrived goes in one write."""
        while True:
            event = upstream.conn.next_event()
            if event is h11.NEED_DATA:
                if pending:
                    await _send(conn, stream, *pending)
                    pending = []
                event = await upstream.next_event()
            if isinstance(event, h11.Data):
                pending.append(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                await _send(conn, stream, *pending, h11.EndOfMessage())
                return True
            else:
                raise _UpstreamFailed(f"the app broke off the response ({event!r})")

    async def _relay_page(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        request: h11.Request,
        upstream: _Upstream,
        response: h11.Response,
        served: _Served,
    ) -> bool:
        """Buffer an HTML page (up to MAX_HTML), inject the script, send it with its length."""
        headers = _end_to_end(response.headers)
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await upstream.next_event()
            if isinstance(event, h11.EndOfMessage):
                break
            if not isinstance(event, h11.Data):
                raise _UpstreamFailed(f"the app broke off the response ({event!r})")
            chunks.append(event.data)
            size += len(event.data)
            if size > MAX_HTML:  # too big to hold: pass it on as it is
                head = h11.Response(
                    status_code=response.status_code, headers=headers, reason=response.reason
                )
                held = h11.Data(data=b"".join(chunks))
                chunks.clear()
                return await self._stream_body(conn, stream, upstream, [head, held])
        body = b"".join(chunks)
        plain = decode_body(body, _get(headers, b"content-encoding") or b"")
        if plain is None or not self._is_page(request, plain):
            out = headers
        else:
            body = inject_script(plain, self._tag(served, request.method))
            dropped = {b"content-length", b"content-encoding", b"etag", b"last-modified"}
            out = [(k, v) for k, v in headers if k.lower() not in dropped]
            out.append((b"content-length", str(len(body)).encode()))
        head = h11.Response(status_code=response.status_code, headers=out, reason=response.reason)
        data = [h11.Data(data=body)] if body else []
        await _send(conn, stream, head, *data, h11.EndOfMessage())
        return True

    @staticmethod
    def _is_page(request: h11.Request, body: bytes) -> bool:
        """A whole document (not a fragment that happens to be text/html)."""
        if _BODY_CLOSE.search(body) or _wants_document(list(request.headers)):
            return True
        return _DOCUMENT.search(body[:4096]) is not None

    def _tag(self, served: _Served, method: bytes) -> bytes:
        return (
            f'<script data-pyair src="{RESERVED}client.js?v={self._client_version}" '
            f'data-instance="{self.instance}" data-gen="{served.gen}" data-rev="{served.rev}" '
            f'data-css="{served.css}" data-method="{method.decode("latin-1")}"></script>'
        ).encode()

    async def _unavailable(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        request: h11.Request,
        why: str,
        body_done: bool,
    ) -> bool:
        """502: an HTML page that retries by itself for a browser, one line for anyone else."""
        self.console.warning(f"proxy: {request.method.decode()} {request.target.decode()}: {why}")
        if conn.our_state is not h11.SEND_RESPONSE:
            return False
        extra = [(b"retry-after", b"1")]
        if not _wants_document(list(request.headers)):
            body, content_type = f"pyair: {why}\n".encode(), b"text/plain; charset=utf-8"
        else:
            body, content_type = self._error_page(why), b"text/html; charset=utf-8"
        await self._simple(conn, stream, 502, body, content_type, extra, method=request.method)
        return body_done

    def _error_page(self, why: str) -> bytes:
        tag = self._tag(_Served("", self._rev, self._css), b"GET").decode()
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pyair: the app is not answering</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;margin:3rem auto;max-width:42rem;color:#222}}
code{{background:#f3f3f3;padding:0 .25em}}h1{{color:#b7312c;font-size:1.4rem}}</style></head>
<body><h1>The app is not answering</h1><p>{html.escape(why)}.</p>
<p>This page reloads by itself as soon as the app is up. pyair's terminal shows why it is not.</p>
<script>setTimeout(function () {{ location.reload(); }}, 3000);</script>
{tag}</body></html>
""".encode()

    async def _tunnel(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        upstream: _Upstream,
        response: h11.Response | h11.InformationalResponse,
    ) -> None:
        """101 Switching Protocols: from here on, bytes flow both ways untouched."""
        headers = _end_to_end(response.headers, keep=(b"upgrade",))
        headers.append((b"connection", b"upgrade"))
        await _send(
            conn,
            stream,
            h11.InformationalResponse(status_code=101, headers=headers, reason=response.reason),
        )
        client_extra, _ = conn.trailing_data
        app_extra, _ = upstream.conn.trailing_data
        if client_extra:
            await upstream.stream.send(client_extra)
        if app_extra:
            await stream.send(app_extra)

        async def pump(source: SocketStream, sink: SocketStream, scope: anyio.CancelScope) -> None:
            with contextlib.suppress(*_STREAM_ERRORS):
                async for chunk in source:
                    await sink.send(chunk)
            scope.cancel()  # one side is gone: so is the tunnel

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, stream, upstream.stream, tg.cancel_scope)
            tg.start_soon(pump, upstream.stream, stream, tg.cancel_scope)
