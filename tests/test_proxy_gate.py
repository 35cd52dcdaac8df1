"""The proxy under attack: foreign Host and Origin, smuggling-shaped framing, HTTP/0.9, spoofed
forwarding headers, and error events that would publish files from outside the project.

Each attack is a real request on a real socket to a real pyair in front of
tests/apps/proxy_app.py; each test also checks that pyair keeps serving afterwards.
"""

from __future__ import annotations

import io
import json
import os
import socket
from pathlib import Path

import anyio
import pytest
from support import free_port
from test_proxy import Running, get

from supervisor.config import Config, ProxyConfig
from supervisor.console import Console
from supervisor.events import BuildFailed, TemplateFailed
from supervisor.proxy import Proxy
from supervisor.proxy.gate import Gate, host_name, request_line_refusal

WS_HEADERS = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data``; everything the proxy answers until it closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received
            if not chunk:
                return received
            received += chunk


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


def hits(up: Running) -> int:
    path = up.project / "hits.log"
    return len(path.read_text().split()) if path.exists() else 0


# --------------------------------------------------------------------------- pure parts


def test_host_names_and_the_default_policy() -> None:
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("localhost.") == "localhost"
    assert host_name("a b") is None and host_name("x:port") is None and host_name("") is None
    gate = Gate()
    for name in ("localhost", "app.localhost", "127.0.0.1", "::1", "192.168.1.9"):
        assert gate.allows(name), name
    for name in ("evil.example", "localhost.evil.example", "127.0.0.1.nip.io"):
        assert not gate.allows(name), name
    custom = Gate(("dev.test", ".corp.test"), bind="myhost")
    assert custom.allows("dev.test") and not custom.allows("a.dev.test")
    assert custom.allows("corp.test") and custom.allows("a.b.corp.test")
    assert not custom.allows("xcorp.test")
    assert custom.allows("myhost")  # the bind name
    assert Gate(("*",)).allows("anything.example")


def test_request_lines_h11_would_hold_or_take() -> None:
    assert request_line_refusal(b"GET /\r\n") == (400, "HTTP/0.9 requests are not supported")
    assert request_line_refusal(b"GET / HTTP/2.0\r\nHost: x\r\n")[0] == 505  # type: ignore[index]
    assert request_line_refusal(b"GET / HTTP/1.1\r\n") is None
    assert request_line_refusal(b"GET /") is None  # not a whole line yet


# --------------------------------------------------------------------------- through pyair


def test_a_foreign_host_gets_403_on_every_path_and_pyair_keeps_serving(tmp_path: Path) -> None:
    with Running(tmp_path) as up:
        up.wait_up()
        before = hits(up)
        evil = f"Host: evil.example:{up.port}\r\n"
        requests = {
            "page": f"GET / HTTP/1.1\r\n{evil}Accept: text/html\r\n\r\n",
            "events": f"GET /__pyair/events HTTP/1.1\r\n{evil}\r\n",
            "script": f"GET /__pyair/client.js HTTP/1.1\r\n{evil}\r\n",
            "websocket": f"GET /ws HTTP/1.1\r\n{evil}{WS_HEADERS}\r\n",
            "absolute-form": "GET http://evil.example/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        }
        for what, request in requests.items():
            answer = exchange(up.port, request.encode())
            assert status_of(answer) == 403, (what, answer)
            body = body_of(answer).decode()
            assert body.count("\n") == 1 and "[proxy] allowed_hosts" in body, (what, body)
            assert b"hello" not in answer and b"client.js" not in body.encode()
        assert hits(up) == before  # the app never saw one of them
        assert up.run.count(r"proxy: refused GET /: .*evil\.example") == 1, up.run.log()
        # the same request again is not said again; pyair answers its own names as before
        exchange(up.port, requests["page"].encode())
        assert up.run.count(r"proxy: refused GET /: .*evil\.example") == 1
        for host in (f"127.0.0.1:{up.port}", f"localhost:{up.port}", "app.localhost"):
            assert get(up.port, "/", {"Host": host}).status == 200, host
        assert hits(up) == before + 3


def test_a_foreign_origin_cannot_open_a_websocket_or_the_events(tmp_path: Path) -> None:
    with Running(tmp_path) as up:
        up.wait_up()
        host = f"Host: 127.0.0.1:{up.port}\r\n"
        for origin in ("http://evil.example", "null", "chrome-extension://abc"):
            bad = f"Origin: {origin}\r\n"
            ws = exchange(up.port, f"GET /ws HTTP/1.1\r\n{host}{bad}{WS_HEADERS}\r\n".encode())
            assert status_of(ws) == 403 and b"Origin" in body_of(ws), ws
            events = exchange(up.port, f"GET /__pyair/events HTTP/1.1\r\n{host}{bad}\r\n".encode())
            assert status_of(events) == 403 and b"hello" not in events, events
        # the page's own origin may: 101 for the WebSocket, the hello on the events stream
        own = f"Origin: http://127.0.0.1:{up.port}\r\n"
        with socket.create_connection(("127.0.0.1", up.port), timeout=10) as sock:
            sock.sendall(f"GET /ws HTTP/1.1\r\n{host}{own}{WS_HEADERS}\r\n".encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 101")
        with socket.create_connection(("127.0.0.1", up.port), timeout=10) as sock:
            sock.sendall(f"GET /__pyair/events HTTP/1.1\r\n{host}{own}\r\n".encode())
            seen = b""
            while b"event: hello" not in seen:
                seen += sock.recv(65536)
        assert get(up.port, "/").status == 200


def test_allowed_hosts_adds_names_and_domains(tmp_path: Path) -> None:
    with Running(tmp_path, proxy='allowed_hosts = ["dev.test", ".corp.test"]') as up:
        up.wait_up()
        for host, status in (
            ("dev.test", 200),
            ("corp.test:8000", 200),
            ("a.b.corp.test", 200),
            ("a.dev.test", 403),
            ("evil.example", 403),
        ):
            assert get(up.port, "/", {"Host": host}).status == status, host


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n"
            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"both Content-Length and Transfer-Encoding",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n"
            "Content-Length: 5\r\n\r\nabcde",
            b"Content-Length",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"Transfer-Encoding",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"Transfer-Encoding",
        ),
        (
            "POST /echo HTTP/1.0\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"HTTP/1.0",
        ),
        ("GET /\r\n", b"HTTP/0.9"),
    ],
    ids=["cl-and-te", "two-lengths", "chunked-not-last", "gzip-only", "te-in-1.0", "http-0.9"],
)
def test_ambiguous_framing_is_refused_with_400(tmp_path: Path, head: str, why: bytes) -> None:
    with Running(tmp_path) as up:
        up.wait_up()
        answer = exchange(up.port, head.encode(), timeout=3)  # HTTP/0.9 too: no waiting
        assert status_of(answer) == 400, answer
        assert why in body_of(answer), answer
        assert b'"size"' not in answer  # never reached the app's echo
        assert get(up.port, "/").status == 200


