"""One browser connection: its requests, each answered by pyair itself or forwarded to the app.

    await BrowserConnection(proxy, stream).run()    # until the browser or the app hangs up

Requests under ``/__pyair/`` are pyair's own (the script, the events stream); the rest go to the
app over this connection's kept-alive app connection, held while the app restarts. HTML pages
are buffered to inject the script; every other body streams through with back-pressure. A
request whose app connection breaks before the response begins is sent again (its body too,
while small), so a restart in between is never seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream

from ..console import Console
from .assets import AssetRequest, AssetTable, Tracking, no_store
from .gate import Gate, framing_refusal, request_line_refusal
from .headers import (
    Headers,
    downstream_headers,
    end_to_end,
    get_header,
    is_upgrade,
    upstream_headers,
    wants_document,
)
from .hub import HEARTBEAT_S, PING, Hub, greeting
from .inject import RESERVED, Script, Served, decode_body, inject_script, is_page, should_inject
from .listener import IdleConnections
from .pages import MAX_FAILED_BODY, error_page, failed_page
from .upstream import CONNECT_RETRY_S, Unavailable, Upstream, UpstreamFailed, UpstreamPool
from .wire import MAX_HEAD, RECV_SIZE, STREAM_ERRORS, send

__all__ = ["BrowserConnection", "ProxyState"]

MAX_HTML = 16 * 1024 * 1024  # larger HTML is streamed as it is, without the script
REPLAY_LIMIT = 64 * 1024  # a request body this small is kept, to resend after a restart
MAX_ATTEMPTS = 5  # upstream failures before a request is answered with an error page
KEEP_ALIVE_S = 60.0  # a connection with no request started for this long is closed
HEAD_S = 10.0  # a request head must be whole this long after its first byte (slowloris)
BODY_IDLE_S = 60.0  # a request body that sends nothing for this long is given up


class ProxyState(Protocol):
    """What a browser connection uses of its proxy (``Proxy`` is one)."""

    assets: AssetTable
    console: Console
    gate: Gate
    hub: Hub
    idle: IdleConnections
    pool: UpstreamPool
    script: Script

    def hello(self) -> dict[str, Any]: ...

    def served(self) -> Served: ...

    def broken(self) -> bool:
        """Whether a template or a build is broken now (the tabs show its overlay)."""
        ...


class BrowserGone(Exception):
    """The browser went away while its request body was being read (or stalled in it)."""


class Refused(Exception):
    """A request pyair answers with an error status and a line of why, then hangs up."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


@dataclass
class RequestBody:
    """A request body on its way: its start is kept, while small, to resend after a restart."""

    done: bool = False
    replay: bytearray = field(default_factory=bytearray)
    replayable: bool = True

    def keep(self, data: bytes) -> None:
        if self.replayable and len(self.replay) + len(data) <= REPLAY_LIMIT:
            self.replay += data
        else:
            self.replayable, self.replay = False, bytearray()


