"""The live-reload proxy without a browser: real pyair, real app, real sockets.

Most tests run pyair as a subprocess with ``[proxy] enabled`` in front of tests/apps/proxy_app.py;
the tab fan-out test drives a ``Proxy`` in-process, so it can flood events at will.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import http.server
import io
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import anyio
import psutil
import pytest
from support import APPS, PyairRun, free_port, http_get, run_pyair, wait_until

from supervisor.config import Config, ProxyConfig
from supervisor.console import Console
from supervisor.events import AppReady, Restarting, TemplateFailed
from supervisor.proxy import Proxy, decode_body, inject_script, should_inject

TAG = b"/__pyair/client.js"


def make_project(tmp_path: Path) -> Path:
    shutil.copy(APPS / "proxy_app.py", tmp_path / "app.py")
    return tmp_path


def config(app_port: int, proxy_port: int, *, env: str = "", proxy: str = "") -> str:
    return f"""
[build]
full_bin = "python app.py"
kill_delay = "2s"
[env]
PORT = "{app_port}"
{env}
[proxy]
enabled = true
app_port = {app_port}
proxy_port = {proxy_port}
{proxy}
"""


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def get(port: int, path: str, headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


class Running:
    """pyair with its proxy in front of proxy_app.py; ``wait_up()`` waits for the app."""

    def __init__(self, tmp_path: Path, *, env: str = "", proxy: str = "") -> None:
        self.project = make_project(tmp_path)
        self.app_port, self.port = free_port(), free_port()
        self.run = PyairRun(self.project, config(self.app_port, self.port, env=env, proxy=proxy))

    def __enter__(self) -> Running:
        self.run.__enter__()
        self.run.wait_for_log(r"proxy on http")  # listening, before the app starts
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.run.__exit__(exc_type, exc, tb)

    def wait_up(self, needle: str = "version=1") -> str:
        return wait_until(lambda: _served(self.port, needle), timeout=15, message=needle)


def _served(port: int, needle: str) -> str | None:
    body = http_get(port, timeout=10)
    return body if body and needle in body else None


# --------------------------------------------------------------------------- pure parts


def test_inject_before_the_last_body_close_or_at_the_end() -> None:
    page = b"<body><pre>&lt;/body&gt; </BODY></pre></Body>\n</html>"
    assert (
        inject_script(page, b"<s>") == b"<body><pre>&lt;/body&gt; </BODY></pre><s></Body>\n</html>"
    )
    assert inject_script(b"<p>no body</p>", b"<s>") == b"<p>no body</p><s>"


def test_which_responses_get_the_script() -> None:
    html = [(b"content-type", b"text/html; charset=utf-8")]
    assert should_inject([], b"GET", 200, html)
    assert should_inject([], b"POST", 500, html)  # the app's own error pages reload too
    assert not should_inject([], b"HEAD", 200, html)
    assert not should_inject([], b"GET", 304, html)
    assert not should_inject([], b"GET", 206, html)  # a byte range of a page
    assert not should_inject([], b"GET", 200, [(b"content-type", b"application/json")])
    assert not should_inject([(b"hx-request", b"true")], b"GET", 200, html)
    download = [*html, (b"content-disposition", b"attachment; filename=a.html")]
    assert not should_inject([], b"GET", 200, download)


def test_decode_body() -> None:
    page = b"<html>" + b"x" * 1000 + b"</html>"
    assert decode_body(gzip.compress(page), b"gzip") == page
    assert decode_body(zlib.compress(page), b"deflate") == page
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decode_body(raw.compress(page) + raw.flush(), b"deflate") == page
    assert decode_body(page, b"br") is None
    assert decode_body(b"not gzip", b"gzip") is None


# --------------------------------------------------------------------------- through pyair


def test_requests_during_a_restart_are_held_and_all_get_200(tmp_path: Path) -> None:
    # the app takes 300 ms to listen: without holding, every request then would be refused
    with Running(tmp_path, env='START_DELAY = "0.3"') as up:
        up.wait_up()
        results: list[tuple[int | None, str]] = []
        slowest = [0.0]
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{up.port}/", timeout=10) as r:
                        results.append((r.status, r.read().decode()))
                except Exception as exc:
                    results.append((None, repr(exc)))
                slowest[0] = max(slowest[0], time.monotonic() - started)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: len(results) > 20, message="requests flowing")
            app = up.project / "app.py"
            app.write_text(app.read_text().replace('VERSION = "1"', 'VERSION = "2"'))
            wait_until(
                lambda: any("version=2" in body for _, body in results[-8:]),
                timeout=15,
                message="the new app answering through the proxy",
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        failed = [r for r in results if r[0] != 200]
        assert not failed, failed[:3]
        assert slowest[0] > 0.25, slowest  # some were held while the new app came up
        assert len((up.project / "starts.log").read_text().split()) == 2
        assert up.run.count(r"proxy: ") == 0, up.run.log()  # no error page was needed


def test_start_timeout_and_app_exit_give_an_error_page_that_retries(tmp_path: Path) -> None:
    with Running(tmp_path, env='START_DELAY = "1.5"', proxy="app_start_timeout = 300") as up:
        started = time.monotonic()
        page = get(up.port, "/", {"Accept": "text/html"})
        waited = time.monotonic() - started
        body = page.body.decode()
        assert page.status == 502, body
        assert "did not answer on port" in body and "app_start_timeout" in body
        assert "location.reload()" in body and TAG.decode() in body
        assert 0.25 < waited < 1.4, waited  # held for app_start_timeout, not refused at once
        plain = get(up.port, "/data.json", {"Accept": "application/json"})
        assert plain.status == 502 and (plain.header("Content-Type") or "").startswith("text/plain")
        up.wait_up()  # and once the app is up, the same URL just works
        os.kill(int((up.project / "starts.log").read_text().split()[-1]), signal.SIGKILL)
        up.run.wait_for_log(r"app exited with code -9")
        crashed = get(up.port, "/", {"Accept": "text/html"})  # nothing to wait for
        assert crashed.status == 502 and b"exited with code -9" in crashed.body


def test_websocket_echo_through_the_proxy(tmp_path: Path) -> None:
    with Running(tmp_path) as up:
        up.wait_up()
        sock = socket.create_connection(("127.0.0.1", up.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{up.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = _read_until(sock, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        assert re.search(rb"(?i)upgrade: websocket", head)
        for text in (b"hello", b"through pyair"):
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
            sock.sendall(bytes([0x81, 0x80 | len(text)]) + mask + masked)
            frame = _read_exactly(sock, 2)
            assert frame[0] == 0x81
            assert _read_exactly(sock, frame[1]) == b"echo:" + text
        sock.sendall(bytes([0x88, 0x80]) + b"\0\0\0\0")
        assert _read_exactly(sock, 2) == b"\x88\x00"
        sock.close()


def test_an_app_event_stream_reaches_the_client_unbuffered(tmp_path: Path) -> None:
    with Running(tmp_path) as up:
        up.wait_up()
        sock = socket.create_connection(("127.0.0.1", up.port), timeout=10)
        sock.sendall(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        # "two" is only written after /release: seeing "one" first proves nothing sat in a buffer
        first = _read_until(sock, b"data: one\n\n")
        assert b"text/event-stream" in first
        assert get(up.port, "/release").status == 200
        _read_until(sock, b"data: two\n\n")
        sock.close()


def test_headers_cookies_and_forwarding(tmp_path: Path) -> None:
    with Running(tmp_path) as up:
        up.wait_up()
        response = get(up.port, "/cookies", {"X-Forwarded-For": "10.0.0.1", "X-Custom": "yes"})
        assert response.status == 200
        cookies = [v for k, v in response.headers if k.lower() == "set-cookie"]
        assert cookies == ["a=1; Path=/", "b=2; Path=/"]
        seen = {k.lower(): v for k, v in json.loads(response.body).items()}
        assert seen["host"] == f"127.0.0.1:{up.port}"
        assert seen["x-forwarded-for"] == "127.0.0.1"  # the client's own is not passed on
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-custom"] == "yes"


def test_gzipped_html_gets_the_script(tmp_path: Path) -> None:
    with Running(tmp_path) as up:
        up.wait_up()
        response = get(up.port, "/gzip", {"Accept-Encoding": "gzip"})
        body = response.body
        assert response.header("Content-Encoding") is None
        assert int(response.header("Content-Length") or -1) == len(body)
        assert b"<p>compressed</p>" in body
        assert body.index(TAG) < body.index(b"</body>")
        fragment = get(up.port, "/fragment").body
        assert fragment == b"<li>item</li>"  # not a page: no script


def test_uploads_stream_through_chunked_and_by_length(tmp_path: Path) -> None:
    with Running(tmp_path) as up:
        up.wait_up()
        blob = os.urandom(3 * 1024 * 1024)
        conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
        chunks = (blob[i : i + 100_000] for i in range(0, len(blob), 100_000))
        conn.request("POST", "/echo", body=chunks, encode_chunked=True)
        answer = json.loads(conn.getresponse().read())
        assert answer == {"size": len(blob), "sha256": _sha256(blob)}
        conn.request("POST", "/echo", body=blob)  # same connection: keep-alive
        assert json.loads(conn.getresponse().read())["size"] == len(blob)
        conn.close()


def test_50_mb_download_keeps_proxy_memory_bounded(tmp_path: Path) -> None:
    with Running(tmp_path) as up:
        up.wait_up()
        pyair = psutil.Process(up.run.pid)
        get(up.port, "/big?mb=1")  # warm up the code paths first
        before = pyair.memory_info().rss
        peak = before
        conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=30)
        conn.request("GET", "/big?mb=50")
        response = conn.getresponse()
        received = 0
        while chunk := response.read(256 * 1024):
            received += len(chunk)
            peak = max(peak, pyair.memory_info().rss)
        conn.close()
        assert received == 50 * 1024 * 1024
        assert peak - before < 20 * 1024 * 1024, f"RSS grew {(peak - before) / 2**20:.1f} MiB"


def test_a_busy_proxy_port_is_one_clear_error(tmp_path: Path) -> None:
    make_project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / ".air.toml").write_text(config(free_port(), port))
        result = run_pyair("-c", ".air.toml", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"the proxy cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert not (tmp_path / "starts.log").exists()  # nothing was started


# --------------------------------------------------------------------------- in-process


async def _read_tab(stream: anyio.abc.SocketStream, into: bytearray) -> None:
    try:
        async for chunk in stream:
            into.extend(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


@pytest.mark.anyio
async def test_three_tabs_one_stalled_the_others_get_their_reload(tmp_path: Path) -> None:
    settings = ProxyConfig(enabled=True, app_port=free_port(), proxy_port=0)
    proxy = Proxy(Config(root=tmp_path, proxy=settings), Console(stream=io.StringIO()))
    request = (
        b"GET /__pyair/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    async with anyio.create_task_group() as tg:
        port = await tg.start(proxy.serve)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(request)  # ...and never reads a byte
        seen = [bytearray(), bytearray()]
        tabs = []
        for buffer in seen:
            tab = await anyio.connect_tcp("127.0.0.1", port)
            await tab.send(request)
            tabs.append(tab)
            tg.start_soon(_read_tab, tab, buffer)
        await _until(lambda: len(proxy.hub.tabs) == 3 and all(b"hello" in s for s in seen))
        # big events until the stalled tab's socket and queue are full and it is dropped; each
        # one waits for the healthy tabs, so only the stalled one can fall behind
        message = "x" * 65536
        for sent in range(1, 1000):
            proxy.on_event(TemplateFailed(None, None, message))
            await _until(lambda: all(s.count(b"event: error") >= sent for s in seen))  # noqa: B023
            if proxy.hub.dropped:
                break
        assert proxy.hub.dropped == 1 and len(proxy.hub.tabs) == 2
        proxy.on_event(Restarting("change"))
        proxy.on_event(AppReady(pid=1, generation=2, ms=1.0))
        await _until(lambda: all(b'event: ready\ndata: {"gen":"2"}' in s for s in seen))
        stalled.close()
        for tab in tabs:
            await tab.aclose()
        tg.cancel_scope.cancel()


async def _until(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.002)  # poll


# --------------------------------------------------------------------------- helpers


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _read_until(sock: socket.socket, marker: bytes, deadline: float = 10.0) -> bytes:
    data = b""
    sock.settimeout(deadline)
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before {marker!r}: {data!r}")
        data += chunk
    return data


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"closed after {data!r}")
        data += chunk
    return data


def test_css_event_carries_the_saved_text_up_to_a_size_limit(tmp_path: Path) -> None:
    from supervisor.proxy import MAX_CSS_PREVIEW, _stylesheet_texts

    small = tmp_path / "site.css"
    small.write_text("h1 { background: url(img/x.png); }\n")
    big = tmp_path / "big.css"
    big.write_bytes(b"/*" + b"x" * MAX_CSS_PREVIEW + b"*/")
    missing = tmp_path / "gone.css"
    texts = _stylesheet_texts(
        [str(small), str(big), str(missing)], ["static/site.css", "big.css", "gone.css"]
    )
    assert texts == {"static/site.css": "h1 { background: url(img/x.png); }\n"}