def test_http_2_in_http_1_form_is_505(tmp_path: Path) -> None:
    with Running(tmp_path) as up:
        up.wait_up()
        answer = exchange(up.port, b"GET / HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", timeout=3)
        assert status_of(answer) == 505, answer
        assert get(up.port, "/").status == 200


def test_the_proxy_sets_the_forwarded_headers_itself(tmp_path: Path) -> None:
    with Running(tmp_path) as up:
        up.wait_up()
        spoofed = {
            "X-Forwarded-Host": "bank.example",
            "X-Forwarded-For": "10.9.9.9",
            "X-Forwarded-Proto": "https",
            "Forwarded": "for=10.9.9.9;host=bank.example",
            "X-Real-IP": "10.9.9.9",
        }
        seen = {k.lower(): v for k, v in json.loads(get(up.port, "/cookies", spoofed).body).items()}
        assert seen["x-forwarded-host"] == f"127.0.0.1:{up.port}"
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert "forwarded" not in seen and "x-real-ip" not in seen
        # a chunked upload is forwarded re-encoded, with no stray Content-Length
        conn_answer = exchange(
            up.port,
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n",
        )
        assert status_of(conn_answer) == 200 and b'"size": 3' in conn_answer


# --------------------------------------------------------------------------- source lines


async def _events(port: int, into: bytearray) -> None:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    await stream.send(b"GET /__pyair/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        async for chunk in stream:
            into.extend(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


async def _until(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)  # poll


@pytest.mark.anyio
async def test_error_events_show_source_only_from_project_files(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    (elsewhere / ".ssh").mkdir(parents=True)
    secret = elsewhere / ".ssh" / "id_key"
    secret.write_text("line one\nSECRET-KEY-MATERIAL\nline three\n")
    (root / "link.py").symlink_to(secret)  # inside the project by name only
    (root / ".env").write_text("A=1\nTOKEN=SECRET-KEY-MATERIAL\n")
    (root / "app.py").write_text("x = 1\ny = (\n")
    settings = ProxyConfig(enabled=True, app_port=free_port(), proxy_port=0)
    proxy = Proxy(Config(root=root, proxy=settings), Console(stream=io.StringIO()))
    attacks = [
        BuildFailed("make", 1, f'Traceback:\n  File "{secret}", line 2, in <module>\nboom\n'),
        BuildFailed("make", 1, "/etc/passwd:1: bad\n"),
        BuildFailed("make", 1, "link.py:2: error\n"),
        BuildFailed("make", 1, ".env:2: error\n"),
        TemplateFailed(str(secret), 2, "bad", ("> 2 | SECRET-KEY-MATERIAL",)),
    ]
    stream = bytearray()
    async with anyio.create_task_group() as tg:
        port = await tg.start(proxy.serve)
        tg.start_soon(_events, port, stream)
        await _until(lambda: b"event: hello" in stream)
        for sent, event in enumerate(attacks, 1):
            proxy.on_event(event)
            await _until(lambda: stream.count(b"event: error") >= sent)  # noqa: B023
            assert proxy.hello()["error"]["source"] == [], event
        assert b"SECRET-KEY-MATERIAL" not in stream
        assert b"root:" not in stream  # /etc/passwd's first line
        proxy.on_event(BuildFailed("python app.py", 1, 'File "app.py", line 2\nSyntaxError\n'))
        await _until(lambda: stream.count(b"event: error") > len(attacks))
        assert any("y = (" in line for line in proxy.hello()["error"]["source"])
        later = bytearray()  # a tab that connects now gets the state in its hello
        tg.start_soon(_events, port, later)
        await _until(lambda: b"event: hello" in later)
        assert b"y = (" in later and b"SECRET" not in later
        tg.cancel_scope.cancel()
    assert os.path.exists(secret)  # (read, never touched)