class BrowserConnection:
    """The h11 connection of one browser, its stream and its kept-alive app connection."""

    def __init__(self, proxy: ProxyState, stream: SocketStream) -> None:
        self.proxy = proxy
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.upstream: Upstream | None = None  # at most one kept-alive app connection

    async def run(self) -> None:
        """Answer requests until either side closes; then close both."""
        try:
            while True:
                try:
                    event = await self._next_request()
                except h11.RemoteProtocolError as exc:
                    # h11's 501 is a Transfer-Encoding it cannot decode: the body's length is
                    # unknown, which RFC 9112 answers with 400
                    status = 400 if exc.error_status_hint == 501 else exc.error_status_hint
                    await self._refuse(status, str(exc))
                    return
                except Refused as refusal:
                    await self._refuse(refusal.status, refusal.why)
                    return
                if not isinstance(event, h11.Request):
                    return  # closed, timed out, or paused after an upgrade nobody accepted
                if not await self._request(event):
                    return
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                else:
                    return
        except (*STREAM_ERRORS, h11.ProtocolError, BrowserGone, UpstreamFailed):
            pass  # the browser went away, or the app broke mid-response: drop both
        finally:
            if self.upstream is not None:
                self.proxy.pool.forget(self.upstream)
            await self._close_upstream()
            await anyio.aclose_forcefully(self.stream)

    async def _next_request(self) -> Any:
        """The next request's head (or the end of the connection, as h11 says it).

        None when the browser sent nothing for KEEP_ALIVE_S (or the connection was closed to
        make room for others); Refused when a head took longer
        than HEAD_S from its first byte (slowloris) or starts with a line pyair refuses.
        """
        start = bytearray()  # the head's first bytes, until its first line is complete
        began: float | None = None
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            limit = KEEP_ALIVE_S if began is None else began + HEAD_S - anyio.current_time()
            with anyio.move_on_after(limit), self._idle(began is None):
                data = await self._receive()
                if began is None and data:
                    began = anyio.current_time()
                if b"\n" not in start and len(start) < MAX_HEAD:
                    start += data
                    refusal = request_line_refusal(bytes(start))
                    if refusal is not None:
                        raise Refused(*refusal)
                self.conn.receive_data(data)
                continue
            if began is None:
                return None  # idle: close quietly, the browser opens another when it needs one
            raise Refused(408, f"the request head took over {HEAD_S:g} s")

    def _idle(self, idle: bool) -> contextlib.AbstractContextManager[object]:
        """Between requests, this connection may be closed to make room (see IdleConnections)."""
        return self.proxy.idle.waiting() if idle else contextlib.nullcontext()

    async def _receive(self) -> bytes:
        """The browser's next bytes; b"" at its end (or when its connection broke)."""
        try:
            return await self.stream.receive(RECV_SIZE)
        except STREAM_ERRORS:
            return b""

    async def _request(self, request: h11.Request) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        gate = self.proxy.gate
        refusal = gate.host_refusal(request)
        target = request.target.decode("latin-1")
        internal = target.startswith(RESERVED)
        if refusal is None and (internal or is_upgrade(list(request.headers))):
            refusal = gate.origin_refusal(request)  # events and WebSockets: not for other sites
        if refusal is not None:
            if gate.first_time(refusal):
                self.proxy.console.warning(
                    f"proxy: refused {request.method.decode()} {target[:200]}: {refusal}"
                )
            await self._refuse(403, refusal, method=request.method)
            return False
        framing = framing_refusal(request)
        if framing is not None:
            await self._refuse(*framing, method=request.method)
            return False
        if internal:
            return await self._internal(request, target)
        return await self._forward(request)

    async def _refuse(self, status: int, why: str, *, method: bytes = b"GET") -> None:
        """One line of why, then the connection closes (if a response can still be sent)."""
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            extra = [(b"connection", b"close")]
            await self._simple(status, f"pyair: {why}\n", extra=extra, method=method)

    async def _send(self, *events: Any) -> None:
        await send(self.conn, self.stream, *events)

    async def _simple(
        self,
        status: int,
        body: str | bytes,
        content_type: bytes = b"text/plain; charset=utf-8",
        extra: Headers | None = None,
        *,
        method: bytes = b"GET",
    ) -> None:
        """A whole response from pyair itself, not cached unless ``extra`` says otherwise."""
        data = body.encode() if isinstance(body, str) else body
        extra = extra or []
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(data)).encode()),
            *([] if get_header(extra, b"cache-control") else [(b"cache-control", b"no-store")]),
            *extra,
        ]
        body_events = [h11.Data(data=data)] if data and method != b"HEAD" else []
        await self._send(
            h11.Response(status_code=status, headers=headers), *body_events, h11.EndOfMessage()
        )

    # -- pyair's own endpoints ----------------------------------------------------------------

    async def _internal(self, request: h11.Request, target: str) -> bool:
        path = target.split("?", 1)[0]
        if not await self._drain_body():
            return False
        if path == RESERVED + "client.js":
            cache = b"public, max-age=31536000, immutable" if "?v=" in target else b"no-cache"
            await self._simple(
                200,
                self.proxy.script.source,
                b"text/javascript; charset=utf-8",
                [(b"cache-control", cache)],
                method=request.method,
            )
            return True
        if path == RESERVED + "events":
            await self._events()
            return False
        await self._simple(404, f"pyair: nothing at {path}\n", method=request.method)
        return True

    async def _drain_body(self) -> bool:
        while True:
            event = await self._next_body_event()
            if isinstance(event, h11.EndOfMessage):
                return True
            if not isinstance(event, h11.Data):
                return False

    async def _events(self) -> None:
        """The tab's event stream, until it leaves or the hub drops it."""
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]
        hub = self.proxy.hub
        tab = hub.join()
        first = greeting(self.proxy.hello())
        try:
            head = h11.Response(status_code=200, headers=headers)
            await self._send(head, h11.Data(data=first))
            with tab.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._until_closed, tg.cancel_scope)
                    while True:
                        message = PING
                        with anyio.move_on_after(HEARTBEAT_S):
                            message = await tab.receive.receive()
                        await self._send(h11.Data(data=message))
        except STREAM_ERRORS:
            pass
        finally:
            hub.leave(tab)

    async def _until_closed(self, scope: anyio.CancelScope) -> None:
        """An EventSource never sends after its request: any read ending means it left."""
        with contextlib.suppress(*STREAM_ERRORS):
            while await self.stream.receive(RECV_SIZE):
                pass
        scope.cancel()

    # -- forwarding -----------------------------------------------------------------------------

    async def _forward(self, request: h11.Request) -> bool:
        """Send ``request`` to the app and its response back; retried on a fresh connection."""
        proxy = self.proxy
        # asset versions: a file the browser has the current version of gets a 304 here
        asset = proxy.assets.request(request.method, request.target, list(request.headers))
        unchanged = asset.not_modified()
        if unchanged is not None:
            return await self._not_modified(unchanged)
        peer = self.stream.extra(SocketAttribute.remote_address, ("", 0))
        client_ip = str(peer[0]) if isinstance(peer, tuple) else ""
        headers = asset.forwarded(upstream_headers(list(request.headers), client_ip))
        upgrade = any(k == b"upgrade" for k, _ in headers)
        head = h11.Request(method=request.method, target=asset.target, headers=headers)
        body = RequestBody()
        for attempt in range(MAX_ATTEMPTS):
            try:
                upstream = await self._connect()
            except Unavailable as exc:
                return await self._unavailable(request, str(exc), body.done)
            served = proxy.served()
            try:
                await self._send_request(upstream, head, body)
                response = await self._response_head(upstream)
            except (*STREAM_ERRORS, h11.ProtocolError, UpstreamFailed) as exc:
                await self._close_upstream()
                if not body.replayable:
                    proxy.console.debug(f"proxy: {request.target!r}: the app failed ({exc!r})")
                    return await self._unavailable(
                        request, "the app closed the connection", body.done
                    )
                if attempt:  # a fresh connection failed too: give a restart time to begin
                    await anyio.sleep(CONNECT_RETRY_S * attempt)
                continue
            if upgrade and response.status_code == 101:
                await self._tunnel(upstream, response)
                return False
            keep = await self._relay(request, upstream, response, served, asset)
            if not proxy.pool.park(upstream):
                await self._close_upstream()
            return keep
        return await self._unavailable(request, "the app kept closing the connection", body.done)

    async def _connect(self) -> Upstream:
        kept, self.upstream = self.upstream, None
        self.upstream = await self.proxy.pool.connect(kept)
        return self.upstream

    async def _close_upstream(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            await upstream.close()

    async def _send_request(self, upstream: Upstream, head: h11.Request, body: RequestBody) -> None:
        """The request to the app, its body streamed from the browser (or replayed)."""
        pending: list[Any] = [head]
        if body.replay:
            pending.append(h11.Data(data=bytes(body.replay)))
        if not body.done and self.conn.client_is_waiting_for_100_continue:
            try:
                await self._send(h11.InformationalResponse(status_code=100, headers=[]))
            except STREAM_ERRORS as exc:
                raise BrowserGone from exc
        while not body.done:
            try:
                event = self.conn.next_event()  # often the whole body (or its end) is already here
            except h11.ProtocolError as exc:
                raise BrowserGone from exc
            if event is h11.NEED_DATA:
                await upstream.send(*pending)
                pending = []
                event = await self._body_event()
            elif not isinstance(event, h11.Data | h11.EndOfMessage):
                raise BrowserGone
            if isinstance(event, h11.EndOfMessage):
                body.done = True
            else:
                body.keep(event.data)
                pending.append(h11.Data(data=event.data))
        await upstream.send(*pending, h11.EndOfMessage())

    async def _body_event(self) -> Any:
        """The next event of the browser's request body; BrowserGone if it broke off."""
        try:
            event = await self._next_body_event()
        except h11.ProtocolError as exc:
            raise BrowserGone from exc
        if not isinstance(event, h11.Data | h11.EndOfMessage):
            raise BrowserGone
        return event

    async def _next_body_event(self) -> Any:
        """The next h11 event of a request body; BrowserGone after BODY_IDLE_S of silence."""
        while (event := self.conn.next_event()) is h11.NEED_DATA:
            with anyio.move_on_after(BODY_IDLE_S) as waited:
                self.conn.receive_data(await self._receive())
            if waited.cancelled_caught:
                raise BrowserGone(f"the request body sent nothing for {BODY_IDLE_S:g} s")
        return event

    async def _response_head(self, upstream: Upstream) -> h11.Response | h11.InformationalResponse:
        """The app's response head; other 1xx responses are passed on to the browser."""
        while True:
            event = await upstream.next_event()
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    return event
                with contextlib.suppress(h11.LocalProtocolError):  # a client that cannot take it
                    await self._send(
                        h11.InformationalResponse(
                            status_code=event.status_code, headers=downstream_headers(event.headers)
                        )
                    )
                continue
            if isinstance(event, h11.Response):
                return event
            raise UpstreamFailed(f"no response ({event!r})")

    async def _relay(
        self,
        request: h11.Request,
        upstream: Upstream,
        response: h11.Response | h11.InformationalResponse,
        served: Served,
        asset: AssetRequest,
    ) -> bool:
        assert isinstance(response, h11.Response)
        headers = downstream_headers(response.headers)
        status = response.status_code
        if should_inject(list(request.headers), request.method, status, headers):
            return await self._relay_page(request, upstream, response, served)
        if status >= 500 and wants_document(list(request.headers)) and self.proxy.broken():
            return await self._relay_failed(request, upstream, response, served)
        # asset versions: a project file gets its content ETag and pyair's caching (assets.py)
        tracking = await asset.track(status, headers)
        if tracking is not None:
            return await self._relay_asset(upstream, response, tracking)
        head = h11.Response(status_code=status, headers=headers, reason=response.reason)
        return await self._stream_body(upstream, [head])

    async def _relay_failed(
        self, request: h11.Request, upstream: Upstream, response: h11.Response, served: Served
    ) -> bool:
        """The app's plain error answer, wrapped in a page with the script (its overlay)."""
        headers = end_to_end(response.headers)
        kept = bytearray()
        while (data := await self._body_chunk(upstream)) is not None:
            if len(kept) < MAX_FAILED_BODY:
                kept += data
        plain = decode_body(bytes(kept), get_header(headers, b"content-encoding") or b"")
        tag = self.proxy.script.tag(served, request.method)
        body = failed_page(response.status_code, plain if plain is not None else b"", tag)
        dropped = {b"content-length", b"content-encoding", b"content-type", b"etag"}
        out = no_store([(k, v) for k, v in headers if k.lower() not in dropped])
        out += [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        head = h11.Response(status_code=response.status_code, headers=out, reason=response.reason)
        await self._send(head, h11.Data(data=body), h11.EndOfMessage())
        return True

    async def _buffer(self, upstream: Upstream, limit: int, chunks: list[bytes]) -> bool:
        """Read the app's body into ``chunks``: True when it all came, False past ``limit``."""
        size = 0
        while (data := await self._body_chunk(upstream)) is not None:
            chunks.append(data)
            size += len(data)
            if size > limit:
                return False
        return True

    async def _relay_asset(
        self, upstream: Upstream, response: h11.Response, tracking: Tracking
    ) -> bool:
        """A response that may be a project file: buffered (up to a limit) to version it."""
        status, reason = response.status_code, response.reason
        if tracking.settled is not None or (tracking.length or 0) > tracking.limit:
            headers = tracking.settled or tracking.oversized(tracking.length)
            head = h11.Response(status_code=status, headers=headers, reason=reason)
            return await self._stream_body(upstream, [head])
        chunks: list[bytes] = []
        if not await self._buffer(upstream, tracking.limit, chunks):
            head = h11.Response(status_code=status, headers=tracking.oversized(None), reason=reason)
            return await self._stream_body(upstream, [head, h11.Data(data=b"".join(chunks))])
        status, headers, body = await tracking.finish(b"".join(chunks))
        if status != response.status_code:
            reason = b""
        head = h11.Response(status_code=status, headers=headers, reason=reason)
        await self._send(head, *([h11.Data(data=body)] if body else []), h11.EndOfMessage())
        return True

    async def _not_modified(self, headers: Headers) -> bool:
        """The browser's copy is current: a 304, and the app is not asked."""
        if not await self._drain_body():
            return False
        await self._send(h11.Response(status_code=304, headers=headers), h11.EndOfMessage())
        return True

    async def _stream_body(self, upstream: Upstream, pending: list[Any]) -> bool:
        """Pass the app's body on as it arrives; what already arrived goes in one write."""
        while True:
            event = upstream.conn.next_event()
            if event is h11.NEED_DATA:
                if pending:
                    await self._send(*pending)
                    pending = []
                event = await upstream.next_event()
            if isinstance(event, h11.Data):
                pending.append(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                await self._send(*pending, h11.EndOfMessage())
                return True
            else:
                raise UpstreamFailed(f"the app broke off the response ({event!r})")

    async def _body_chunk(self, upstream: Upstream) -> bytes | None:
        """The next piece of the app's response body; None at its end."""
        event = await upstream.next_event()
        if isinstance(event, h11.EndOfMessage):
            return None
        if not isinstance(event, h11.Data):
            raise UpstreamFailed(f"the app broke off the response ({event!r})")
        return bytes(event.data)

    async def _relay_page(
        self, request: h11.Request, upstream: Upstream, response: h11.Response, served: Served
    ) -> bool:
        """Buffer an HTML page (up to MAX_HTML), inject the script, send it with its length."""
        headers = downstream_headers(response.headers)
        chunks: list[bytes] = []
        if not await self._buffer(upstream, MAX_HTML, chunks):  # too big to hold: as it is
            head = h11.Response(
                status_code=response.status_code, headers=headers, reason=response.reason
            )
            return await self._stream_body(upstream, [head, h11.Data(data=b"".join(chunks))])
        body = b"".join(chunks)
        plain = decode_body(body, get_header(headers, b"content-encoding") or b"")
        if plain is None or not is_page(list(request.headers), plain):
            out = headers
        else:
            page = await self.proxy.assets.version_page(plain, request.target)  # asset versions
            body = inject_script(page.body, self.proxy.script.tag(served, request.method))
            dropped = {b"content-length", b"content-encoding", b"etag", b"last-modified"}
            out = no_store([(k, v) for k, v in headers if k.lower() not in dropped])
            out.append((b"content-length", str(len(body)).encode()))
            if page.preload:  # the changed files: fetched while the page is still parsed
                out.append((b"link", b", ".join(page.preload)))
        head = h11.Response(status_code=response.status_code, headers=out, reason=response.reason)
        content = [h11.Data(data=body)] if body else []
        await self._send(head, *content, h11.EndOfMessage())
        return True

    async def _tunnel(
        self, upstream: Upstream, response: h11.Response | h11.InformationalResponse
    ) -> None:
        """101 Switching Protocols: from here on, bytes flow both ways untouched."""
        headers = end_to_end(response.headers, keep=(b"upgrade",))
        headers.append((b"connection", b"upgrade"))
        await self._send(
            h11.InformationalResponse(status_code=101, headers=headers, reason=response.reason)
        )
        client_extra, _ = self.conn.trailing_data
        app_extra, _ = upstream.conn.trailing_data
        if client_extra:
            await upstream.stream.send(client_extra)
        if app_extra:
            await self.stream.send(app_extra)

        async def pump(source: SocketStream, sink: SocketStream, scope: anyio.CancelScope) -> None:
            with contextlib.suppress(*STREAM_ERRORS):
                async for chunk in source:
                    await sink.send(chunk)
            scope.cancel()  # one side is gone: so is the tunnel

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, self.stream, upstream.stream, tg.cancel_scope)
            tg.start_soon(pump, upstream.stream, self.stream, tg.cancel_scope)

    # -- when the app cannot answer -------------------------------------------------------------

    async def _unavailable(self, request: h11.Request, why: str, body_done: bool) -> bool:
        """502: an HTML page that retries by itself for a browser, one line for anyone else."""
        proxy = self.proxy
        proxy.console.warning(f"proxy: {request.method.decode()} {request.target.decode()}: {why}")
        if self.conn.our_state is not h11.SEND_RESPONSE:
            return False
        extra = [(b"retry-after", b"1")]
        if not wants_document(list(request.headers)):
            body, content_type = f"pyair: {why}\n".encode(), b"text/plain; charset=utf-8"
        else:
            tag = proxy.script.tag(dataclasses.replace(proxy.served(), gen=""), b"GET")
            body, content_type = error_page(why, tag), b"text/html; charset=utf-8"
        await self._simple(502, body, content_type, extra, method=request.method)
        return body_done
